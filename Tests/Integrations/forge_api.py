#!/usr/bin/env python3
"""Plays GitHub's and GitLab's REST APIs for pull-request and merge-request comments, on loopback, as
the integration tests need them (Python's standard library only):

  GitHub  GET/POST /repos/{owner}/{repo}/issues/{n}/comments, PATCH /repos/{owner}/{repo}/issues/comments/{id}
          (Authorization: Bearer <token>)
  GitLab  GET/POST /api/v4/projects/{id}/merge_requests/{iid}/notes, PUT .../notes/{note_id}
          (PRIVATE-TOKEN: <token>)
  GET /_log  every call as {method, path, body}; GET /_comments  the comments kept

Prints "LISTENING http://127.0.0.1:PORT" first. The token it accepts is --token (default "forge-token").
"""
import argparse
import json
import re
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

comments = {}  # id -> {"id", "body", "thread"}
log = []
next_id = [100]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, value):
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        gh = self.headers.get("Authorization") == f"Bearer {TOKEN}"
        gl = self.headers.get("PRIVATE-TOKEN") == TOKEN
        return gh or gl

    def handle_any(self, method):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = self.path.split("?")[0]
        if path == "/_log":
            return self.reply(200, log)
        if path == "/_comments":
            return self.reply(200, sorted(comments.values(), key=lambda c: c["id"]))
        body = json.loads(raw) if raw else None
        log.append({"method": method, "path": path, "body": body})
        if not self.authorized():
            return self.reply(401, {"message": "Bad credentials"})
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/(\d+)/comments", path) or \
            re.fullmatch(r"/api/v4/projects/[^/]+/merge_requests/(\d+)/notes", path)
        if m and method == "GET":
            return self.reply(200, [c for c in comments.values() if c["thread"] == m.group(1)])
        if m and method == "POST":
            cid = next_id[0]
            next_id[0] += 1
            comments[cid] = {"id": cid, "body": body["body"], "thread": m.group(1)}
            return self.reply(201, comments[cid])
        m = re.fullmatch(r"/repos/[^/]+/[^/]+/issues/comments/(\d+)", path) or \
            re.fullmatch(r"/api/v4/projects/[^/]+/merge_requests/\d+/notes/(\d+)", path)
        if m and method in ("PATCH", "PUT") and int(m.group(1)) in comments:
            comments[int(m.group(1))]["body"] = body["body"]
            return self.reply(200, comments[int(m.group(1))])
        return self.reply(404, {"message": "Not Found"})

    def do_GET(self):
        self.handle_any("GET")

    def do_POST(self):
        self.handle_any("POST")

    def do_PATCH(self):
        self.handle_any("PATCH")

    def do_PUT(self):
        self.handle_any("PUT")


if __name__ == "__main__":
    # A parent may start us with signals blocked (the mask is inherited): SIGTERM must stop us.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--token", default="forge-token")
    TOKEN = parser.parse_args().token
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"LISTENING http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()
