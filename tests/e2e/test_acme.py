"""test_acme.py - the ACME engine end to end, against Pebble + challtestsrv
(harness.Testbed().ensure(); nonce rejection stays at Pebble's 5 %).

1. the seed flow: self-signed bootstrap with auto_renew -> property with two
   hostnames CNAMEd to its edge hostname, deployed to production -> renewed
   by the scheduler with both names in the SAN, chain verifying against
   Pebble's root, certificate.renewed recorded;
2. a hostname not pointed at the edge -> certificate.renewal_failed
   (dns_not_pointed_to_edge, detail names it); CNAME fixed -> next attempt ok;
3. a wildcard via DNS-01 answered by a webhook receiver publishing the TXT;
4. kill -9 in the middle of 20 concurrent orders: all valid after restart,
   one version each, integrity_check ok;
plus the orders API (validation, verify/cancel, dns-check, HTTP-01 responder).
Pebble outage and restart: test_acme_outage.py.

Fresh random hostnames everywhere: Pebble reuses valid authorizations.
"""
import http.client
import http.server
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PG, Server, Testbed, check, expect, field_error, run,  # noqa: E402
                     serve_loopback)

TB = Testbed().ensure()


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def server(**extra):
    env = TB.server_env()
    env.update({"CERTPLANE_RENEW_BACKOFF_SECONDS": "[1,1,1]",
                "CERTPLANE_DNS01_TIMEOUT_SECONDS": "120"})
    env.update(extra)
    return Server(env=env).start()


def pebble_get(path):
    ctx = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])
    c = http.client.HTTPSConnection("127.0.0.1", 15000, context=ctx, timeout=10)
    c.request("GET", path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


def verify_chain(cert):
    """openssl verify of leaf + chain against Pebble's current root."""
    d = tempfile.mkdtemp(prefix="acme-verify-")
    st, root = pebble_get("/roots/0")
    check(st == 200, "pebble root")
    with open(os.path.join(d, "root.pem"), "wb") as f:
        f.write(root)
    with open(os.path.join(d, "leaf.pem"), "w") as f:
        f.write(cert["certificate"])
    with open(os.path.join(d, "chain.pem"), "w") as f:
        f.write(cert["chain"])
    p = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "root.pem"),
                        "-untrusted", os.path.join(d, "chain.pem"), os.path.join(d, "leaf.pem")],
                       capture_output=True, text=True)
    check(p.returncode == 0, "chain verifies: %s %s" % (p.stdout, p.stderr))


def sans_of(pem):
    p = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName"], input=pem,
                       capture_output=True, text=True)
    return sorted(x.strip()[4:] for x in p.stdout.split("\n")[1].split(",")) if p.returncode == 0 else []


def events(s, key, typ):
    return [e for e in s.list_all("/v1/events", token=key, query={"type": typ})]


def current_version(s, key, cid):
    vs = s.list_all("/v1/certificates/%s/versions" % cid, token=key)
    cur = [v for v in vs if v["current"]]
    return vs, (cur[0] if cur else None)


def seed_property(s, key, names, cname=True, cert_id=None):
    """Edge hostname + property carrying cert_id for names, deployed to production."""
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    if cname:
        for n in names:
            TB.set_cname(n, eh["hostname"])
    prop = expect(s.post("/v1/properties", {
        "name": "shop", "hostnames": names, "edge_hostname_id": eh["id"],
        "certificate_id": cert_id, "certificate_renew_automation": True}, token=key), 201).json
    expect(s.post("/v1/properties/%s/deployments" % prop["id"], {"environment": "production"},
                  token=key), 201)
    return eh, prop


def served(s, key, names):
    """names on a property of this tenant, CNAMEd to its edge hostname: what
    an HTTP-01 order needs (issuance scope: every identifier a hostname of
    the tenant verified by CNAME, checked live before the CA is asked)."""
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for n in names:
        TB.set_cname(n, eh["hostname"])
    expect(s.post("/v1/properties", {"name": "served", "hostnames": names,
                                     "edge_hostname_id": eh["id"]}, token=key), 201)
    return eh


