#!/usr/bin/env bash
# What CI does, by hand: clone this checkout's COMMIT (default HEAD) into a fresh folder, run .ci/run there,
# print the result, then delete the clone. Each clone holds a ~6.7 GB venv; on a disk CI shares, clones left
# behind made CI itself fail with "No space left on device" (2026-12-03), hence the deletion.
#   usage: scripts/fresh_clone_check.sh [COMMIT] [LOG]
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
commit=$(git -C "$repo" rev-parse "${1:-HEAD}")
log=${2:-${TMPDIR:-/tmp}/movseg-fresh-clone-${commit:0:7}.log}
dir=$(mktemp -d "${TMPDIR:-/tmp}/movseg-fresh-clone-XXXXXX")
trap 'rm -rf "$dir"' EXIT
git clone -q "$repo" "$dir/clone" && git -C "$dir/clone" checkout -q "$commit" || exit 1
start=$(date +%s)
(cd "$dir/clone" && bash .ci/run) > "$log" 2>&1
rc=$?
echo "fresh clone of ${commit:0:7}: rc=$rc in $(( $(date +%s) - start )) s; $(grep -E '[0-9]+ passed' "$log" | tail -1); log $log"
exit $rc
