"""test_revocation.py - revocation at the CA, and no certificate outliving
its owner's claim (issue 14, part 4: BygoneSSL), against the real test bed
(Pebble + challtestsrv). Pebble's management API (cert-status-by-serial)
is the judge of what the CA did.

1. POST /v1/certificates/{id}/revoke with the account key (superseded):
   202, audited, the version shows revocation_reason and then revoked_at,
   the certificate stops serving it (version 0, failed/revoked, PEM 409),
   certificate.revoked; Pebble says Revoked with reason 4; POST .../renew
   issues a new current version. A second
   revoke is a 409, a bad reason a 422 naming the field, another tenant's
   id a 404, a self-signed certificate a 409, a foreign version_id a 422.
2. keyCompromise, signed with the certificate's own key: Pebble says
   Revoked with reason 1. The CA unreachable across a restart: the job
   fails, stays queued, and revokes once the CA is back.
3. Takeover: A holds a verified claim and a certificate for a hostname;
   its DNS moves to B, A's claim is demoted, B's claim verifies: A's
   certificate is revoked at Pebble (cessationOfOperation, 5), A gets
   certificate.hostname_lost and certificate.revoked, B gets
   hostname.prior_certificate_revoked naming no id of A's.
4. An operator takes a hostname away from a tenant: its claim is
   released and its certificate naming it revoked at Pebble; its
   certificate for another name stays valid.
5. Deleting a tenant revokes its CA-issued certificates at Pebble.
"""
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, field_error, run  # noqa: E402

TB = Testbed().ensure()


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def server(**extra):
    env = TB.server_env()
    env.update(extra)
    return Server(env=env).start()


def pebble_status(serial):
    """Pebble's view of a certificate: {"Status", "Reason"?, ...}."""
    ctx = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])
    url = "%s/cert-status-by-serial/%s" % (TB.env["PEBBLE_MGMT_URL"], serial)
    with urllib.request.urlopen(url, context=ctx, timeout=10) as r:
        return json.loads(r.read())


def wait_pebble_revoked(s, serial, reason):
    st = s.wait_for(lambda: (lambda p: p if p["Status"] == "Revoked" else None)(
        pebble_status(serial)), timeout=30, what="Pebble shows %s revoked" % serial)
    check(st.get("Reason") == reason, "Pebble's reason for %s: %r, wanted %d" % (serial, st, reason))
    return st


def served(s, key, names):
    """names on a property of key's tenant, CNAMEd to its edge hostname and
    verified: what an HTTP-01 order needs (the issuance scope)."""
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for n in names:
        TB.set_cname(n, eh["hostname"])
    p = expect(s.post("/v1/properties", {"name": "served", "hostnames": names,
                                         "edge_hostname_id": eh["id"]}, token=key), 201).json
    dc = expect(s.get("/v1/properties/%s/dns-check" % p["id"], token=key), 200).json
    check(all(h["verification"]["status"] == "verified" for h in dc["hostnames"]), dc)
    return eh, p


def issued(s, key, names, serve=True, **kw):
    """An ACME certificate of key's tenant for names, once active."""
    if serve:
        served(s, key, names)
    body = {"source": "acme", "name": "c", "hostnames": names}
    body.update(kw)
    c = expect(s.post("/v1/certificates", body, token=key), 202).json
    return s.wait_for(lambda: (lambda x: x if x["status"] == "active" else None)(
        s.get("/v1/certificates/" + c["id"], token=key).json), timeout=60, what="issued")


def versions(s, key, cid):
    return s.list_all("/v1/certificates/%s/versions" % cid, token=key)


def events(s, key, typ):
    return s.list_all("/v1/events", token=key, query={"type": typ})


def revoked_version(s, key, cid, vid):
    v = [x for x in versions(s, key, cid) if x["id"] == vid][0]
    return v if v["revoked_at"] else None


# ------------------------------------------------ 1. by the account key

