#!/usr/bin/env bash
# bench/run.sh — speed benchmark for `waiver check` on generated Terraform plans.
# Run by hand (it is not part of CI). See bench/README.md.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: bench/run.sh [options]

Builds `waiver` in release mode (once), generates Terraform plans of 1,000,
10,000 and 100,000 resource changes (reused when already present) and times
`waiver check --plan P --policies DIR --format json --output /dev/null`
with GNU time, best of 3 runs per size.

Options:
  --sizes "N N ..."     plan sizes (default: "1000 10000 100000")
  --runs N              timed runs per size (default: 3)
  --seed S              generator seed (default: 42)
  --dir DIR             where plans and logs go (default: ${TMPDIR:-/tmp}/waiver-bench)
  --policies DIR        policy directory (default: <repo>/policies)
  --regen               regenerate plans even if present
  --checkov             also time `checkov -f P --framework terraform_plan`
                        (skipped with a note unless checkov is on PATH)
  --checkov-runs N      timed checkov runs per size (default: 1; it is slow)
  -h, --help            this help

Environment:
  WAIVER_BIN=PATH       use this binary and skip `swift build`
  BENCH_SIZES, BENCH_RUNS, BENCH_SEED, BENCH_DIR, WAIVER_POLICIES
                        defaults for the options above

Exit status of waiver: 0 (no blocking violation) and 1 (blocking violations
found, expected on these plans) both count as a successful run; anything else
(2 = error) prints waiver's stderr and stops the benchmark.
EOF
}

die() { echo "run.sh: $*" >&2; exit 2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)

SIZES=${BENCH_SIZES:-"1000 10000 100000"}
RUNS=${BENCH_RUNS:-3}
SEED=${BENCH_SEED:-42}
WORK_DIR=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}
POLICIES=${WAIVER_POLICIES:-$REPO_ROOT/policies}
REGEN=0
CHECKOV=0
CHECKOV_RUNS=1

while (($#)); do
    case $1 in
        --sizes) SIZES=${2:?--sizes needs a value}; shift 2 ;;
        --runs) RUNS=${2:?--runs needs a value}; shift 2 ;;
        --seed) SEED=${2:?--seed needs a value}; shift 2 ;;
        --dir) WORK_DIR=${2:?--dir needs a value}; shift 2 ;;
        --policies) POLICIES=${2:?--policies needs a value}; shift 2 ;;
        --regen) REGEN=1; shift ;;
        --checkov) CHECKOV=1; shift ;;
        --checkov-runs) CHECKOV_RUNS=${2:?--checkov-runs needs a value}; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
