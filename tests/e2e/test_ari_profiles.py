"""test_ari_profiles.py - ACME profiles and ARI renewals (issue 10) against a
CA the test controls: tests/testbed/acme-front.py in front of Pebble (Pebble
2.4.0 offers neither profiles nor renewalInfo). The front adds
meta.profiles {"tlsserver", "shortlived"} and renewalInfo to the directory,
answers renewalInfo with the window the test sets per ARI certID (else one
LIFE / 2 after the front started: inside the certificates' lifetime, after
the test's end), records every newOrder payload and can answer a newOrder
carrying "replaces" with alreadyReplaced (409).

Short-lived certificates: the shared test bed is restarted with Pebble
issuing LIFE-second certificates (restored to its default in `finally`, as
test_renewal_window.py does); the lifetime rule (LIFE / 2) never comes due
while the test runs, so every renewal here is ARI's.

(a) a profile the CA does not offer is refused (422 naming "profile"), at
    create and at PATCH; a CA that cannot be asked gives 503 + Retry-After
    and nothing is stored;
(b) a certificate with profile "shortlived" is issued and its newOrder
    carried "profile": "shortlived" (and no "replaces");
(c) a suggested window a few seconds ahead: the renewal happens inside it
    (the new version's created_at in [start, end] + SLACK), its newOrder
    carried replaces = the ARI certID of the previous version (computed here
    from its PEM with openssl) and the profile was kept;
(d) alreadyReplaced injected: the renewal still succeeds, the retried
    newOrder carried no "replaces";
(e) the CA stops offering the profile: the next order fails with
    profile_not_offered and no newOrder is sent.
"""
import base64
import calendar
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import SRC, Server, Testbed, check, expect, field_error, free_port, run  # noqa: E402