def test_revoke_with_account_key():
    s = server()
    try:
        _, ka = s.new_tenant("owner")
        _, kb = s.new_tenant("other")
        c = issued(s, ka, [rnd("www") + ".rv.test"])
        v = versions(s, ka, c["id"])[0]
        check(v["revocation_reason"] is None and v["revoked_at"] is None, v)
        path = "/v1/certificates/%s/revoke" % c["id"]

        # Bad input and other tenants first: nothing changes.
        r = expect(s.post(path, {"reason": "bored"}, token=ka), 422)
        check(field_error(r, "reason"), r)
        r = expect(s.post(path, {}, token=ka), 422)
        check(field_error(r, "reason"), r)
        r = expect(s.post(path, {"reason": "superseded", "version_id": str(uuid.uuid4())},
                          token=ka), 422)
        check(field_error(r, "version_id"), r)
        expect(s.post(path, {"reason": "superseded"}, token=kb), 404)
        check(pebble_status(c["serial"])["Status"] == "Valid", "still valid at the CA")
        check(versions(s, ka, c["id"])[0]["revocation_reason"] is None, "nothing marked")

        r = expect(s.post(path, {"reason": "superseded"}, token=ka), 202).json
        check(r["certificate_id"] == c["id"] and r["reason"] == "superseded", r)
        check([x["id"] for x in r["versions"]] == [v["id"]], r)
        check(r["versions"][0]["serial"] == c["serial"], r)
        # At once: never served again.
        now = expect(s.get("/v1/certificates/" + c["id"], token=ka), 200).json
        check(now["version"] == 0 and now["status"] == "failed", now)
        check(now["renewal"]["last_error_reason"] == "revoked", now)
        expect(s.get("/v1/certificates/%s/pem" % c["id"], token=ka), 409)
        v = s.wait_for(lambda: revoked_version(s, ka, c["id"], v["id"]), timeout=30,
                       what="revoked_at")
        check(v["revocation_reason"] == "superseded" and v["revocation_requested_at"], v)
        check(v["current"] is False, v)
        wait_pebble_revoked(s, c["serial"], 4)
        ev = events(s, ka, "certificate.revoked")
        check(len(ev) == 1 and ev[0]["data"]["certificate_id"] == c["id"]
              and ev[0]["data"]["serial"] == c["serial"]
              and ev[0]["data"]["reason"] == "superseded"
              and ev[0]["data"]["cause"] == "requested", ev)
        check(events(s, kb, "certificate.revoked") == [], "nothing to the other tenant")
        audit = s.list_all("/v1/audit-log", token=ka)
        check(any(a["action"] == "certificate.revoke" and a["resource_id"] == c["id"]
                  for a in audit), audit)
        # Nothing left to revoke.
        expect(s.post(path, {"reason": "superseded"}, token=ka), 409)
        # Re-ordered on demand: a new version, valid at the CA, current again.
        expect(s.post("/v1/certificates/%s/renew" % c["id"], token=ka), 202)
        again = s.wait_for(lambda: (lambda x: x if x["status"] == "active" else None)(
            s.get("/v1/certificates/" + c["id"], token=ka).json), timeout=60, what="re-issued")
        check(again["version"] == 2 and again["serial"] != c["serial"], again)
        check(pebble_status(again["serial"])["Status"] == "Valid", again)
        expect(s.get("/v1/certificates/%s/pem" % c["id"], token=ka), 200)

        # Self-signed: no CA can revoke it.
        ss = expect(s.post("/v1/certificates", {"source": "self_signed", "name": "ss",
                                                "hostnames": ["ss.rv.test"]}, token=ka), 201).json
        r = expect(s.post("/v1/certificates/%s/revoke" % ss["id"], {"reason": "unspecified"},
                          token=ka), 409)
        check("uploaded or self-signed" in r.json["detail"], r)
    finally:
        s.cleanup()


# ------------------------------------------------ 2. keyCompromise

