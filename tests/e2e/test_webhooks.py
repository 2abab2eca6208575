"""test_webhooks.py - callback URLs end to end, against real receivers.

A receiver is a python http.server on loopback in a thread, so the server
runs with CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true (except for the SSRF
test, which checks that private addresses are refused and never connected
to). The retry schedule is shrunk with CERTPLANE_WEBHOOK_RETRY_SCHEDULE and
the attempt timeout with CERTPLANE_WEBHOOK_TIMEOUT_SECONDS.

Covers: CRUD and validation (secret shown once, never again; isolation);
Standard Webhooks signature recomputed here with hmac; receiver down then up;
500s then 200; a hanging receiver abandoned at the timeout; 410 disables
with a webhook.disabled event; SSRF refusals; kill -9 with 500 deliveries
pending, all delivered after restart; expiry reminders relative to the
lifetime (90-day certificates with 29, 13, 2 days left: 1/3, 1/6, 1/30; a
fresh 6-day one: none), each exactly once; GET /v1/events filters.
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, field_error, free_port, run, serve_loopback  # noqa: E402

SCHEDULE = "[0,1,1,1,1,1,1,1,1,1,1,1]"


class Receiver:
    """A webhook receiver on 127.0.0.1. Behaviour by path:
    /ok -> 200; /fail/N -> 500 for the first N requests of a webhook-id, then 200;
    /gone -> 410; /hang -> sleeps 30 s; /busy -> 429 with Retry-After: 2 once."""

    def __init__(self, port=None):
        self.requests = []            # (path, headers dict lower-case, body bytes, time)
        self.lock = threading.Lock()
        self.counts = {}
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                n = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(n)
                hdrs = {k.lower(): v for k, v in self.headers.items()}
                with outer.lock:
                    outer.requests.append((self.path, hdrs, body, time.time()))
                    key = (self.path, hdrs.get("webhook-id"))
                    outer.counts[key] = outer.counts.get(key, 0) + 1
                    seen = outer.counts[key]
                status, extra = 200, {}
                if self.path.startswith("/fail/"):
                    status = 500 if seen <= int(self.path.split("/")[2]) else 200
                elif self.path == "/gone":
                    status = 410
                elif self.path == "/hang":
                    time.sleep(30)
                elif self.path == "/busy" and seen == 1:
                    status, extra = 429, {"Retry-After": "2"}
                try:
                    self.send_response(status)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.httpd = serve_loopback(H, port or 0)
        self.port = self.httpd.server_address[1]

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def seen(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r[0] == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


_server = None


def server():
    """One shared server for the tests that allow private networks."""
    global _server
    if _server is None:
        _server = Server(env={
            "CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
            "CERTPLANE_WEBHOOK_TIMEOUT_SECONDS": "2",
            "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": SCHEDULE,
        }).start()
    return _server


def create(s, key, url, events=("*",), **kw):
    body = {"url": url, "events": list(events)}
    body.update(kw)
    return expect(s.post("/v1/webhooks", body, token=key), 201).json


def deliveries(s, key, wid, **q):
    return s.list_all("/v1/webhooks/%s/deliveries" % wid, token=key, query=q)


def wait_state(s, key, wid, delivery_id, state, timeout=30):
    def done():
        for d in deliveries(s, key, wid):
            if d["id"] == delivery_id and d["state"] == state:
                return d
        return None
    return s.wait_for(done, timeout=timeout, what="delivery %s %s" % (delivery_id, state))


def verify(secret, hdrs, body):
    """Standard Webhooks verification, independent of certplane's code."""
    key = base64.b64decode(secret[len("whsec_"):])
    msg = ("%s.%s." % (hdrs["webhook-id"], hdrs["webhook-timestamp"])).encode() + body
    want = base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode()
    sigs = [p.split(",", 1)[1] for p in hdrs["webhook-signature"].split() if p.startswith("v1,")]
    return any(hmac.compare_digest(want, s) for s in sigs)


