#!/usr/bin/env bash
# Build the extension (release) and install it into the system PostgreSQL.
#
# The files are packaged first and then put in place with `install`, which
# replaces each file by a new one instead of overwriting it: backends that
# have the old lifecycle.so mapped keep running on it (overwriting a mapped
# shared library in place crashes them, and with them the whole cluster).
source "$(dirname "$0")/common.sh"
OUT="$ROOT/target/lifecycle-package"
rm -rf "$OUT"
(cd "$ROOT/extension" && cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$OUT" 2>&1 | tail -n 1)
cd "$OUT"
find . -type f | while read -r f; do
    dest="/${f#./}"
    mode=644
    case "$dest" in *.so) mode=755 ;; esac
    $SUDO install -D -m "$mode" "$f" "$dest"
done
echo "installed: $(find . -type f | sed 's|^\.||' | tr '\n' ' ')"
