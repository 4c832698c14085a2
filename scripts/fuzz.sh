#!/usr/bin/env bash
# Fuzzes each reader Waiver exposes to input (plan, SARIF, policy files, waiver.yaml, audit exports)
# with libFuzzer for SECONDS each (default 30), seeded from the examples, the starter pack and
# ../shared/corpus when present (leak reports are off: Swift keeps caches and globals to exit). A crash stops the run (exit non-zero) and is saved under
# bench/out/fuzz/ with the input that caused it; replay it with
#   swift run WaiverFuzz TARGET bench/out/fuzz/TARGET-crash-...
# and add it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
swift build --scratch-path .build-fuzz --product WaiverFuzz -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld
bin=".build-fuzz/debug/WaiverFuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf bench/out/fuzz
mkdir -p bench/out/fuzz "$work"/{plan,sarif,policy,config,audit,suppressions}
cp Examples/plans/*.json "$work/plan/"
cp Tests/Fuzz/seeds/*.sarif "$work/sarif/"
cp policies/*.yaml "$work/policy/"
cp waiver.yaml "$work/config/"
cp Tests/Fuzz/seeds/audit.jsonl "$work/audit/"
for f in Examples/suppressions/main.tf Examples/suppressions/app/handler.py Examples/suppressions/.trivyignore Examples/suppressions/.snyk \
         Examples/suppressions/.checkov.yaml Examples/suppressions/.tfsec/config.yml Examples/suppressions/.semgrepignore; do
  cp "$f" "$work/suppressions/$(echo "$f" | tr '/' '_')"
done
if [ -d ../shared/corpus ]; then
  # Small corpus files only: libFuzzer mutates them, it does not need the large ones.
  find ../shared/corpus/terraform-plans -name '*.json' -size -200k -exec cp {} "$work/plan/" \; 2>/dev/null || true
  find ../shared/corpus/sarif -name '*.sarif' -size -200k -exec cp {} "$work/sarif/" \; 2>/dev/null || true
fi
for target in plan sarif policy config audit suppressions; do
  echo "== fuzz $target for ${seconds}s ($(ls "$work/$target" | wc -l) seeds)"
  set +e
  ASAN_OPTIONS=detect_leaks=0 WAIVER_FUZZ_TARGET=$target "$bin" "$work/$target" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
    -rss_limit_mb=2048 -detect_leaks=0 -print_final_stats=1 -artifact_prefix="bench/out/fuzz/$target-" > "$work/$target.log" 2>&1
  rc=$?
  set -e
  grep -E 'stat::number_of_executed_units|INITED|DONE' "$work/$target.log" || true
  if [ $rc -ne 0 ]; then
    tail -40 "$work/$target.log" >&2
    echo "fuzz: $target failed (exit $rc); the input is under bench/out/fuzz/" >&2
    exit 1
  fi
done
echo "fuzz: no crash in ${seconds}s per target"
