#!/bin/sh
# Entrypoint of the S3 image that scripts/images builds with s3s-fs when no
# MinIO binary is at hand. It takes MinIO's command line and credentials, so
# the MinIO containers of compose.yaml and the dev overlay run it unchanged:
#
#   server DIR [--address [HOST]:PORT] [--console-address ADDR]
#   MINIO_ROOT_USER, MINIO_ROOT_PASSWORD   the one access key and its secret
#
# (--console-address is accepted and ignored: s3s-fs has no console, and no
# bucket notifications either, so nadir's ingest reconciler finds new RAW
# objects instead of MinIO's events.) Any other command runs as given.
set -eu

log() { echo "s3s-fs-entrypoint: $*" >&2; }

[ "${1:-}" = server ] || exec "$@"
shift
dir=/data host=0.0.0.0 port=9000
while [ $# -gt 0 ]; do
  case $1 in
    --address) addr=$2; shift 2 ;;
    --address=*) addr=${1#--address=}; shift ;;
    --console-address) shift 2 ;;
    --console-address=*) shift ;;
    -*) log "ignoring option $1"; shift ;;
    *) dir=$1; shift ;;
  esac
  if [ -n "${addr:-}" ]; then
    port=${addr##*:}
    [ -n "${addr%:*}" ] && host=${addr%:*}
    addr=
  fi
done
if [ -z "${MINIO_ROOT_USER:-}" ] || [ -z "${MINIO_ROOT_PASSWORD:-}" ]; then
  log "set MINIO_ROOT_USER and MINIO_ROOT_PASSWORD (the access key and its secret)"
  exit 1
fi
# s3s-fs as PID 1 would ignore SIGTERM (no handler of its own): it runs as
# this script's child instead, and the script passes SIGTERM and SIGINT on.
s3s-fs --host "$host" --port "$port" \
  --access-key "$MINIO_ROOT_USER" --secret-key "$MINIO_ROOT_PASSWORD" "$dir" &
child=$!
stopping=
trap 'stopping=1; kill -TERM "$child" 2>/dev/null' TERM INT
status=0
wait "$child" || status=$?
# A trapped signal ends the first wait early; the second one waits for the exit.
if kill -0 "$child" 2>/dev/null; then
  status=0
  wait "$child" || status=$?
fi
# Stopped when asked to: a clean exit, as MinIO's.
if [ -n "$stopping" ] && [ "$status" = 143 ]; then status=0; fi
exit "$status"
