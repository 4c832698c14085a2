#!/usr/bin/env python3
"""A real OpenID Connect provider on loopback, for Waiver's identity tests.

It signs with its own RSA keys (joserfc, the maintained JOSE library of the Authlib project) and
publishes them as a JWK set behind a standard discovery document, as GitHub Actions, GitLab and
HCP Terraform do for their workload identity tokens. The tests drive it through control routes:

  POST /control/mint      {"claims": {...}, "key": "current" | "stranger", "kid": ...} -> {"token": "..."}
                          signs the claims (iss, iat, nbf, exp default to this issuer and now);
                          "stranger" is a key that is never published; "kid" overrides the header's
  POST /control/rotate    a new current signing key, published beside the old one -> {"kid": ...}
  POST /control/github    {"claims": {...}}: what GitHub's token service (below) puts in its tokens
  GET  /control/stats     {"jwks_fetches": n, "discovery_fetches": n}

and GitHub Actions' token service, as a job calls it with $ACTIONS_ID_TOKEN_REQUEST_URL:

  GET /github/token?audience=AUD   (Authorization: bearer <request token>) -> {"value": "<jwt>"}

Started with `python3 oidc_provider.py`; it prints `LISTENING <issuer URL>` once it serves.
"""
import signal
import threading
import time

from flask import Flask, jsonify, request
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

GITHUB_REQUEST_TOKEN = "github-request-token"

app = Flask(__name__)
lock = threading.Lock()
state = {
    "issuer": None,
    "keys": [],        # published, newest last; the newest signs
    "stranger": None,  # signs, never published
    "github_claims": {},
    "jwks_fetches": 0,
    "discovery_fetches": 0,
    "serial": 0,
}


def new_key():
    with lock:
        state["serial"] += 1
        n = state["serial"]
    return RSAKey.generate_key(2048, parameters={"kid": f"key-{n}", "use": "sig", "alg": "RS256"})


def sign(claims, key, kid=None):
    now = int(time.time())
    body = {"iss": state["issuer"], "iat": now, "nbf": now, "exp": now + 300}
    body.update(claims)
    return jwt.encode({"alg": "RS256", "kid": kid or key.kid, "typ": "JWT"}, body, key)


@app.get("/.well-known/openid-configuration")
def discovery():
    with lock:
        state["discovery_fetches"] += 1
    iss = state["issuer"]
    return jsonify({
        "issuer": iss,
        "jwks_uri": iss + "/jwks",
        "authorization_endpoint": iss + "/authorize",
        "token_endpoint": iss + "/token",
        "response_types_supported": ["code", "id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "repository", "ref", "project_path"],
    })


@app.get("/jwks")
def jwks():
    with lock:
        state["jwks_fetches"] += 1
        keys = list(state["keys"])
    return jsonify(KeySet(keys).as_dict(private=False))


@app.post("/control/mint")
def mint():
    body = request.get_json(force=True)
    key = state["stranger"] if body.get("key") == "stranger" else state["keys"][-1]
    return jsonify({"token": sign(body.get("claims", {}), key, body.get("kid")), "kid": key.kid})


@app.post("/control/rotate")
def rotate():
    key = new_key()
    with lock:
        state["keys"].append(key)
    return jsonify({"kid": key.kid})


@app.post("/control/github")
def github_claims():
    state["github_claims"] = request.get_json(force=True).get("claims", {})
    return jsonify({})


@app.get("/control/stats")
def stats():
    return jsonify({"jwks_fetches": state["jwks_fetches"], "discovery_fetches": state["discovery_fetches"]})


@app.get("/github/token")
def github_token():
    if request.headers.get("Authorization", "").lower() != "bearer " + GITHUB_REQUEST_TOKEN:
        return jsonify({"message": "Bad credentials"}), 401
    claims = dict(state["github_claims"])
    claims["aud"] = request.args.get("audience", "https://github.com/acme")
    return jsonify({"count": 1, "value": sign(claims, state["keys"][-1])})


def main():
    # A child of the Swift test runner inherits its blocked signals: unblock SIGTERM so that the
    # test's terminate() ends the provider.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    state["issuer"] = f"http://127.0.0.1:{server.server_port}"
    state["keys"].append(new_key())
    state["stranger"] = RSAKey.generate_key(2048, parameters={"kid": "stranger", "use": "sig", "alg": "RS256"})
    print("LISTENING " + state["issuer"], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