def test_crud_and_validation():
    s = server()
    _, key = s.new_tenant("crud")
    _, other = s.new_tenant("other")
    rcv = Receiver()
    try:
        r = expect(s.post("/v1/webhooks", {"url": rcv.url("/ok"), "events": ["certificate.issued",
                   "order.failed"], "description": "ops"}, token=key), 201)
        w = r.json
        check(r.header("cache-control") == "no-store", "secret response is no-store")
        check(w["secret"].startswith("whsec_") and len(base64.b64decode(w["secret"][6:])) >= 24)
        check(w["enabled"] is True and w["disabled_reason"] is None and w["description"] == "ops")
        got = expect(s.get("/v1/webhooks/" + w["id"], token=key), 200).json
        check("secret" not in got and got["events"] == ["certificate.issued", "order.failed"])
        lst = s.list_all("/v1/webhooks", token=key)
        check([x["id"] for x in lst] == [w["id"]] and "secret" not in lst[0])
        check(w["secret"] not in s.log(), "the secret never reaches the log")
        # Another tenant sees nothing.
        expect(s.get("/v1/webhooks/" + w["id"], token=other), 404)
        expect(s.patch("/v1/webhooks/" + w["id"], {"enabled": False}, token=other), 404)
        expect(s.post("/v1/webhooks/%s/test" % w["id"], token=other), 404)
        expect(s.get("/v1/webhooks/%s/deliveries" % w["id"], token=other), 404)
        expect(s.delete("/v1/webhooks/" + w["id"], token=other), 404)
        check(s.list_all("/v1/webhooks", token=other) == [])
        # Validation names the field.
        for body, field in [
            ({"url": rcv.url("/ok"), "events": ["nope"]}, "events"),
            ({"url": rcv.url("/ok"), "events": []}, "events"),
            ({"url": rcv.url("/ok"), "events": ["*", "order.failed"]}, "events"),
            ({"url": rcv.url("/ok"), "events": ["order.failed", "order.failed"]}, "events"),
            ({"url": rcv.url("/ok"), "events": "*"}, "events"),
            ({"url": "ftp://example.com/", "events": ["*"]}, "url"),
            ({"url": "not a url", "events": ["*"]}, "url"),
            ({"url": "http://user:pw@127.0.0.1/", "events": ["*"]}, "url"),
            ({"url": "http://x.invalid/", "events": ["*"]}, "url"),
            ({"url": "http://127.0.0.1/" + "a" * 3000, "events": ["*"]}, "url"),
            ({"events": ["*"]}, "url"),
            ({"url": rcv.url("/ok"), "events": ["*"], "colour": "red"}, "colour"),
        ]:
            r = expect(s.post("/v1/webhooks", body, token=key), 422, str(body)[:80])
            check(field_error(r, field), "422 names %s: %r" % (field, r))
        expect(s.post("/v1/webhooks", raw=b"{nope", token=key), 400)
        # PATCH: fields, disable, re-enable clears the reason.
        p = expect(s.patch("/v1/webhooks/" + w["id"], {"events": ["*"], "description": "d2",
                                                        "enabled": False}, token=key), 200).json
        check(p["events"] == ["*"] and p["description"] == "d2" and p["enabled"] is False
              and p["disabled_reason"])
        expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 409)
        p = expect(s.patch("/v1/webhooks/" + w["id"], {"enabled": True}, token=key), 200).json
        check(p["enabled"] is True and p["disabled_reason"] is None)
        r = expect(s.patch("/v1/webhooks/" + w["id"], {"url": "gopher://x/"}, token=key), 422)
        check(field_error(r, "url"))
        expect(s.get("/v1/webhooks/not-a-uuid", token=key), 404)
        expect(s.delete("/v1/webhooks/" + w["id"], token=key), 204)
        expect(s.get("/v1/webhooks/" + w["id"], token=key), 404)
        expect(s.delete("/v1/webhooks/" + w["id"], token=key), 404)
    finally:
        rcv.close()