TB = Testbed().ensure()
LIFE = 600     # seconds: Pebble's certificateValidityPeriod here (lifetime rule at 300 s)
SLACK = 4      # seconds after the window's end: a tick (1 s) + one order against Pebble
FRONT = os.path.join(SRC, "tests", "testbed", "acme-front.py")


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def ts(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def ari_cert_id(pem):
    """RFC 9773 section 4.1: base64url(AKI keyIdentifier) "." base64url(serial
    DER content octets), from the PEM with openssl."""
    p = subprocess.run(["openssl", "x509", "-noout", "-serial", "-ext", "authorityKeyIdentifier"],
                       input=pem, capture_output=True, text=True, check=True)
    serial_hex, aki_hex = None, None
    for line in p.stdout.splitlines():
        line = line.strip()
        if line.startswith("serial="):
            serial_hex = line[len("serial="):]
        elif ":" in line and not line.startswith("X509v3"):
            aki_hex = line.replace("keyid:", "").replace(":", "")
    check(serial_hex and aki_hex, "serial and AKI of the leaf: %r" % p.stdout)
    serial = bytes.fromhex(serial_hex if len(serial_hex) % 2 == 0 else "0" + serial_hex)
    if serial[0] & 0x80:  # DER INTEGER content: a positive number keeps its sign octet
        serial = b"\x00" + serial
    return b64url(bytes.fromhex(aki_hex)) + "." + b64url(serial)


class Front:
    """The acme-front.py process, on a free port, trusted via the test bed's CA."""

    def __init__(self, port=None, profiles=None):
        self.port = port or free_port()
        extra = ["--profiles", json.dumps(profiles)] if profiles is not None else []
        d = TB.dir
        self.log = open(os.path.join(d, "acme-front.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, FRONT, "--port", str(self.port), "--cert",
             os.path.join(d, "https-cert.pem"), "--key", os.path.join(d, "https-key.pem"),
             "--upstream-ca", TB.env["ACME_CA_BUNDLE"],
             # The default window: inside LIFE, after the test's end.
             "--default-window-ahead", str(LIFE // 2)] + extra,
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        check(line.startswith("ready"), "acme-front started: %r" % line)
        self.ctx = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def call(self, method, path, body=None):
        c = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.ctx, timeout=10)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        data = r.read()
        c.close()
        check(r.status == 200, "front %s %s -> %d %r" % (method, path, r.status, data))
        return json.loads(data) if data else None

    def orders(self):
        """The newOrders the front saw, without those Pebble refused for a
        bad nonce (its 5 %% badNonce rejections; the client retries them at
        once, which the protocol asks for)."""
        return [o for o in self.call("GET", "/front/orders")
                if o["problem"] != "urn:ietf:params:acme:error:badNonce"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def current(s, key, cid):
    vs = s.list_all("/v1/certificates/%s/versions" % cid, token=key)
    return sorted(vs, key=lambda v: v["version"])


def wait_version(s, key, cid, n, timeout):
    def got():
        vs = current(s, key, cid)
        return vs if len(vs) >= n else None
    return s.wait_for(got, timeout=timeout, interval=0.25, what="version %d of %s" % (n, cid))


def test_profiles_and_ari():
    TB.stop()
    TB.start({"ACME_TESTBED_CERT_VALIDITY_SECONDS": str(LIFE)})
    front = s = None
    try:
        front = Front()
        env = TB.server_env()
        env.update({"CERTPLANE_ACME_DIRECTORY_URL": front.directory,
                    "CERTPLANE_RENEW_BACKOFF_SECONDS": "[2,2,2]",
                    # A CA nothing answers for (port 9: refused at once).
                    "CERTPLANE_CAS": json.dumps({"down": {
                        "directory_url": "https://127.0.0.1:9/dir"}})})
        s = Server(env=env).start()
        _, key = s.new_tenant("ari-profiles")
        zone = rnd("ari") + ".test"
        names = ["www." + zone, "shop." + zone]
        eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
        TB.add_a(eh["hostname"])
        for n in names:
            TB.set_cname(n, eh["hostname"])
        prop = expect(s.post("/v1/properties", {
            "name": "shop", "hostnames": names, "edge_hostname_id": eh["id"],
            "certificate_renew_automation": True}, token=key), 201).json

        # (a) a profile the CA does not offer: 422 naming "profile", nothing created.
        body = {"source": "acme", "name": "ari", "hostnames": names,
                "auto_renew": "letsencrypt"}
        r = expect(s.post("/v1/certificates", dict(body, profile="no-such-profile"),
                          token=key), 422)
        check(field_error(r, "profile"), r)
        check("no-such-profile" in r.text, "the detail names the profile: %r" % r)
        r = expect(s.post("/v1/certificates", dict(body, profile="bad profile!"), token=key), 422)
        check(field_error(r, "profile"), r)
        # The CA cannot be asked: 503 + Retry-After, never stored unchecked.
        r = expect(s.post("/v1/certificates", dict(body, profile="shortlived", ca="down"),
                          token=key), 503)
        check(r.header("retry-after") and "down" in r.text, r)
        # Remembered for a while: the next check answers without asking again.
        r = expect(s.post("/v1/certificates", dict(body, profile="shortlived", ca="down"),
                          token=key), 503)
        check("ago" in r.json["detail"], "the outage is remembered: %r" % r)
        check(s.list_all("/v1/certificates", token=key) == [], "nothing was created")
        check(front.orders() == [], "no newOrder for a refused profile")

        # (b) profile "shortlived": issued, and the newOrder named it.
        c = expect(s.post("/v1/certificates", dict(body, profile="shortlived"), token=key),
                   202).json
        cid = c["id"]
        check(c["profile"] == "shortlived", c)
        s.wait_for(lambda: expect(s.get("/v1/certificates/" + cid, token=key), 200).json[
            "status"] == "active", timeout=30, what="first issuance")
        v1 = current(s, key, cid)[-1]
        check(abs(ts(v1["not_after"]) - ts(v1["not_before"]) - LIFE) <= 2,
              "a short-lived certificate: %r" % v1)
        o = front.orders()
        check(len(o) == 1 and o[0]["answered"] == 201, o)
        check(o[0]["payload"]["profile"] == "shortlived", o)
        check("replaces" not in o[0]["payload"], "a first issuance replaces nothing: %r" % o)
        check(sorted(i["value"] for i in o[0]["payload"]["identifiers"]) == sorted(names), o)
        # PATCH: an unknown profile is refused too, and the stored one stays.
        r = expect(s.patch("/v1/certificates/" + cid, {"profile": "longlived"}, token=key), 422)
        check(field_error(r, "profile"), r)
        # A bad auto_renew is its own 422, before any CA is asked.
        r = expect(s.patch("/v1/certificates/" + cid, {"auto_renew": "nosuch",
                                                       "profile": "shortlived"}, token=key), 422)
        check(field_error(r, "auto_renew"), r)
        check(expect(s.get("/v1/certificates/" + cid, token=key), 200).json["profile"]
              == "shortlived", "a refused PATCH changes nothing")

        # Carried by the property in production: a renewal candidate, so
        # the scheduler asks the front's renewalInfo about it.
        expect(s.patch("/v1/properties/" + prop["id"], {"certificate_id": cid}, token=key), 200)
        expect(s.post("/v1/properties/%s/deployments" % prop["id"],
                      {"environment": "production"}, token=key), 201)
        id1 = ari_cert_id(v1["certificate"])
        s.wait_for(lambda: id1 in front.call("GET", "/front/renewal-info-requests"),
                   timeout=15, what="the scheduler asks renewalInfo about %s" % id1)

        # (c) a window a few seconds ahead: renewed inside it, replaces = id1.
        start = int(time.time()) + 4
        end = start + 5
        front.call("POST", "/front/window", {"cert_id": id1, "start": iso(start),
                                             "end": iso(end)})
        try:
            vs = wait_version(s, key, cid, 2, timeout=end - time.time() + 20)
        except Exception:
            print(expect(s.get("/v1/certificates/" + cid, token=key), 200).json)
            print(front.call("GET", "/front/renewal-info-requests"))
            print(s.log()[-6000:])
            raise
        v2 = vs[-1]
        created = ts(v2["created_at"])
        print("   window [%d, %d], v2 created %+d s after its start" % (start, end, created - start))
        check(start <= created <= end + SLACK,
              "v2 created at %d, outside the window [%d, %d] + %d" % (created, start, end, SLACK))
        o = front.orders()
        check(len(o) == 2 and o[1]["answered"] == 201, o)
        check(o[1]["payload"].get("replaces") == id1,
              "the renewal names the replaced certificate: %r, want %s" % (o[1], id1))
        check(o[1]["payload"].get("profile") == "shortlived", "profile kept: %r" % o[1])
        check(start - 1 <= o[1]["at"] <= end + 1, "newOrder sent inside the window: %r" % o[1])
        cert = expect(s.get("/v1/certificates/" + cid, token=key), 200).json
        check(cert["profile"] == "shortlived" and cert["version"] == 2, cert)
        check(v2["order_id"] and v2["serial"] != v1["serial"], v2)

        # (d) alreadyReplaced once: retried at once without replaces, renewed.
        id2 = ari_cert_id(v2["certificate"])
        check(id2 != id1, "a new certificate, a new certID")
        front.call("POST", "/front/already-replaced", {"count": 1})
        start = int(time.time()) + 3
        end = start + 4
        front.call("POST", "/front/window", {"cert_id": id2, "start": iso(start),
                                             "end": iso(end)})
        vs = wait_version(s, key, cid, 3, timeout=end - time.time() + 20)
        v3 = vs[-1]
        check(start <= ts(v3["created_at"]) <= end + SLACK, "v3 inside its window: %r" % v3)
        o = front.orders()
        check(len(o) == 4, "one refused newOrder and its retry: %r" % o[2:])
        check(o[2]["payload"].get("replaces") == id2 and o[2]["answered"] == 409, o[2])
        check("replaces" not in o[3]["payload"] and o[3]["answered"] == 201,
              "the retry carries no replaces: %r" % o[3])
        check(o[3]["payload"].get("profile") == "shortlived", o[3])
        orders = s.list_all("/v1/orders", token=key, query={"certificate_id": cid})
        check(sorted(x["status"] for x in orders) == ["valid"] * 3, orders)
        check(len(current(s, key, cid)) == 3, "no extra renewal")

        # (e) the CA stops offering the profile (a new front, and certplane
        # restarted: the directory is read once per client): the next order
        # fails with profile_not_offered instead of ordering without it.
        front.stop()
        front = Front(port=front.port, profiles={"tlsserver": "the default"})
        s.restart()
        o = expect(s.post("/v1/certificates/%s/renew" % cid, token=key), 202).json
        o = s.wait_for(lambda: (lambda x: x if x["status"] == "failed" else None)(
            expect(s.get("/v1/orders/" + o["id"], token=key), 200).json), timeout=20,
            what="the order refused for its profile")
        check(o["error"]["reason"] == "profile_not_offered" and "shortlived" in
              o["error"]["detail"], o)
        check(front.orders() == [], "no newOrder without the profile: %r" % front.orders())

        # PATCH null clears the profile.
        cert = expect(s.patch("/v1/certificates/" + cid, {"profile": None}, token=key), 200).json
        check(cert["profile"] is None, cert)
    finally:
        if s:
            s.cleanup()
        if front:
            front.stop()
        TB.stop()
        TB.start()


if __name__ == "__main__":
    run(globals())
