#!/usr/bin/env bash
# One command for a fresh machine: set everything up, load the demo SaaS
# schema into database `lifecycle_demo` (registered in the data map, with
# 10 demo users), and run the control plane on http://127.0.0.1:8080.
#
# Usage: scripts/demo.sh [--reset]   (--reset: drop and recreate the demo database)
source "$(dirname "$0")/common.sh"

"$ROOT/scripts/setup.sh"

DB=lifecycle_demo
if [ "${1:-}" = "--reset" ]; then
    lc_psql postgres -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)"
fi
if [ "$(lc_psql postgres -tAc "SELECT count(*) FROM pg_database WHERE datname = '${DB}'")" = "0" ]; then
    log "demo database ${DB}"
    lc_psql postgres -c "CREATE DATABASE ${DB}"
    lc_psql "$DB" -c "CREATE EXTENSION lifecycle"
    lc_psql "$DB" -f "$ROOT/sql/demo/schema.sql" -f "$ROOT/sql/demo/generate.sql" \
        -f "$ROOT/sql/demo/register.sql"
    lc_psql "$DB" -c "SELECT app.generate_demo_data(10)"
else
    log "demo database ${DB} exists (scripts/demo.sh --reset recreates it)"
    lc_psql "$DB" -c "ALTER EXTENSION lifecycle UPDATE" || true
fi

log "control plane on http://127.0.0.1:8080  (psql: ${ADMIN_URL}/${DB})"
cd "$ROOT"
cargo build --release -q -p lifecycled
exec "$ROOT/target/release/lifecycled" --database-url "${ADMIN_URL}/${DB}" --listen 127.0.0.1:8080
