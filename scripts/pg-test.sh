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

# cargo pgrx test installs its debug build over the system PostgreSQL's
# lifecycle.so by writing into the file: backends of the system cluster
# that have it mapped would crash (SIGBUS), and the whole cluster with
# them. Unlinking the file first makes the copy a new file; the mapped one
# lives on until those backends end. (scripts/install-extension.sh puts the
# release build back the same safe way.)
LIB="$("$PG_CONFIG" --pkglibdir)/lifecycle.so"
if [ -f "$LIB" ]; then $SUDO rm -f "$LIB"; fi
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
