# Shared by scripts/demo and scripts/test: install and run NATS (JetStream),
# PostgreSQL and an S3 server on loopback, with their data under a state
# directory that git ignores. Source it; do not run it.
#
#   nadir_install                     install what is missing (apt, cargo)
#   nadir_install_begin / _wait       the same, the S3 server's build left
#                                     running in between
#   nadir_install_browser             Chromium, Node.js and playwright-core for
#                                     the dashboard's browser test
#   nadir_services_start DIR BASE     start the three services on ports BASE+...,
#                                     write DIR/env (shell-sourceable NADIR_* lines)
#                                     PostgreSQL also accepts TLS, with a certificate
#                                     for localhost from a CA made in DIR/tls; nadir
#                                     connects in plaintext unless told otherwise
#   nadir_services_stop DIR           stop what nadir_services_start started
#   nadir_step TEXT / nadir_steps_report   timed steps, and how long each took

NADIR_S3S_VERSION=0.14.1

nadir_log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# Timed steps: nadir_step says what starts now and ends the step before;
# nadir_steps_report ends the last one and prints how long each took.
NADIR_STEPS=()
NADIR_STEP=
nadir_step_end() {
  [ -n "$NADIR_STEP" ] || return 0
  NADIR_STEPS+=("$(awk -v a="$NADIR_STEP_START" -v b="$(date +%s.%N)" 'BEGIN { printf "%7.1f s", b - a }')  $NADIR_STEP")
  NADIR_STEP=
}
nadir_step() {
  nadir_step_end
  NADIR_STEP=$*
  NADIR_STEP_START=$(date +%s.%N)
  nadir_log "$*"
}
nadir_steps_report() {
  nadir_step_end
  local total
  total=$(printf '%s\n' "${NADIR_STEPS[@]}" | awk '{ t += $1 } END { printf "%7.1f s", t }')
  printf '\nHow long each step took:\n' >&2
  printf '  %s\n' "${NADIR_STEPS[@]}" "$total  in all" >&2
}
nadir_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

nadir_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Installs Debian packages (none given: nothing to do).
nadir_apt_install() {
  [ $# -gt 0 ] || return 0
  nadir_log "installing $* (apt)"
  nadir_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive nadir_sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

nadir_pg_bindir() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] && [ -x "$dir/initdb" ] && echo "$dir"
}

# Installs what is missing: Debian's packages now, and the S3 server
# (unless MinIO or s3s-fs is on PATH) with `cargo install` in the
# background, so that it builds beside the workspace; nadir_install_wait
# waits for it. nadir_install does both at once.
nadir_install_begin() {
  local missing=()
  command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] || missing+=(nats-server)
  [ -n "$(nadir_pg_bindir)" ] || missing+=(postgresql)
  command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
  command -v openssl >/dev/null 2>&1 || missing+=(openssl)
  NADIR_S3_INSTALL_PID=
  if ! command -v minio >/dev/null 2>&1 && ! command -v s3s-fs >/dev/null 2>&1; then
    nadir_log "installing the S3 server s3s-fs $NADIR_S3S_VERSION (cargo install in the background; minio is not on PATH)"
    mkdir -p .nadir
    NADIR_S3_INSTALL_LOG=$PWD/.nadir/s3s-fs-install.log
    cargo install s3s-fs --version "$NADIR_S3S_VERSION" --features binary --locked --quiet \
      >"$NADIR_S3_INSTALL_LOG" 2>&1 &
    NADIR_S3_INSTALL_PID=$!
  fi
  nadir_apt_install "${missing[@]}"
}

nadir_install_wait() {
  [ -n "${NADIR_S3_INSTALL_PID:-}" ] || return 0
  local pid=$NADIR_S3_INSTALL_PID
  NADIR_S3_INSTALL_PID=
  if ! wait "$pid"; then
    cat "$NADIR_S3_INSTALL_LOG" >&2
    nadir_die "cargo install s3s-fs $NADIR_S3S_VERSION failed (its output above, and in $NADIR_S3_INSTALL_LOG)"
  fi
  command -v s3s-fs >/dev/null 2>&1 || nadir_die "s3s-fs was installed but is not on PATH (add ~/.cargo/bin)"
}

nadir_install() {
  nadir_install_begin
  nadir_install_wait
}

