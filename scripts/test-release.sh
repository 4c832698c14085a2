#!/usr/bin/env bash
# Tests the release tarball scripts/release.sh made, as a machine without Swift would run it: the
# checksum verifies, the archive holds the binary, README, LICENSE and man page, and the binary runs
# with the toolchain's library folders hidden (a private mount namespace mounts an empty folder over
# them): --version, init + check on a shipped example plan, and serve answering its sign-in page.
set -euo pipefail
cd "$(dirname "$0")/.."
tarball=$(ls dist/waiver-*-linux-*.tar.gz | head -1)
(cd dist && sha256sum -c "$(basename "$tarball").sha256")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tar -xzf "$tarball" -C "$work"
dir=$(ls -d "$work"/waiver-*)
for f in waiver README.md LICENSE waiver.1; do test -f "$dir/$f" || { echo "FAIL: $f is not in the archive"; exit 1; }; done
if readelf -d "$dir/waiver" | grep -E 'NEEDED.*(libswift|libFoundation|libdispatch|libBlocksRuntime)'; then
  echo "FAIL: the binary still needs the Swift runtime"; exit 1
fi
toolchain=$(dirname "$(dirname "$(readlink -f "$(command -v swift)")")")/lib   # e.g. /opt/swift/usr/lib
cp Examples/plans/web-app.json "$work/plan.json"
mkdir -p "$work/empty" "$work/run"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
unshare --mount bash -euo pipefail -c "
  mount --bind '$work/empty' '$toolchain'
  test -z \"\$(ls '$toolchain')\"
  cd '$work/run'
  '$dir/waiver' --version
  '$dir/waiver' init > /dev/null
  set +e; '$dir/waiver' check --plan '$work/plan.json' --no-record > out.txt; code=\$?; set -e
  test \$code -eq 1 || { echo \"FAIL: check exited \$code\"; cat out.txt; exit 1; }
  grep -q 'BLOCKED: 13 resources, 5 violations' out.txt
  '$dir/waiver' serve --port $port --register '$work/run/r.sqlite' 2> serve.log &
  pid=\$!
  for i in \$(seq 1 50); do curl -fsS http://127.0.0.1:$port/login > login.html 2>/dev/null && break; sleep 0.2; done
  kill \$pid; wait \$pid || true
  grep -qi '<form' login.html || { echo 'FAIL: serve gave no sign-in page'; cat serve.log; exit 1; }
"
echo "release OK: $(basename "$tarball") runs without the Swift toolchain ($(stat -c %s "$dir/waiver") bytes)"
