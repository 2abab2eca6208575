"""test_dcv_delegation.py - delegated DNS-01 (DCV delegation, issue 14) on a
real DNS server: Knot DNS authoritative for the delegation zone dcv.test
(TSIG update ACL) and the tenants' zone tenant.test, Unbound as the
recursive resolver in front (tests/testbed/dns-testbed) that Pebble's VA
(ACME_TESTBED_DNS_SERVER) and certplane's dns_resolver both ask.

1. A tenant sets once the CNAME _acme-challenge.<host> -> <label>.dcv.test
   that GET /v1/properties/{id}/dcv-delegation shows; the check finds it in
   place and it verifies the tenant's claim of the hostname. A wildcard +
   apex certificate (LIFE-second validity) is issued and then renewed by
   the scheduler with no tenant action at all (no webhook configured, no
   order.dns_challenge_required event, challenge.delegated true); the TXT
   records certplane wrote are gone from Knot afterwards (asked directly).
2. A second tenant pointing its CNAME at the first tenant's label gets no
   delegation (in_place false), no verified claim, and its DNS-01 order
   takes the webhook path: certplane writes nothing in dcv.test for it. It
   cannot read the first tenant's delegation either.
3. Crash-safe cleanup: a record journaled in dcv_records for an order that
   is over (a run that died between write and removal) is removed from
   Knot and from the journal by the cleanup tick; so is the record of a
   delegated order canceled while it waited.
4. Knot's update ACL holds: a server with another TSIG secret is refused,
   its order backs off (dcv_update_failed), nothing is written.
5. The TSIG secret is in no log line, API response, check-config output or
   database row (the SQLite file and WAL, or pg_dump on PostgreSQL).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (PG, SRC, Server, Testbed, check, expect, run)  # noqa: E402

DNS_SCRIPT = os.path.join(SRC, "tests", "testbed", "dns-testbed")
DNS_DIR = tempfile.mkdtemp(prefix="cp-dns-testbed-")
LIFE = 30  # seconds of certificate validity: renewed at half of it
KNOT = ("127.0.0.1", "5300")
RESOLVER = "127.0.0.1:8054"

TB = Testbed()
RESPONSES = []  # the text of every API response, for the secret check
STATE = {}


def dns_env():
    env = {}
    with open(os.path.join(DNS_DIR, "env")) as f:
        for line in f:
            if line.startswith("export "):
                k, v = line[7:].strip().split("=", 1)
                env[k] = v
    return env


def setup():
    subprocess.run([DNS_SCRIPT, "start", DNS_DIR], check=True, timeout=60,
                   stdout=subprocess.DEVNULL)
    TB.stop()
    TB.start({"ACME_TESTBED_DNS_SERVER": RESOLVER,
              "ACME_TESTBED_CERT_VALIDITY_SECONDS": str(LIFE),
              "PEBBLE_AUTHZREUSE": "0"})
    d = dns_env()
    with open(d["DNS_TESTBED_TSIG_SECRET_FILE"]) as f:
        STATE["secret"] = f.read().strip()
    check(len(STATE["secret"]) >= 40, "a TSIG secret")
    env = TB.server_env()
    env.update({
        "CERTPLANE_DNS_RESOLVER": RESOLVER,
        "CERTPLANE_DCV_ZONE": d["DNS_TESTBED_DCV_ZONE"],
        "CERTPLANE_DCV_SERVER": d["DNS_TESTBED_KNOT"],
        "CERTPLANE_DCV_TSIG_NAME": d["DNS_TESTBED_TSIG_NAME"],
        "CERTPLANE_DCV_TSIG_SECRET": STATE["secret"],
        "CERTPLANE_HOSTNAME_RECHECK_SECONDS": "1",
        "CERTPLANE_RENEW_BACKOFF_SECONDS": "[2,2,2]",
        "CERTPLANE_DNS01_TIMEOUT_SECONDS": "120",
        "CERTPLANE_LOG_LEVEL": "debug",
    })
    STATE["s"] = Server(env=env).start()


def teardown():
    s = STATE.get("s")
    if s:
        s.cleanup()
    subprocess.run([DNS_SCRIPT, "stop", DNS_DIR], capture_output=True, timeout=60)
    shutil.rmtree(DNS_DIR, ignore_errors=True)
    TB.stop()
    TB.start()


def rnd(prefix):
    return "%s%s" % (prefix, uuid.uuid4().hex[:8])


def api(method, path, body=None, key=None, status=200):
    s = STATE["s"]
    r = s.request(method, path, body=body, token=key)
    RESPONSES.append(r.text)
    return expect(r, status).json


def knotc(*args):
    p = subprocess.run(["knotc", "-s", os.path.join(DNS_DIR, "knot.sock")] + list(args),
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "knotc %s: %s %s" % (args, p.stdout, p.stderr))
    return p.stdout


def knot_set(owner, rtype, data, zone="tenant.test"):
    """The tenant's one action: a record in its zone (through Knot's control)."""
    knotc("zone-begin", zone)
    knotc("zone-set", zone, owner, "1", rtype, data)
    knotc("zone-commit", zone)


def knot_txt(name):
    """TXT values at name, asked from Knot itself (not through Unbound)."""
    p = subprocess.run(["kdig", "@" + KNOT[0], "-p", KNOT[1], name, "TXT", "+short",
                        "+norecurse", "+timeout=2"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, "kdig %s: %s" % (name, p.stderr))
    return [l.strip().strip('"') for l in p.stdout.splitlines() if l.strip()]


def dcv_zone_txt():
    """Every TXT record of dcv.test as Knot holds it (its whole contents)."""
    return [l for l in knotc("zone-read", "dcv.test").splitlines() if " TXT " in l]


def events(key, typ):
    return STATE["s"].list_all("/v1/events", token=key, query={"type": typ})


def delegation(key, pid):
    return api("GET", "/v1/properties/%s/dcv-delegation" % pid, key=key)


def property_for(key, names):
    eh = api("POST", "/v1/edge-hostnames", {"label": rnd("e")}, key=key, status=201)
    return api("POST", "/v1/properties", {"name": "site", "hostnames": names,
                                          "edge_hostname_id": eh["id"]}, key=key, status=201)


def test_delegated_wildcard_and_apex_issued_and_renewed_without_tenant():
    s = STATE["s"]
    tid, key = s.new_tenant("delegating")
    host = rnd("shop") + ".tenant.test"
    names = ["*." + host, host]
    prop = property_for(key, names)
    d = delegation(key, prop["id"])
    check(d["zone"] == "dcv.test" and len(d["hostnames"]) == 2, d)
    w, apex = d["hostnames"]
    check(w["record_name"] == apex["record_name"] == "_acme-challenge." + host, d)
    check(w["target"] == apex["target"] and w["target"].endswith(".dcv.test"), d)
    label = w["target"].split(".")[0]
    check(len(label) == 24 and all(c in "abcdefghijklmnopqrstuvwxyz234567" for c in label), label)
    check(w["type"] == "CNAME" and w["in_place"] is False, w)
    # The label is stable and says nothing about tenant or hostname.
    check(delegation(key, prop["id"])["hostnames"][0]["target"] == w["target"], "stable")
    check(host.split(".")[0] not in label and tid.replace("-", "")[:8] not in label, label)
    STATE["a"] = {"key": key, "pid": prop["id"], "target": w["target"], "host": host}

    # The tenant's one action: the CNAME.
    knot_set(w["record_name"] + ".", "CNAME", w["target"] + ".")
    s.wait_for(lambda: all(h["in_place"] and h["checked_at"]
                           for h in delegation(key, prop["id"])["hostnames"]),
               timeout=20, what="delegation in place")
    # Each hostname's claim job records its own verification: the first one
    # to see the CNAME shows it in place for both (one base), the other
    # claim follows when its job runs.
    def claims():
        p = api("GET", "/v1/properties/" + prop["id"], key=key)
        return p["hostname_verification"]
    s.wait_for(lambda: all(v["status"] == "verified" for v in claims()), timeout=30,
               what="the delegation verifies the claims")
    check(all(v["method"] == "cname" and "DCV delegation" in v["detail"] for v in claims()),
          "verified by the delegation: %r" % claims())

    c = api("POST", "/v1/certificates", {
        "source": "acme", "name": "wild", "hostnames": names, "challenge": "dns-01",
        "auto_renew": "letsencrypt"}, key=key, status=202)
    cid = c["id"]

    def active():
        c = api("GET", "/v1/certificates/" + cid, key=key)
        return c if c["status"] in ("active", "failed") else None
    c = s.wait_for(active, timeout=45, what="issued")
    check(c["status"] == "active" and sorted(c["sans"]) == sorted(names), c)
    # Renewed by the scheduler: the property carries it in production.
    api("PATCH", "/v1/properties/" + prop["id"], {"certificate_id": cid,
                                                  "certificate_renew_automation": True},
        key=key)
    api("POST", "/v1/properties/%s/deployments" % prop["id"], {"environment": "production"},
        key=key, status=201)

    def renewed():
        vs = s.list_all("/v1/certificates/%s/versions" % cid, token=key)
        return vs if len(vs) >= 2 else None
    vs = s.wait_for(renewed, timeout=LIFE + 30, what="the renewal")
    orders = s.list_all("/v1/orders", token=key, query={"certificate_id": cid})
    kinds = sorted(o["kind"] for o in orders if o["status"] == "valid")
    check("issue" in kinds and "renew" in kinds, orders)
    for o in orders:
        if o["status"] != "valid":
            continue
        check(len(o["authorizations"]) == 2, o)
        for a in o["authorizations"]:
            ch = a["challenge"]
            # an authorization the CA reused (valid already: Pebble reuses
            # half of them) had nothing published; any other was delegated
            reused = ch is not None and ch["txt_record_name"] is None
            check(ch is None or reused or (ch["type"] == "dns-01" and ch["delegated"] is True),
                  a)
    check(any(a["challenge"] and a["challenge"]["delegated"]
              for o in orders for a in o["authorizations"]), "delegated authorizations")
    # No tenant action: nothing was announced to the tenant.
    check(events(key, "order.dns_challenge_required") == [], "no announcement")
    check(len(events(key, "certificate.renewed")) >= 1, "certificate.renewed")
    # The TXT records are gone from Knot (once the last order released them).
    s.wait_for(lambda: knot_txt(w["target"]) == [] and dcv_zone_txt() == [], timeout=15,
               what="TXT records removed: %r" % dcv_zone_txt())
    check(s.sql("SELECT count(*) FROM dcv_records") == [(0,)], "journal empty")
    check(len(vs) >= 2, vs)


def test_other_tenant_pointing_at_a_label_gets_no_delegation():
    s = STATE["s"]
    a = STATE["a"]
    tid_b, key_b = s.new_tenant("hijacker")
    host_b = rnd("evil") + ".tenant.test"
    prop_b = property_for(key_b, [host_b])
    # B cannot read A's delegation.
    expect(s.get("/v1/properties/%s/dcv-delegation" % a["pid"], token=key_b), 404)
    # Nor order A's delegated (and so verified) name: certplane would never
    # write at A's label for B.
    r = s.post("/v1/certificates", {"source": "acme", "name": "steal", "hostnames": [a["host"]],
                                    "challenge": "dns-01"}, token=key_b)
    RESPONSES.append(r.text)
    check(r.status == 409 and "hostname_owned_by_another_tenant" in r.text,
          "B orders A's name: %r" % r)
    own = delegation(key_b, prop_b["id"])["hostnames"][0]
    check(own["target"] != a["target"], "each tenant has its own label")
    # B points its name at A's label.
    knot_set("_acme-challenge.%s." % host_b, "CNAME", a["target"] + ".")
    got = s.wait_for(lambda: [h for h in delegation(key_b, prop_b["id"])["hostnames"]
                              if h["checked_at"]], timeout=20, what="B's delegation checked")
    check(got[0]["in_place"] is False, got)
    p = api("GET", "/v1/properties/" + prop_b["id"], key=key_b)
    check(p["hostname_verification"][0]["status"] != "verified", p)
    before = dcv_zone_txt()
    c = api("POST", "/v1/certificates", {"source": "acme", "name": "b", "hostnames": [host_b],
                                         "challenge": "dns-01"}, key=key_b, status=202)
    ev = s.wait_for(lambda: events(key_b, "order.dns_challenge_required"), timeout=20,
                    what="B's challenge announced (webhook path)")
    check(ev[0]["data"]["txt_record_name"] == "_acme-challenge." + host_b, ev)
    order = s.list_all("/v1/orders", token=key_b, query={"certificate_id": c["id"]})[0]
    check(all(au["challenge"]["delegated"] is False for au in order["authorizations"]), order)
    time.sleep(3)  # B's order keeps polling: still nothing written for it
    check(dcv_zone_txt() == before == [], "nothing written in dcv.test: %r" % dcv_zone_txt())
    check(knot_txt(a["target"]) == [], "nothing at A's label")
    check(s.sql("SELECT count(*) FROM dcv_records WHERE tenant_id = ?", tid_b) == [(0,)], "")
    api("POST", "/v1/orders/%s/cancel" % order["id"], key=key_b)


def test_leftover_record_removed_by_cleanup():
    """As after a crash between the write and the removal: a journaled
    record of an order that no longer runs is removed from the zone."""
    s = STATE["s"]
    a = STATE["a"]
    value = "leftover" + uuid.uuid4().hex[:20]
    knot_set(a["target"] + ".", "TXT", value, zone="dcv.test")
    check(knot_txt(a["target"]) == [value], knot_txt(a["target"]))
    check(len(dcv_zone_txt()) == 1 and value in dcv_zone_txt()[0], dcv_zone_txt())
    tid = s.sql("SELECT id FROM tenants WHERE name = 'delegating'")[0][0]
    s.sql("INSERT INTO dcv_records (tenant_id, order_id, name, value, created_at) "
          "VALUES (?, ?, ?, ?, ?)", tid, str(uuid.uuid4()), a["target"], value, int(time.time()))
    s.wait_for(lambda: knot_txt(a["target"]) == [], timeout=15, what="leftover removed")
    check(s.sql("SELECT count(*) FROM dcv_records") == [(0,)], "journal row removed")


def test_canceled_order_record_removed():
    """A delegated record written for an order that is then canceled goes
    from the zone. This server's resolver is challtestsrv, which holds the
    delegation CNAME but not Knot's zone: the record is written (Knot) but
    never visible to it, so the order waits until it is canceled."""
    env = dict(STATE["s"].env)
    for k in ("CERTPLANE_LISTEN", "CERTPLANE_DATA_DIR", "CERTPLANE_DATABASE"):
        env.pop(k, None)
    env["CERTPLANE_DNS_RESOLVER"] = TB.env["DNS_RESOLVER"]
    s3 = Server(env=env).start()
    try:
        _, key = s3.new_tenant("canceling")
        host = rnd("cx") + ".tenant.test"
        eh = expect(s3.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
        prop = expect(s3.post("/v1/properties", {"name": "c", "hostnames": [host],
                                                  "edge_hostname_id": eh["id"]}, token=key),
                      201).json
        d = expect(s3.get("/v1/properties/%s/dcv-delegation" % prop["id"], token=key),
                   200).json["hostnames"][0]
        TB.set_cname(d["record_name"], d["target"])
        s3.wait_for(lambda: expect(s3.get("/v1/properties/%s/dcv-delegation" % prop["id"],
                                          token=key), 200).json["hostnames"][0]["in_place"],
                    timeout=20, what="the delegation in place")
        c = expect(s3.post("/v1/certificates", {"source": "acme", "name": "c",
                                                "hostnames": [host], "challenge": "dns-01"},
                           token=key), 202).json

        def written():
            os_ = s3.list_all("/v1/orders", token=key, query={"certificate_id": c["id"]})
            au = os_[0]["authorizations"][0] if os_ and os_[0]["authorizations"] else None
            ch = au and au["challenge"]
            return (os_[0], ch["txt_record_value"]) if ch and ch["delegated"] else None
        o, value = s3.wait_for(written, timeout=20, what="the record written")
        check(knot_txt(d["target"]) == [value], knot_txt(d["target"]))
        check(o["status"] in ("pending", "validating"), o)
        expect(s3.post("/v1/orders/%s/cancel" % o["id"], token=key), 200)
        s3.wait_for(lambda: knot_txt(d["target"]) == [], timeout=15,
                    what="the canceled order's record removed")
        check(s3.sql("SELECT count(*) FROM dcv_records") == [(0,)], "journal empty")
        check(STATE["secret"] not in s3.log(), "no secret in the log")
        TB.clear_cname(d["record_name"])
    finally:
        s3.cleanup()


def test_wrong_tsig_key_is_refused_by_knot():
    """Knot's update ACL really asks for the key: a server with another
    secret gets its UPDATE refused, its order backs off with
    dcv_update_failed, and nothing lands in the zone."""
    env = dict(STATE["s"].env)
    for k in ("CERTPLANE_LISTEN", "CERTPLANE_DATA_DIR", "CERTPLANE_DATABASE"):
        env.pop(k, None)
    wrong = "d3JvbmctZGN2LXNlY3JldC13cm9uZy1kY3Ytc2VjcmV0LXc="
    env["CERTPLANE_DCV_TSIG_SECRET"] = wrong
    s2 = Server(env=env).start()
    try:
        _, key = s2.new_tenant("wrong-key")
        host = rnd("wk") + ".tenant.test"
        eh = expect(s2.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
        prop = expect(s2.post("/v1/properties", {"name": "w", "hostnames": [host],
                                                  "edge_hostname_id": eh["id"]}, token=key),
                      201).json
        d = expect(s2.get("/v1/properties/%s/dcv-delegation" % prop["id"], token=key),
                   200).json["hostnames"][0]
        knot_set(d["record_name"] + ".", "CNAME", d["target"] + ".")
        s2.wait_for(lambda: expect(s2.get("/v1/properties/%s/dcv-delegation" % prop["id"],
                                          token=key), 200).json["hostnames"][0]["in_place"],
                    timeout=20, what="the delegation in place")
        c = expect(s2.post("/v1/certificates", {"source": "acme", "name": "w",
                                                "hostnames": [host], "challenge": "dns-01"},
                           token=key), 202).json

        def refused():
            os_ = s2.list_all("/v1/orders", token=key, query={"certificate_id": c["id"]})
            e = os_[0].get("error") if os_ else None
            return os_[0] if e and e.get("reason") == "dcv_update_failed" else None
        try:
            o = s2.wait_for(refused, timeout=30, what="the refused UPDATE reported")
        except Exception:
            print(s2.list_all("/v1/orders", token=key), s2.log()[-3000:])
            raise
        check(o["status"] in ("pending", "validating"), "a backoff, not a failure: %r" % o)
        check(knot_txt(d["target"]) == [] and dcv_zone_txt() == [], "nothing written")
        log = s2.log()
        check("refused by" in log or "failed" in log, "the refusal is logged")
        check(wrong not in log and STATE["secret"] not in log, "no secret in the log")
        expect(s2.post("/v1/orders/%s/cancel" % o["id"], token=key), 200)
    finally:
        s2.cleanup()


def test_tsig_secret_nowhere():
    s = STATE["s"]
    secret = STATE["secret"]
    cfg = s.run("check-config")
    check(secret not in cfg.stdout + cfg.stderr, "check-config shows the secret")
    check('"dcv_tsig_secret": "<redacted>"' in cfg.stdout or
          '"dcv_tsig_secret":"<redacted>"' in cfg.stdout, cfg.stdout[:2000])
    check(len(RESPONSES) > 10, "responses collected")
    for text in RESPONSES:
        check(secret not in text, "the secret in a response: %s" % text[:200])
    log = s.log()
    check("dcv.published" in log, "the server logged its delegated writes")
    check(secret not in log, "the secret in the log")
    if PG:
        data = s.pg_dump()
    else:
        s.stop()
        data = b""
        db = os.path.join(s.data_dir, "certplane.db")
        for f in (db, db + "-wal"):
            if os.path.exists(f):
                with open(f, "rb") as fh:
                    data += fh.read()
        s.start()
    check(len(data) > 10000, "a database to search")
    check(secret.encode() not in data, "the secret at rest in the database")


def main():
    try:
        setup()
    except Exception:
        teardown()
        raise
    try:
        run({k: v for k, v in globals().items() if k.startswith("test_")})
    finally:
        teardown()


if __name__ == "__main__":
    main()
