#!/usr/bin/env bash
# Webhook throughput (by hand): a release `waiver serve` with two receivers on loopback, fed a
# sustained stream of lifecycle events through the API, and how fast the outbox drains.
#   target: keeps up with 100 events/s to two receivers (200 deliveries/s), backlog bounded.
# Environment: BENCH_RATE (events/s, default 100), BENCH_SECONDS (default 60),
#              BENCH_LATENCY_MS (each receiver's answer delay, default 20), WAIVER_BIN.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${BENCH_DIR:-${TMPDIR:-/tmp}/waiver-bench}/webhooks
RATE=${BENCH_RATE:-100}
SECONDS_=${BENCH_SECONDS:-60}
LATENCY=${BENCH_LATENCY_MS:-20}
if [ -z "${WAIVER_BIN:-}" ]; then
  swift build -c release --product waiver --package-path "$ROOT" >&2
  WAIVER_BIN="$(swift build -c release --show-bin-path --package-path "$ROOT")/waiver"
fi
rm -rf "$WORK"; mkdir -p "$WORK"; cd "$WORK"
cp -r "$ROOT/policies" .
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
R1=$(free_port); R2=$(free_port); PORT=$(free_port)
# Two receivers: each answers 200 after BENCH_LATENCY_MS and logs the arrival time of every delivery.
cat > receiver.py <<'PY'
import sys, time, threading
from http.server import ThreadingHTTPServer, BaseHTTPRequestHandler
port, latency, log = int(sys.argv[1]), float(sys.argv[2]) / 1000, open(sys.argv[3], "a", buffering=1)
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(latency)
        with lock: log.write("%.3f %s\n" % (time.time(), self.headers.get("X-Waiver-Delivery")))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
    def log_message(self, *a): pass
ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
PY
python3 receiver.py "$R1" "$LATENCY" r1.log & P1=$!
python3 receiver.py "$R2" "$LATENCY" r2.log & P2=$!
sed -e '/^# notify:/,$d' "$ROOT/waiver.yaml" > waiver.yaml
cat >> waiver.yaml <<YAML
notify:
  - url: http://127.0.0.1:$R1/hook
  - url: http://127.0.0.1:$R2/hook
YAML
DB="sqlite:$WORK/register.sqlite"
TOKEN=$("$WAIVER_BIN" admin add-user bench@example.com --group developers --database "$DB" 2>/dev/null)
"$WAIVER_BIN" serve --port "$PORT" --database "$DB" --scheduler-interval 3600 >server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER $P1 $P2 2>/dev/null; wait 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break; sleep 0.1; done
# The load: RATE exception requests a second (one exception.requested event each) for SECONDS_,
# paced from four threads; then the outbox drains. Every second: events sent, deliveries received.
python3 - "$PORT" "$TOKEN" "$RATE" "$SECONDS_" <<'PY'
import http.client, json, sys, threading, time, os
port, token, rate, seconds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
sent, errors, lock = [0], [0], threading.Lock()
start = time.time()
def worker(k, n):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(k, rate * seconds, n):
        due = start + i / rate
        d = due - time.time()
        if d > 0: time.sleep(d)
        body = json.dumps({"policy": "COST-001", "workspace": "bench", "resources": ["aws_instance.r%d" % i], "reason": "bench"})
        c.request("POST", "/api/v1/exceptions", body, {"Authorization": "Bearer " + token, "Content-Type": "application/json"})
        r = c.getresponse(); r.read()
        with lock:
            if r.status == 201: sent[0] += 1
            else: errors[0] += 1
threads = [threading.Thread(target=worker, args=(k, 4)) for k in range(4)]
for t in threads: t.start()
def received():
    n = 0
    for f in ("r1.log", "r2.log"):
        if os.path.exists(f): n += sum(1 for _ in open(f))
    return n
print("   s   events  deliveries  backlog")
last = -1
while True:
    time.sleep(5)
    t = time.time() - start
    got = received()
    backlog = 2 * sent[0] - got
    print("%4.0f %8d %11d %8d" % (t, sent[0], got, backlog), flush=True)
    if all(not th.is_alive() for th in threads) and backlog <= 0: break
    if t > seconds + 600: print("gave up: the outbox did not drain within 10 minutes after the load"); break
for th in threads: th.join()
end = time.time() - start
print("events: %d accepted, %d refused, %.1f/s over %d s" % (sent[0], errors[0], sent[0] / seconds, seconds))
print("deliveries: %d in %.0f s; drained %.1f s after the last event" % (received(), end, end - seconds))
PY
