#!/usr/bin/env bash
# bench/checkov.sh — `waiver check` and Checkov side by side on one plan with four equivalent checks:
#   NET-001 / CKV_AWS_24 (SSH open to the internet)   NET-002 / CKV_AWS_25 (RDP open to the internet)
#   STOR-001 / CKV_AWS_3 (EBS volume encrypted)        DB-001 / CKV_AWS_16 (RDS storage encrypted)
# Both read the plan file, evaluate, and write a JSON report; wall time includes process start-up
# and loading the checks. Run by hand (not in CI).
#
#   bench/checkov.sh                 # the 5,000-resource plan of bench/gen_plan.py
# Environment: WAIVER_BIN (skip the build), CHECKOV (default: a venv with checkov==3.3.30 under
# BENCH_DIR), BENCH_DIR (default /tmp/waiver-bench), BENCH_SIZE (5000), WAIVER_RUNS (10), CHECKOV_RUNS (1).
set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
WORK_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}
N=${BENCH_SIZE:-5000}
mkdir -p "$WORK_DIR"
if [[ -n ${WAIVER_BIN:-} ]]; then BIN=$WAIVER_BIN; else
    (cd "$REPO_ROOT" && swift build -c release --product waiver >&2)
    BIN="$(cd "$REPO_ROOT" && swift build -c release --show-bin-path)/waiver"
fi
if [[ -z ${CHECKOV:-} ]]; then
    CHECKOV=$WORK_DIR/venv-checkov/bin/checkov
    [[ -x $CHECKOV ]] || { python3 -m venv "$WORK_DIR/venv-checkov" && "$WORK_DIR/venv-checkov/bin/pip" install -q checkov==3.3.30 >&2; }
fi
PY=$(dirname "$CHECKOV")/python
PLAN=$WORK_DIR/plan-$N-limit.json
[[ -s $PLAN ]] || python3 "$SCRIPT_DIR/gen_plan.py" "$N" "$PLAN" --quiet
FOUR=$WORK_DIR/four-policies
rm -rf "$FOUR" && mkdir -p "$FOUR"
"$PY" - "$REPO_ROOT/policies" "$FOUR/four.yaml" <<'PYEOF'
import sys, glob, yaml
keep = {"NET-001", "NET-002", "STOR-001", "DB-001"}
found = []
for f in sorted(glob.glob(sys.argv[1] + "/*.yaml")):
    found += [p for p in (yaml.safe_load(open(f)) or {}).get("policies", []) if p.get("id") in keep]
assert {p["id"] for p in found} == keep, found
yaml.safe_dump({"policies": found}, open(sys.argv[2], "w"), sort_keys=False)
PYEOF
best() {  # RUNS CMD...: the best wall time in seconds
    local runs=$1 b="" s e t; shift
    for ((i = 0; i < runs; i++)); do
        s=$(date +%s%N); "$@" >/dev/null 2>&1 || [[ $? -le 1 ]]; e=$(date +%s%N)
        t=$(( (e - s) / 1000 )); [[ -z $b || $t -lt $b ]] && b=$t
    done
    awk -v us="$b" 'BEGIN { printf "%.3f", us / 1e6 }'
}
cd "$(mktemp -d)"
w=$(best "${WAIVER_RUNS:-10}" "$BIN" check --plan "$PLAN" --policies "$FOUR" --no-record --format json --output /dev/null)
c=$(best "${CHECKOV_RUNS:-1}" "$CHECKOV" -f "$PLAN" --framework terraform_plan --check CKV_AWS_24,CKV_AWS_25,CKV_AWS_3,CKV_AWS_16 --quiet --compact -o json --skip-download)
echo "== $N resources ($(du -hL "$PLAN" | cut -f1)), four equivalent checks, best of ${WAIVER_RUNS:-10} / ${CHECKOV_RUNS:-1}"
echo "waiver check: $w s   checkov 3.3.30: $c s   ratio: $(awk -v a="$c" -v b="$w" 'BEGIN { printf "%.0fx", a / b }')"