def bootstrap(s, key, names, **kw):
    body = {"source": "self_signed", "name": "bootstrap", "hostnames": names,
            "validity_days": 10, "auto_renew": "letsencrypt", "metadata": {"team": "seed"}}
    body.update(kw)
    return expect(s.post("/v1/certificates", body, token=key), 201).json


def short_lived_cert(names, seconds):
    """A certificate (PEM, key PEM) valid from an hour ago until `seconds`
    from now: `openssl ca -selfsign` is the CLI that takes exact dates."""
    d = tempfile.mkdtemp(prefix="acme-short-")
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
    san = "subjectAltName=" + ",".join("DNS:" + n for n in names)
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", j("k.pem"), "-out",
                    j("c.csr"), "-subj", "/CN=" + names[0], "-addext", san],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "ca", "-batch", "-selfsign", "-config", j("ca.cnf"), "-keyfile",
                    j("k.pem"), "-in", j("c.csr"), "-out", j("c.pem"), "-notext",
                    "-startdate", fmt(time.time() - 3600), "-enddate",
                    fmt(time.time() + seconds)], check=True, capture_output=True)
    return open(j("c.pem")).read(), open(j("k.pem")).read()


# ---------------------------------------------------------------- 1. seed flow

def test_seed_flow_renewed_by_scheduler():
    s = server()
    try:
        tid, key = s.new_tenant()
        zone = rnd("seed") + ".test"
        names = ["www." + zone, "shop." + zone]
        cert = bootstrap(s, key, names)
        eh, prop = seed_property(s, key, names, cert_id=cert["id"])

        # dns-check shows both names ready (CNAME chain reaches the edge).
        dc = expect(s.get("/v1/properties/%s/dns-check" % prop["id"], token=key), 200).json
        check(dc["ready"] is True and len(dc["hostnames"]) == 2, dc)
        for h in dc["hostnames"]:
            check(h["points_to_edge"] and h["ready"] and not h["wildcard"], h)
            check(eh["hostname"] in h["cname_chain"], h)

        def renewed():
            c = expect(s.get("/v1/certificates/" + cert["id"], token=key), 200).json
            return c if c["version"] >= 2 and c["status"] == "active" else None

        def second_version():
            # A GET (kept in the read cache on SQLite), then the uncached
            # versions list: once the worker's version is there, the next GET
            # must show it at once (api/read_cache.c: read-your-writes).
            expect(s.get("/v1/certificates/" + cert["id"], token=key), 200)
            cur = current_version(s, key, cert["id"])[1]
            return cur if cur and cur["version"] >= 2 else None
        cur = s.wait_for(second_version, timeout=60, interval=0.05, what="a second version")
        c = expect(s.get("/v1/certificates/" + cert["id"], token=key), 200).json
        check(c["version"] == cur["version"] and c["serial"] == cur["serial"], (c, cur))
        c = s.wait_for(renewed, timeout=60, what="scheduler renewal")
        check(c["issuer"].startswith("CN=Pebble Intermediate"), c["issuer"])
        check(sorted(c["sans"]) == sorted(names), c["sans"])
        vs, cur = current_version(s, key, cert["id"])
        check(len(vs) == 2 and cur["version"] == 2, vs)
        check(sans_of(cur["certificate"]) == sorted(names), "SAN holds both hostnames")
        verify_chain(cur)
        ev = events(s, key, "certificate.renewed")
        check(len(ev) == 1, ev)
        d = ev[0]["data"]
        check(d["certificate_id"] == cert["id"] and d["metadata"] == {"team": "seed"}, d)
        check(d["serial"] == c["serial"], d)
        orders = s.list_all("/v1/orders", token=key, query={"certificate_id": cert["id"]})
        check(len(orders) == 1 and orders[0]["kind"] == "renew" and orders[0]["status"] == "valid",
              orders)
        check(sorted(orders[0]["identifiers"]) == sorted(names), orders[0])
        # Verification happened by itself once the CNAMEs were in place.
        p = expect(s.get("/v1/properties/" + prop["id"], token=key), 200).json
        check(p["hostnames"] == names and all(
            v["status"] == "verified" and v["method"] == "cname" and v["checked_at"]
            for v in p["hostname_verification"]), p)
        # Renewed: nothing more is due, no second order appears.
        time.sleep(3)
        check(len(s.list_all("/v1/orders", token=key)) == 1, "no second renewal")
        # The new key never leaves except through its own endpoint; the order has no key.
        check("key" not in orders[0] and "PRIVATE" not in json.dumps(orders[0]), orders[0])
    finally:
        s.cleanup()


