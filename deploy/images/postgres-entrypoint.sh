#!/bin/sh
# Entrypoint of the PostgreSQL image that scripts/images builds from Debian's
# packages. It takes the settings of the official postgres image, so
# compose.yaml and the manifests run it unchanged:
#
#   POSTGRES_PASSWORD   the superuser's password (required on first start,
#                       or POSTGRES_PASSWORD_FILE naming a file that holds it)
#   POSTGRES_USER       the superuser (default postgres)
#   POSTGRES_DB         a database made on first start (default: POSTGRES_USER)
#   PGDATA              the cluster (default /var/lib/postgresql/data)
#   /docker-entrypoint-initdb.d/*.sh and *.sql run once, on first start
#
# On first start (no PGDATA/PG_VERSION) it runs initdb, password
# authentication (scram-sha-256) for every TCP client, trust only on the
# container's own socket, then the init scripts on a server that listens on
# no TCP port; then it runs postgres listening on every address (port 5432).
# Started as root it hands the data directory to postgres (uid 70) and runs
# as that user; started as uid 70 (runAsUser: 70) it does the same as it is.
# The socket is in /var/run/postgresql, or in /tmp where that is not
# writable.
# Any other command (psql, pg_isready, sh) runs as given.
set -eu

: "${PGDATA:=/var/lib/postgresql/data}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
export PGDATA POSTGRES_USER POSTGRES_DB

log() { echo "postgres-entrypoint: $*" >&2; }

if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
[ "$1" = postgres ] || exec "$@"

if [ "$(id -u)" = 0 ]; then
  # (A read-only root refuses even a chown that changes nothing.)
  mkdir -p "$PGDATA" 2>/dev/null || true
  chown postgres:postgres "$PGDATA" /var/run/postgresql 2>/dev/null || true
  chmod 700 "$PGDATA" 2>/dev/null || true
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

# The socket goes to /var/run/postgresql (where psql and pg_isready look),
# or to /tmp where that is not writable (a read-only root without a volume
# there); TCP works either way.
sockets=
for d in /var/run/postgresql /tmp; do
  if [ -d "$d" ] && [ -w "$d" ]; then sockets=${sockets:+$sockets,}$d; fi
done
[ -n "$sockets" ] || { log "neither /var/run/postgresql nor /tmp is writable"; exit 1; }
sock=${sockets%%,*}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "PGDATA ($PGDATA) holds no cluster and POSTGRES_PASSWORD is not set: set it (or POSTGRES_PASSWORD_FILE) for the first start"
    exit 1
  fi
  mkdir -p "$PGDATA"
  chmod 700 "$PGDATA"
  log "initialising a cluster in $PGDATA (superuser $POSTGRES_USER)"
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$POSTGRES_USER" --pwfile="$pwfile" -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  {
    echo "# Added by the image's entrypoint: any address, with a password."
    echo "host all all all scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"

  # The init scripts, on a server reachable through the socket only.
  pg_ctl -D "$PGDATA" -w -t 60 -o "-c listen_addresses='' -k $sock" start >&2
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -v ON_ERROR_STOP=1 -h "$sock" -U "$POSTGRES_USER" -d postgres -q \
      -v db="$POSTGRES_DB" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  # The init scripts' psql finds the server through PGHOST.
  PGHOST=$sock
  export PGHOST
  for f in /docker-entrypoint-initdb.d/*; do
    [ -e "$f" ] || continue
    case $f in
      *.sh)
        log "running $f"
        # shellcheck disable=SC1090
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        log "running $f"
        psql -v ON_ERROR_STOP=1 -h "$sock" -U "$POSTGRES_USER" -d "$POSTGRES_DB" -q -f "$f"
        ;;
      *) log "ignoring $f" ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >&2
  unset PGHOST
  log "cluster ready"
fi

exec "$@" -D "$PGDATA" -c listen_addresses='*' -k "$sockets"
