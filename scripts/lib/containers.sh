# NATS, PostgreSQL and the S3 server as containers of the images
# scripts/images built, for scripts/images check and scripts/test-deploy.
# Source scripts/lib/services.sh and .nadir/images/env first.

# nadir_service_containers PREFIX NETWORK S3_ALIAS [POSTGRES_ARG...]
#
# Runs PREFIX-nats (network alias nats), PREFIX-postgres (alias postgres)
# and PREFIX-s3 (alias S3_ALIAS) on NETWORK, each on a named volume of its
# own name, NATS and the S3 server on read-only roots; publishes each on a
# free 127.0.0.1 port and sets nats_port, mon_port (NATS monitoring),
# pg_port and s3_port. PostgreSQL's superuser is nadir with pg_password,
# database nadir; the S3 root user is s3_key with s3_secret; POSTGRES_ARG
# are more `run` arguments for PostgreSQL (environment, mounts). Engine:
# NADIR_ENGINE; what it says goes to NADIR_CONTAINERS_LOG. On a failure to
# start, returns 1 with service_error saying which and why.
nadir_service_containers() {
  local prefix=$1 net=$2 s3_alias=$3 log=${NADIR_CONTAINERS_LOG:-/dev/null}
  shift 3
  nadir_free_port nats_port && nadir_free_port mon_port && nadir_free_port pg_port && nadir_free_port s3_port
  service_error=
  "$NADIR_ENGINE" run -d --name "$prefix-nats" --network "$net" --network-alias nats --read-only \
    -v "$prefix-nats:/data" -p "127.0.0.1:$nats_port:4222" -p "127.0.0.1:$mon_port:8222" \
    "$NADIR_NATS_IMAGE" -js -sd /data -m 8222 >/dev/null 2>>"$log" \
    || service_error="$NADIR_NATS_IMAGE did not start: $(tail -n 3 "$log")"
  "$NADIR_ENGINE" run -d --name "$prefix-postgres" --network "$net" --network-alias postgres \
    -e POSTGRES_USER=nadir -e POSTGRES_DB=nadir -e POSTGRES_PASSWORD="$pg_password" "$@" \
    -v "$prefix-postgres:/var/lib/postgresql/data" -p "127.0.0.1:$pg_port:5432" "$NADIR_POSTGRES_IMAGE" \
    >/dev/null 2>>"$log" || service_error="${service_error:+$service_error; }$NADIR_POSTGRES_IMAGE did not start: $(tail -n 3 "$log")"
  "$NADIR_ENGINE" run -d --name "$prefix-s3" --network "$net" --network-alias "$s3_alias" --read-only --tmpfs /tmp \
    -e MINIO_ROOT_USER="$s3_key" -e MINIO_ROOT_PASSWORD="$s3_secret" \
    -v "$prefix-s3:/data" -p "127.0.0.1:$s3_port:9000" "$NADIR_S3_IMAGE" server /data \
    >/dev/null 2>>"$log" || service_error="${service_error:+$service_error; }$NADIR_S3_IMAGE did not start: $(tail -n 3 "$log")"
  [ -z "$service_error" ]
}