def test_revoke_key_compromise_with_certificate_key():
    s = server()
    try:
        _, ka = s.new_tenant("leaked")
        c = issued(s, ka, [rnd("k") + ".rv.test"])
        r = expect(s.post("/v1/certificates/%s/revoke" % c["id"], {"reason": "keyCompromise"},
                          token=ka), 202).json
        vid = r["versions"][0]["id"]
        s.wait_for(lambda: revoked_version(s, ka, c["id"], vid), timeout=30, what="revoked_at")
        wait_pebble_revoked(s, c["serial"], 1)
        # The job signed with the certificate's key (jwk), not the account's.
        lines = [json.loads(l) for l in s.log().splitlines()
                 if l.startswith("{") and '"certificate.revoked"' in l]
        check([(l.get("serial"), l.get("signed_with")) for l in lines]
              == [(c["serial"], "certificate_key")], lines)
    finally:
        s.cleanup()


def test_revocation_waits_out_a_ca_outage():
    s = server()
    try:
        _, key = s.new_tenant("outage")
        c = issued(s, key, [rnd("o") + ".rv.test"])
        good = s.env["CERTPLANE_ACME_DIRECTORY_URL"]
        # The CA unreachable (nothing listens on port 1) across a restart.
        s.env["CERTPLANE_ACME_DIRECTORY_URL"] = "https://127.0.0.1:1/dir"
        s.restart()
        expect(s.post("/v1/certificates/%s/revoke" % c["id"], {"reason": "superseded"},
                      token=key), 202)
        q = "SELECT attempts, state, last_error FROM jobs WHERE kind = 'certificate_revoke'"
        row = s.wait_for(lambda: (lambda r: r[0] if r and r[0][0] >= 1 and r[0][1] == "queued"
                                  else None)(s.sql(q)), timeout=20, what="a failed attempt")
        check("revokeCert" in (row[2] or ""), row)
        check(pebble_status(c["serial"])["Status"] == "Valid", "the CA was not reached")
        check(events(s, key, "certificate.revoked") == [], "no event before the CA's answer")
        # Back: the same job, retried, revokes it.
        s.env["CERTPLANE_ACME_DIRECTORY_URL"] = good
        s.restart()
        wait_pebble_revoked(s, c["serial"], 4)
        s.wait_for(lambda: events(s, key, "certificate.revoked"), timeout=20, what="the event")
        check(len(s.sql(q)) == 1 and s.sql(q)[0][1] == "done", s.sql(q))
    finally:
        s.cleanup()


# ------------------------------------------------ 3. takeover (BygoneSSL)