def test_expired_while_renewal_fails_is_failed():
    # Renewal retries with backoff until the certificate expires; then the
    # certificate is "failed" (not merely "expired"), and stays so.
    s = server()
    try:
        tid, key = s.new_tenant()
        name = "gone." + rnd("exp") + ".test"
        pem, kpem = short_lived_cert([name], 8)
        cert = expect(s.post("/v1/certificates", {
            "source": "upload", "name": "short", "certificate": pem, "private_key": kpem,
            "auto_renew": "letsencrypt"}, token=key), 201).json
        eh, prop = seed_property(s, key, [name], cname=False, cert_id=cert["id"])
        TB.set_cname(name, "elsewhere." + name)
        s.wait_for(lambda: events(s, key, "certificate.renewal_failed"), timeout=30,
                   what="a failed renewal attempt")
        c = s.wait_for(lambda: (lambda c: c if c["status"] == "failed" else None)(
            expect(s.get("/v1/certificates/" + cert["id"], token=key), 200).json),
            timeout=30, what="status failed after expiry")
        check(c["renewal"]["failure_count"] >= 1, c)
        check(cert["id"] in {x["id"] for x in s.list_all(
            "/v1/certificates", token=key, query={"status": "failed"})}, "status filter")
    finally:
        s.cleanup()


# ------------------------------------------------- 2. not pointed, then fixed

def test_not_pointed_then_fixed():
    s = server()
    try:
        tid, key = s.new_tenant()
        zone = rnd("np") + ".test"
        good, bad = "ok." + zone, "bad." + zone
        cert = bootstrap(s, key, [good, bad])
        eh, prop = seed_property(s, key, [good, bad], cname=False, cert_id=cert["id"])
        TB.set_cname(good, eh["hostname"])
        TB.set_cname(bad, "elsewhere." + zone)

        dc = expect(s.get("/v1/properties/%s/dns-check" % prop["id"], token=key), 200).json
        check(dc["ready"] is False, dc)
        by = {h["hostname"]: h for h in dc["hostnames"]}
        check(by[good]["ready"] and not by[bad]["ready"], dc)
        check(by[bad]["cname_chain"][:1] == ["elsewhere." + zone], by[bad])

        ev = s.wait_for(lambda: events(s, key, "certificate.renewal_failed"), timeout=30,
                        what="renewal_failed")
        d = ev[0]["data"]
        check(d["reason"] == "dns_not_pointed_to_edge", d)
        check(bad in d["detail"], d)
        check(d["metadata"] == {"team": "seed"} and d["certificate_id"] == cert["id"], d)
        c = expect(s.get("/v1/certificates/" + cert["id"], token=key), 200).json
        check(c["version"] == 1 and c["renewal"]["failure_count"] >= 1, c)
        check(c["renewal"]["last_error_reason"] == "dns_not_pointed_to_edge", c)
        failed = s.list_all("/v1/orders", token=key, query={"status": "failed"})
        check(failed and failed[0]["error"]["reason"] == "dns_not_pointed_to_edge", failed)

        TB.set_cname(bad, eh["hostname"])

        def renewed():
            c = expect(s.get("/v1/certificates/" + cert["id"], token=key), 200).json
            return c if c["version"] == 2 else None
        c = s.wait_for(renewed, timeout=60, what="renewal after the fix")
        check(sorted(c["sans"]) == sorted([good, bad]), c)
        check(c["renewal"]["failure_count"] == 0 and c["status"] == "active", c)
        check(len(events(s, key, "certificate.renewed")) == 1, "one renewed event")
    finally:
        s.cleanup()


