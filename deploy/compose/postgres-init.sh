#!/bin/sh
# Runs once, when the PostgreSQL volume is created: the dashboard's own login
# role. `nadir setup --grant-dashboard nadir_dashboard` then lets it read the
# tables and add feedback, nothing more. psql quotes the password (:'pw');
# it never appears on a command line.
set -eu
psql -v ON_ERROR_STOP=1 -v pw="$DASHBOARD_DB_PASSWORD" \
  --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<'SQL'
CREATE ROLE nadir_dashboard LOGIN PASSWORD :'pw';
SQL
