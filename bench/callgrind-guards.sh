#!/usr/bin/env bash
# Instructions a bulk DELETE costs per row on the guards benchmark's tables,
# counted by valgrind's callgrind: unguarded (plain), the do-nothing AFTER
# row trigger (floor), the extension's guard (guarded) and the PL/pgSQL
# trigger (plpgsql). Instruction counts do not depend on the CPU model or on
# what else the machine is doing, so the ratios printed here are the same on
# any x86_64 machine for the same build.
#
# Each variant runs in a single-user backend of a cluster of its own (built
# once from bench/sql/guards_schema.sql and guards_register.sql, like the
# wall-clock benchmark), with the DELETE as its own profile part; the
# functions that make up the difference between guarded and floor are listed.
#
# Usage: bench/callgrind-guards.sh [rows]     (default 100000; needs valgrind,
#        the extension installed: scripts/install-extension.sh)
source "$(dirname "$0")/../scripts/common.sh"

ROWS="${1:-100000}"
USERS=$(( ROWS / 10 > 1000 ? ROWS / 10 : 1000 ))
WORK="${LIFECYCLE_CALLGRIND_DIR:-/var/tmp/lifecycle-callgrind}"
DATA="$WORK/data"
PORT="${LIFECYCLE_CALLGRIND_PORT:-54329}"
VARIANTS=(plain floor guarded plpgsql)

command -v valgrind >/dev/null || { $SUDO apt-get install -y -qq valgrind; }

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then sudo -u postgres "$@"; else "$@"; fi
}

render() {
    sed -e "s/@ROWS@/$ROWS/g" -e "s/@USERS@/$USERS/g" -e "s/@WORKSPACES@/1000/g" \
        -e "s/@HELD_USERS@/5/g" "$1"
}

log "cluster in $WORK ($ROWS rows per table)"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m immediate stop >/dev/null 2>&1 || true
rm -rf "$WORK"
mkdir -p "$WORK"
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
as_postgres "$PG_BIN/initdb" -D "$DATA" -U postgres --auth=trust --no-sync >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -l "$WORK/server.log" -w \
    -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK" start >/dev/null
psql_b() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
psql_b -d postgres -c "CREATE DATABASE bench"
psql_b -d bench -c "CREATE EXTENSION lifecycle"
render "$ROOT/bench/sql/guards_schema.sql" | psql_b -d bench
render "$ROOT/bench/sql/guards_register.sql" | psql_b -d bench >/dev/null
psql_b -d bench -c "VACUUM (ANALYZE)" -c "CHECKPOINT"
as_postgres "$PG_BIN/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null

# Two single-user backends per variant, each on a copy of the cluster: the
# warm-up statements alone, and the warm-ups followed by the measured DELETE.
# The warm-ups load the same catalog entries and library and change one row
# (rolled back), so that the guard's per-backend caches are built before the
# DELETE: building them is a cost of a backend's first guarded write, not of
# each row. Only the executor's work is counted (ExecutorRun, and
# ExecutorFinish where AFTER triggers fire); the DELETE's count is the
# difference between the two backends, in total and function by function.
WARMUP=(
    "DELETE FROM bench.posts_@V@ WHERE id = -1"
    "DELETE FROM bench.posts_@V@ WHERE id = $((ROWS + 1000000))"
    "BEGIN" "DELETE FROM bench.posts_@V@ WHERE id = 1" "ROLLBACK"
)
profile() { # variant, output file, statements...
    local v="$1" out="$2"
    shift 2
    cp -a "$DATA" "$WORK/data_$v"
    printf '%s\n' "$@" | sed "s/@V@/$v/g" |
        as_postgres valgrind --tool=callgrind --collect-atstart=no \
            --toggle-collect=ExecutorRun --toggle-collect=ExecutorFinish \
            --callgrind-out-file="$out" \
            "$PG_BIN/postgres" --single -D "$WORK/data_$v" -c fsync=off bench \
            >"$WORK/single_$v.log" 2>"$WORK/valgrind_$v.log"
    rm -rf "$WORK/data_$v"
}
for v in "${VARIANTS[@]}"; do
    log "callgrind: DELETE of $ROWS rows from bench.posts_$v"
    profile "$v" "$WORK/cg.$v.base" "${WARMUP[@]}"
    profile "$v" "$WORK/cg.$v" "${WARMUP[@]}" "DELETE FROM bench.posts_@V@ WHERE id <= $ROWS"