def test_takeover_revokes_previous_holders_certificate():
    s = server(CERTPLANE_HOSTNAME_RECHECK_SECONDS="1",
               CERTPLANE_HOSTNAME_VERIFIED_RECHECK_SECONDS="1")
    try:
        ta, ka = s.new_tenant("was owner")
        tb, kb = s.new_tenant("new owner")
        ea = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=ka), 201).json
        eb = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=kb), 201).json
        TB.add_a(ea["hostname"])
        TB.add_a(eb["hostname"])
        zone = rnd("to") + ".test"
        name = "www." + zone
        TB.set_cname(name, ea["hostname"])
        pa = expect(s.post("/v1/properties", {"name": "a", "hostnames": [name],
                                              "edge_hostname_id": ea["id"]}, token=ka), 201).json
        dc = expect(s.get("/v1/properties/%s/dns-check" % pa["id"], token=ka), 200).json
        check(dc["hostnames"][0]["verification"]["status"] == "verified", dc)
        ca = issued(s, ka, [name], serve=False)
        # A certificate for another name of A's stays untouched.
        keep = issued(s, ka, ["keep." + zone])

        # The site moves to B: A's claim is demoted, B proves the name.
        TB.set_cname(name, "elsewhere." + zone)

        def pending():
            p = expect(s.get("/v1/properties/" + pa["id"], token=ka), 200).json
            v = [x for x in p["hostname_verification"] if x["hostname"] == name]
            return v and v[0]["status"] == "pending"
        s.wait_for(pending, timeout=30, what="A's claim demoted")
        check(pebble_status(ca["serial"])["Status"] == "Valid", "a demotion alone revokes nothing")
        TB.set_cname(name, eb["hostname"])
        pb = expect(s.post("/v1/properties", {"name": "b", "hostnames": [name],
                                              "edge_hostname_id": eb["id"]}, token=kb), 201).json
        dc = expect(s.get("/v1/properties/%s/dns-check" % pb["id"], token=kb), 200).json
        check(dc["hostnames"][0]["verification"]["status"] == "verified", dc)

        wait_pebble_revoked(s, ca["serial"], 5)
        check(pebble_status(keep["serial"])["Status"] == "Valid", "A's other certificate kept")
        now = expect(s.get("/v1/certificates/" + ca["id"], token=ka), 200).json
        check(now["version"] == 0 and now["renewal"]["last_error_reason"] == "revoked", now)
        # Events to A: the name is lost, then the CA's revocation.
        lost = events(s, ka, "certificate.hostname_lost")
        check(len(lost) == 1 and lost[0]["data"]["certificate_id"] == ca["id"]
              and lost[0]["data"]["hostname"] == name
              and lost[0]["data"]["reason"] == "hostname_verified_by_another_tenant", lost)
        rv = s.wait_for(lambda: events(s, ka, "certificate.revoked"), timeout=20,
                        what="A's certificate.revoked")
        check(len(rv) == 1 and rv[0]["data"]["serial"] == ca["serial"]
              and rv[0]["data"]["reason"] == "cessationOfOperation"
              and rv[0]["data"]["hostname"] == name, rv)
        rel = events(s, ka, "property.hostname_released")
        check(len(rel) == 1 and rel[0]["data"]["reason"] == "verified_by_another_tenant", rel)
        # To B: the previous holder's certificate went, without A's ids.
        pr = s.wait_for(lambda: events(s, kb, "hostname.prior_certificate_revoked"),
                        timeout=20, what="B's event")
        check(len(pr) == 1 and pr[0]["data"]["hostname"] == name
              and pr[0]["data"]["serial"] == ca["serial"], pr)
        text = json.dumps(pr)
        for secret in (ta, ca["id"], pa["id"], ea["id"]):
            check(secret not in text, "B's event leaks A's id %s: %s" % (secret, text))
        check(events(s, kb, "certificate.revoked") == [], "B's own certificates untouched")
        # A re-verification of B's claim revokes nothing more.
        expect(s.get("/v1/properties/%s/dns-check" % pb["id"], token=kb), 200)
        time.sleep(1)
        check(len(events(s, ka, "certificate.hostname_lost")) == 1, "one decision")
        TB.clear_cname(name)
    finally:
        s.cleanup()


def test_takeover_revokes_a_covering_wildcard():
    """A *.zone certificate is valid for www.zone: when another tenant proves
    www.zone, the wildcard's holder no longer controls every name it covers,
    and it goes too (the issuance scope already refuses such a wildcard)."""
    s = server()
    try:
        ta, ka = s.new_tenant("wildcard holder")
        tb, kb = s.new_tenant("subdomain owner")
        zone = rnd("wz") + ".test"
        r = expect(s.post("/v1/certificates", {"source": "acme", "name": "w",
                                               "hostnames": ["*." + zone],
                                               "challenge": "dns-01"}, token=ka), 202).json
        oid, cid = r["order"]["id"], r["id"]
        o = s.wait_for(lambda: (lambda o: o if o["authorizations"] and all(
            a["challenge"] for a in o["authorizations"]) else None)(
            s.get("/v1/orders/" + oid, token=ka).json), timeout=30, what="the TXT record shown")
        for a in o["authorizations"]:
            TB.set_txt(a["challenge"]["txt_record_name"], a["challenge"]["txt_record_value"])
        wc = s.wait_for(lambda: (lambda x: x if x["status"] == "active" else None)(
            s.get("/v1/certificates/" + cid, token=ka).json), timeout=60, what="wildcard issued")
        TB.clear_txt("_acme-challenge." + zone)
        other = issued(s, ka, ["other" + zone])  # not covered: kept
        served(s, kb, ["www." + zone])  # B proves www.zone
        wait_pebble_revoked(s, wc["serial"], 5)
        check(pebble_status(other["serial"])["Status"] == "Valid", "a name not covered is kept")
        lost = events(s, ka, "certificate.hostname_lost")
        check(len(lost) == 1 and lost[0]["data"]["certificate_id"] == cid
              and lost[0]["data"]["hostname"] == "www." + zone, lost)
        pr = s.wait_for(lambda: events(s, kb, "hostname.prior_certificate_revoked"),
                        timeout=20, what="B's event")
        check(len(pr) == 1 and pr[0]["data"]["serial"] == wc["serial"], pr)
    finally:
        s.cleanup()


