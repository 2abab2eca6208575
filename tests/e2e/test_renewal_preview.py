"""test_renewal_preview.py - the renewal plan end to end (issue 10): GET
/v1/certificates/{id}/renewal-preview and SAN changes as orders of their own,
against Pebble + challtestsrv (harness.Testbed().ensure()), scheduler tick 1 s
(the harness default), renewal backoff 2 s.

1. An ACME-renewable certificate: a self-signed bootstrap for two names
   (listed in the other order than its property's hostnames), a property
   with renew automation CNAMEd to its edge hostname, deployed to
   production. The scheduler renews it: a plain renewal requests exactly the
   previous version's SAN set (sorted), and the new version has it. Its
   preview then says when (renew_after = the certificate's
   renewal.renew_after, reason "lifetime") and what (sans, ca, challenge,
   key type), with no blocker.
2. Blockers per hostname: a not-pointed hostname (not_pointed, and
   not_verified: its claim is pending), a hostname another tenant verified
   (owned_by_another_tenant), an uploaded wildcard certificate renewed with
   HTTP-01 and no production property (wildcard, no_production_property).
3. Tenant scope: another tenant's certificate id is 404, as for GET.
4. SAN change: the property gains a hostname and is deployed: the preview
   says san_change with the name added, the re-order is placed within
   seconds (not at the renewal window, years away), fails while the new
   name is not pointed (the preview names it), and once it is pointed a new
   version covers the new set; the property then loses a name and the next
   version drops it; a manual renewal (POST .../renew) then requests exactly
   that set, sorted.
"""
import calendar
import os
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()
SOON = 15  # seconds: a SAN change is re-ordered within this (tick 1 s)


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def ts(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def edge(s, key):
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    return eh


def deploy(s, key, prop_id):
    return expect(s.post("/v1/properties/%s/deployments" % prop_id,
                         {"environment": "production"}, token=key), 201).json


def current(s, key, cid):
    return expect(s.get("/v1/certificates/" + cid, token=key), 200).json


def orders_of(s, key, cid):
    return sorted(s.list_all("/v1/orders", token=key, query={"certificate_id": cid}),
                  key=lambda o: (ts(o["created_at"]), o["id"]))


def preview(s, key, cid):
    p = expect(s.get("/v1/certificates/%s/renewal-preview" % cid, token=key), 200).json
    check(p["certificate_id"] == cid, p)
    check(p["ready"] == (p["blockers"] == []), p)
    return p


def reasons(p):
    """{hostname: set of reason codes} of a preview's blockers."""
    out = {}
    for b in p["blockers"]:
        out.setdefault(b["hostname"], set()).add(b["reason"])
        check(b["detail"], "every blocker has a detail: %r" % b)
    return out


def wildcard_pem(names):
    """A self-signed certificate and key for names (PEM strings)."""
    d = tempfile.mkdtemp(prefix="preview-")
    crt, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "20", "-subj", "/CN=" + names[0], "-addext",
                        "subjectAltName=" + ",".join("DNS:" + n for n in names),
                        "-addext", "basicConstraints=critical,CA:FALSE"],
                       capture_output=True, text=True)
    check(p.returncode == 0, "openssl: %s" % p.stderr)
    return open(crt).read(), open(key).read()