# --------------------------------------------------- 3. wildcard via DNS-01

class TenantReceiver:
    """The tenant's automation: publishes the TXT record it is sent."""

    def __init__(self):
        self.got = []
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ev = json.loads(body)
                outer.got.append(ev)
                d = ev.get("data", {})
                if ev.get("type") == "order.dns_challenge_required":
                    TB.set_txt(d["txt_record_name"], d["txt_record_value"])
                elif ev.get("type") == "order.dns_challenge_completed":
                    TB.clear_txt(d["txt_record_name"])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = serve_loopback(H)
        self.url = "http://127.0.0.1:%d/hook" % self.httpd.server_address[1]

    def types(self):
        return [e["type"] for e in self.got]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_wildcard_dns01_via_webhook():
    s = server()
    rcv = TenantReceiver()
    try:
        tid, key = s.new_tenant()
        zone = rnd("wild") + ".test"
        expect(s.post("/v1/webhooks", {"url": rcv.url, "events": ["*"]}, token=key), 201)
        # A wildcard with HTTP-01 is refused at once.
        r = expect(s.post("/v1/certificates", {"source": "acme", "name": "w",
                                               "hostnames": ["*." + zone]}, token=key), 422)
        r = expect(s.post("/v1/certificates", {
            "source": "acme", "name": "wild", "hostnames": ["*." + zone, zone],
            "challenge": "dns-01", "metadata": {"k": "v"}}, token=key), 202).json
        check(r["status"] == "pending" and r["order"]["challenge"] == "dns-01", r)
        cid = r["id"]

        def active():
            c = expect(s.get("/v1/certificates/" + cid, token=key), 200).json
            return c if c["status"] in ("active", "failed") else None
        c = s.wait_for(active, timeout=90, what="wildcard issued")
        check(c["status"] == "active", c)
        check(sorted(c["sans"]) == sorted(["*." + zone, zone]), c)
        order = s.list_all("/v1/orders", token=key, query={"certificate_id": cid})[0]
        check(order["status"] == "valid", order)
        for a in order["authorizations"]:
            ch = a["challenge"]
            check(ch["type"] == "dns-01" and ch["txt_record_name"] == "_acme-challenge." + zone, a)
            check(len(ch["txt_record_value"]) == 43, a)
        s.wait_for(lambda: rcv.types().count("order.dns_challenge_completed") >= 2, timeout=30,
                   what="dns_challenge_completed delivered")
        req = [e for e in rcv.got if e["type"] == "order.dns_challenge_required"]
        check(len(req) == 2, rcv.types())
        check(sorted(e["data"]["domain"] for e in req) == sorted(["*." + zone, zone]), req)
        for e in req:
            check(e["data"]["order_id"] == order["id"] and e["data"]["metadata"] == {"k": "v"}, e)
            check(e["data"]["expires_at"].endswith("Z"), e)
        s.wait_for(lambda: "certificate.issued" in rcv.types(), timeout=30, what="issued event")
        _, cur = current_version(s, key, cid)
        verify_chain(cur)
    finally:
        rcv.close()
        s.cleanup()


