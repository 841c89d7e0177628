# Shared settings of the project's scripts (sourced, not run).
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$PATH"

PG_MAJOR=15
PG_BIN="/usr/lib/postgresql/${PG_MAJOR}/bin"
PG_CONFIG="${PG_BIN}/pg_config"
PGRX_VERSION="0.18.0"

# The local cluster the demo and the tests use.
export LIFECYCLE_PGHOST="${LIFECYCLE_PGHOST:-127.0.0.1}"
export LIFECYCLE_PGPORT="${LIFECYCLE_PGPORT:-5432}"
export LIFECYCLE_PGUSER="${LIFECYCLE_PGUSER:-lifecycle_admin}"
export LIFECYCLE_PGPASSWORD="${LIFECYCLE_PGPASSWORD:-lifecycle}"
ADMIN_URL="postgres://${LIFECYCLE_PGUSER}:${LIFECYCLE_PGPASSWORD}@${LIFECYCLE_PGHOST}:${LIFECYCLE_PGPORT}"
export LIFECYCLE_TEST_DATABASE_URL="${LIFECYCLE_TEST_DATABASE_URL:-${ADMIN_URL}/postgres}"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

log() { printf '\n==> %s\n' "$*"; }

# psql as the admin role against database $1 (rest: psql arguments).
lc_psql() {
    local db="$1"; shift
    PGPASSWORD="$LIFECYCLE_PGPASSWORD" "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 \
        -h "$LIFECYCLE_PGHOST" -p "$LIFECYCLE_PGPORT" -U "$LIFECYCLE_PGUSER" -d "$db" "$@"
}