def test_renewal_preview_and_san_change():
    env = TB.server_env()
    env.update({"CERTPLANE_RENEW_BACKOFF_SECONDS": "[2,2,2]"})
    s = Server(env=env).start()
    try:
        _, key = s.new_tenant("preview-a")
        _, other = s.new_tenant("preview-b")
        zone = rnd("pv") + ".test"
        www, shop, new = "www." + zone, "shop." + zone, "new." + zone

        # ---- 1. a plain renewal, then the preview of an ACME-renewable certificate
        eh = edge(s, key)
        for n in (www, shop):
            TB.set_cname(n, eh["hostname"])
        cert = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "preview", "hostnames": [shop, www],
            "validity_days": 10, "auto_renew": "letsencrypt"}, token=key), 201).json
        cid = cert["id"]
        v1_sans = cert["sans"]
        prop = expect(s.post("/v1/properties", {
            "name": "shop", "hostnames": [www, shop], "edge_hostname_id": eh["id"],
            "certificate_id": cid, "certificate_renew_automation": True}, token=key), 201).json
        deploy(s, key, prop["id"])
        s.wait_for(lambda: current(s, key, cid)["version"] == 2, timeout=30,
                   what="the bootstrap renewed")
        c = current(s, key, cid)
        check(sorted(c["sans"]) == sorted(v1_sans), "a plain renewal keeps the SANs: %r -> %r"
              % (v1_sans, c["sans"]))
        os_ = orders_of(s, key, cid)
        check(len(os_) == 1 and os_[0]["kind"] == "renew", os_)
        check(os_[0]["identifiers"] == sorted(v1_sans),
              "the renewal requested exactly the previous SAN set, sorted: %r"
              % os_[0]["identifiers"])
        p = preview(s, key, cid)
        check(p["renew_after"] == c["renewal"]["renew_after"],
              "preview renew_after %r = renewal.renew_after %r"
              % (p["renew_after"], c["renewal"]["renew_after"]))
        check(ts(p["renew_after"]) > time.time() + 86400, "the next window is far: %r" % p)
        check(p["reason"] == "lifetime", p)
        r = p["request"]
        check(r["sans"] == sorted(v1_sans) and r["san_changed"] is False, r)
        check(r["added"] == [] and r["removed"] == [], r)
        check(r["ca"] == "letsencrypt" and r["challenge"] == "http-01", r)
        check(r["key_type"] == c["key_type"] and r["profile"] is None, r)
        check(p["blockers"] == [] and p["ready"] is True, p)
        check(p["order_in_flight"] is None and p["backoff_until"] is None, p)

        # ---- 2. blockers per hostname
        zone2 = rnd("pb") + ".test"
        ok, unpointed, taken = "ok." + zone2, "away." + zone2, "taken." + zone2
        eh2 = edge(s, key)
        TB.set_cname(ok, eh2["hostname"])
        blocked = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "blocked", "hostnames": [ok, unpointed, taken],
            "validity_days": 10, "auto_renew": "letsencrypt"}, token=key), 201).json
        prop2 = expect(s.post("/v1/properties", {
            "name": "blocked", "hostnames": [ok, unpointed, taken],
            "edge_hostname_id": eh2["id"], "certificate_id": blocked["id"],
            "certificate_renew_automation": True}, token=key), 201).json
        deploy(s, key, prop2["id"])
        # Then the other tenant claims taken.* and verifies it (CNAME to its
        # edge): the deployed set still lists it.
        eh_b = edge(s, other)
        TB.set_cname(taken, eh_b["hostname"])
        prop_b = expect(s.post("/v1/properties", {
            "name": "theirs", "hostnames": [taken], "edge_hostname_id": eh_b["id"]},
            token=other), 201).json
        chk = expect(s.get("/v1/properties/%s/dns-check" % prop_b["id"], token=other), 200).json
        check(chk["hostnames"][0]["verification"]["status"] == "verified", chk)
        p = preview(s, key, blocked["id"])
        got = reasons(p)
        print("   blockers: %r" % {h: sorted(v) for h, v in got.items()})
        check(p["ready"] is False, p)
        check(ok not in got, "a pointed, claimed hostname has no blocker: %r" % got)
        check("not_pointed" in got.get(unpointed, ()), got)
        check("not_verified" in got.get(unpointed, ()), got)
        check("owned_by_another_tenant" in got.get(taken, ()), got)
        check(p["request"]["sans"] == sorted([ok, unpointed, taken]), p)

        zone3 = rnd("pw") + ".test"
        pem, kpem = wildcard_pem(["*." + zone3, zone3])
        wild = expect(s.post("/v1/certificates", {
            "source": "upload", "name": "wild", "certificate": pem, "private_key": kpem,
            "auto_renew": "letsencrypt"}, token=key), 201).json
        p = preview(s, key, wild["id"])
        got = reasons(p)
        check(p["request"]["challenge"] == "http-01", p)
        check(p["request"]["sans"] == sorted(["*." + zone3, zone3]), p)
        check(got.get("*." + zone3, set()) >= {"wildcard", "no_production_property"}, got)
        check("no_production_property" in got.get(zone3, ()), got)
        check("wildcard" not in got.get(zone3, ()), got)
        check(p["reason"] == "bootstrap", p)

        # ---- 3. tenant scope
        expect(s.get("/v1/certificates/%s/renewal-preview" % cid, token=other), 404)
        expect(s.get("/v1/certificates/%s/renewal-preview" % uuid.uuid4(), token=key), 404)
        expect(s.get("/v1/certificates/%s" % cid, token=other), 404)

        # ---- 4. a SAN change is an order of its own, placed at once
        v2 = current(s, key, cid)
        expect(s.patch("/v1/properties/" + prop["id"], {"hostnames": [www, shop, new]},
                       token=key), 200)
        time.sleep(2)  # not deployed yet: no order
        check(len(orders_of(s, key, cid)) == 1, "a property change alone orders nothing")
        check(preview(s, key, cid)["request"]["san_changed"] is False, "not deployed yet")
        t_deploy = ts(deploy(s, key, prop["id"])["created_at"])
        # new.* is not pointed yet: the re-order starts and fails on it.
        s.wait_for(lambda: current(s, key, cid)["renewal"]["failure_count"] >= 1, timeout=SOON,
                   what="the re-order tried (and failed on the unpointed name)")
        os_ = orders_of(s, key, cid)[1:]  # after the first renewal
        check(os_ and all(o["identifiers"] == sorted([www, shop, new]) for o in os_), os_)
        check(ts(os_[0]["created_at"]) - t_deploy <= SOON,
              "re-ordered %d s after the deployment" % (ts(os_[0]["created_at"]) - t_deploy))
        print("   re-ordered %d s after the deployment" % (ts(os_[0]["created_at"]) - t_deploy))
        p = preview(s, key, cid)
        check(p["request"]["san_changed"] is True and p["request"]["added"] == [new], p)
        check(p["request"]["removed"] == [], p)
        check(p["request"]["sans"] == sorted([www, shop, new]), p)
        check(p["reason"] == "san_change", p)
        check(ts(p["renew_after"]) <= time.time() + 5, "due now (or after the backoff): %r" % p)
        check("not_pointed" in reasons(p).get(new, ()), p)
        TB.set_cname(new, eh["hostname"])
        s.wait_for(lambda: current(s, key, cid)["version"] == 3, timeout=30,
                   what="a version covering the new name")
        c = current(s, key, cid)
        check(sorted(c["sans"]) == sorted([www, shop, new]), c["sans"])
        check(c["renewal"]["renew_after"] == preview(s, key, cid)["renew_after"], "settled")
        check(preview(s, key, cid)["request"]["san_changed"] is False, "no change left")
        check(ts(c["renewal"]["renew_after"]) > time.time() + 86400, "back to the window")
        n_orders = len(orders_of(s, key, cid))
        # Loses a name: the next version drops it.
        expect(s.patch("/v1/properties/" + prop["id"], {"hostnames": [www, new]}, token=key),
               200)
        deploy(s, key, prop["id"])
        s.wait_for(lambda: current(s, key, cid)["version"] == 4, timeout=SOON + 15,
                   what="a version without the lost name")
        c = current(s, key, cid)
        check(sorted(c["sans"]) == sorted([www, new]), c["sans"])
        os_ = orders_of(s, key, cid)
        check(len(os_) == n_orders + 1 and os_[-1]["identifiers"] == sorted([www, new]), os_)
        check(v2["version"] == 2, v2)
        # A manual renewal with the set unchanged: exactly the previous SAN
        # set, sorted (not the deployment's order).
        o = expect(s.post("/v1/certificates/%s/renew" % cid, token=key), 202).json
        check(o["identifiers"] == sorted([www, new]), o)
        s.wait_for(lambda: current(s, key, cid)["version"] == 5, timeout=30,
                   what="the manual renewal")
        check(sorted(current(s, key, cid)["sans"]) == sorted([www, new]), "same SANs")
        # Settled: no loop of re-orders.
        time.sleep(3)
        check(len(orders_of(s, key, cid)) == n_orders + 2, "no further order")
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(globals())
