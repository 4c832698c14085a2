#!/usr/bin/env bash
# bench/suppressions.sh — speed of `waiver suppressions scan` on a generated repository.
# Run by hand (not part of CI): builds waiver in release mode (or uses $WAIVER_BIN), writes FILES
# Terraform files (default 10,000), each with RESOURCES resource blocks (default 10) and a
# #checkov:skip, a #tfsec:ignore and a # nosemgrep comment in every block, plus a .trivyignore of
# 1,000 ids, then times the scan (JSON to /dev/null) with hyperfine when present, else best of 3.
set -euo pipefail
cd "$(dirname "$0")/.."
files=${1:-10000}
per=${2:-10}
dir=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench-suppressions}/repo-$files-$per
if [ -z "${WAIVER_BIN:-}" ]; then
  swift build -c release --product waiver >/dev/null
  WAIVER_BIN="$(swift build -c release --show-bin-path)/waiver"
fi
if [ ! -d "$dir" ]; then
  mkdir -p "$dir"
  python3 - "$dir" "$files" "$per" <<'PY'
import os, sys
root, files, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for f in range(files):
    d = os.path.join(root, "modules", "m%03d" % (f % 500))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%05d.tf" % f), "w") as out:
        for r in range(per):
            out.write('resource "aws_s3_bucket" "b%d_%d" {\n  #checkov:skip=CKV_AWS_%d:accepted for the bench\n  bucket = "b-%d-%d"\n'
                      '  acl    = "private" #tfsec:ignore:aws-s3-enable-bucket-logging\n  # nosemgrep: bench-rule\n  tags = {}\n}\n\n' % (f, r, r, f, r))
with open(os.path.join(root, ".trivyignore"), "w") as out:
    for i in range(1000):
        out.write("# accepted (INC-%d)\nCVE-2024-%05d exp:2027-01-31\n" % (i, i))
PY
fi
count=$(find "$dir" -type f | wc -l)
echo "repository: $dir ($count files, $(du -sh "$dir" | cut -f1))"
reg=$(mktemp -d)
trap 'rm -rf "$reg"' EXIT
cmd="$WAIVER_BIN suppressions scan $dir --format json --output /dev/null --fail-on never --register $reg/r.sqlite"
if command -v hyperfine >/dev/null 2>&1; then
  hyperfine --warmup 1 --runs 5 "$cmd"
else
  for i in 1 2 3; do /usr/bin/time -f "%e s, %M KB max RSS" $cmd; done
fi
"$WAIVER_BIN" suppressions scan "$dir" --format json --fail-on never --register "$reg/r.sqlite" | python3 -c 'import json,sys; print("summary:", json.load(sys.stdin)["summary"])'
