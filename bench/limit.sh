#!/usr/bin/env bash
# bench/limit.sh — `waiver check` held against simdjson parsing the same plan, and its memory.
# Run by hand (not part of CI). See the README's Speed section.
#
#   bench/limit.sh                      # 1k, 10k, 100k resources, best of 3
#   BENCH_SIZES="1000000" BENCH_RUNS=1 bench/limit.sh   # the 3.7 GB plan (waiver only: pysimdjson
#                                                       # refuses documents over 4 GiB of padding)
# Environment: WAIVER_BIN (skip the build), BENCH_DIR (default /tmp/waiver-bench), BENCH_SIZES,
# BENCH_RUNS, WAIVER_POLICIES (default policies/).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SIZES=${BENCH_SIZES:-"1000 10000 100000"}
RUNS=${BENCH_RUNS:-3}
WORK_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}
POLICIES=${WAIVER_POLICIES:-$REPO_ROOT/policies}
mkdir -p "$WORK_DIR"

if [[ -n ${WAIVER_BIN:-} ]]; then
    BIN=$WAIVER_BIN
else
    (cd "$REPO_ROOT" && swift build -c release --product waiver >&2)
    BIN="$(cd "$REPO_ROOT" && swift build -c release --show-bin-path)/waiver"
fi
VENV=$WORK_DIR/venv-simdjson
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import simdjson' 2>/dev/null; then
    python3 -m venv "$VENV" && "$VENV/bin/pip" install -q pysimdjson >&2
fi
PLANS=()
for n in $SIZES; do
    p=$WORK_DIR/plan-$n-limit.json
    [[ -s $p ]] || python3 "$SCRIPT_DIR/gen_plan.py" "$n" "$p" --quiet
    PLANS+=("$p")
done
echo "== $(uname -srm), $(nproc) cores; waiver $(git -C "$REPO_ROOT" rev-parse --short HEAD); $RUNS runs"
EXTRA=()
for n in $SIZES; do ((n >= 1000000)) && EXTRA=(--no-simdjson); done
"$VENV/bin/python" "$SCRIPT_DIR/limit.py" --bin "$BIN" --policies "$POLICIES" --runs "$RUNS" ${EXTRA[@]+"${EXTRA[@]}"} "${PLANS[@]}"