def test_signature_verifies_and_payload_matches_events():
    s = server()
    _, key = s.new_tenant("sig")
    rcv = Receiver()
    try:
        w = create(s, key, rcv.url("/ok"))
        t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json
        d = wait_state(s, key, w["id"], t["delivery_id"], "delivered")
        check(len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200)
        check(d["event_id"] == t["event_id"] and d["event_type"] == "webhook.test")
        path, hdrs, body, _ = rcv.seen("/ok")[0]
        check(hdrs["webhook-id"] == t["event_id"], "webhook-id is the event id")
        check(hdrs["content-type"] == "application/json")
        check(abs(int(hdrs["webhook-timestamp"]) - time.time()) < 60)
        check(hdrs["webhook-signature"].startswith("v1,"))
        check(verify(w["secret"], hdrs, body), "signature verifies")
        check(not verify(w["secret"], hdrs, body + b" "), "a changed body does not verify")
        ev = json.loads(body)
        listed = s.list_all("/v1/events", token=key, query={"type": "webhook.test"})
        check(listed == [ev], "the body is the event as GET /v1/events shows it")
        check(ev["type"] == "webhook.test" and ev["data"]["webhook_id"] == w["id"])
    finally:
        rcv.close()


def test_receiver_down_then_up():
    s = server()
    _, key = s.new_tenant("down")
    port = free_port()
    w = create(s, key, "http://127.0.0.1:%d/ok" % port)
    t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json
    s.wait_for(lambda: any(len(d["attempts"]) >= 2 for d in deliveries(s, key, w["id"])),
               timeout=20, what="two failed attempts")
    rcv = Receiver(port)
    try:
        d = wait_state(s, key, w["id"], t["delivery_id"], "delivered")
        check(all(a["status_code"] is None and a["error"] for a in d["attempts"][:-1]),
              "failed attempts record the connection error: %r" % d["attempts"])
        check(d["attempts"][-1]["status_code"] == 200 and d["attempts"][-1]["error"] is None)
        ids = {r[1]["webhook-id"] for r in rcv.seen()}
        check(ids == {t["event_id"]}, "same webhook-id after retries: %r" % ids)
    finally:
        rcv.close()


def test_500s_then_200():
    s = server()
    _, key = s.new_tenant("fail")
    rcv = Receiver()
    try:
        w = create(s, key, rcv.url("/fail/3"))
        t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json
        d = wait_state(s, key, w["id"], t["delivery_id"], "delivered")
        check([a["status_code"] for a in d["attempts"]] == [500, 500, 500, 200], repr(d))
        check([a["attempt"] for a in d["attempts"]] == [1, 2, 3, 4])
        check(all(isinstance(a["latency_ms"], int) and a["at"] for a in d["attempts"]))
        time.sleep(2.5)
        reqs = rcv.seen()
        check(len(reqs) == 4 and {r[1]["webhook-id"] for r in reqs} == {t["event_id"]},
              "nothing is sent after the 2xx: %d requests" % len(reqs))
        check(all(verify(w["secret"], r[1], r[2]) for r in reqs))
        # 429 with Retry-After: the next attempt waits at least that long.
        w2 = create(s, key, rcv.url("/busy"))
        t2 = expect(s.post("/v1/webhooks/%s/test" % w2["id"], token=key), 202).json
        wait_state(s, key, w2["id"], t2["delivery_id"], "delivered")
        times = [r[3] for r in rcv.seen("/busy")]
        check(len(times) == 2 and times[1] - times[0] >= 1.5, "Retry-After honoured: %r" % times)
    finally:
        rcv.close()


def test_hanging_receiver_abandoned_at_timeout():
    s = server()
    _, key = s.new_tenant("hang")
    rcv = Receiver()
    try:
        w = create(s, key, rcv.url("/hang"))
        t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json

        def first_attempt():
            for d in deliveries(s, key, w["id"]):
                if d["id"] == t["delivery_id"] and d["attempts"]:
                    return d["attempts"][0]
            return None
        a = s.wait_for(first_attempt, timeout=20, what="first attempt")
        check(a["status_code"] is None and "imeout" in (a["error"] or ""), repr(a))
        check(1800 <= a["latency_ms"] <= 6000, "abandoned at about 2 s: %r" % a)
        d = [d for d in deliveries(s, key, w["id"]) if d["id"] == t["delivery_id"]][0]
        check(d["state"] == "pending", "a timeout is retried")
        expect(s.delete("/v1/webhooks/" + w["id"], token=key), 204)
    finally:
        rcv.close()


