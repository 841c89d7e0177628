#!/usr/bin/env bash
# Installs and starts everything the project needs, skipping what is there:
# Debian packages, cargo-pgrx (pinned), s3s-fs (pinned; the S3 server of the
# storage tests), `cargo pgrx init` against the system
# PostgreSQL 15, a running local cluster with an admin role, and the
# extension itself (release build) installed into that PostgreSQL.
#
# Usage: scripts/setup.sh [--no-install]   (--no-install: skip building the extension)
source "$(dirname "$0")/common.sh"

INSTALL_EXTENSION=1
[ "${1:-}" = "--no-install" ] && INSTALL_EXTENSION=0

log "Debian packages"
# python3-venv and curl: scripts/schemathesis.sh fuzzes the control plane's API.
packages=(postgresql-15 postgresql-server-dev-15 postgresql-15-cron libclang-dev clang sudo ca-certificates
          python3 python3-venv curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
else
    echo "all present"
fi

log "cargo-pgrx ${PGRX_VERSION}"
if cargo pgrx --version 2>/dev/null | grep -q "${PGRX_VERSION}"; then
    echo "present"
else
    cargo install cargo-pgrx --version "${PGRX_VERSION}" --locked
fi

# s3s-fs: a real S3-compatible server on 127.0.0.1 for the object storage
# tests of the control plane (export bundles, audit anchors). 0.14.1 is the
# last release that builds with the project's minimum Rust.
S3S_FS_VERSION=0.14.1
log "s3s-fs ${S3S_FS_VERSION}"
if s3s-fs --version 2>/dev/null | grep -q "${S3S_FS_VERSION}"; then
    echo "present"
else
    cargo install s3s-fs --version "${S3S_FS_VERSION}" --features binary --locked
fi

log "cargo pgrx init (system PostgreSQL ${PG_MAJOR})"
if grep -qs "pg${PG_MAJOR} *= *\"${PG_CONFIG}\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    echo "already initialised"
else
    cargo pgrx init "--pg${PG_MAJOR}" "${PG_CONFIG}"
fi

log "local PostgreSQL cluster"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^${PG_MAJOR} main$"; then
    $SUDO pg_createcluster "${PG_MAJOR}" main
fi
# pg_cron, so that lifecycle.run_due_jobs() can be scheduled inside the
# database (jobs run in background workers: no password needed).
conf="/etc/postgresql/${PG_MAJOR}/main/conf.d/lifecycle.conf"
wanted="shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 16"
if [ "$(cat "$conf" 2>/dev/null)" != "$wanted" ]; then
    printf '%s\n' "$wanted" | $SUDO tee "$conf" >/dev/null
    $SUDO chown postgres: "$conf"
    if pg_lsclusters -h | awk -v v="${PG_MAJOR}" '$1==v && $2=="main" {print $4}' | grep -q online; then
        $SUDO pg_ctlcluster "${PG_MAJOR}" main restart
    fi
fi
if ! pg_lsclusters -h | awk -v v="${PG_MAJOR}" '$1==v && $2=="main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster "${PG_MAJOR}" main start
fi
for _ in $(seq 1 30); do
    "$PG_BIN/pg_isready" -q -h "$LIFECYCLE_PGHOST" -p "$LIFECYCLE_PGPORT" && break
    sleep 1
done
sudo -u postgres "$PG_BIN/psql" -X -q -p "$LIFECYCLE_PGPORT" -d postgres -v ON_ERROR_STOP=1 \
    -v role="$LIFECYCLE_PGUSER" -v pw="$LIFECYCLE_PGPASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN SUPERUSER PASSWORD %L', :'role', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
SQL
lc_psql postgres -c "CREATE EXTENSION IF NOT EXISTS pg_cron"
echo "cluster ${PG_MAJOR}/main online on port ${LIFECYCLE_PGPORT}, role ${LIFECYCLE_PGUSER}, pg_cron in database postgres"

if [ "$INSTALL_EXTENSION" = 1 ]; then
    log "extension lifecycle (release build) into PostgreSQL ${PG_MAJOR}"
    "$ROOT/scripts/install-extension.sh"
fi