done

part() { echo "$WORK/cg.$1"; }
count() { grep -E '^(summary|totals):' "$1" | head -n 1 | awk '{print $2}'; }
total() { echo $(( $(count "$(part "$1")") - $(count "$(part "$1").base") )); }

log "instructions per deleted row (callgrind, $ROWS rows)"
declare -A IR
for v in "${VARIANTS[@]}"; do
    IR[$v]=$(total "$v")
    awk -v v="$v" -v ir="${IR[$v]}" -v n="$ROWS" 'BEGIN { printf "  %-8s %14.0f instructions  %8.0f per row\n", v, ir, ir / n }'
done
ratio() { awk -v a="${IR[$1]}" -v b="${IR[$2]}" -v n1="$1" -v n2="$2" \
    'BEGIN { printf "  %-8s / %-8s instructions %.3f  (throughput %.3f)\n", n1, n2, a / b, b / a }'; }
ratio guarded plain
ratio floor plain
ratio guarded floor
ratio plpgsql plain
awk -v g="${IR[guarded]}" -v f="${IR[floor]}" -v n="$ROWS" \
    'BEGIN { printf "  guarded - floor: %.0f instructions per row\n", (g - f) / n }'
# What the warm-ups cost: for the guard, a backend's first write to a
# guarded table builds its caches of the data map and the holds.
awk -v g="$(count "$(part guarded).base")" -v f="$(count "$(part floor).base")" \
    'BEGIN { printf "  warm-ups (the first change of a row in the backend): guarded %.0f, floor %.0f instructions, difference %.0f\n", g, f, g - f }'

log "where guarded and floor differ: instructions per row, by function (self cost; unnamed static functions of postgres as addresses)"
# "  32,641,066 ( 5.60%)  ???:heap_delete [/usr/lib/...]" -> "32641066<TAB>heap_delete"
functions() {
    callgrind_annotate --threshold=100 "$1" 2>/dev/null |
        awk '/^ *[0-9,]+ \( *[0-9.]+%\) +[^ ]+:/ && !/PROGRAM TOTALS/ {
                 n = $1; gsub(",", "", n)
                 f = $0; sub(/^.*%\) +/, "", f); sub(/ \[.*$/, "", f); sub(/^[^:]*:/, "", f)
                 print n "\t" f }'
}
# The DELETE's own cost by function: with the DELETE minus without it.
annotate() {
    functions "$(part "$1").base" >"$WORK/$1.base.tsv"
    functions "$(part "$1")" | awk -F'\t' -v base="$WORK/$1.base.tsv" '
        BEGIN { while ((getline line < base) > 0) { split(line, b, "\t"); w[b[2]] = b[1] } }
        { print $1 - w[$2] "\t" $2 }'
}
annotate floor >"$WORK/floor.tsv"
annotate guarded >"$WORK/guarded.tsv"
awk -F'\t' -v n="$ROWS" '
    NR == FNR { f[$2] = $1; next }
    { d = $1 - f[$2]; delete f[$2]; if (d > n / 2 || d < -n / 2) printf "%10.1f  %s\n", d / n, $2 }
    END { for (k in f) if (f[k] > n / 2) printf "%10.1f  %s\n", -f[k] / n, k }' \
    "$WORK/floor.tsv" "$WORK/guarded.tsv" | sort -rn | head -n 25
echo
echo "profiles: $WORK/cg.<variant> and cg.<variant>.base (without the DELETE; callgrind_annotate, kcachegrind)"
