#!/usr/bin/env bash
# One command for a fresh machine: set everything up, load the demo SaaS
# schema into database `lifecycle_demo` (registered in the data map, with
# 10 demo users), prepare the control plane's service role, print a
# platform-admin and a tenant-admin token, and run the control plane on
# http://127.0.0.1:8080 as the service role.
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

cd "$ROOT"
cargo build --release -q -p lifecycled
BIN="$ROOT/target/release/lifecycled"

# The control plane connects as its own role, never as a superuser.
SERVICE_ROLE=lifecycled
SERVICE_PASSWORD="${LIFECYCLE_SERVICE_PASSWORD:-lifecycled-demo}"
export LIFECYCLE_SUBJECT_TOKEN_SECRET="${LIFECYCLE_SUBJECT_TOKEN_SECRET:-demo-subject-token-secret-change-me-0123456789}"
log "service role ${SERVICE_ROLE}, its grants and the control plane's tables"
"$BIN" setup --admin-url "${ADMIN_URL}/${DB}" --service-role "$SERVICE_ROLE" \
    --service-password "$SERVICE_PASSWORD"

# Token names are never reused (they are the actors of the audit log):
# each run of the demo makes a new pair.
log "admin tokens (shown once)"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
TENANT="$(lc_psql "$DB" -tAc "SELECT id::text FROM app.workspaces ORDER BY created_at, id LIMIT 1")"
PLATFORM_TOKEN="$("$BIN" token create --name "demo-platform-admin-${stamp}" --role platform-admin \
    --database-url "${ADMIN_URL}/${DB}")"
TENANT_TOKEN="$("$BIN" token create --name "demo-tenant-admin-${stamp}" --role tenant-admin \
    --tenant "$TENANT" --database-url "${ADMIN_URL}/${DB}")"
cat <<TOKENS
platform admin:            ${PLATFORM_TOKEN}
tenant admin of ${TENANT}: ${TENANT_TOKEN}

  curl -H "Authorization: Bearer ${PLATFORM_TOKEN}" http://127.0.0.1:8080/api/v1/whoami

Subject tokens: HS256 JWTs signed with LIFECYCLE_SUBJECT_TOKEN_SECRET
(${LIFECYCLE_SUBJECT_TOKEN_SECRET}), claims sub, subject_type, tenant, exp, aud = "lifecycle".
TOKENS

# Object storage: export bundles and audit anchors in one local directory,
# and the application's uploads (the demo's app.files.storage_key values)
# in another, so that an export carries the files themselves.
STORAGE="$ROOT/.run/storage"
FILES="$ROOT/.run/files"
mkdir -p "$STORAGE" "$FILES"
lc_psql "$DB" -tA -F $'\t' -c "SELECT storage_key, filename FROM app.files" |
    while IFS=$'\t' read -r key name; do
        [ -n "$key" ] && [ ! -f "$FILES/$key" ] || continue
        mkdir -p "$(dirname "$FILES/$key")"
        printf 'Demo upload "%s" (stored as %s).\n' "$name" "$key" > "$FILES/$key"
    done

log "control plane on http://127.0.0.1:8080 as ${SERVICE_ROLE}  (psql: ${ADMIN_URL}/${DB})"
log "export bundles and anchors in ${STORAGE}; uploads in ${FILES}"
exec "$BIN" serve --listen 127.0.0.1:8080 \
    --storage-url "file://${STORAGE}" --files-url "file://${FILES}" \
    --database-url "postgres://${SERVICE_ROLE}:${SERVICE_PASSWORD}@${LIFECYCLE_PGHOST}:${LIFECYCLE_PGPORT}/${DB}"