need_pos_int() {  # VALUE WHAT
    if ! is_uint "$1" || (($1 < 1)); then die "$2 must be a positive integer (got '$1')"; fi
}
need_pos_int "$RUNS" --runs
need_pos_int "$CHECKOV_RUNS" --checkov-runs
is_uint "$SEED" || die "--seed must be a non-negative integer (got '$SEED')"
read -r -a SIZE_LIST <<<"$SIZES"
((${#SIZE_LIST[@]} > 0)) || die "no sizes given"
for n in "${SIZE_LIST[@]}"; do
    need_pos_int "$n" "a size"
done
command -v python3 >/dev/null || die "python3 is required to generate plans"
[[ -d $POLICIES ]] || die "policy directory not found: $POLICIES (use --policies DIR)"
POLICIES=$(cd "$POLICIES" && pwd)
mkdir -p "$WORK_DIR"
WORK_DIR=$(cd "$WORK_DIR" && pwd)

# ---------------------------------------------------------------- GNU time
is_gnu_time() {
    local v
    v=$(/usr/bin/time --version 2>&1) || return 1
    [[ $v == *GNU* ]]
}
if ! is_gnu_time; then
    echo "GNU time not found at /usr/bin/time: installing the 'time' package" >&2
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "not root and no sudo: install GNU time (apt-get install -y time)"
        SUDO=(sudo)
    fi
    ${SUDO[@]+"${SUDO[@]}"} apt-get install -y time >&2 ||
        { ${SUDO[@]+"${SUDO[@]}"} apt-get update >&2 && ${SUDO[@]+"${SUDO[@]}"} apt-get install -y time >&2; } ||
        die "could not install GNU time"
    is_gnu_time || die "/usr/bin/time is still not GNU time"
fi

# ------------------------------------------------------------------- build
if [[ -n ${WAIVER_BIN:-} ]]; then
    if [[ $WAIVER_BIN != */* ]]; then
        WAIVER_BIN=$(command -v "$WAIVER_BIN") || die "WAIVER_BIN not found on PATH"
    fi
    BIN=$WAIVER_BIN
    echo "== using WAIVER_BIN=$BIN (build skipped)"
else
    command -v swift >/dev/null || die "swift not on PATH (or set WAIVER_BIN)"
    echo "== building: swift build -c release --product waiver"
    (cd "$REPO_ROOT" && swift build -c release --product waiver) || die "release build failed"
    BIN="$(cd "$REPO_ROOT" && swift build -c release --show-bin-path)/waiver"
fi
[[ -f $BIN && -x $BIN ]] || die "not an executable: $BIN"

# ------------------------------------------------------------------ header
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo "no commit")
echo "== machine: $(uname -srm), $(nproc) cores${cpu:+, $cpu}"
echo "== waiver: $BIN (repo $rev)"
echo "== policies: $POLICIES ($(find "$POLICIES" -type f \( -name '*.yaml' -o -name '*.yml' \) | wc -l) YAML files)"
echo "== work dir: $WORK_DIR, seed $SEED, $RUNS runs per size"

# ------------------------------------------------------------------- plans
GEN=$SCRIPT_DIR/gen_plan.py
GEN_HASH=$(sha256sum "$GEN" | cut -c1-10)  # a changed generator gives new file names
declare -A PLAN
for n in "${SIZE_LIST[@]}"; do
    p="$WORK_DIR/plan-$n-seed$SEED-$GEN_HASH.json"
    if [[ -s $p && $REGEN -eq 0 ]]; then
        echo "== plan $n: reusing $p"
    else
        echo "== plan $n: generating $p"
        python3 "$GEN" "$n" "$p" --seed "$SEED" --stats "${p%.json}.stats.json" ||
            die "gen_plan.py failed for $n"
    fi
    PLAN[$n]=$p
done

# ------------------------------------------------------------------ timing
TIME_OUT=$WORK_DIR/time.out
ERR_OUT=$WORK_DIR/stderr.out
RESULTS=$WORK_DIR/results-$(date +%Y%m%d-%H%M%S).tsv
printf 'tool\tresources\trun\texit\twall_s\tgnu_time_elapsed_s\tmax_rss_kb\n' >"$RESULTS"

now_ns() { date +%s%N; }

# time_one CMD...: runs CMD under GNU time with stdout discarded and stderr in
# $ERR_OUT. Sets T_RC (exit status), T_WALL (seconds, ns clock around the run),
# T_ELAPSED (GNU time %e) and T_RSS_KB (GNU time %M, peak resident set).
time_one() {
    local t0 t1 last
    : >"$TIME_OUT"
    t0=$(now_ns)
    set +e
    /usr/bin/time -f '%e %M' -o "$TIME_OUT" "$@" >/dev/null 2>"$ERR_OUT"
    T_RC=$?
    set -e
    t1=$(now_ns)
    T_WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    # GNU time writes "Command exited with non-zero status N" before the
    # formatted line when the status is not 0: the numbers are on the last line.
    last=$(tail -n 1 "$TIME_OUT" 2>/dev/null || true)
    if [[ $last =~ ^([0-9.]+)\ ([0-9]+)$ ]]; then
        T_ELAPSED=${BASH_REMATCH[1]}
        T_RSS_KB=${BASH_REMATCH[2]}
    else
        T_ELAPSED=NA
        T_RSS_KB=NA
    fi
}

show_failure() {  # tool size
    echo >&2
    echo "run.sh: $1 failed on the $2-resource plan (exit $T_RC): ${PLAN[$2]}" >&2
    echo "---- stderr ----" >&2
    cat "$ERR_OUT" >&2 || true
    if [[ -s $TIME_OUT ]]; then
        echo "---- GNU time ----" >&2
        cat "$TIME_OUT" >&2
    fi
    echo "----------------" >&2
}

declare -a ROWS=()

# bench TOOL RUNS n CMD...: fills BEST_WALL, MAX_RSS_KB, LAST_RC; returns 1 on failure
bench() {
    local tool=$1 runs=$2 n=$3 i
    shift 3
    BEST_WALL=""
    MAX_RSS_KB=0
    LAST_RC=0
    for ((i = 1; i <= runs; i++)); do
        time_one "$@"
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$tool" "$n" "$i" "$T_RC" "$T_WALL" "$T_ELAPSED" "$T_RSS_KB" >>"$RESULTS"
        if [[ $T_RC -ne 0 && $T_RC -ne 1 ]]; then
            show_failure "$tool" "$n"
            return 1
        fi
        if [[ $T_RSS_KB == NA ]]; then
            echo "run.sh: could not read GNU time output for $tool on $n:" >&2
            cat "$TIME_OUT" >&2
            return 1
        fi
        LAST_RC=$T_RC
        if [[ -z $BEST_WALL ]] || awk -v a="$T_WALL" -v b="$BEST_WALL" 'BEGIN { exit !(a < b) }'; then
            BEST_WALL=$T_WALL
        fi
        ((T_RSS_KB > MAX_RSS_KB)) && MAX_RSS_KB=$T_RSS_KB
        printf '   %s %7s resources, run %d/%d: %ss, %s MB RSS, exit %s\n' "$tool" "$n" "$i" "$runs" \
            "$T_WALL" "$(awk -v k="$T_RSS_KB" 'BEGIN { printf "%.1f", k * 1024 / 1e6 }')" "$T_RC"
    done
}

add_row() {  # tool n
    local n=$2 bytes
    bytes=$(stat -c %s "${PLAN[$n]}")
    ROWS+=("$(awk -v tool="$1" -v n="$n" -v bytes="$bytes" -v wall="$BEST_WALL" -v rss="$MAX_RSS_KB" -v rc="$LAST_RC" \
        'BEGIN { printf "%-8s %10d %10.1f %12.3f %13.1f %12.1f %5d", tool, n, bytes / 1e6, wall, rss * 1024 / 1e6, wall * 1e6 / n, rc }')")
}

print_table() {
    echo
    printf '%-8s %10s %10s %12s %13s %12s %5s\n' tool resources "plan MB" "best wall s" "peak RSS MB" "us/resource" exit
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "raw runs: $RESULTS"
}

echo "== timing waiver check"
# `check` records every run in the register: give each size a new one in the work dir (never the
# caller's .waiver/), so the timings include opening it, the lookups and the writes, and nothing else.
export WAIVER_REGISTER="$WORK_DIR/register-run.sqlite"
for n in "${SIZE_LIST[@]}"; do
    rm -f "$WAIVER_REGISTER" "$WAIVER_REGISTER-wal" "$WAIVER_REGISTER-shm"
    if ! bench waiver "$RUNS" "$n" "$BIN" check --plan "${PLAN[$n]}" --policies "$POLICIES" \
        --format json --output /dev/null; then
        ((${#ROWS[@]})) && print_table
        exit 2
    fi
    add_row waiver "$n"
done

if ((CHECKOV)); then
    if command -v checkov >/dev/null; then
        echo "== timing checkov $(checkov --version 2>/dev/null || true) ($CHECKOV_RUNS run(s) per size)"
        for n in "${SIZE_LIST[@]}"; do
            # checkov exits 1 when a check fails, like waiver; other codes are errors
            if bench checkov "$CHECKOV_RUNS" "$n" checkov -f "${PLAN[$n]}" --framework terraform_plan \
                --quiet --compact -o json --skip-download; then
                add_row checkov "$n"
            else
                echo "run.sh: checkov failed on $n resources; skipping the remaining checkov sizes" >&2
                break
            fi
        done
    else
        echo "== --checkov: checkov is not on PATH, skipping the comparison (pip install checkov)"
    fi
fi

print_table
