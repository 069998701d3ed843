#!/usr/bin/env python3
"""The Windows side of WinRM's NTLM, for deploy's tests, on 127.0.0.1.

A Windows listener authenticates each TCP connection with NTLM (HTTP "Negotiate") and, over
plain http with AllowUnencrypted=false (the default), accepts only sealed messages
(multipart/encrypted, MS-WSMV 2.2.9.1) and seals its answers. This gateway does exactly that
part with pyspnego's NTLM acceptor (the library pywinrm and pypsrp use against real Windows):
an independent NTLM implementation checks deploy's NTLMv2 response, MIC and sealing, and
deploy must unseal what pyspnego seals. Each unsealed envelope is passed on, with Basic auth,
to the WS-Man stand-in (tests/support/winrm_standin.rs), and its answer sealed back.

  ntlm_gateway.py --upstream-port P --upstream-authorization "Basic ..." --users FILE
                  --log FILE [--tls-cert PEM --tls-key PEM] [--close-every N]

FILE of --users holds DOMAIN:USER:PASSWORD lines (pyspnego's NTLM_USER_FILE). The port
listened on is printed as the first line of stdout; the gateway runs until its stdin closes.
Over https the gateway is as strict as CbtHardeningLevel=Strict: a logon must carry the TLS
channel binding of its connection (tls-server-end-point, the hash of the gateway's
certificate), or it is refused. --log gets one JSON line per event: connection, challenge, authenticated, auth_failed,
message (encrypted or not), refused. With --close-every N the gateway closes each connection,
without a word, after its Nth message, as a server does to a connection that sat idle.
"""

import argparse
import base64
import http.client
import json
import os
import ssl
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import spnego
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from spnego.channel_bindings import GssChannelBindings

ENCRYPTED = ('multipart/encrypted;protocol="application/HTTP-SPNEGO-session-encrypted";'
             'boundary="Encrypted Boundary"')
BOUNDARY = b"--Encrypted Boundary"
OCTET = b"\tContent-Type: application/octet-stream\r\n"


def unwrap(ctx, body):
    i = body.index(b"Length=") + 7
    j = body.index(b"\r\n", i)
    length = int(body[i:j])
    k = body.index(OCTET, j) + len(OCTET)
    (hlen,) = struct.unpack("<I", body[k:k + 4])
    header = body[k + 4:k + 4 + hlen]
    data = body[k + 4 + hlen:k + 4 + hlen + length]
    return ctx.unwrap_winrm(header, data)


def wrap(ctx, soap):
    res = ctx.wrap_winrm(soap)
    return (BOUNDARY + b"\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n"
            + b"\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=%d\r\n" % len(soap)
            + BOUNDARY + b"\r\n" + OCTET + struct.pack("<I", len(res.header)) + res.header
            + res.data + BOUNDARY + b"--\r\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        self.ctx = None
        self.authenticated = False
        self.upstream = None
        self.messages = 0
        self.server.log({"event": "connection", "peer": self.client_address[1]})

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        peer = self.client_address[1]
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Negotiate "):
            if self.ctx is None or self.authenticated:
                self.ctx = spnego.server(protocol="ntlm",
                                         channel_bindings=self.server.channel_bindings)
                self.authenticated = False
            try:
                out = self.ctx.step(base64.b64decode(auth[len("Negotiate "):]))
            except Exception as e:  # a wrong password, a bad MIC, a malformed token
                self.server.log({"event": "auth_failed", "peer": peer, "error": str(e)})
                self.ctx = None
                return self.reply(401, headers=[("WWW-Authenticate", "Negotiate")])
            if not self.ctx.complete:
                self.server.log({"event": "challenge", "peer": peer})
                return self.reply(401, headers=[
                    ("WWW-Authenticate", "Negotiate " + base64.b64encode(out).decode())])
            self.authenticated = True
            self.server.log({"event": "authenticated", "peer": peer,
                             "user": self.ctx.client_principal})
            if not body:
                return self.reply(200)
        if not self.authenticated:
            return self.reply(401, headers=[("WWW-Authenticate", "Negotiate")])
        ctype = self.headers.get("Content-Type", "")
        encrypted = ctype.startswith("multipart/encrypted")
        if not self.server.tls and not encrypted:
            # AllowUnencrypted=false: clear text over http is refused.
            self.server.log({"event": "refused", "peer": peer, "why": "unencrypted"})
            return self.reply(400)
        try:
            soap = unwrap(self.ctx, body) if encrypted else body
        except Exception as e:
            self.server.log({"event": "refused", "peer": peer, "why": str(e)})
            return self.reply(400)
        if self.upstream is None:
            self.upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port,
                                                       timeout=60)
        self.upstream.request("POST", "/wsman", body=soap, headers={
            "Authorization": self.server.upstream_authorization,
            "Content-Type": "application/soap+xml;charset=UTF-8"})
        answer = self.upstream.getresponse()
        data = answer.read()
        self.server.log({"event": "message", "peer": peer, "encrypted": encrypted,
                         "status": answer.status})
        self.messages += 1
        if self.server.close_every and self.messages >= self.server.close_every:
            self.close_connection = True
        if encrypted:
            return self.reply(answer.status, wrap(self.ctx, data), [("Content-Type", ENCRYPTED)])
        return self.reply(answer.status, data,
                          [("Content-Type", "application/soap+xml;charset=UTF-8")])


class Gateway(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args):
        super().__init__(("127.0.0.1", 0), Handler)
        self.upstream_port = args.upstream_port
        self.upstream_authorization = args.upstream_authorization
        self.tls = bool(args.tls_cert)
        self.close_every = args.close_every
        self.log_path = args.log
        self.lock = threading.Lock()
        self.channel_bindings = None
        if self.tls:
            with open(args.tls_cert, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            algorithm = cert.signature_hash_algorithm
            if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
                algorithm = hashes.SHA256()
            digest = hashes.Hash(algorithm)
            digest.update(cert.public_bytes(serialization.Encoding.DER))
            self.channel_bindings = GssChannelBindings(
                application_data=b"tls-server-end-point:" + digest.finalize())
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(args.tls_cert, args.tls_key)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)

    def log(self, event):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(event) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream-port", type=int, required=True)
    ap.add_argument("--upstream-authorization", required=True)
    ap.add_argument("--users", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--close-every", type=int, default=0)
    args = ap.parse_args()
    os.environ["NTLM_USER_FILE"] = args.users
    server = Gateway(args)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


if __name__ == "__main__":
    main()
