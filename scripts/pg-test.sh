#!/usr/bin/env bash
# The extension's #[pg_test] units: pgrx starts a throw-away PostgreSQL as
# the `postgres` user (initdb refuses to run as root).
source "$(dirname "$0")/common.sh"
cd "$ROOT/extension"
# One test at a time: each #[pg_test] runs in its own transaction that is
# rolled back, so parallel tests would contend on rows none of them commits
# (the audit chain heads are created on first use).
export RUST_TEST_THREADS=1

PGDATA_DIR="${LIFECYCLE_PGRX_PGDATA:-/var/tmp/lifecycle-pgrx-data}"
if [ "$(id -u)" -eq 0 ]; then
    # The postgres user must read the checkout and the build output.
    d="$ROOT"
    while [ "$d" != "/" ]; do chmod o+x "$d" 2>/dev/null || true; d="$(dirname "$d")"; done
    chmod -R o+rX "$ROOT" 2>/dev/null || true
    mkdir -p "$PGDATA_DIR"; chown postgres: "$PGDATA_DIR"
    cargo pgrx test pg15 --runas postgres --pgdata "$PGDATA_DIR"
else
    cargo pgrx test pg15
fi
