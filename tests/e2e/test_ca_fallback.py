"""test_ca_fallback.py - CAA before ordering, and CA fallback (issue 14).

Two Pebble instances of this test's own (the test bed's challtestsrv is
the DNS of both and of certplane): "primary" on 14100/15100 and "backup"
on 14200/15200, which requires External Account Binding. Pebble's VA does
not check CAA (Pebble 2.4 has no CAA code: only certplane enforces it
here), so the CAA records in challtestsrv (POST /add-caa) decide alone,
through certplane's CAA identities: cas.primary.caa_identities
["primary.example"], cas.backup.caa_identities ["backup.example"].

Asserted:
  - a name whose CAA allows only backup.example is issued by "backup"
    (versions[].ca, and its chain verifies under backup's root, not
    primary's); backup's account was registered with EAB;
  - a name whose CAA allows neither fails with caa_forbids naming the
    record, and no CA order was ever placed (the order row has no
    order_url, account_url or authorization; neither Pebble logged a
    new order for it);
  - a CA that answers newOrder 429 rateLimited ("limited":
    tests/testbed/acme-front.py in front of primary's Pebble) hands the
    order to "backup";
  - stopping "primary" while orders for it run moves them to "backup";
  - once "primary" is back, the renewals (40 s certificates, due at
    half their lifetime) go to "primary" again;
  - a renewal CAA forbids everywhere fails with caa_forbids in its
    certificate.renewal_failed event, no CA order placed;
  - the lists are validated (422 naming cas / default_cas), a tenant's
    default_cas applies to its certificates without cas, and another
    tenant can neither read nor change them.
Each new order starts at the head of its certificate's cas list.
"""
import json
import os
import secrets
import base64
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import ssl
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()
VALIDITY = 40  # seconds: renewals due after ~20 s
EAB_KID = "kid-backup"
EAB_HMAC = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


class Pebble:
    """One Pebble of this test on its own ports (HTTP-01 on the test bed's
    port 5002, where certplane answers; DNS: the test bed's challtestsrv)."""

    def __init__(self, name, acme_port, mgmt_port, eab=False):
        self.name, self.acme_port, self.mgmt_port = name, acme_port, mgmt_port
        self.dir = tempfile.mkdtemp(prefix="cp-pebble-%s-" % name)
        self.proc = None
        conf = {
            "listenAddress": "127.0.0.1:%d" % acme_port,
            "managementListenAddress": "127.0.0.1:%d" % mgmt_port,
            "certificate": os.path.join(TB.dir, "https-cert.pem"),
            "privateKey": os.path.join(TB.dir, "https-key.pem"),
            "httpPort": int(TB.env["ACME_HTTP01_PORT"]),
            "tlsPort": int(TB.env["ACME_TLSALPN01_PORT"]),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": eab,
            "certificateValidityPeriod": VALIDITY,
        }
        if eab:
            conf["externalAccountMACKeys"] = {EAB_KID: EAB_HMAC}
        self.conf = os.path.join(self.dir, "pebble-config.json")
        with open(self.conf, "w") as f:
            json.dump({"pebble": conf}, f)
        self.log_path = os.path.join(self.dir, "pebble.log")

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.acme_port

    def start(self):
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        self.proc = subprocess.Popen(
            ["pebble", "-config", self.conf, "-dnsserver", TB.env["DNS_RESOLVER"]],
            env=env, stdout=open(self.log_path, "a"), stderr=subprocess.STDOUT)
        for _ in range(100):
            try:
                self.mgmt("/roots/0")
                return self
            except OSError:
                time.sleep(0.1)
        raise AssertionError("pebble %s did not come up" % self.name)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def mgmt(self, path):
        ctx = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])
        with urllib.request.urlopen("https://127.0.0.1:%d%s" % (self.mgmt_port, path),
                                    context=ctx, timeout=5) as r:
            return r.read().decode()

    def log(self):
        with open(self.log_path) as f:
            return f.read()


