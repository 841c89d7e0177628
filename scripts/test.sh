#!/usr/bin/env bash
# Runs every test: formatting and lints, the extension's #[pg_test] units
# inside PostgreSQL, the pg_regress golden files against the local cluster,
# the client-side integration tests (extension, control plane), and
# schemathesis against the running control plane's OpenAPI document.
#
# Usage: scripts/test.sh
source "$(dirname "$0")/common.sh"

"$ROOT/scripts/setup.sh"
cd "$ROOT"

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy (workspace, all targets, warnings are errors)"
cargo clippy -q --workspace --all-targets -- -D warnings

log "#[pg_test] units inside PostgreSQL"
"$ROOT/scripts/pg-test.sh"

log "extension (release build) back into PostgreSQL after the unit-test build"
"$ROOT/scripts/install-extension.sh"

log "pg_regress golden files"
"$ROOT/scripts/regress.sh"

log "integration tests (real PostgreSQL)"
cargo test --workspace --exclude lifecycle 2>&1 | tee "$ROOT/target/integration-tests.log"
passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$ROOT/target/integration-tests.log" | awk '{s+=$4} END {print s+0}')
echo
echo "integration: ${passed} passed, 0 failed"

log "schemathesis against the control plane's OpenAPI document"
"$ROOT/scripts/schemathesis.sh"
