"""test_notifications.py - notification channels beyond webhooks (issue 14,
part 5), end to end against a real SMTP sink (tests/testbed/smtp-sink.py:
STARTTLS with a certificate made here, AUTH PLAIN, one JSON file a message)
and a local Slack-compatible HTTP receiver, both started and stopped here.

1. registration: address and type validated (422 naming the field), the
   SSRF rules on a Slack URL, the quota (409, also for 10 creates at once),
   channels and webhooks apart;
   tenant B never sees, verifies or deletes tenant A's channels;
2. an email address gets its verification mail (over STARTTLS, AUTH with
   the configured user; the password in no log or response), the token from
   that mail verifies it; a wrong token is a 422 and a second verify a 409;
3. a certificate.renewal_failed (a hostname CNAMEd elsewhere) arrives at
   the verified address with the reason and the hostname, no CR/LF from
   tenant data in its headers; the unverified address gets nothing but its
   verification mail; the Slack receiver, down at first, gets the message
   once it is up (retried on the webhooks' schedule, nothing lost);
4. the SMTP relay down: the verification mail is retried and arrives once
   the sink is back; a relay whose certificate is not trusted gets nothing.
"""
import glob
import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (Server, Testbed, check, expect, field_error, free_port, run)  # noqa: E402

TB = Testbed().ensure()
SINK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "testbed", "smtp-sink.py")
SMTP_PASSWORD = "smtp-pw-" + uuid.uuid4().hex


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