FRONT = os.path.join(os.environ.get("CERTPLANE_SRC", os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")), "tests", "testbed", "acme-front.py")


class Front:
    """tests/testbed/acme-front.py in front of one Pebble: a CA that answers
    the next newOrders 429 rateLimited when told to."""

    def __init__(self, port, upstream):
        self.port = port
        self.log = open(os.path.join(upstream.dir, "acme-front.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, FRONT, "--port", str(port), "--cert",
             os.path.join(TB.dir, "https-cert.pem"), "--key", os.path.join(TB.dir, "https-key.pem"),
             "--upstream", "https://127.0.0.1:%d" % upstream.acme_port,
             "--upstream-ca", TB.env["ACME_CA_BUNDLE"]],
            stdout=subprocess.PIPE, stderr=self.log)
        line = self.proc.stdout.readline().decode()
        check(line.startswith("ready"), "acme-front started: %r" % line)

    @property
    def directory(self):
        return "https://127.0.0.1:%d/dir" % self.port

    def call(self, method, path, body=None):
        ctx = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])
        req = urllib.request.Request("https://127.0.0.1:%d%s" % (self.port, path), method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            data = r.read()
        return json.loads(data) if data else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def add_caa(host, *issuers):
    TB.cts("/add-caa", {"host": host, "policies": [{"tag": "issue", "value": v}
                                                  for v in issuers]})


def chain_verifies(pem, root_pem):
    """Whether the leaf of pem (leaf + intermediates) verifies under root_pem."""
    d = tempfile.mkdtemp(prefix="cp-chain-")
    blocks = [b + "-----END CERTIFICATE-----\n" for b in pem.split("-----END CERTIFICATE-----")
              if "BEGIN CERTIFICATE" in b]
    paths = {}
    for name, text in (("leaf", blocks[0]), ("chain", "".join(blocks[1:])), ("root", root_pem)):
        paths[name] = os.path.join(d, name + ".pem")
        with open(paths[name], "w") as f:
            f.write(text)
    args = ["openssl", "verify", "-CAfile", paths["root"]]
    if blocks[1:]:
        args += ["-untrusted", paths["chain"]]
    # Pebble's short certificates: their validity is checked by the test, not here.
    r = subprocess.run(args + ["-no_check_time", paths["leaf"]], capture_output=True, text=True)
    return r.returncode == 0


class Edge:
    """One edge hostname of the tenant; names() puts fresh names on a
    property CNAMEd to it (HTTP-01 needs that)."""

    def __init__(self, s, key):
        self.s, self.key = s, key
        self.eh = expect(s.post("/v1/edge-hostnames", {"label": "f" + uuid.uuid4().hex[:8]},
                                token=key), 201).json
        TB.add_a(self.eh["hostname"])

    def names(self, n, zone="test"):
        new = ["f%s.%s" % (uuid.uuid4().hex[:10], zone) for _ in range(n)]
        for h in new:
            TB.set_cname(h, self.eh["hostname"])
        self.prop = expect(self.s.post("/v1/properties", {
            "name": "p", "hostnames": new, "edge_hostname_id": self.eh["id"]},
            token=self.key), 201).json["id"]
        return new


def fallbacks(s, key, cid):
    """The order.ca_fallback events of certificate cid, oldest first."""
    return [e["data"] for e in s.list_all("/v1/events", token=key,
                                          query={"type": "order.ca_fallback"})
            if e["data"]["certificate_id"] == cid]


def versions(s, key, cid):
    return s.list_all("/v1/certificates/%s/versions" % cid, token=key)


def cert_pem(v):
    return v["certificate"] + (v.get("chain") or "")


def test_caa_and_fallback():
    primary = Pebble("primary", 14100, 15100).start()
    backup = Pebble("backup", 14200, 15200, eab=True).start()
    limited = Front(14300, primary)
    bundle = TB.env["ACME_CA_BUNDLE"]
    env = TB.server_env()
    env["CERTPLANE_CAS"] = json.dumps({
        "primary": {"directory_url": primary.directory, "ca_bundle": bundle,
                    "caa_identities": ["primary.example"]},
        "backup": {"directory_url": backup.directory, "ca_bundle": bundle,
                   "caa_identities": ["backup.example"], "eab_kid": EAB_KID,
                   "eab_hmac_key": EAB_HMAC},
        "limited": {"directory_url": limited.directory, "ca_bundle": bundle},
    })
    s = Server(env=env).start()
    try:
        tid, key = s.new_tenant()
        edge = Edge(s, key)
        cas = ["primary", "backup"]

        # The list is checked against the configuration (422 naming cas).
        for bad in (["nosuch"], [], ["primary", "primary"], "primary"):
            r = s.post("/v1/certificates", {"source": "acme", "name": "x", "cas": bad,
                                            "hostnames": edge.names(1)}, token=key)
            expect(r, 422)
            check("cas" in r.text, r.text)
        r = s.post("/v1/certificates", {"source": "acme", "name": "x", "cas": cas,
                                        "ca": "backup", "hostnames": edge.names(1)},
                   token=key)
        expect(r, 422)

        # 1. CAA allows only the second CA: issued by "backup".
        # The names are CNAMEd to the edge (HTTP-01), so they cannot hold
        # CAA themselves: the records sit on their parent (tree climbing).
        zone1 = "z%s.test" % uuid.uuid4().hex[:8]
        only_backup = edge.names(1, zone1)
        add_caa(zone1, "backup.example")
        c1 = expect(s.post("/v1/certificates", {"source": "acme", "name": "only-backup",
                                                "cas": cas, "hostnames": only_backup},
                           token=key), 202).json
        check(c1["cas"] == cas and c1["ca"] == "primary", c1)

        # 2. CAA allows neither: caa_forbids, before any CA order.
        zone2 = "z%s.test" % uuid.uuid4().hex[:8]
        neither = edge.names(1, zone2)
        add_caa(zone2, "other.example")
        c2 = expect(s.post("/v1/certificates", {"source": "acme", "name": "neither",
                                                "cas": cas, "hostnames": neither},
                           token=key), 202).json

        s.wait_for(lambda: s.get("/v1/certificates/" + c1["id"], token=key).json["status"]
                   == "active", timeout=60, what="only-backup issued")
        v1 = versions(s, key, c1["id"])
        check(len(v1) == 1 and v1[0]["ca"] == "backup", v1)
        broot, proot = backup.mgmt("/roots/0"), primary.mgmt("/roots/0")
        check(chain_verifies(cert_pem(v1[0]), broot), "chain from backup's root")
        check(not chain_verifies(cert_pem(v1[0]), proot), "not from primary's root")
        # The tenant is told: one event, naming both CAs and the record.
        fb = fallbacks(s, key, c1["id"])
        check(len(fb) == 1 and fb[0]["from"] == "primary" and fb[0]["to"] == "backup" and
              fb[0]["reason"] == "caa_forbids" and "backup.example" in fb[0]["detail"], fb)
        check("externalAccountBinding" not in s.log(), "the EAB is not logged")
        check(EAB_HMAC not in s.log(), "the EAB key is not logged")

        s.wait_for(lambda: s.get("/v1/certificates/" + c2["id"], token=key).json["status"]
                   == "failed", timeout=30, what="neither fails")
        cert2 = s.get("/v1/certificates/" + c2["id"], token=key).json
        check(cert2["renewal"]["last_error_reason"] == "caa_forbids", cert2)
        err = cert2["renewal"]["last_error"]
        check('0 issue "other.example"' in err and neither[0] in err and zone2 in err, err)
        orders2 = s.list_all("/v1/orders", token=key, query={"certificate_id": c2["id"]})
        check(len(orders2) == 1 and orders2[0]["status"] == "failed" and
              orders2[0]["error"]["reason"] == "caa_forbids", orders2)
        rows = s.sql("SELECT order_url, account_url FROM orders WHERE id = ?", orders2[0]["id"])
        check(rows == [(None, None)], "no CA order was placed: %r" % rows)
        n = s.sql("SELECT count(*) FROM order_authorizations WHERE order_id = ?",
                  orders2[0]["id"])
        check(int(n[0][0]) == 0, n)
        failed = [e for e in s.list_all("/v1/events", token=key, query={"type": "order.failed"})
                  if e["data"]["certificate_id"] == c2["id"]]
        check(len(failed) == 1 and failed[0]["data"]["reason"] == "caa_forbids", failed)
        # Tenant isolation: another tenant sees none of it.
        tid_b, key_b = s.new_tenant("other")
        expect(s.get("/v1/certificates/" + c1["id"], token=key_b), 404)
        expect(s.patch("/v1/certificates/" + c1["id"], {"cas": ["backup"]}, token=key_b), 404)
        # The list can change (422 naming cas for an unknown CA) and be cleared.
        r = s.patch("/v1/certificates/" + c1["id"], {"cas": ["backup", "nosuch"]}, token=key)
        expect(r, 422)
        check("cas" in r.text, r.text)
        p1 = expect(s.patch("/v1/certificates/" + c1["id"], {"cas": ["backup", "primary"]},
                            token=key), 200).json
        check(p1["cas"] == ["backup", "primary"], p1)
        # The renewal preview names the CA the next order starts at: the
        # list's head, not auto_renew's CA.
        pv = expect(s.get("/v1/certificates/%s/renewal-preview" % c1["id"], token=key), 200).json
        check(pv["request"]["ca"] == "backup", pv)
        p1 = expect(s.patch("/v1/certificates/" + c1["id"], {"cas": None}, token=key), 200).json
        check(p1["cas"] is None, p1)
        pv = expect(s.get("/v1/certificates/%s/renewal-preview" % c1["id"], token=key), 200).json
        check(pv["request"]["ca"] == c1["auto_renew"], (pv, c1))

        # A tenant default (operator-set; 422 naming the field for a bad
        # one; only the operator may): a certificate naming no list takes
        # it, so only-backup CAA issues through backup without "cas".
        r = s.patch("/v1/tenants/" + tid_b, {"default_cas": ["primary", "nosuch"]})
        expect(r, 422)
        check("default_cas" in r.text, r.text)
        expect(s.patch("/v1/tenants/" + tid, {"default_cas": ["backup"]}, token=key_b), 403)
        t = expect(s.patch("/v1/tenants/" + tid_b, {"default_cas": cas}), 200).json
        check(t["default_cas"] == cas, t)
        check(expect(s.get("/v1/tenants/" + tid), 200).json["default_cas"] is None,
              "tenant A's default untouched")
        edge_b = Edge(s, key_b)
        names_b = edge_b.names(1, zone1)
        cb = expect(s.post("/v1/certificates", {"source": "acme", "name": "default-list",
                                                "hostnames": names_b}, token=key_b), 202).json
        s.wait_for(lambda: s.get("/v1/certificates/" + cb["id"], token=key_b).json["status"]
                   == "active", timeout=60, what="tenant default list issued")
        check(versions(s, key_b, cb["id"])[0]["ca"] == "backup", "tenant default list used")
        ob = s.list_all("/v1/orders", token=key_b, query={"certificate_id": cb["id"]})
        check(ob[0]["cas"] == cas, ob)

        # 2b. The first CA answers newOrder 429 rateLimited: the order moves on.
        limited.call("POST", "/front/rate-limited", {"count": 1})
        c_rl = expect(s.post("/v1/certificates", {
            "source": "acme", "name": "rate-limited", "cas": ["limited", "backup"],
            "hostnames": edge.names(1)}, token=key), 202).json["id"]
        s.wait_for(lambda: s.get("/v1/certificates/" + c_rl, token=key).json["status"]
                   == "active", timeout=60, what="rate-limited order issued by backup")
        check(versions(s, key, c_rl)[0]["ca"] == "backup", versions(s, key, c_rl))
        seen = [o for o in limited.call("GET", "/front/orders") if o["answered"] == 429]
        check(len(seen) == 1 and seen[0]["problem"].endswith("rateLimited"), seen)
        check('"reason":"ca_rate_limited"' in s.log(), "the fallback says why")
        fb = fallbacks(s, key, c_rl)
        check([(f["from"], f["to"], f["reason"]) for f in fb] ==
              [("limited", "backup", "ca_rate_limited")], fb)
        limited.stop()

        # 3. The first CA stops while its orders run: they move to backup.
        names3, props = [], []
        for _ in range(3):
            names3 += edge.names(1)
            props.append(edge.prop)
        ids = [expect(s.post("/v1/certificates", {
            "source": "acme", "name": "fb%d" % i, "cas": cas, "auto_renew": "primary",
            "hostnames": [names3[i]]}, token=key), 202).json["id"] for i in range(3)]
        primary.stop()

        def all_active():
            st = [s.get("/v1/certificates/" + i, token=key).json["status"] for i in ids]
            return st if all(x == "active" for x in st) else None
        s.wait_for(all_active, timeout=60, interval=0.3, what="orders moved to backup")
        for i in ids:
            vs = versions(s, key, i)
            check(vs[0]["ca"] == "backup", vs)
            check(chain_verifies(cert_pem(vs[0]), broot), "fallback chain from backup")
        check('"event":"acme.ca_fallback"' in s.log(), "the fallback is logged")
        for i in ids:
            fb = fallbacks(s, key, i)
            check([(f["from"], f["to"], f["reason"]) for f in fb] ==
                  [("primary", "backup", "ca_unreachable")], fb)
        # tenant B sees its own fallback (default-list) and none of A's
        seen_b = [e["data"]["certificate_id"] for e in s.list_all(
            "/v1/events", token=key_b, query={"type": "order.ca_fallback"})]
        check(seen_b == [cb["id"]], "tenant B's fallback events: %r" % seen_b)
        # Deployed to production with renew automation: the scheduler renews.
        for cid, p in zip(ids, props):
            expect(s.patch("/v1/properties/" + p, {"certificate_id": cid,
                                                   "certificate_renew_automation": True},
                           token=key), 200)
            expect(s.post("/v1/properties/%s/deployments" % p, {"environment": "production"},
                          token=key), 201)

        # 4. primary is back (a new instance: new root, no accounts): the
        # renewals go to the head of the list again.
        primary.start()
        proot = primary.mgmt("/roots/0")

        # 5. A renewal that CAA now forbids everywhere fails early with
        # caa_forbids in its certificate.renewal_failed event.
        zone3 = "z%s.test" % uuid.uuid4().hex[:8]
        names5 = edge.names(1, zone3)
        c5 = expect(s.post("/v1/certificates", {
            "source": "acme", "name": "renew-forbidden", "cas": cas, "auto_renew": "primary",
            "hostnames": names5}, token=key), 202).json["id"]
        s.wait_for(lambda: s.get("/v1/certificates/" + c5, token=key).json["status"]
                   == "active", timeout=60, what="c5 issued")
        expect(s.patch("/v1/properties/" + edge.prop, {"certificate_id": c5,
                                                       "certificate_renew_automation": True},
                       token=key), 200)
        expect(s.post("/v1/properties/%s/deployments" % edge.prop,
                      {"environment": "production"}, token=key), 201)
        add_caa(zone3, "other.example")

        def renewed_by_primary():
            out = []
            for i in ids:
                vs = versions(s, key, i)
                if not any(v["ca"] == "primary" for v in vs):
                    return None
                out.append(vs)
            return out
        got = s.wait_for(renewed_by_primary, timeout=90, interval=0.5,
                         what="renewals back at primary")
        for vs in got:
            back = [v for v in vs if v["ca"] == "primary"]
            check(chain_verifies(cert_pem(back[-1]), proot), "renewal chain from primary")
            check(vs[0]["ca"] == "backup", vs)

        def renewal_failed():
            evs = [e for e in s.list_all("/v1/events", token=key,
                                         query={"type": "certificate.renewal_failed"})
                   if e["data"]["certificate_id"] == c5]
            return evs or None
        evs = s.wait_for(renewal_failed, timeout=60, interval=0.5, what="c5 renewal_failed")
        check(evs[0]["data"]["reason"] == "caa_forbids", evs)
        check('0 issue "other.example"' in evs[0]["data"]["detail"], evs)
        check(names5[0] in evs[0]["data"]["identifiers"], evs)
        o5 = [o for o in s.list_all("/v1/orders", token=key, query={"certificate_id": c5})
              if o["kind"] == "renew"]
        rows = s.sql("SELECT order_url FROM orders WHERE id = ?", o5[0]["id"])
        check(rows == [(None,)], "the forbidden renewal reached no CA: %r" % rows)
        s.check_db_sound()
    finally:
        s.cleanup()
        limited.stop()
        primary.stop()
        backup.stop()


if __name__ == "__main__":
    run(globals())
