#!/usr/bin/env python3
"""A real SMTP server on loopback for Waiver's e-mail tests (aiosmtpd).

STARTTLS with a certificate it makes for `localhost` (written to DIR/ca.pem, for the client to
trust), STARTTLS required before anything else, AUTH PLAIN/LOGIN with waiver / smtp-secret (only
over TLS). Every message it accepts is appended to DIR/messages.jsonl as
{"from", "to": [...], "subject", "text", "tls": bool}, its body decoded.

  python3 smtp_server.py DIR [--refuse-first N] [--implicit]

--refuse-first N answers the first N messages with 451 (try again later), as a busy server does.
--implicit speaks TLS from the first byte (port 465 style) instead of STARTTLS.
Prints `LISTENING <port>` once it serves.
"""
import datetime
import email
import email.policy
import ipaddress
import json
import os
import signal
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_certificate(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "ca.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return cert_path, key_path


class Handler:
    def __init__(self, directory, refuse):
        self.path = os.path.join(directory, "messages.jsonl")
        self.refuse = refuse
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            if self.refuse > 0:
                self.refuse -= 1
                return "451 4.3.0 Try again later"
            msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
            body = msg.get_body(preferencelist=("plain",))
            record = {"from": envelope.mail_from, "to": envelope.rcpt_tos, "subject": str(msg["subject"]),
                      "text": body.get_content() if body else "", "tls": session.ssl is not None or IMPLICIT,
                      "message_id": str(msg["message-id"])}
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return "250 OK"


IMPLICIT = "--implicit" in sys.argv


def authenticate(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == b"waiver" and auth_data.password == b"smtp-secret":
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)


def main():
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    directory = sys.argv[1]
    refuse = int(sys.argv[sys.argv.index("--refuse-first") + 1]) if "--refuse-first" in sys.argv else 0
    cert, key = make_certificate(directory)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    if "--implicit" in sys.argv:
        controller = Controller(Handler(directory, refuse), hostname="127.0.0.1", port=port, ssl_context=context,
                                authenticator=authenticate, auth_required=True, auth_require_tls=False)
    else:
        controller = Controller(Handler(directory, refuse), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                                authenticator=authenticate, auth_required=True, auth_require_tls=True)
    controller.start()
    print("LISTENING %d" % port, flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
