#!/bin/sh
# The ingest rate of another commit and of this tree, alternating, in one run:
#
#   bench/ingest_against.sh af15eba [ROUNDS] [N]
#
# Each round runs this tree's bench/ingest_bench.py (N sales, default 200000) against a
# worktree of the commit, then against this tree, with this tree's virtual environment and
# each tree's own code and example market (PYTHONPATH, --market): the same measurement,
# CPU seconds per part included, of two versions of ingest. Alternating spreads drift of a
# shared machine over both. Needs a quiet machine for the rates: another load on the two
# cores moves them by more than the difference (the CPU seconds move much less).
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
    (cd "$tree" && PYTHONPATH="$tree" "$python" "$here/bench/ingest_bench.py" -n "$n" \
      --market "$tree/examples/markets/nanmen.toml" 2>/dev/null | tail -n 3)
  done
  round=$((round + 1))
done
