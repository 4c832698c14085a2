#!/usr/bin/env bash
# Server benchmarks (by hand): wrk on loopback against a release `waiver serve`.
#  1. GET /api/v1/exceptions/{id} (target: >= 2,000 req/s, p99 < 20 ms)
#  2. POST /api/v1/evaluations with a 100-resource plan (target: >= 300 req/s)
# On SQLite by default; BENCH_DATABASE=postgres://USER@HOST:PORT/DB (a new, empty database) runs the
# same load against PostgreSQL.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}/server
DURATION=${BENCH_DURATION:-15s}
CONNECTIONS=${BENCH_CONNECTIONS:-16}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
if [ -z "${WAIVER_BIN:-}" ]; then
  swift build -c release --product waiver --package-path "$ROOT" >&2
  WAIVER_BIN="$(swift build -c release --show-bin-path --package-path "$ROOT")/waiver"
fi
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
cp -r "$ROOT/policies" "$ROOT/waiver.yaml" .
DB=${BENCH_DATABASE:-sqlite:$WORK/register.sqlite}
echo "== register: ${DB%%\?*}"
TOKEN=$("$WAIVER_BIN" admin add-user bench@example.com --group security --database "$DB" 2>/dev/null)
PORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
"$WAIVER_BIN" serve --port "$PORT" --database "$DB" --scheduler-interval 3600 >server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
# Some exceptions to read.
for i in $(seq 1 20); do
  curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"policy\":\"COST-001\",\"workspace\":\"bench\",\"resources\":[\"aws_instance.r$i\"],\"reason\":\"bench\"}" \
    "http://127.0.0.1:$PORT/api/v1/exceptions" >/dev/null
done
python3 "$ROOT/bench/gen_plan.py" 100 plan-100.json --seed 1 --quiet
python3 - <<PY
import json
plan = open("plan-100.json").read()
open("envelope.json", "w").write('{"workspace":"bench","plan":' + plan + '}')
PY
cat > post.lua <<LUA
local f = io.open("envelope.json", "rb"); local body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $TOKEN"
LUA
# Runs wrk and adds the server's CPU time per request (user + system, from /proc): unlike req/s,
# it hardly moves when the load generator or a neighbour takes a share of the two cores.
load() {
  local before after out n
  before=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$@")
  after=$(awk '{print $14 + $15}' "/proc/$SERVER/stat")
  echo "$out" | grep -E "Requests/sec|99%|50%|Non-2xx"
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print('server CPU per request: %.2f ms' % (($after - $before) * 1000 / $(getconf CLK_TCK) / $n))"
}
echo "== GET /api/v1/exceptions/EX-7 ($CONNECTIONS connections, $DURATION)"
load -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/exceptions/EX-7"
echo "== POST /api/v1/evaluations, 100-resource plan ($(wc -c <envelope.json) bytes)"
load -s post.lua "http://127.0.0.1:$PORT/api/v1/evaluations"
curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/v1/audit/verify" | python3 -c 'import json,sys; v=json.load(sys.stdin); print("audit verify:", "intact" if v["intact"] else "BROKEN", v["events"], "events")'
