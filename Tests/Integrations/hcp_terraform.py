#!/usr/bin/env python3
"""Plays HCP Terraform's side of a run task on loopback, as HashiCorp's "Run Tasks Integration API"
describes it (Python's standard library only):

  POST /control/run {"target": URL, "key": HMAC key, "plan": path, "wrong_signature": bool,
                     "verification": bool, "fail_callbacks": n}
        sends the run task request to `target`, signed with X-TFC-Task-Signature (hex HMAC-SHA512 of
        the body), and answers {"status": <the target's HTTP status>, "run_id": ...}
  GET  /api/v2/plans/<run>/json-output     the plan JSON API: needs "Authorization: Bearer <token>",
                                           answers 307 to the archive (as HCP Terraform does)
  GET  /archivist/<run>                    the plan itself (no token needed; a token sent here is noted)
  PATCH /api/v2/task-results/<run>/callback  the callback: needs the token and
        Content-Type application/vnd.api+json; the first `fail_callbacks` answer 500
  GET  /_callbacks  every callback received: {"run", "status", "body", "authorized", "content_type"}
  GET  /_log        every other request: {"method", "path", "authorization"}

Prints "LISTENING http://127.0.0.1:PORT" first.
"""
import hashlib
import hmac
import json
import signal
import threading
import urllib.error
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

runs = {}  # run id -> {"token", "plan", "fail": n}
callbacks = []
log = []
lock = threading.Lock()
BASE = ""


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, value=None, headers=None):
        data = json.dumps(value).encode() if value is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/_callbacks":
            with lock:
                return self.reply(200, callbacks)
        if path == "/_log":
            with lock:
                return self.reply(200, log)
        with lock:
            log.append({"method": "GET", "path": path, "authorization": self.headers.get("Authorization")})
        parts = path.strip("/").split("/")
        if len(parts) == 5 and parts[:3] == ["api", "v2", "plans"] and parts[4] == "json-output":
            run = runs.get(parts[3])
            if not run or self.headers.get("Authorization") != f"Bearer {run['token']}":
                return self.reply(401, {"errors": [{"status": "401", "title": "unauthorized"}]})
            return self.reply(307, None, {"Location": f"{BASE}/archivist/{parts[3]}"})
        if len(parts) == 2 and parts[0] == "archivist" and parts[1] in runs:
            data = open(runs[parts[1]]["plan"], "rb").read()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        return self.reply(404, {"errors": [{"status": "404"}]})

    def do_PATCH(self):
        path = self.path.split("?")[0]
        parts = path.strip("/").split("/")
        raw = self.body()
        if len(parts) == 5 and parts[:3] == ["api", "v2", "task-results"] and parts[4] == "callback" and parts[3] in runs:
            run = runs[parts[3]]
            authorized = self.headers.get("Authorization") == f"Bearer {run['token']}"
            status = 200
            with lock:
                if run["fail"] > 0:
                    run["fail"] -= 1
                    status = 500
                elif not authorized:
                    status = 401
                callbacks.append({"run": parts[3], "status": status, "body": json.loads(raw or b"null"),
                                  "authorized": authorized, "content_type": self.headers.get("Content-Type")})
            return self.reply(status, {} if status == 200 else {"errors": [{"status": str(status)}]})
        return self.reply(404, {"errors": [{"status": "404"}]})

    def do_POST(self):
        if self.path != "/control/run":
            return self.reply(404)
        spec = json.loads(self.body())
        run_id = "run-" + uuid.uuid4().hex[:16]
        token = "test-token" if spec.get("verification") else "tfc-" + uuid.uuid4().hex
        runs[run_id] = {"token": token, "plan": spec.get("plan"), "fail": int(spec.get("fail_callbacks", 0))}
        payload = {
            "payload_version": 1, "stage": "post_plan", "access_token": token, "capabilities": {"outcomes": True},
            "configuration_version_download_url": f"{BASE}/api/v2/configuration-versions/cv-1/download",
            "configuration_version_id": "cv-1", "is_speculative": False,
            "organization_name": spec.get("organization", "acme"), "workspace_name": spec.get("workspace", "payments-prod"),
            "workspace_id": "ws-1", "workspace_working_directory": "", "workspace_app_url": f"{BASE}/app/acme/payments-prod",
            "run_app_url": f"{BASE}/app/acme/payments-prod/runs/{run_id}", "run_created_at": "2026-12-07T10:00:00.000Z",
            "run_created_by": spec.get("created_by", "dev"), "run_id": run_id, "run_message": "Triggered via UI",
            "task_result_callback_url": f"{BASE}/api/v2/task-results/{run_id}/callback",
            "task_result_enforcement_level": "mandatory", "task_result_id": "taskrs-1",
            "plan_json_api_url": f"{BASE}/api/v2/plans/{run_id}/json-output",
            "vcs_repo_url": None, "vcs_branch": None, "vcs_pull_request_url": None, "vcs_commit_url": None,
        }
        body = json.dumps(payload).encode()
        signature = hmac.new(spec["key"].encode(), body, hashlib.sha512).hexdigest()
        if spec.get("wrong_signature"):
            signature = hmac.new(b"not-the-key", body, hashlib.sha512).hexdigest()
        request = urllib.request.Request(spec["target"], data=body, method="POST",
                                         headers={"Content-Type": "application/json", "User-Agent": "TFC/1.0",
                                                  "X-TFC-Task-Signature": signature})
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        return self.reply(200, {"status": status, "run_id": run_id})


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    BASE = f"http://127.0.0.1:{server.server_address[1]}"
    print(f"LISTENING {BASE}", flush=True)
    server.serve_forever()