class SmtpSink:
    """tests/testbed/smtp-sink.py on a free port with a fresh certificate."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="smtp-sink-")
        self.mail = os.path.join(self.dir, "mail")
        self.cert, self.key = os.path.join(self.dir, "c.pem"), os.path.join(self.dir, "k.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key, "-out",
                        self.cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        self.port = free_port()
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            [sys.executable, SINK, "--listen", "127.0.0.1:%d" % self.port, "--cert",
             self.cert, "--key", self.key, "--dir", self.mail, "--require-tls"],
            stdout=subprocess.PIPE, text=True)
        check(self.proc.stdout.readline().strip() == "ready", "smtp sink started")
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def messages(self, rcpt=None):
        out = []
        for p in sorted(glob.glob(os.path.join(self.mail, "*.json"))):
            with open(p) as f:
                m = json.load(f)
            if rcpt is None or "<%s>" % rcpt in m["rcpt_to"]:
                out.append(m)
        return out


class SlackReceiver:
    """A Slack-compatible incoming webhook: records each POSTed JSON body."""

    def __init__(self):
        self.port = free_port()
        self.bodies = []
        self.srv = None

    def start(self):
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                rec.bodies.append(json.loads(self.rfile.read(n)))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self.srv:
            self.srv.shutdown()
            self.srv.server_close()


def server(sink, **extra):
    env = TB.server_env()
    env.update({
        "CERTPLANE_SMTP_URL": "smtp://127.0.0.1:%d" % sink.port,
        "CERTPLANE_SMTP_FROM": "certplane@example.test",
        "CERTPLANE_SMTP_USERNAME": "relay-user",
        "CERTPLANE_SMTP_PASSWORD": SMTP_PASSWORD,
        "CERTPLANE_SMTP_CA_BUNDLE": sink.cert,
        "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]",
        "CERTPLANE_WEBHOOK_TIMEOUT_SECONDS": "5",
        "CERTPLANE_RENEW_BACKOFF_SECONDS": "[600]",
    })
    env.update(extra)
    return Server(env=env).start()


def email_channel(s, key, address, events=("certificate.renewal_failed",)):
    return expect(s.post("/v1/notification-channels", {
        "type": "email", "address": address, "events": list(events)}, token=key), 201).json


def deliveries(s, key, cid):
    return s.list_all("/v1/notification-channels/%s/deliveries" % cid, token=key)


def bad_field(resp, field):
    check(resp.status == 422 and field_error(resp, field), "422 naming %s: %r" % (field, resp))


def token_of(msg):
    m = re.search(r"^Token: ([0-9a-f]{32})\r?$", msg["data"], re.M)
    check(m, "a token in the verification mail: %r" % msg["data"])
    return m.group(1)


def headers_of(msg):
    head = msg["data"].split("\r\n\r\n", 1)[0]
    return head.split("\r\n")


# ------------------------------------------- 1. registration and isolation

def test_validation_quota_isolation():
    sink = SmtpSink()  # not started: nothing here sends mail that must arrive
    # net_tenant_concurrency 16: the 10 creates at once below all reach the
    # quota check (a create validates its address on a net thread).
    s = server(sink, CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="false",
               CERTPLANE_QUOTA_NOTIFICATION_CHANNELS="2", CERTPLANE_NET_TENANT_CONCURRENCY="16",
               CERTPLANE_NET_THREADS="10")
    try:
        ta, ka = s.new_tenant("a")
        tb, kb = s.new_tenant("b")
        post = lambda body, key=ka: s.post("/v1/notification-channels", body, token=key)
        ev = ["certificate.renewal_failed"]
        for bad in ["no-at-sign", "a@b", "a b@example.test", "x@Example.Test", ".a@example.test",
                    "a@example.test\r\nBcc: victim@example.test", "a@@example.test",
                    "<a@example.test>", "a" * 65 + "@example.test"]:
            bad_field(post({"type": "email", "address": bad, "events": ev}), "address")
        bad_field(post({"type": "email", "events": ev}), "address")
        bad_field(post({"type": "pager", "address": "a@example.test", "events": ev}), "type")
        bad_field(post({"type": "email", "address": "a@example.test", "events": []}), "events")
        bad_field(post({"type": "email", "address": "a@example.test",
                          "events": ["no.such"]}), "events")
        bad_field(post({"type": "slack", "events": ev}), "url")
        # The webhooks' SSRF rules: loopback and private addresses refused.
        for url in ["http://127.0.0.1:9/hook", "http://10.1.2.3/hook", "ftp://example.test/x",
                    "http://[::1]/x"]:
            bad_field(post({"type": "slack", "url": url, "events": ev}), "url")
        a1 = email_channel(s, ka, "ops@example.test")
        check(a1["type"] == "email" and a1["address"] == "ops@example.test", a1)
        check(a1["verified"] is False and a1["verified_at"] is None, a1)
        check(not set(a1) & {"secret", "token", "url"}, a1)
        email_channel(s, ka, "dev@example.test")
        r = post({"type": "email", "address": "third@example.test", "events": ev})
        check(r.status == 409 and "notification_channels" in json.dumps(r.json), r)
        # Tenant B's own quota is untouched; it sees none of A's channels.
        b1 = email_channel(s, kb, "b@example.test")
        check([c["id"] for c in s.list_all("/v1/notification-channels", token=kb)] == [b1["id"]],
              "B lists only its own")
        check(len(s.list_all("/v1/notification-channels", token=ka)) == 2, "A lists its two")
        expect(s.get("/v1/notification-channels/" + a1["id"], token=kb), 404)
        expect(s.get("/v1/notification-channels/%s/deliveries" % a1["id"], token=kb), 404)
        expect(s.post("/v1/notification-channels/%s/verify" % a1["id"], {"token": "0" * 32},
                      token=kb), 404)
        expect(s.delete("/v1/notification-channels/" + a1["id"], token=kb), 404)
        expect(s.get("/v1/notification-channels/" + a1["id"], token=ka), 200)
        # PATCH: events and enabled only (a new address is a new channel);
        # 422 naming the field, 404 for another tenant, 412 on a stale ETag.
        url1 = "/v1/notification-channels/" + a1["id"]
        bad_field(s.patch(url1, {"events": ["no.such"]}, token=ka), "events")
        bad_field(s.patch(url1, {"events": []}, token=ka), "events")
        bad_field(s.patch(url1, {"address": "evil@example.test"}, token=ka), "address")
        bad_field(s.patch(url1, {"enabled": "yes"}, token=ka), "enabled")
        expect(s.patch(url1, {"enabled": False}, token=kb), 404)
        etag = expect(s.get(url1, token=ka), 200).header("ETag")
        p1 = expect(s.patch(url1, {"events": ["certificate.expiring", "order.ca_fallback"]},
                            token=ka, headers={"If-Match": etag}), 200)
        check(p1.json["events"] == ["certificate.expiring", "order.ca_fallback"] and
              p1.json["address"] == "ops@example.test" and p1.json["verified"] is False, p1.json)
        expect(s.patch(url1, {"enabled": False}, token=ka, headers={"If-Match": etag}), 412)
        off = expect(s.patch(url1, {"enabled": False}, token=ka), 200).json
        check(off["enabled"] is False and off["disabled_reason"] == "disabled through the API",
              off)
        on = expect(s.patch(url1, {"enabled": True}, token=ka), 200).json
        check(on["enabled"] is True and on["disabled_reason"] is None, on)
        expect(s.get(url1, token=kb), 404)
        check(expect(s.get(url1, token=ka), 200).json == on, "A reads what it set")
        audits = [a for a in s.list_all("/v1/audit-log", token=ka)
                  if a["action"] == "notification_channel.update"]
        check(len(audits) == 3 and all(a["resource_id"] == a1["id"] for a in audits), audits)
        # Channels are not webhooks: neither list nor quota mixes them.
        check(s.list_all("/v1/webhooks", token=ka) == [], "no channel among the webhooks")
        expect(s.get("/v1/webhooks/" + a1["id"], token=ka), 404)
        expect(s.delete("/v1/webhooks/" + a1["id"], token=ka), 404)
        expect(s.post("/v1/webhooks/%s/test" % a1["id"], token=ka), 404)
        expect(s.delete("/v1/notification-channels/" + a1["id"], token=ka), 204)
        expect(s.get("/v1/notification-channels/" + a1["id"], token=ka), 404)
        email_channel(s, ka, "again@example.test")  # the quota counts what exists
        # Verification mails are budgeted per tenant (20 a day), deleted
        # channels included: create-and-delete cannot make certplane a mailer.
        tc, kc = s.new_tenant("c")
        for i in range(20):
            c = email_channel(s, kc, "loop%d@example.test" % i)
            expect(s.delete("/v1/notification-channels/" + c["id"], token=kc), 204)
        r = post({"type": "email", "address": "loop20@example.test", "events": ev}, kc)
        check(r.status == 429 and r.header("Retry-After"), r)
        check(s.list_all("/v1/notification-channels", token=kc) == [], "nothing half-written")
        # Creates at the same instant take turns on the tenant's quota lock
        # (on PostgreSQL, READ COMMITTED, two counts could otherwise both
        # see room for one): of 10 at once, exactly the quota's 2 exist.
        td, kd = s.new_tenant("d")
        gate, got = threading.Barrier(10), []

        def create(i):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            body = json.dumps({"type": "email", "address": "race%d@example.test" % i,
                               "events": ev})
            gate.wait()
            c.request("POST", "/v1/notification-channels", body=body,
                      headers={"Authorization": "Bearer " + kd,
                               "Content-Type": "application/json"})
            r = c.getresponse()
            got.append((r.status, r.read()[:160]))
            c.close()
        threads = [threading.Thread(target=create, args=(i,)) for i in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(sorted(st for st, _ in got) == [201] * 2 + [409] * 8,
              "10 creates at once: %r" % sorted(got))
        check(len(s.list_all("/v1/notification-channels", token=kd)) == 2, "exactly 2 exist")
    finally:
        sink.cleanup()
        s.cleanup()


# ------------------------ 2./3. verification, renewal_failed by email, Slack

def test_email_and_slack_lifecycle():
    sink = SmtpSink().start()
    slack = SlackReceiver()  # down until the renewal failure was sent to it
    s = server(sink)
    try:
        ta, ka = s.new_tenant("a")
        tb, kb = s.new_tenant("b")
        alice = email_channel(s, ka, "alice@example.test")
        bob = email_channel(s, ka, "bob@example.test")  # never verified
        sl = expect(s.post("/v1/notification-channels", {
            "type": "slack", "url": "http://127.0.0.1:%d/services/T0/B0/%s" % (
                slack.port, "s3cr3tp4th"), "events": ["certificate.renewal_failed"]},
            token=ka), 201).json
        check(sl["verified"] is True and "s3cr3tp4th" not in sl["url"] and
              sl["url"].startswith("http://127.0.0.1:%d/****" % slack.port), sl)
        check("s3cr3tp4th" not in json.dumps(s.list_all("/v1/notification-channels",
                                                        token=ka)), "masked in lists")

        m = s.wait_for(lambda: sink.messages("alice@example.test"), timeout=20,
                       what="alice's verification mail")[0]
        check(m["tls"] is True and m["auth_user"] == "relay-user", m)
        check(m["mail_from"] == "<certplane@example.test>", m)
        token = token_of(m)
        check("POST /v1/notification-channels/%s/verify" % alice["id"] in m["data"], m["data"])
        s.wait_for(lambda: sink.messages("bob@example.test"), timeout=20, what="bob's mail")
        ev = [e for e in s.list_all("/v1/events", token=ka,
                                    query={"type": "notification_channel.verification"})]
        check(len(ev) == 2 and token not in json.dumps(ev), "events carry no token")

        vpath = "/v1/notification-channels/%s/verify" % alice["id"]
        bad_field(s.post(vpath, {"token": "f" * 32}, token=ka), "token")
        bad_field(s.post(vpath, {}, token=ka), "token")
        expect(s.post(vpath, {"token": token}, token=kb), 404)
        v = expect(s.post(vpath, {"token": token}, token=ka), 200).json
        check(v["verified"] is True and v["verified_at"], v)
        expect(s.post(vpath, {"token": token}, token=ka), 409)
        bad_field(s.post("/v1/notification-channels/%s/verify" % bob["id"], {"token": token},
                           token=ka), "token")
        check(token not in json.dumps(s.list_all("/v1/notification-channels", token=ka)), "no token")

        # A renewal that fails: the hostname is CNAMEd elsewhere, not to the edge.
        zone = rnd("nf") + ".test"
        bad = "bad." + zone
        cert = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "boot", "hostnames": [bad], "validity_days": 10,
            "auto_renew": "letsencrypt"}, token=ka), 201).json
        eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=ka), 201).json
        TB.add_a(eh["hostname"])
        TB.set_cname(bad, "elsewhere." + zone)
        prop = expect(s.post("/v1/properties", {
            "name": "shop", "hostnames": [bad], "edge_hostname_id": eh["id"],
            "certificate_id": cert["id"], "certificate_renew_automation": True},
            token=ka), 201).json
        expect(s.post("/v1/properties/%s/deployments" % prop["id"],
                      {"environment": "production"}, token=ka), 201)

        mails = s.wait_for(lambda: [x for x in sink.messages("alice@example.test")
                                    if "renewal_failed" in x["data"]],
                           timeout=40, what="the renewal_failed mail")
        data = mails[0]["data"]
        check("dns_not_pointed_to_edge" in data and bad in data and cert["id"] in data, data)
        check(re.search(r"^Reason: dns_not_pointed_to_edge\r$", data, re.M), data)
        check(re.search(r"^Next attempt: \S+\r$", data, re.M), data)
        hdrs = headers_of(mails[0])
        subj = [h for h in hdrs if h.startswith("Subject: ")]
        check(len(subj) == 1 and bad in subj[0] and "renewal_failed" in subj[0], hdrs)
        check(all(re.match(r"^[A-Za-z-]+: ", h) for h in hdrs), hdrs)
        check("<alice@example.test>" in [h[4:] for h in hdrs if h.startswith("To: ")], hdrs)

        # Slack: down so far, so its delivery is pending with a failed attempt.
        d = s.wait_for(lambda: [x for x in deliveries(s, ka, sl["id"]) if x["attempts"]],
                       timeout=20, what="a failed Slack attempt")[0]
        check(d["state"] == "pending" and d["attempts"][0]["error"], d)
        slack.start()
        body = s.wait_for(lambda: slack.bodies, timeout=30, what="the Slack message")[0]
        check(set(body) == {"text"} and bad in body["text"] and
              "dns_not_pointed_to_edge" in body["text"] and "\r" not in body["text"], body)
        done = s.wait_for(lambda: [x for x in deliveries(s, ka, sl["id"])
                                   if x["state"] == "delivered"], timeout=10, what="delivered")
        check(len(done[0]["attempts"]) >= 2 and done[0]["attempts"][-1]["status_code"] == 200,
              done)

        # Bob was never verified: his verification mail is all he got.
        check(len(sink.messages("bob@example.test")) == 1, sink.messages("bob@example.test"))
        check(len(deliveries(s, ka, bob["id"])) == 1, "no lifecycle delivery for bob")
        # Alice's deliveries all delivered with the relay's 250.
        ad = deliveries(s, ka, alice["id"])
        check(ad and all(x["state"] == "delivered" and x["attempts"][-1]["status_code"] == 250
                         for x in ad), ad)
        # Tenant B received nothing of A's.
        check(s.list_all("/v1/notification-channels", token=kb) == [], "B has none")
        # The SMTP password in no log line and no response.
        check(SMTP_PASSWORD not in s.log(), "no password in the log")
        for path in ["/v1/notification-channels", "/v1/events"]:
            check(SMTP_PASSWORD not in json.dumps(s.list_all(path, token=ka)), path)
    finally:
        slack.stop()
        sink.cleanup()
        s.cleanup()


# ----------------------------------------------------- 4. relay down, retried

def test_relay_down_is_retried():
    sink = SmtpSink()  # down at first
    s = server(sink)
    try:
        ta, ka = s.new_tenant("a")
        c = email_channel(s, ka, "carol@example.test")
        d = s.wait_for(lambda: [x for x in deliveries(s, ka, c["id"]) if len(x["attempts"]) >= 2],
                       timeout=20, what="failed attempts while the relay is down")[0]
        check(d["state"] == "pending" and all(a["error"] for a in d["attempts"]), d)
        sink.start()
        m = s.wait_for(lambda: sink.messages("carol@example.test"), timeout=20,
                       what="the mail once the relay is back")
        check(len(m) == 1 and m[0]["tls"], m)
        expect(s.post("/v1/notification-channels/%s/verify" % c["id"],
                      {"token": token_of(m[0])}, token=ka), 200)
        done = s.wait_for(lambda: [x for x in deliveries(s, ka, c["id"])
                                   if x["state"] == "delivered"], timeout=10, what="delivered")
        check(len(done) == 1 and done[0]["attempts"][-1]["status_code"] == 250, done)
        # A relay without STARTTLS for us would be refused: the sink requires
        # it, and every message it stored came over TLS.
        check(all(x["tls"] for x in sink.messages()), "TLS always")
    finally:
        sink.cleanup()
        s.cleanup()



def test_untrusted_relay_gets_nothing():
    # TLS is verified: a relay whose certificate smtp_ca_bundle does not
    # trust never sees MAIL (the handshake fails after STARTTLS).
    sink, other = SmtpSink().start(), SmtpSink()
    s = server(sink, CERTPLANE_SMTP_CA_BUNDLE=other.cert)
    try:
        ta, ka = s.new_tenant("a")
        c = email_channel(s, ka, "dave@example.test")
        d = s.wait_for(lambda: [x for x in deliveries(s, ka, c["id"]) if x["attempts"]],
                       timeout=20, what="a failed attempt")[0]
        err = d["attempts"][0]["error"] or ""
        check(d["state"] == "pending" and ("SSL" in err or "certificate" in err), d)
        time.sleep(1)
        check(sink.messages() == [], "nothing reached the untrusted relay")
    finally:
        sink.cleanup()
        other.cleanup()
        s.cleanup()

if __name__ == "__main__":
    run(globals())
