#!/usr/bin/env bash
# pg_regress golden files (tests/regress) against the local cluster: the
# SQL surface as a DBA sees it. Usage: scripts/regress.sh [test ...]
source "$(dirname "$0")/common.sh"

PG_REGRESS="/usr/lib/postgresql/${PG_MAJOR}/lib/pgxs/src/test/regress/pg_regress"
DIR="$ROOT/tests/regress"
DB=lifecycle_regress
tests=("$@")
if [ "${#tests[@]}" -eq 0 ]; then
    mapfile -t tests < <(grep -Ev '^\s*(#|$)' "$DIR/schedule")
fi
lc_psql postgres -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)"
lc_psql postgres -c "DROP ROLE IF EXISTS regress_owner" -c "DROP ROLE IF EXISTS regress_app" -c "DROP ROLE IF EXISTS regress_intruder"
lc_psql postgres -c "CREATE DATABASE ${DB}"
cd "$DIR"
rm -rf results regression.diffs regression.out
PGPASSWORD="$LIFECYCLE_PGPASSWORD" "$PG_REGRESS" --use-existing \
    --host="$LIFECYCLE_PGHOST" --port="$LIFECYCLE_PGPORT" --user="$LIFECYCLE_PGUSER" \
    --dbname="$DB" --inputdir="$DIR" --outputdir="$DIR" "${tests[@]}" || {
    [ -f regression.diffs ] && cat regression.diffs
    exit 1
}
lc_psql postgres -c "DROP DATABASE IF EXISTS ${DB} WITH (FORCE)"
lc_psql postgres -c "DROP ROLE IF EXISTS regress_owner" -c "DROP ROLE IF EXISTS regress_app" -c "DROP ROLE IF EXISTS regress_intruder"
