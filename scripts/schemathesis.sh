#!/usr/bin/env bash
# Fuzzes the running API with schemathesis against its own /openapi.json:
# no 5xx, and every status, content type, header and body as the document
# says. lifecycled runs as its service role on a database of its own with
# the demo schema and data; admin routes are called with a platform-admin
# token, /api/v1/me routes with the subject token of a demo user.
#
# Usage: scripts/schemathesis.sh
# Environment: SCHEMATHESIS_MAX_EXAMPLES (default 25), SCHEMATHESIS_SEED
# (default fixed, so that a failure can be replayed).
source "$(dirname "$0")/common.sh"

SCHEMATHESIS_VERSION=4.32.5
VENV="$ROOT/target/schemathesis-venv"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
SEED="${SCHEMATHESIS_SEED:-20261201}"
OUT="$ROOT/target/schemathesis"

log "schemathesis ${SCHEMATHESIS_VERSION} (virtualenv under target/)"
if "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version ${SCHEMATHESIS_VERSION}$"; then
    echo "present"
else
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
fi

cd "$ROOT"
cargo build -q -p lifecycled
BIN="$ROOT/target/debug/lifecycled"

suffix="$(python3 -c 'import secrets; print(secrets.token_hex(5))')"
DB="lc_schemathesis_${suffix}"
ROLE="lc_schemathesis_${suffix}"
PASSWORD="$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')"
SECRET="$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
SERVER_PID=""

cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    lc_psql postgres -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)" >/dev/null
    lc_psql postgres -c "DROP ROLE IF EXISTS ${ROLE}" >/dev/null
}
trap cleanup EXIT

log "database ${DB} with the demo schema, service role ${ROLE}"
lc_psql postgres -c "CREATE DATABASE ${DB}"
lc_psql "$DB" -c "CREATE EXTENSION lifecycle"
lc_psql "$DB" -f "$ROOT/sql/demo/schema.sql" -f "$ROOT/sql/demo/generate.sql" \
    -f "$ROOT/sql/demo/register.sql" >/dev/null
lc_psql "$DB" -c "SELECT app.generate_demo_data(5)" >/dev/null
"$BIN" setup --admin-url "${ADMIN_URL}/${DB}" --service-role "$ROLE" --service-password "$PASSWORD"
ADMIN_TOKEN="$("$BIN" token create --name schemathesis --role platform-admin --database-url "${ADMIN_URL}/${DB}")"
SUBJECT_ID="$(lc_psql "$DB" -tAc "SELECT id::text FROM app.users ORDER BY id LIMIT 1")"
TENANT_ID="$(lc_psql "$DB" -tAc "SELECT workspace_id::text FROM app.memberships WHERE user_id::text = '${SUBJECT_ID}' ORDER BY 1 LIMIT 1")"
# A subject token as the host application signs it (HS256, one hour).
SUBJECT_TOKEN="$(SECRET="$SECRET" SUB="$SUBJECT_ID" TENANT="$TENANT_ID" python3 - <<'PY'
import base64, hashlib, hmac, json, os, time
def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
claims = {"sub": os.environ["SUB"], "subject_type": "user", "tenant": os.environ["TENANT"] or None,
          "exp": int(time.time()) + 3600, "aud": "lifecycle"}
payload = b64(json.dumps(claims).encode())
signature = hmac.new(os.environ["SECRET"].encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
print(f"{header}.{payload}.{b64(signature)}")
PY
)"

log "lifecycled on 127.0.0.1:${PORT} (log: target/schemathesis/lifecycled.log)"
mkdir -p "$OUT"
LIFECYCLE_SUBJECT_TOKEN_SECRET="$SECRET" "$BIN" serve \
    --listen "127.0.0.1:${PORT}" \
    --database-url "postgres://${ROLE}:${PASSWORD}@${LIFECYCLE_PGHOST}:${LIFECYCLE_PGPORT}/${DB}" \
    --rate-limit-per-second 0 \
    --log-format json >"$OUT/lifecycled.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:${PORT}/readyz" >/dev/null 2>&1 && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/lifecycled.log"; exit 1; }
    sleep 0.2
done
curl -fsS "http://127.0.0.1:${PORT}/readyz" >/dev/null

# One worker: hypothesis describes its strategies by parsing Python source,
# which is not thread-safe in this Python (a run with two workers failed with
# "AST constructor recursion depth mismatch"), and the machine has 2 cores.
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
run() {
    local name="$1"; shift
    log "schemathesis: ${name}"
    "$VENV/bin/schemathesis" run "http://127.0.0.1:${PORT}/openapi.json" \
        --checks "$CHECKS" \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --workers 1 \
        --no-color \
        --generation-database none \
        --report junit --report-junit-path "$OUT/${name}.xml" \
        "$@"
}
run admin --header "Authorization: Bearer ${ADMIN_TOKEN}" --exclude-path-regex '^/api/v1/me'
if curl -fsS "http://127.0.0.1:${PORT}/openapi.json" | python3 -c '
import json, sys
sys.exit(0 if any(p.startswith("/api/v1/me") for p in json.load(sys.stdin)["paths"]) else 1)'; then
    run subject --header "Authorization: Bearer ${SUBJECT_TOKEN}" --include-path-regex '^/api/v1/me'
fi

if grep -q '"level":"ERROR"' "$OUT/lifecycled.log"; then
    echo "lifecycled logged errors during the run:"
    grep '"level":"ERROR"' "$OUT/lifecycled.log" | head -20
    exit 1
fi
echo "schemathesis: no failures"
