#!/usr/bin/env bash
# Register benchmarks (by hand, release build):
#  1. `waiver check` on a 10k-resource plan with an empty register vs. one holding BENCH_EXCEPTIONS
#     exceptions (default 1,000,000; about 5% of them on the plan's resources);
#  2. `waiver audit verify` of a log of 1,000,000 events.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}
mkdir -p "$WORK"
if [ -z "${WAIVER_BIN:-}" ]; then
  swift build -c release --product waiver --package-path "$ROOT" >&2
  WAIVER_BIN="$(swift build -c release --show-bin-path --package-path "$ROOT")/waiver"
fi
PLAN="$WORK/plan-10000-register.json"
[ -f "$PLAN" ] || python3 "$ROOT/bench/gen_plan.py" 10000 "$PLAN" --seed 42 --quiet
best() { # best wall time of 3 runs of "$@" (exit 0/1 accepted)
  local b=""
  for _ in 1 2 3; do
    local s e
    s=$(date +%s.%N); "$@" >/dev/null 2>&1 || [ $? -le 1 ]; e=$(date +%s.%N)
    b=$(python3 -c "import sys; t=$e-$s; b='$b'; print(t if b=='' or t<float(b) else b)")
  done
  printf '%.3f' "$b"
}
cd "$ROOT"
N_EXC=${BENCH_EXCEPTIONS:-1000000}
EMPTY="$WORK/register-empty.sqlite"; FULL="$WORK/register-$N_EXC-exceptions.sqlite"; BIG="$WORK/register-1m-events.sqlite"
rm -f "$EMPTY"* "$FULL"* "$BIG"*
WAIVER_REGISTER="$EMPTY" "$WAIVER_BIN" list >/dev/null
WAIVER_REGISTER="$FULL" "$WAIVER_BIN" list >/dev/null
python3 bench/seed_register.py "$FULL" --exceptions "$N_EXC" --workspace bench --plan "$PLAN"
t_empty=$(WAIVER_REGISTER="$EMPTY" best "$WAIVER_BIN" check --plan "$PLAN" --workspace bench --format json --output /dev/null)
t_full=$(WAIVER_REGISTER="$FULL" best "$WAIVER_BIN" check --plan "$PLAN" --workspace bench --format json --output /dev/null)
echo "check, 10k-resource plan, empty register:          ${t_empty} s"
echo "check, 10k-resource plan, $N_EXC exceptions:  ${t_full} s  (ratio $(python3 -c "print(round($t_full/$t_empty,2))"))"
WAIVER_REGISTER="$BIG" "$WAIVER_BIN" list >/dev/null
python3 bench/seed_register.py "$BIG" --events 1000000
t_verify=$(WAIVER_REGISTER="$BIG" best "$WAIVER_BIN" audit verify)
WAIVER_REGISTER="$BIG" "$WAIVER_BIN" audit verify
echo "audit verify, 1,000,000 events:                    ${t_verify} s"
