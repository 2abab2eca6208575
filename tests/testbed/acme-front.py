#!/usr/bin/env python3
"""acme-front.py - a test-only ACME front in front of Pebble: the CA the
profile and ARI tests (tests/e2e/test_ari_profiles.py) control.

Pebble 2.4.0 (Debian's, tests/testbed) offers neither ACME profiles nor
renewalInfo (RFC 9773); it ignores unknown newOrder fields ("profile",
"replaces": Go's JSON decoder drops them, and the order is issued as
usual). This front adds both, and records what the client sent:

  - every request is proxied to Pebble over HTTPS with the Host header kept:
    Pebble builds every URL it answers (directory, Location, order,
    authorization, finalize, certificate) from the request's Host, and
    checks each JWS "url" against the URL it was reached at, so the client
    talks to the front only and its signatures stay valid (the front never
    changes a signed body, which is why it cannot strip fields: Pebble
    ignores them instead);
  - GET of the directory gains "renewalInfo" (served here) and
    "meta.profiles";
  - GET renewal-info/<certID> answers {"suggestedWindow": {start, end}} with
    Retry-After: the window set for that certID, else a default one
    (--default-window-ahead seconds after the front started, 60 s long;
    the test picks it inside its certificates' lifetime and after its own
    end, so nothing renews until the test moves a window);
  - every newOrder payload (the JWS payload, decoded, not verified) is
    recorded with the time it arrived;
  - it can answer the next N newOrders that carry "replaces" with a 409
    urn:ietf:params:acme:error:alreadyReplaced problem (with a fresh
    Replay-Nonce from Pebble, as a CA's error answers carry).

Control endpoints (plain JSON over the same HTTPS listener, no auth, test
use only):
  GET  /front/orders                  -> [{"at": unix, "payload": {...},
                                           "answered": status, "problem": type}]
  GET  /front/renewal-info-requests   -> [certID, ...]
  POST /front/window {"cert_id", "start", "end"} (RFC 3339 strings)
  POST /front/already-replaced {"count": N}
  POST /front/rate-limited {"count": N}  the next N newOrders are answered
                                      429 rateLimited, Retry-After: 1 (the CA
                                      fallback test, tests/e2e/test_ca_fallback.py)
  POST /front/reset                   forget orders, windows, injections

Usage: acme-front.py --port P --cert C --key K --upstream-ca CA
                     [--upstream https://127.0.0.1:14000]
                     [--profiles '{"tlsserver": "...", "shortlived": "..."}']
                     [--retry-after SECONDS] [--default-window-ahead SECONDS]
Prints "ready <port>" on stdout once it listens. Python stdlib only.
"""
import argparse
import base64
import http.client
import http.server
import json
import ssl
import sys
import threading
import time
import urllib.parse

HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "te", "trailer",
       "upgrade", "proxy-connection", "date", "server"}
LOCK = threading.Lock()
STATE = {"orders": [], "windows": {}, "already_replaced": 0, "ari_requests": [],
         "rate_limited": 0}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