# ------------------------------------------------ 4. operator withdrawal

def test_operator_withdraws_hostname():
    s = server()
    try:
        tid, key = s.new_tenant("loses a name")
        _, other = s.new_tenant("bystander")
        zone = rnd("op") + ".test"
        name, kept = "www." + zone, "api." + zone
        _, p = served(s, key, [name, kept])
        c = issued(s, key, [name], serve=False)
        ck = issued(s, key, [kept], serve=False)
        path = "/v1/tenants/%s/hostnames/%s" % (tid, name)
        # Only the operator; a malformed name; an unknown tenant.
        expect(s.delete(path, token=key), 403)
        r = expect(s.delete("/v1/tenants/%s/hostnames/Bad_Name" % tid), 422)
        check(field_error(r, "hostname"), r)
        expect(s.delete("/v1/tenants/%s/hostnames/%s" % (uuid.uuid4(), name)), 404)
        check(pebble_status(c["serial"])["Status"] == "Valid", "nothing revoked yet")

        expect(s.delete(path), 204)
        wait_pebble_revoked(s, c["serial"], 5)
        check(pebble_status(ck["serial"])["Status"] == "Valid", "the other name's kept")
        prop = expect(s.get("/v1/properties/" + p["id"], token=key), 200).json
        check(prop["hostnames"] == [kept], prop)
        rel = events(s, key, "property.hostname_released")
        check(len(rel) == 1 and rel[0]["data"]["hostname"] == name
              and rel[0]["data"]["reason"] == "withdrawn_by_operator", rel)
        lost = events(s, key, "certificate.hostname_lost")
        check(len(lost) == 1 and lost[0]["data"]["certificate_id"] == c["id"]
              and lost[0]["data"]["reason"] == "withdrawn_by_operator", lost)
        s.wait_for(lambda: events(s, key, "certificate.revoked"), timeout=20,
                   what="certificate.revoked")
        audit = s.list_all("/v1/audit-log", token=key)
        check(any(a["action"] == "hostname.withdraw" and a["resource_id"] == name
                  for a in audit), audit)
        check(events(s, other, "certificate.hostname_lost") == [], "nothing to a bystander")
        # Nothing left to take away.
        expect(s.delete(path), 404)
    finally:
        s.cleanup()


# ------------------------------------------------ 5. tenant deletion

def test_tenant_deletion_revokes_its_certificates():
    s = server()
    try:
        tid, key = s.new_tenant("leaving")
        c1 = issued(s, key, [rnd("d") + ".rv.test"])
        c2 = issued(s, key, [rnd("d") + ".rv.test", rnd("d") + ".rv.test"])
        _, other = s.new_tenant("staying")
        c3 = issued(s, other, [rnd("s") + ".rv.test"])
        expect(s.delete("/v1/tenants/" + tid), 204)
        wait_pebble_revoked(s, c1["serial"], 5)
        wait_pebble_revoked(s, c2["serial"], 5)
        check(pebble_status(c3["serial"])["Status"] == "Valid", "another tenant's kept")
        # The jobs' work is done: nothing of the deleted tenant is left queued.
        left = s.sql("SELECT count(*) FROM jobs WHERE kind = 'certificate_revoke' "
                     "AND state != 'done'")
        check(left[0][0] == 0, left)
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(globals())