def test_410_disables():
    s = server()
    _, key = s.new_tenant("gone")
    rcv = Receiver()
    try:
        watcher = create(s, key, rcv.url("/ok"), events=["webhook.disabled"])
        w = create(s, key, rcv.url("/gone"))
        t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json
        d = wait_state(s, key, w["id"], t["delivery_id"], "failed")
        check([a["status_code"] for a in d["attempts"]] == [410])
        got = expect(s.get("/v1/webhooks/" + w["id"], token=key), 200).json
        check(got["enabled"] is False and "410" in got["disabled_reason"], repr(got))
        evs = s.list_all("/v1/events", token=key, query={"type": "webhook.disabled"})
        check(len(evs) == 1 and evs[0]["data"]["webhook_id"] == w["id"]
              and "410" in evs[0]["data"]["reason"], repr(evs))
        # The other endpoint, subscribed to webhook.disabled, is told.
        s.wait_for(lambda: rcv.seen("/ok"), timeout=15, what="webhook.disabled delivered")
        check(json.loads(rcv.seen("/ok")[0][2])["type"] == "webhook.disabled")
        check(len(rcv.seen("/gone")) == 1, "a disabled endpoint gets nothing more")
        del watcher
    finally:
        rcv.close()


def test_ssrf_refused_and_never_connected():
    rcv = Receiver()
    s = Server(env={"CERTPLANE_WEBHOOK_RETRY_SCHEDULE": SCHEDULE}).start()
    try:
        _, key = s.new_tenant("ssrf")
        p = rcv.port
        for url in ["http://127.0.0.1:%d/ok" % p, "http://10.0.0.1/", "http://10.1.2.3:%d/" % p,
                    "http://169.254.169.254/latest/meta-data/", "http://[::1]:%d/" % p,
                    "http://[::ffff:127.0.0.1]:%d/" % p, "http://2130706433:%d/" % p,
                    "http://0x7f.1:%d/" % p, "http://0177.0.0.1:%d/" % p,
                    "http://localhost:%d/ok" % p, "https://[fe80::1]/", "http://[fd00::1]/",
                    "http://100.64.0.1/", "http://192.168.1.1/", "http://172.16.0.1/",
                    "http://0.0.0.0:%d/" % p]:
            r = expect(s.post("/v1/webhooks", {"url": url, "events": ["*"]}, token=key), 422, url)
            check(field_error(r, "url"), "422 names url for %s" % url)
        check(s.list_all("/v1/webhooks", token=key) == [])
        time.sleep(1)
        check(rcv.seen() == [], "the receiver was never contacted")
    finally:
        s.cleanup()
        rcv.close()


def test_kill9_with_500_pending_all_delivered_after_restart():
    port = free_port()
    s = Server(env={
        "CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0,1,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]",
        "CERTPLANE_WEBHOOK_TIMEOUT_SECONDS": "2",
    }).start()
    rcv = None
    try:
        _, key = s.new_tenant("kill9")
        w = create(s, key, "http://127.0.0.1:%d/ok" % port)
        ids = set()
        for _ in range(500):
            ids.add(expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json["event_id"])
        check(len(ids) == 500)
        s.kill9()
        rcv = Receiver(port)
        s.start()
        t0 = time.time()
        s.wait_for(lambda: {r[1]["webhook-id"] for r in rcv.seen()} >= ids, timeout=170,
                   interval=1, what="all 500 webhook-ids delivered")
        print("   all 500 delivered %.1fs after restart" % (time.time() - t0))
        seen = {r[1]["webhook-id"] for r in rcv.seen()}
        check(seen == ids, "only our ids")
        s.wait_for(lambda: len(deliveries(s, key, w["id"], state="delivered")) == 500,
                   timeout=30, what="500 deliveries recorded as delivered")
        check(deliveries(s, key, w["id"], state="pending") == [])
        check(all(verify(w["secret"], r[1], r[2]) for r in rcv.seen()[:50]))
    finally:
        s.cleanup()
        if rcv:
            rcv.close()