class Front(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    opts = None
    new_order_path = None  # learned from Pebble's directory

    def log_message(self, fmt, *args):
        sys.stderr.write("front: " + (fmt % args) + "\n")

    # ---- helpers ----
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def reply(self, status, obj=None, ctype="application/json", headers=None, raw=None):
        data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else b"")
        self.send_response(status)
        if data or obj is not None:
            self.send_header("Content-Type", ctype)
        for k, v in (headers or []):
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def upstream(self, method, path, body=None, headers=None):
        u = urllib.parse.urlsplit(self.opts.upstream)
        ctx = ssl.create_default_context(cafile=self.opts.upstream_ca)
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=30)
        h = {k: v for k, v in (headers or {}).items() if k.lower() not in HOP}
        # The client's Host, so that Pebble's URLs point at the front.
        h["Host"] = self.headers.get("Host") or "127.0.0.1:%d" % self.opts.port
        if body is not None:
            h["Content-Length"] = str(len(body))
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, r.getheaders(), data

    def proxy(self, body):
        status, headers, data = self.upstream(self.command, self.path, body, dict(self.headers))
        out = [(k, v) for k, v in headers if k.lower() not in HOP]
        ctype = next((v for k, v in headers if k.lower() == "content-type"), None)
        out = [(k, v) for k, v in out if k.lower() != "content-type"]
        if self.path.split("?")[0] == self.opts.dir_path and status == 200:
            d = json.loads(data)
            Front.new_order_path = urllib.parse.urlsplit(d["newOrder"]).path
            host = self.headers.get("Host") or "127.0.0.1:%d" % self.opts.port
            d["renewalInfo"] = "https://%s/renewal-info" % host
            d.setdefault("meta", {})["profiles"] = self.opts.profiles
            data = json.dumps(d).encode()
        self.reply(status, raw=data, ctype=ctype or "application/octet-stream", headers=out)
        problem = None
        if status >= 400:
            try:
                problem = json.loads(data).get("type")
            except (ValueError, AttributeError):
                problem = None
        return status, problem

    # ---- control ----
    def control(self, body):
        path = self.path.split("?")[0]
        with LOCK:
            if self.command == "GET" and path == "/front/orders":
                return self.reply(200, STATE["orders"])
            if self.command == "GET" and path == "/front/renewal-info-requests":
                return self.reply(200, STATE["ari_requests"])
            req = json.loads(body or b"{}")
            if self.command == "POST" and path == "/front/window":
                STATE["windows"][req["cert_id"]] = (req["start"], req["end"])
                return self.reply(200, {})
            if self.command == "POST" and path == "/front/already-replaced":
                STATE["already_replaced"] = int(req["count"])
                return self.reply(200, {})
            if self.command == "POST" and path == "/front/rate-limited":
                STATE["rate_limited"] = int(req["count"])
                return self.reply(200, {})
            if self.command == "POST" and path == "/front/reset":
                STATE.update({"orders": [], "windows": {}, "already_replaced": 0,
                              "ari_requests": []})
                return self.reply(200, {})
        return self.reply(404, {"detail": "no such control endpoint"})

    def renewal_info(self):
        cert_id = self.path.split("?")[0][len("/renewal-info/"):]
        with LOCK:
            STATE["ari_requests"].append(cert_id)
            w = STATE["windows"].get(cert_id)
        if not w:
            # Fixed when the front started (a window that moves at every
            # answer makes the client draw a new moment every time). It must
            # end before the certificates expire: a client keeps no renewal
            # moment past not_after (certplane's attention view drops it).
            w = (rfc3339(self.opts.t0 + self.opts.default_ahead),
                 rfc3339(self.opts.t0 + self.opts.default_ahead + 60))
        return self.reply(200, {"suggestedWindow": {"start": w[0], "end": w[1]}},
                          headers=[("Retry-After", str(self.opts.retry_after))])

    def new_order(self, body):
        try:
            payload = json.loads(b64url_decode(json.loads(body)["payload"]))
        except (ValueError, KeyError, TypeError):
            payload = None
        rec = {"at": time.time(), "payload": payload, "answered": None, "problem": None}
        with LOCK:
            STATE["orders"].append(rec)
            inject = (isinstance(payload, dict) and "replaces" in payload
                      and STATE["already_replaced"] > 0)
            if inject:
                STATE["already_replaced"] -= 1
            limited = not inject and STATE["rate_limited"] > 0
            if limited:
                STATE["rate_limited"] -= 1
        if limited:
            _, hdrs, _ = self.upstream("HEAD", urllib.parse.urlsplit(
                self.opts.nonce_url).path)
            nonce = [(k, v) for k, v in hdrs if k.lower() == "replay-nonce"]
            rec["answered"], rec["problem"] = 429, "urn:ietf:params:acme:error:rateLimited"
            return self.reply(429, {
                "type": "urn:ietf:params:acme:error:rateLimited",
                "detail": "too many new orders (injected by acme-front)", "status": 429},
                ctype="application/problem+json", headers=nonce + [("Retry-After", "1")])
        if inject:
            _, hdrs, _ = self.upstream("HEAD", urllib.parse.urlsplit(
                self.opts.nonce_url).path)
            nonce = [(k, v) for k, v in hdrs if k.lower() == "replay-nonce"]
            rec["answered"], rec["problem"] = 409, "urn:ietf:params:acme:error:alreadyReplaced"
            return self.reply(409, {
                "type": "urn:ietf:params:acme:error:alreadyReplaced",
                "detail": "the certificate named in replaces is already replaced "
                          "(injected by acme-front)", "status": 409},
                ctype="application/problem+json", headers=nonce)
        rec["answered"], rec["problem"] = self.proxy(body)

    # ---- dispatch ----
    def handle_any(self):
        try:
            body = self.body()
            path = self.path.split("?")[0]
            if path.startswith("/front/"):
                return self.control(body)
            if self.command == "GET" and path.startswith("/renewal-info/"):
                return self.renewal_info()
            if self.command == "POST" and Front.new_order_path and path == Front.new_order_path:
                return self.new_order(body)
            self.proxy(body if self.command == "POST" else None)
        except (OSError, http.client.HTTPException) as e:
            self.reply(502, {"detail": "upstream: %s" % e})

    do_GET = do_POST = do_HEAD = handle_any


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--upstream", default="https://127.0.0.1:14000")
    ap.add_argument("--upstream-ca", required=True)
    ap.add_argument("--dir-path", default="/dir")
    ap.add_argument("--profiles", default=json.dumps({
        "tlsserver": "the CA's default: 90-day TLS server certificates",
        "shortlived": "short-lived TLS server certificates"}))
    ap.add_argument("--retry-after", type=int, default=1)
    ap.add_argument("--default-window-ahead", dest="default_ahead", type=int, default=86400)
    opts = ap.parse_args()
    opts.t0 = int(time.time())
    opts.profiles = json.loads(opts.profiles)
    Front.opts = opts
    # Pebble's nonce URL, learned once (its path does not depend on Host).
    probe = Front.__new__(Front)
    probe.opts, probe.headers = opts, {}
    _, _, data = probe.upstream("GET", opts.dir_path)
    d = json.loads(data)
    opts.nonce_url = d["newNonce"]
    Front.new_order_path = urllib.parse.urlsplit(d["newOrder"]).path
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", opts.port), Front)
    srv.daemon_threads = True
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(opts.cert, opts.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    print("ready %d" % opts.port, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
