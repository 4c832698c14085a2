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

and single sign-on for people, with Authlib's authorization server (authorization code flow, PKCE
required, nonce required and never reused, codes single-use), for the client `waiver` (secret
`waiver-secret`, sent in the body) at any loopback `/login/oidc/callback`:

  GET  /authorize         signs in the person /control/oidc names, at once, and redirects back
  POST /token             the code (with its PKCE verifier) for an ID token
  POST /control/oidc      {"user": {"sub", "email", "groups", ...}, "tweak": {...}}: who signs in
                          next, and what the next ID tokens do wrong on purpose: "aud", "key":
                          "stranger", "nonce", "exp_offset" (seconds from now)

Started with `python3 oidc_provider.py`; it prints `LISTENING <issuer URL>` once it serves.
"""
import signal
import threading
import time

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode as _OpenIDCode
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
    "user": {"sub": "u-1", "email": "ada@example.com", "email_verified": True, "groups": []},
    "tweak": {},
    "codes": {},
    "nonces": set(),
}

CLIENT_ID, CLIENT_SECRET = "waiver", "waiver-secret"


class Client(ClientMixin):
    client_id = CLIENT_ID
    client_secret = CLIENT_SECRET

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return None

    def get_allowed_scope(self, scope):
        return " ".join(s for s in (scope or "").split() if s in ("openid", "email", "profile", "groups"))

    def check_redirect_uri(self, redirect_uri):
        return (redirect_uri.startswith("http://127.0.0.1:") or redirect_uri.startswith("http://localhost:")) \
            and redirect_uri.endswith("/login/oidc/callback")

    def check_client_secret(self, client_secret):
        return client_secret == CLIENT_SECRET

    def check_endpoint_auth_method(self, method, endpoint):
        return method == "client_secret_post" if endpoint == "token" else True

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


class Code(AuthorizationCodeMixin):
    def __init__(self, code, redirect_uri, scope, nonce, challenge, method, user):
        self.code, self.redirect_uri, self.scope, self.nonce = code, redirect_uri, scope, nonce
        self.code_challenge, self.code_challenge_method, self.user = challenge, method, user
        self.auth_time = int(time.time())

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_post"]

    def save_authorization_code(self, code, request):
        p = request.payload
        with lock:
            state["codes"][code] = Code(code, p.redirect_uri, request.scope, p.data.get("nonce"),
                                        p.data.get("code_challenge"), p.data.get("code_challenge_method"), request.user)

    def query_authorization_code(self, code, client):
        return state["codes"].get(code)

    def delete_authorization_code(self, authorization_code):
        with lock:
            state["codes"].pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code):
        return authorization_code.user


class OpenIDCode(_OpenIDCode):
    def exists_nonce(self, nonce, request):
        with lock:
            if nonce in state["nonces"]:
                return True
            state["nonces"].add(nonce)
            return False

    def signing_key(self):
        return state["stranger"] if state["tweak"].get("key") == "stranger" else state["keys"][-1]

    def resolve_client_private_key(self, client):
        return self.signing_key()

    def get_client_algorithm(self, client):
        return "RS256"

    def get_encode_header(self, client):
        return {"alg": "RS256", "kid": self.signing_key().kid}

    def get_client_claims(self, client):
        now = int(time.time())
        tweak = state["tweak"]
        return {"iss": state["issuer"], "aud": [tweak.get("aud", CLIENT_ID)], "iat": now + min(0, tweak.get("exp_offset", 0) - 300),
                "exp": now + tweak.get("exp_offset", 300)}

    def generate_user_info(self, user, scope):
        info = UserInfo(user)
        if "nonce" in state["tweak"]:
            info["nonce"] = state["tweak"]["nonce"]
        return info


def query_client(client_id):
    return Client() if client_id == CLIENT_ID else None


def save_token(token, request):
    pass


authorization = AuthorizationServer(app, query_client=query_client, save_token=save_token)
authorization.register_grant(AuthorizationCodeGrant, [OpenIDCode(require_nonce=True), CodeChallenge(required=True)])


@app.get("/authorize")
def authorize():
    return authorization.create_authorization_response(grant_user=dict(state["user"]))


@app.post("/token")
def token():
    return authorization.create_token_response()


@app.post("/control/oidc")
def control_oidc():
    body = request.get_json(force=True)
    if "user" in body:
        state["user"] = body["user"]
    state["tweak"] = body.get("tweak", {})
    return jsonify({})


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
