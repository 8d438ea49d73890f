#!/bin/sh
# The ingest rate of another commit and of this tree, alternating, in one run:
#
#   bench/ingest_against.sh af15eba [ROUNDS] [N]
#
# Each round runs bench.ingest_bench (N sales, default 200000) in a worktree of the commit,
# then in this tree, with this tree's virtual environment and each tree's own code
# (PYTHONPATH). Alternating spreads drift of a shared machine over both. Needs a quiet
# machine: another load on the two cores moves the figures by more than the difference.
set -eu
commit=$1
rounds=${2:-2}
n=${3:-200000}
here=$(pwd)
python="$here/.venv/bin/python"
base=$(mktemp -d)
git worktree add -q --detach "$base" "$commit"
trap 'git worktree remove --force "$base"' EXIT
round=1
while [ "$round" -le "$rounds" ]; do
  for tree in "$base" "$here"; do
    label=$([ "$tree" = "$here" ] && echo "this tree" || echo "$commit")
    echo "== round $round: $label"
    (cd "$tree" && PYTHONPATH="$tree" "$python" -m bench.ingest_bench -n "$n" 2>/dev/null | tail -n 4)
  done
  round=$((round + 1))
done