def dated_cert(name, not_before, not_after):
    """An uploadable certificate (PEM, key PEM) valid from not_before to
    not_after (unix s): `openssl ca -selfsign` is the CLI that takes exact
    dates."""
    d = tempfile.mkdtemp(prefix="wh-dated-")
    j = lambda n: os.path.join(d, n)
    open(j("index.txt"), "w").close()
    with open(j("serial"), "w") as f:
        f.write("1000\n")
    with open(j("ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = t\n[t]\ndir = %s\ndatabase = $dir/index.txt\n"
                "new_certs_dir = $dir\nserial = $dir/serial\ndefault_md = sha256\n"
                "policy = any\nunique_subject = no\ncopy_extensions = copy\n"
                "[any]\ncommonName = supplied\n" % d)
    fmt = lambda t: time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", j("k.pem"), "-out",
                    j("c.csr"), "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-selfsign", "-config", j("ca.cnf"), "-keyfile",
                    j("k.pem"), "-in", j("c.csr"), "-out", j("c.pem"), "-notext",
                    "-startdate", fmt(not_before), "-enddate", fmt(not_after)],
                   check=True, capture_output=True)
    return open(j("c.pem")).read(), open(j("k.pem")).read()


def test_expiry_reminders_once_each():
    """Reminders relative to the lifetime (lifecycle_reminder): 90-day
    certificates with 29, 13, 2 and 60 days left get the 1/3, 1/6, 1/30
    reminder and none; a fresh 6-day one gets none (no 30-day warning for a
    certificate that lives 6 days)."""
    s = server()
    _, key = s.new_tenant("reminders")
    rcv = Receiver()
    day = 86400
    try:
        w = create(s, key, rcv.url("/ok"), events=["certificate.expiring", "certificate.expired"])
        certs = {}
        now = time.time()
        for left in (29, 13, 2, 60):
            pem, kpem = dated_cert("d%d.example.com" % left, now - (90 - left) * day,
                                   now + left * day)
            c = expect(s.post("/v1/certificates", {
                "source": "upload", "name": "exp-%d" % left, "certificate": pem,
                "private_key": kpem}, token=key), 201).json
            certs[left] = c["id"]
        c6 = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "exp-6", "hostnames": ["d6.example.com"],
            "validity_days": 6}, token=key), 201).json["id"]
        time.sleep(4)  # several scheduler intervals (1 s each)
        evs = s.list_all("/v1/events", token=key, query={"type": "certificate.expiring"})
        by_cert = {}
        for e in evs:
            by_cert.setdefault(e["data"]["certificate_id"], []).append(e["data"]["threshold"])
        check(by_cert == {certs[29]: ["1/3"], certs[13]: ["1/6"], certs[2]: ["1/30"]},
              repr(by_cert))
        check(c6 not in by_cert)
        check(s.list_all("/v1/events", token=key, query={"type": "certificate.expired"}) == [])
        e2 = [e for e in evs if e["data"]["certificate_id"] == certs[2]][0]["data"]
        check(e2["name"] == "exp-2" and e2["sans"] == ["d2.example.com"] and e2["version"] == 1
              and e2["not_after"] and "metadata" in e2, repr(e2))
        check(e2["threshold_seconds"] == 3 * day and e2["threshold_days"] == 3, repr(e2))
        check(abs(e2["expires_in_seconds"] - 2 * day) < 60, repr(e2))
        s.wait_for(lambda: len(rcv.seen("/ok")) >= 3, timeout=15, what="reminders delivered")
        time.sleep(2)
        check(len(rcv.seen("/ok")) == 3)
        del w
    finally:
        rcv.close()


def test_events_endpoint_filters():
    s = server()
    _, key = s.new_tenant("events")
    rcv = Receiver()
    try:
        w = create(s, key, rcv.url("/ok"))
        ids = [expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json["event_id"]
               for _ in range(3)]
        evs = s.list_all("/v1/events", token=key, query={"type": "webhook.test"})
        check([e["id"] for e in evs] == ids)
        after = s.list_all("/v1/events", token=key, query={"after": ids[0]})
        check([e["id"] for e in after] == ids[1:])
        r = expect(s.get("/v1/events", token=key, query={"type": "bogus"}), 422)
        check(field_error(r, "type"))
        check(s.list_all("/v1/events", token=key, query={"type": "order.failed"}) == [])
    finally:
        rcv.close()


def test_zz_cleanup():
    if _server:
        _server.cleanup()


if __name__ == "__main__":
    run(globals())