nadir_install_browser() {
  local missing=()
  [ -x /usr/bin/chromium ] || missing+=(chromium)
  command -v node >/dev/null 2>&1 || missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
  nadir_apt_install "${missing[@]}"
  # playwright-core only drives a browser; it never downloads one.
  if [ ! -d e2e/browser/node_modules/playwright-core ] \
      || [ e2e/browser/package-lock.json -nt e2e/browser/node_modules/.package-lock.json ]; then
    nadir_log "installing playwright-core (npm ci in e2e/browser)"
    npm ci --prefix e2e/browser --no-audit --no-fund --loglevel=error >/dev/null
  fi
}

nadir_nats_bin() { command -v nats-server 2>/dev/null || echo /usr/sbin/nats-server; }

nadir_random() { head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Waits until something listens on 127.0.0.1:$1.
nadir_wait_port() {
  local port=$1 what=$2 i
  for i in $(seq 1 150); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.2
  done
  nadir_die "$what did not start listening on 127.0.0.1:$port (see its log)"
}

nadir_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Timing: t=$(nadir_now) ... "$(nadir_since "$t") s".
nadir_now() { date +%s.%N; }
nadir_since() { awk -v a="$1" -v b="$(nadir_now)" 'BEGIN { printf "%.1f", b - a }'; }

# nadir_wait_until SECONDS COMMAND...: true once COMMAND succeeds (its
# output discarded), false when SECONDS have passed.
nadir_wait_until() {
  local deadline=$(($(date +%s) + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

# nadir_free_port VAR: sets VAR to a port nothing listens on on 127.0.0.1,
# from nadir_next_port up (27000 unless the caller set it), never the same
# one twice.
nadir_next_port=${nadir_next_port:-27000}
nadir_free_port() {
  while (exec 3<>"/dev/tcp/127.0.0.1/$nadir_next_port") 2>/dev/null; do
    nadir_next_port=$((nadir_next_port + 1))
  done
  printf -v "$1" %s "$nadir_next_port"
  nadir_next_port=$((nadir_next_port + 1))
}

# Test certificates in $1 (made once): ca.pem, a CA made here; server.pem
# and server.key, for CN and SAN localhost, signed by it; other-ca.pem, a
# CA that signed nothing (what a wrong sslrootcert looks like). The CA's
# key is thrown away. The key belongs to the postgres user when we are root.
nadir_tls_certs() {
  local tls=$1
  [ -f "$tls/server.pem" ] && [ -f "$tls/server.key" ] && return 0
  command -v openssl >/dev/null 2>&1 || nadir_die "openssl is missing (nadir_install installs it)"
  rm -rf "$tls" && mkdir -p "$tls" && chmod 755 "$tls"
  (
    cd "$tls"
    umask 077
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    for ca in ca other-ca; do
      openssl req -x509 "${ec[@]}" -keyout "$ca.key" -out "$ca.pem" -days 3650 \
        -subj "/CN=nadir test $ca" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
    done
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost"
    printf '%s\n' "subjectAltName=DNS:localhost" "basicConstraints=critical,CA:FALSE" \
      "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
      -days 3650 -extfile server.ext -out server.pem
    rm -f ca.key other-ca.key ca.srl server.csr server.ext
    chmod 644 ca.pem other-ca.pem server.pem
  ) >"$tls.log" 2>&1 || nadir_die "making test certificates failed: $(tail -n 5 "$tls.log")"
  [ "$(id -u)" = 0 ] && chown postgres: "$tls/server.key"
  return 0
}

nadir_services_start() {
  local dir=$1 base=$2
  local nats_port=$((base + 222)) pg_port=$((base + 432)) s3_port=$((base + 900))
  mkdir -p "$dir"/{nats,s3,logs,pids}
  dir=$(cd "$dir" && pwd)
  chmod 755 "$dir"

  # Credentials: made once per state directory, kept in DIR/secrets (0600).
  if [ ! -f "$dir/secrets" ]; then
    umask 077
    {
      echo "S3_ACCESS_KEY=nadir$(nadir_random | head -c 12)"
      echo "S3_SECRET_KEY=$(nadir_random)"
      echo "PG_PASSWORD=$(nadir_random)"
      echo "PG_DASHBOARD_PASSWORD=$(nadir_random)"
    } >"$dir/secrets"
    umask 022
  fi
  grep -q '^PG_DASHBOARD_PASSWORD=' "$dir/secrets" \
    || echo "PG_DASHBOARD_PASSWORD=$(nadir_random)" >>"$dir/secrets"
  # The demo's analyst sign-in for the dashboard (user "analyst").
  grep -q '^DASHBOARD_PASSWORD=' "$dir/secrets" \
    || echo "DASHBOARD_PASSWORD=$(nadir_random)" >>"$dir/secrets"
  # shellcheck disable=SC1091
  . "$dir/secrets"

  # NATS with JetStream.
  if ! nadir_alive "$dir/pids/nats"; then
    "$(nadir_nats_bin)" -a 127.0.0.1 -p "$nats_port" -js -sd "$dir/nats" \
      >"$dir/logs/nats.log" 2>&1 &
    echo $! >"$dir/pids/nats"
  fi
  nadir_wait_port "$nats_port" nats-server

  # PostgreSQL: a private cluster; run as the postgres user when we are root.
  local bindir run_pg=()
  bindir=$(nadir_pg_bindir) || nadir_die "PostgreSQL server binaries not found under /usr/lib/postgresql"
  if [ "$(id -u)" = 0 ]; then run_pg=(runuser -u postgres --); fi
  if [ ! -f "$dir/pg/PG_VERSION" ]; then
    mkdir -p "$dir/pg" && chmod 700 "$dir/pg"
    mkdir -p "$dir/pglog"
    [ "$(id -u)" = 0 ] && chown postgres: "$dir/pg" "$dir/pglog"
    local pwfile="$dir/pg.pw"
    printf '%s\n' "$PG_PASSWORD" >"$pwfile"
    [ "$(id -u)" = 0 ] && chown postgres: "$pwfile"
    "${run_pg[@]}" "$bindir/initdb" -D "$dir/pg" -U nadir --pwfile="$pwfile" \
      --auth-host=scram-sha-256 --auth-local=scram-sha-256 -E UTF8 >"$dir/pglog/initdb.log" 2>&1 \
      || nadir_die "initdb failed: $(tail -n 5 "$dir/pglog/initdb.log")"
    rm -f "$pwfile"
  fi
  # TLS beside plaintext, for the tests that connect with sslmode=verify-full.
  nadir_tls_certs "$dir/tls"
  if ! "${run_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
    "${run_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg" -l "$dir/pglog/postgresql.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $dir/pg -c ssl=on -c ssl_cert_file=$dir/tls/server.pem -c ssl_key_file=$dir/tls/server.key" start >/dev/null \
      || nadir_die "PostgreSQL did not start: $(tail -n 5 "$dir/pglog/postgresql.log")"
  fi
  if ! PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$pg_port" -U nadir -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = 'nadir'" | grep -q 1; then
    PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$pg_port" -U nadir -d postgres -qc "CREATE DATABASE nadir" >/dev/null
  fi
  # The dashboard's own role (nadir grant-dashboard gives it its rights);
  # the password goes through stdin, never a command line.
  if [ -n "${PG_DASHBOARD_PASSWORD:-}" ]; then
    PGPASSWORD=$PG_PASSWORD psql -h 127.0.0.1 -p "$pg_port" -U nadir -d postgres -q >/dev/null <<SQL
SELECT 'CREATE ROLE nadir_dashboard LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'nadir_dashboard')
\gexec
ALTER ROLE nadir_dashboard PASSWORD '$PG_DASHBOARD_PASSWORD';
SQL
  fi

  # S3: MinIO when it is installed, otherwise s3s-fs.
  if ! nadir_alive "$dir/pids/s3"; then
    if command -v minio >/dev/null 2>&1; then
      MINIO_ROOT_USER=$S3_ACCESS_KEY MINIO_ROOT_PASSWORD=$S3_SECRET_KEY \
        minio server "$dir/s3" --address "127.0.0.1:$s3_port" --console-address "127.0.0.1:$((s3_port + 1))" \
        >"$dir/logs/s3.log" 2>&1 &
    else
      s3s-fs --host 127.0.0.1 --port "$s3_port" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" "$dir/s3" \
        >"$dir/logs/s3.log" 2>&1 &
    fi
    echo $! >"$dir/pids/s3"
  fi
  nadir_wait_port "$s3_port" "the S3 server"

  cat >"$dir/env" <<ENV
# nadir connection settings, written by scripts/ ($(date -u +%Y-%m-%dT%H:%M:%SZ)).
# Use: source $dir/env
export NADIR_NATS_URL=nats://127.0.0.1:$nats_port
export NADIR_S3_ENDPOINT=http://127.0.0.1:$s3_port
export NADIR_S3_REGION=us-east-1
export NADIR_S3_ACCESS_KEY=$S3_ACCESS_KEY
export NADIR_S3_SECRET_KEY=$S3_SECRET_KEY
# Plaintext on loopback, said explicitly: the server also offers TLS, and
# libpq's default (sslmode=prefer) would take it.
export NADIR_DATABASE_URL="postgres://nadir:$PG_PASSWORD@127.0.0.1:$pg_port/nadir?sslmode=disable"
# PostgreSQL's certificate is for localhost, signed by this CA (the TLS tests).
export NADIR_TEST_PG_CA=$dir/tls/ca.pem
export NADIR_TEST_TLS_DIR=$dir/tls
export NADIR_BUCKET_RAW=raw
export NADIR_BUCKET_SILVER=silver
export NADIR_BUCKET_MODELS=models
export NADIR_BUCKET_EVAL=eval
export NADIR_INGEST_METRICS_ADDR=127.0.0.1:$((base + 101))
export NADIR_TRANSFORM_METRICS_ADDR=127.0.0.1:$((base + 102))
export NADIR_TRAIN_METRICS_ADDR=127.0.0.1:$((base + 103))
export NADIR_EVAL_METRICS_ADDR=127.0.0.1:$((base + 104))
export NADIR_DASHBOARD_ADDR=127.0.0.1:$((base + 80))
# The dashboard connects as a role that can only read and add feedback.
export NADIR_DASHBOARD_DATABASE_URL="postgres://nadir_dashboard:${PG_DASHBOARD_PASSWORD:-}@127.0.0.1:$pg_port/nadir?sslmode=disable"
ENV
  chmod 600 "$dir/env"
}

# Stops one service (postgres, nats or s3) of a state directory: the
# outage tests call it through scripts/lib/service; nadir_services_start
# brings it back with its data.
nadir_service_stop() {
  local dir=$1 name=$2 bindir
  case $name in
    nats|s3)
      if nadir_alive "$dir/pids/$name"; then
        local pid
        pid=$(cat "$dir/pids/$name")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      fi
      rm -f "$dir/pids/$name"
      ;;
    postgres)
      bindir=$(nadir_pg_bindir) || return 0
      local run_pg=()
      [ "$(id -u)" = 0 ] && run_pg=(runuser -u postgres --)
      [ -f "$dir/pg/postmaster.pid" ] && "${run_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null
      ;;
    *) nadir_die "unknown service $name (postgres, nats or s3)" ;;
  esac
}

nadir_services_stop() {
  local dir=$1 bindir
  [ -d "$dir" ] || return 0
  for name in s3 nats; do
    if nadir_alive "$dir/pids/$name"; then
      kill "$(cat "$dir/pids/$name")" 2>/dev/null || true
    fi
    rm -f "$dir/pids/$name"
  done
  bindir=$(nadir_pg_bindir) || return 0
  if [ -f "$dir/pg/postmaster.pid" ]; then
    local run_pg=()
    [ "$(id -u)" = 0 ] && run_pg=(runuser -u postgres --)
    "${run_pg[@]}" "$bindir/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

# Podman from Debian, rootful, with what it needs to run containers here:
# runc (the runtime deploy/podman/containers.conf names; crun fails on hosts
# with hybrid cgroups), netavark and aardvark-dns (networks and their DNS),
# iptables (port mappings), slirp4netns and uidmap (rootless networks and
# user namespaces), fuse-overlayfs, catatonit (--init). Installs only what
# is missing.
nadir_install_podman() {
  local missing=() want
  for want in podman:podman runc:runc slirp4netns:slirp4netns fuse-overlayfs:fuse-overlayfs \
      uidmap:newuidmap iptables:iptables netavark:/usr/lib/podman/netavark \
      aardvark-dns:/usr/lib/podman/aardvark-dns catatonit:/usr/libexec/podman/catatonit; do
    case ${want#*:} in
      /*) [ -x "${want#*:}" ] || missing+=("${want%%:*}") ;;
      *) command -v "${want#*:}" >/dev/null 2>&1 || missing+=("${want%%:*}") ;;
    esac
  done
  nadir_apt_install "${missing[@]}"
}

# mmdebstrap (root file systems from Debian's packages, for scripts/images)
# and binutils' strip.
nadir_install_mmdebstrap() {
  local missing=()
  command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
  command -v strip >/dev/null 2>&1 || missing+=(binutils)
  nadir_apt_install "${missing[@]}"
}
