#!/usr/bin/env python3
"""smtp-sink.py - a small SMTP server for the tests (issue 14): EHLO,
STARTTLS (Python's ssl module with the certificate and key it is given),
AUTH PLAIN (accepts any credentials, records the user), MAIL, RCPT, DATA,
RSET, NOOP, QUIT. Each message accepted is written to --dir as one JSON file
{mail_from, rcpt_to, tls, auth_user, data}, atomically (a temporary name,
then rename), so a reader never sees half a message. With --require-tls,
MAIL before STARTTLS is refused (530), as a relay that demands it does.

Usage: smtp-sink.py --listen 127.0.0.1:PORT --cert C --key K --dir DIR
                    [--require-tls]
It prints "ready" on stdout once it listens and runs until killed.
"""
import argparse
import base64
import itertools
import json
import os
import socketserver
import ssl
import sys
import time

COUNTER = itertools.count(1)
MAX_DATA = 1 << 20


class Sink(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class Handler(socketserver.BaseRequestHandler):
    def send(self, line):
        self.sock.sendall((line + "\r\n").encode())

    def readline(self):
        line = self.f.readline(4096)
        return line.decode("utf-8", "replace").rstrip("\r\n") if line else None

    def handle(self):
        self.sock, self.f = self.request, self.request.makefile("rb")
        tls, auth_user, mail_from, rcpts = False, None, None, []
        self.send("220 sink ESMTP ready")
        while True:
            line = self.readline()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            arg = line[len(verb):].strip()
            if verb in ("EHLO", "HELO"):
                ext = ["8BITMIME"] + (["AUTH PLAIN"] if tls else ["STARTTLS"])
                self.sock.sendall(("250-sink\r\n" + "".join(
                    "250%s%s\r\n" % (" " if i == len(ext) - 1 else "-", e)
                    for i, e in enumerate(ext))).encode())
            elif verb == "STARTTLS" and not tls:
                self.send("220 go ahead")
                self.sock = self.server.tls.wrap_socket(self.sock, server_side=True)
                self.f = self.sock.makefile("rb")
                tls, mail_from, rcpts = True, None, []
            elif verb == "AUTH" and tls:
                parts = arg.split()
                cred = parts[1] if len(parts) > 1 else None
                if cred is None:
                    self.send("334 ")
                    cred = self.readline() or ""
                try:
                    auth_user = base64.b64decode(cred).split(b"\0")[1].decode()
                except Exception:
                    self.send("501 bad AUTH PLAIN")
                    continue
                self.send("235 authenticated")
            elif verb == "MAIL":
                if self.server.require_tls and not tls:
                    self.send("530 Must issue a STARTTLS command first")
                    continue
                mail_from, rcpts = arg.partition(":")[2].strip(), []
                self.send("250 ok")
            elif verb == "RCPT":
                if mail_from is None:
                    self.send("503 MAIL first")
                    continue
                rcpts.append(arg.partition(":")[2].strip())
                self.send("250 ok")
            elif verb == "DATA":
                if not rcpts:
                    self.send("503 RCPT first")
                    continue
                self.send("354 end with <CRLF>.<CRLF>")
                lines, size = [], 0
                while True:
                    raw = self.f.readline(MAX_DATA)
                    if not raw:
                        return
                    if raw in (b".\r\n", b".\n"):
                        break
                    if raw.startswith(b"."):
                        raw = raw[1:]  # dot-unstuffing
                    size += len(raw)
                    lines.append(raw)
                data = b"".join(lines).decode("utf-8", "replace")
                self.store({"mail_from": mail_from, "rcpt_to": rcpts, "tls": tls,
                            "auth_user": auth_user, "data": data})
                self.send("250 queued")
                mail_from, rcpts = None, []
            elif verb == "RSET":
                mail_from, rcpts = None, []
                self.send("250 ok")
            elif verb == "NOOP":
                self.send("250 ok")
            elif verb == "QUIT":
                self.send("221 bye")
                return
            else:
                self.send("502 command not implemented")

    def store(self, msg):
        name = "%d-%06d.json" % (int(time.time() * 1000), next(COUNTER))
        tmp = os.path.join(self.server.dir, "." + name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(msg, f)
        os.rename(tmp, os.path.join(self.server.dir, name))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--require-tls", action="store_true")
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    os.makedirs(a.dir, exist_ok=True)
    srv = Sink((host, int(port)), Handler)
    srv.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv.tls.load_cert_chain(a.cert, a.key)
    srv.dir, srv.require_tls = a.dir, a.require_tls
    print("ready", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