def test_dns01_timeout_and_verify():
    s = server(CERTPLANE_DNS01_TIMEOUT_SECONDS="4")
    try:
        tid, key = s.new_tenant()
        zone = rnd("tmo") + ".test"
        r = expect(s.post("/v1/certificates", {"source": "acme", "name": "t", "hostnames": [zone],
                                               "challenge": "dns-01"}, token=key), 202).json
        oid = r["order"]["id"]
        o = s.wait_for(lambda: (lambda o: o if o["authorizations"] and
                                o["authorizations"][0]["challenge"] else None)(
            s.get("/v1/orders/" + oid, token=key).json), timeout=20, what="txt shown")
        check(o["authorizations"][0]["challenge"]["txt_record_name"] == "_acme-challenge." + zone, o)
        expect(s.post("/v1/orders/%s/verify" % oid, token=key), 202)
        o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
            s.get("/v1/orders/" + oid, token=key).json), timeout=30, what="dns01 timeout")
        check(o["error"]["reason"] == "dns01_timeout", o)
        check([e for e in events(s, key, "order.failed") if e["data"]["reason"] == "dns01_timeout"],
              "order.failed event")
        c = expect(s.get("/v1/certificates/" + r["id"], token=key), 200).json
        check(c["status"] == "failed", c)
        expect(s.post("/v1/orders/%s/verify" % oid, token=key), 409)
        expect(s.post("/v1/orders/%s/cancel" % oid, token=key), 409)
    finally:
        s.cleanup()


# ------------------------------------------------------- API and responder

def test_orders_api_validation_and_isolation():
    s = server()
    try:
        tid, key = s.new_tenant()
        tid2, key2 = s.new_tenant("other")
        zone = rnd("api") + ".test"
        bad = [({"source": "acme", "name": "x", "hostnames": []}, "hostnames"),
               ({"source": "acme", "name": "x", "hostnames": ["Bad_Name"]}, "hostnames"),
               ({"source": "acme", "name": "x", "hostnames": [zone], "challenge": "tls"}, "challenge"),
               ({"source": "acme", "name": "x", "hostnames": [zone], "ca": "nope"}, "ca"),
               ({"source": "acme", "name": "x", "hostnames": [zone], "key_type": "dsa"}, "key_type"),
               ({"source": "acme", "name": "x", "hostnames": ["h%d.%s" % (i, zone) for i in range(101)]},
                "hostnames")]
        for body, field in bad:
            r = expect(s.post("/v1/certificates", body, token=key), 422)
            check(field_error(r, field), (body, r))
        # dns-01 order waits for the tenant: cancel it.
        r = expect(s.post("/v1/certificates", {"source": "acme", "name": "c", "hostnames": [zone],
                                               "challenge": "dns-01"}, token=key), 202).json
        oid = r["order"]["id"]
        expect(s.get("/v1/orders/" + oid, token=key2), 404)
        expect(s.post("/v1/orders/%s/cancel" % oid, token=key2), 404)
        expect(s.get("/v1/orders/not-a-uuid", token=key), 404)
        check(s.list_all("/v1/orders", token=key2) == [], "other tenant sees no orders")
        r2 = expect(s.get("/v1/orders", token=key, query={"status": "bogus"}), 422)
        check(field_error(r2, "status"), r2)
        # A second order while one is in flight: 409.
        expect(s.post("/v1/certificates/%s/renew" % r["id"], token=key), 409)
        o = expect(s.post("/v1/orders/%s/cancel" % oid, token=key), 200).json
        check(o["status"] == "canceled", o)
        time.sleep(1.5)
        check(s.get("/v1/orders/" + oid, token=key).json["status"] == "canceled", "stays canceled")
        # renew-now after cancel starts a fresh issue order.
        o2 = expect(s.post("/v1/certificates/%s/renew" % r["id"], token=key), 202).json
        check(o2["id"] != oid and o2["kind"] == "issue", o2)
        expect(s.post("/v1/certificates/%s/renew" % r["id"], token=key2), 404)
        expect(s.get("/v1/properties/%s/dns-check" % str(uuid.uuid4()), token=key), 404)
    finally:
        s.cleanup()


def test_http01_responder_and_issue():
    s = server()
    try:
        tid, key = s.new_tenant()
        name = rnd("one") + ".test"
        served(s, key, [name])
        r = expect(s.post("/v1/certificates", {"source": "acme", "name": "one", "hostnames": [name],
                                               "key_type": "rsa-2048"}, token=key), 202).json
        c = s.wait_for(lambda: (lambda c: c if c["status"] == "active" else None)(
            s.get("/v1/certificates/" + r["id"], token=key).json), timeout=60, what="issued")
        check(c["key_type"] == "rsa-2048" and c["sans"] == [name], c)
        ev = events(s, key, "certificate.issued")
        check(len(ev) == 1 and ev[0]["data"]["certificate_id"] == r["id"], ev)
        o = s.list_all("/v1/orders", token=key)[0]
        tok = o["authorizations"][0]["challenge"]["token"]
        check(o["authorizations"][0]["challenge"]["body"].startswith(tok + "."), o)
        # A finished order's token is no longer answered; junk is 404.
        port = int(TB.env["ACME_HTTP01_PORT"])
        for path in ["/.well-known/acme-challenge/" + tok, "/.well-known/acme-challenge/../x", "/",
                     "/.well-known/acme-challenge/" + "a" * 300]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path, headers={"Host": name + ":5002"})
            check(conn.getresponse().status == 404, path)
            conn.close()
        # The key is available through its audited endpoint only.
        pk = s.get("/v1/certificates/%s/private-key" % r["id"], token=key)
        check(pk.status == 200 and "PRIVATE KEY" in pk.text, pk)
    finally:
        s.cleanup()


# ------------------------------------------------- 4. kill -9 under load

def test_kill9_during_20_orders():
    # On a database server a dead process's jobs come back when their leases
    # lapse (on a file, at the next start): a short lease bounds the wait.
    s = server(CERTPLANE_WORKERS="8", **({"CERTPLANE_JOB_LEASE_SECONDS": "15"} if PG else {}))
    try:
        tid, key = s.new_tenant()
        ids = []
        names = [rnd("k") + ".test" for i in range(20)]
        served(s, key, names)
        for i in range(20):
            r = expect(s.post("/v1/certificates", {"source": "acme", "name": "k%d" % i,
                                                   "hostnames": [names[i]]},
                              token=key), 202).json
            ids.append(r["id"])
        # Kill while orders are in flight (the first ones may be done).
        s.wait_for(lambda: any(o["status"] in ("validating", "issuing", "valid")
                               for o in s.list_all("/v1/orders", token=key)),
                   timeout=30, interval=0.02, what="orders under way")
        before = [o["status"] for o in s.list_all("/v1/orders", token=key)]
        s.kill9()
        print("  at kill -9: %s" % {x: before.count(x) for x in set(before)})
        check(any(x != "valid" for x in before), "some orders were in flight at the kill")
        s.start()

        def all_active():
            st = [s.get("/v1/certificates/" + i, token=key).json["status"] for i in ids]
            return st if all(x == "active" for x in st) else None
        try:
            s.wait_for(all_active, timeout=60, interval=0.5, what="20 certificates active")
        except Exception:
            print([s.get("/v1/certificates/" + i, token=key).json["status"] for i in ids])
            print(s.sql("SELECT id, state, run_at, lease_owner, lease_until, last_error FROM jobs"))
            print(s.sql("SELECT id, status, error_reason, error_detail FROM orders WHERE status != 'valid'"))
            raise
        serials = set()
        for cid in ids:
            vs = s.list_all("/v1/certificates/%s/versions" % cid, token=key)
            check(len(vs) == 1, "exactly one version for %s: %r" % (cid, vs))
            serials.add(vs[0]["serial"])
            st, body = pebble_get("/cert-status-by-serial/" + vs[0]["serial"])
            check(st == 200 and json.loads(body)["Status"] == "Valid", body)
        check(len(serials) == 20, serials)
        orders = s.list_all("/v1/orders", token=key)
        check(len(orders) == 20 and all(o["status"] == "valid" for o in orders), orders)
        check(len(events(s, key, "certificate.issued")) == 20, "20 issued events")
        s.stop()
        s.check_db_sound()
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(globals())
