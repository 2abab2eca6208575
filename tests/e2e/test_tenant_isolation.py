"""test_tenant_isolation.py - hostname ownership and issuance scope (issue 9),
one tenant attacking another, against the real test bed (Pebble +
challtestsrv, harness.Testbed().ensure()).

1. B orders A's CNAME-verified hostname: http-01 and dns-01 refused at
   creation (409 hostname_owned_by_another_tenant); an order that reaches
   the worker anyway (a renewal from B's frozen deployment) fails there
   before any CA request; A's certificate and property unchanged, A's
   latency within 2x idle.
2. Names of the edge zone and edge hostnames (B's own too) are refused.
3. Squatting: B's pending claim never blocks A; A's CNAME verifies A's
   claim, B's claim is released with an event to B, B then gets 409.
4. TXT-token verification; dns-check records and shows verification.
5. Background verification (no dns-check) once the CNAME appears; claim TTL
   expiry (hostname_claim_ttl_seconds) releases a pending claim only.
   A verified claim is re-checked: a DNS error (a CNAME loop) never counts,
   three answered negative checks demote it to pending (event), and another
   tenant can then take the hostname.
6. The DNS budget is a deadline: dns-check against a resolver that never
   answers returns at 20 s, not after every per-query timeout.

Fresh random hostnames everywhere: Pebble reuses valid authorizations.
"""
import os
import socket
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, field_error, run  # noqa: E402

TB = Testbed().ensure()
EDGE_ZONE = "edge.certplane.localhost"  # the default edge_zone


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def server(**extra):
    env = TB.server_env()
    env.update({"CERTPLANE_RENEW_BACKOFF_SECONDS": "[1,1,1]"})
    env.update(extra)
    return Server(env=env).start()


def edge(s, key):
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    return eh


def prop(s, key, eh, names, status=201, **kw):
    body = {"name": "p", "hostnames": names, "edge_hostname_id": eh["id"]}
    body.update(kw)
    return expect(s.post("/v1/properties", body, token=key), status)


def verification(s, key, pid, name):
    p = expect(s.get("/v1/properties/" + pid, token=key), 200).json
    got = [v for v in p["hostname_verification"] if v["hostname"] == name]
    return got[0] if got else None


def dns_check(s, key, pid):
    return expect(s.get("/v1/properties/%s/dns-check" % pid, token=key), 200).json


def events(s, key, typ):
    return s.list_all("/v1/events", token=key, query={"type": typ})


def latency_ms(s, key, path, n=25):
    times = []
    for _ in range(n):
        t0 = time.monotonic()
        expect(s.get(path, token=key), 200)
        times.append((time.monotonic() - t0) * 1000)
    return statistics.median(times)


def verified_owner(s, key, eh, name):
    """A property of key's tenant holding name, CNAMEd to eh, verified by cname."""
    TB.set_cname(name, eh["hostname"])
    p = prop(s, key, eh, [name]).json
    dc = dns_check(s, key, p["id"])
    v = dc["hostnames"][0]["verification"]
    check(v["status"] == "verified" and v["method"] == "cname", dc)
    return p


# ------------------------------------------- 1. another tenant's verified name

def test_other_tenants_verified_name_refused():
    s = server()
    try:
        _, ka = s.new_tenant("victim")
        _, kb = s.new_tenant("attacker")
        zone = rnd("a") + ".test"
        www = "www." + zone
        ea, eb = edge(s, ka), edge(s, kb)
        pa = verified_owner(s, ka, ea, www)
        # A's own certificate for its name, issued over HTTP-01.
        ca = expect(s.post("/v1/certificates", {"source": "acme", "name": "a", "hostnames": [www]},
                           token=ka), 202).json
        ca = s.wait_for(lambda: (lambda c: c if c["status"] == "active" else None)(
            s.get("/v1/certificates/" + ca["id"], token=ka).json), timeout=60, what="A issued")
        pa_before = expect(s.get("/v1/properties/" + pa["id"], token=ka), 200).json
        idle = latency_ms(s, ka, "/v1/properties/" + pa["id"])

        # B: http-01 and dns-01 orders for A's name are refused at creation.
        for challenge in ("http-01", "dns-01"):
            r = expect(s.post("/v1/certificates", {"source": "acme", "name": "steal",
                                                   "hostnames": ["ok-" + zone, www],
                                                   "challenge": challenge}, token=kb), 409)
            check(r.json["reason"] == "hostname_owned_by_another_tenant", r)
            check(www in r.json["detail"] and field_error(r, "hostnames[1]"), r)
        check(s.list_all("/v1/certificates", token=kb) == [], "nothing created for B")
        check(s.list_all("/v1/orders", token=kb) == [], "no order for B")
        # B cannot put it on a property either: 409 naming it.
        r = prop(s, kb, eb, [www], 409)
        check(www in r.json["detail"] and field_error(r, "hostnames[0]"), r)
        check(r.json["reason"] == "hostname_owned_by_another_tenant", r)

        # The worker checks too: B's renewal from its production deployment,
        # frozen while B's claim of www2 was still pending, is refused before
        # any CA request once A has verified www2.
        www2 = "shop." + zone
        boot = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "b-boot", "hostnames": [www2], "validity_days": 10,
            "auto_renew": "letsencrypt"}, token=kb), 201).json
        pb = prop(s, kb, eb, [www2], certificate_id=boot["id"],
                  certificate_renew_automation=True).json
        expect(s.post("/v1/properties/%s/deployments" % pb["id"], {"environment": "production"},
                      token=kb), 201)
        pa2 = verified_owner(s, ka, ea, www2)
        check(verification(s, kb, pb["id"], www2) is None, "B's pending claim was released")

        def refused():
            for e in events(s, kb, "certificate.renewal_failed"):
                if e["data"]["reason"] == "hostname_owned_by_another_tenant":
                    return e
            return None
        ev = s.wait_for(refused, timeout=30, what="B's renewal refused by the worker")
        check(www2 in ev["data"]["detail"], ev)
        failed = [o for o in s.list_all("/v1/orders", token=kb)
                  if o["error"] and o["error"]["reason"] == "hostname_owned_by_another_tenant"]
        check(failed and all(o["status"] == "failed" and o["authorizations"] == []
                             for o in failed), "refused before any CA request: %r" % failed)
        b_cert = expect(s.get("/v1/certificates/" + boot["id"], token=kb), 200).json
        check(b_cert["version"] == 1 and b_cert["source"] == "self_signed", b_cert)

        # The victim: data unchanged, latency within 2x idle.
        after = latency_ms(s, ka, "/v1/properties/" + pa["id"])
        check(after <= max(2 * idle, idle + 2.0), "victim latency %.2f ms vs idle %.2f ms"
              % (after, idle))
        check(expect(s.get("/v1/properties/" + pa["id"], token=ka), 200).json == pa_before,
              "A's property unchanged")
        c2 = expect(s.get("/v1/certificates/" + ca["id"], token=ka), 200).json
        check(c2["version"] == ca["version"] and c2["serial"] == ca["serial"], c2)
        check(verification(s, ka, pa2["id"], www2)["status"] == "verified", "A keeps www2")
        print("  victim GET property: idle %.2f ms, after the attack %.2f ms" % (idle, after))
    finally:
        s.cleanup()


def test_http01_without_verified_cname_fails_in_worker():
    # An order for a name the tenant does not hold, or holds but whose CNAME
    # reaches another tenant's edge: accepted (nobody verified it), then
    # refused by the worker before any CA request, naming the host.
    s = server()
    try:
        _, ka = s.new_tenant("a")
        _, kb = s.new_tenant("b")
        ea, eb = edge(s, ka), edge(s, kb)
        zone = rnd("w") + ".test"
        free, pointed = "free." + zone, "www." + zone
        TB.set_cname(pointed, ea["hostname"])
        prop(s, kb, eb, [pointed])  # B's claim; the CNAME is A's edge: stays pending
        cases = [(free, "hostname_not_verified"), (pointed, "dns_not_pointed_to_edge")]
        for name, reason in cases:
            c = expect(s.post("/v1/certificates", {"source": "acme", "name": "x",
                                                   "hostnames": [name]}, token=kb), 202).json
            o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
                expect(s.get("/v1/orders/" + c["order"]["id"], token=kb), 200).json),
                timeout=30, what="order refused")
            check(o["error"]["reason"] == reason and name in o["error"]["detail"], o)
            check(o["authorizations"] == [], "no CA order: %r" % o)
            check(expect(s.get("/v1/certificates/" + c["id"], token=kb), 200).json["version"]
                  == 0, "no version")
    finally:
        s.cleanup()


# ----------------------------------------------------------- 2. edge names

def test_edge_zone_names_refused():
    s = server()
    try:
        _, kb = s.new_tenant("b")
        eb = edge(s, kb)
        for name in ["alpha." + EDGE_ZONE, eb["hostname"], "deep." + eb["hostname"],
                     "*." + EDGE_ZONE]:
            challenge = "dns-01" if name.startswith("*.") else "http-01"
            r = expect(s.post("/v1/certificates", {"source": "acme", "name": "e",
                                                   "hostnames": [name],
                                                   "challenge": challenge}, token=kb), 422)
            check(r.json["reason"] == "hostname_in_edge_zone" and name in r.json["detail"], r)
            check(field_error(r, "hostnames[0]"), r)
        r = prop(s, kb, eb, ["fine." + rnd() + ".test", "alpha." + EDGE_ZONE], 422)
        check(field_error(r, "hostnames[1]") and r.json["reason"] == "hostname_in_edge_zone", r)
        check(s.list_all("/v1/orders", token=kb) == [] and s.list_all("/v1/properties", token=kb)
              == [], "nothing created")
    finally:
        s.cleanup()


# ------------------------------------------------------------ 3. squatting

def test_squatting_pending_never_blocks_and_is_released():
    s = server()
    try:
        _, ka = s.new_tenant("victim bank")
        _, kb = s.new_tenant("squatter")
        ea, eb = edge(s, ka), edge(s, kb)
        name = "www." + rnd("victim") + ".test"
        pb = prop(s, kb, eb, [name, "own." + rnd() + ".test"]).json
        check(verification(s, kb, pb["id"], name)["status"] == "pending", pb)
        pa = prop(s, ka, ea, [name]).json  # not blocked, no 409
        va = verification(s, ka, pa["id"], name)
        check(va["status"] == "pending" and va["txt_record_name"] == "_certplane-verify." + name
              and va["expires_at"], va)
        check(va["token"] != verification(s, kb, pb["id"], name)["token"], "per-tenant tokens")

        TB.set_cname(name, ea["hostname"])
        dc = dns_check(s, ka, pa["id"])
        h = dc["hostnames"][0]
        check(h["ready"] and h["verification"]["status"] == "verified"
              and h["verification"]["method"] == "cname" and h["verification"]["checked_at"], dc)
        check(verification(s, ka, pa["id"], name)["expires_at"] is None, "verified: no expiry")

        pb2 = expect(s.get("/v1/properties/" + pb["id"], token=kb), 200).json
        check(name not in pb2["hostnames"] and len(pb2["hostnames"]) == 1, pb2)
        check(pb2["version"] == pb["version"] + 1, pb2)
        ev = events(s, kb, "property.hostname_released")
        check(len(ev) == 1 and ev[0]["data"] == {"property_id": pb["id"], "hostname": name,
                                                 "reason": "verified_by_another_tenant"}, ev)
        check(events(s, ka, "property.hostname_released") == [], "no event for A")
        # B then gets 409, on create and on patch.
        r = prop(s, kb, eb, [name], 409)
        check(name in r.json["detail"], r)
        r = expect(s.patch("/v1/properties/" + pb["id"], {"hostnames": pb2["hostnames"] + [name]},
                           token=kb), 409)
        check(name in r.json["detail"] and field_error(r, "hostnames[1]"), r)
        # A keeps it through its own PATCH (status and token kept).
        before = verification(s, ka, pa["id"], name)
        expect(s.patch("/v1/properties/" + pa["id"], {"hostnames": ["x." + rnd() + ".test", name]},
                       token=ka), 200)
        after = verification(s, ka, pa["id"], name)
        check(after["status"] == "verified" and after["token"] == before["token"], after)
    finally:
        s.cleanup()


# ------------------------------------------------------ 4. TXT verification

def test_txt_token_verification():
    s = server()
    try:
        _, ka = s.new_tenant("txt")
        ea = edge(s, ka)
        name = "api." + rnd("t") + ".test"
        p = prop(s, ka, ea, [name]).json
        v = verification(s, ka, p["id"], name)
        TB.set_txt(v["txt_record_name"], "someone-elses-token")
        dc = dns_check(s, ka, p["id"])
        check(dc["hostnames"][0]["verification"]["status"] == "pending", dc)
        check(dc["hostnames"][0]["verification"]["checked_at"], dc)
        TB.set_txt(v["txt_record_name"], v["token"])
        dc = dns_check(s, ka, p["id"])
        got = dc["hostnames"][0]["verification"]
        check(got["status"] == "verified" and got["method"] == "txt", dc)
        check(dc["hostnames"][0]["points_to_edge"] is False, "no CNAME needed for TXT")
        # TXT ownership does not satisfy HTTP-01's CNAME rule.
        c = expect(s.post("/v1/certificates", {"source": "acme", "name": "t", "hostnames": [name]},
                          token=ka), 202).json
        o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
            expect(s.get("/v1/orders/" + c["order"]["id"], token=ka), 200).json),
            timeout=30, what="http-01 refused without CNAME")
        check(o["error"]["reason"] == "dns_not_pointed_to_edge" and name in o["error"]["detail"],
              o)
        TB.clear_txt(v["txt_record_name"])
    finally:
        s.cleanup()


# ------------------------------------------- 5. background checks and TTL

def test_background_verification_and_ttl_expiry():
    s = server(CERTPLANE_HOSTNAME_RECHECK_SECONDS="1", CERTPLANE_HOSTNAME_CLAIM_TTL_SECONDS="6")
    try:
        _, ka = s.new_tenant("bg")
        ea = edge(s, ka)
        zone = rnd("bg") + ".test"
        later, never = "later." + zone, "never." + zone
        p = prop(s, ka, ea, [later, never]).json
        # The CNAME appears after the create-time check: the scheduler's
        # re-check verifies it without anyone calling dns-check.
        time.sleep(1.5)
        TB.set_cname(later, ea["hostname"])
        s.wait_for(lambda: verification(s, ka, p["id"], later)["status"] == "verified",
                   timeout=20, what="background verification")
        # never. stays pending and is released at its expiry; later. stays.
        s.wait_for(lambda: never not in expect(s.get("/v1/properties/" + p["id"], token=ka),
                                               200).json["hostnames"],
                   timeout=20, what="pending claim expired")
        p2 = expect(s.get("/v1/properties/" + p["id"], token=ka), 200).json
        check(p2["hostnames"] == [later], p2)
        ev = events(s, ka, "property.hostname_released")
        check(len(ev) == 1 and ev[0]["data"]["hostname"] == never
              and ev[0]["data"]["reason"] == "claim_expired", ev)
        # Another tenant may now claim the released name.
        _, kb = s.new_tenant("next")
        prop(s, kb, edge(s, kb), [never])
    finally:
        s.cleanup()


def test_verified_claim_recheck_demotes_but_not_on_dns_error():
    s = server(CERTPLANE_HOSTNAME_RECHECK_SECONDS="1",
               CERTPLANE_HOSTNAME_VERIFIED_RECHECK_SECONDS="1")
    try:
        _, ka = s.new_tenant("was owner")
        _, kb = s.new_tenant("new owner")
        ea, eb = edge(s, ka), edge(s, kb)
        zone = rnd("mv") + ".test"
        name, loop = "www." + zone, "loop." + zone
        pa = verified_owner(s, ka, ea, name)
        first = verification(s, ka, pa["id"], name)
        # A CNAME loop is a lookup failure, not an answer: nothing counts.
        TB.set_cname(name, loop)
        TB.set_cname(loop, name)
        time.sleep(6)
        v = verification(s, ka, pa["id"], name)
        check(v["status"] == "verified" and v["checked_at"] > first["checked_at"], v)
        check("loop" in v["detail"], v)
        check(events(s, ka, "property.hostname_unverified") == [], "no demotion on DNS errors")
        # An answer that proves nothing, three times in a row: back to pending.
        TB.set_cname(name, "elsewhere." + zone)
        s.wait_for(lambda: verification(s, ka, pa["id"], name)["status"] == "pending",
                   timeout=30, what="demoted")
        v = verification(s, ka, pa["id"], name)
        check(v["method"] is None and v["expires_at"] and "elsewhere." + zone in v["detail"], v)
        ev = events(s, ka, "property.hostname_unverified")
        check(len(ev) == 1 and ev[0]["data"]["hostname"] == name, ev)
        # The hostname's new owner proves it and takes it over.
        TB.set_cname(name, eb["hostname"])
        pb = prop(s, kb, eb, [name]).json
        dc = dns_check(s, kb, pb["id"])
        check(dc["hostnames"][0]["verification"]["status"] == "verified", dc)
        check(name not in expect(s.get("/v1/properties/" + pa["id"], token=ka), 200)
              .json["hostnames"], "A's claim released")
        ev = events(s, ka, "property.hostname_released")
        check(len(ev) == 1 and ev[0]["data"]["reason"] == "verified_by_another_tenant", ev)
        TB.clear_cname(loop)
    finally:
        s.cleanup()


# ------------------------------------------------------ 6. DNS deadline

def test_dns_check_deadline_enforced():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # never read: every query times out
    s = server(CERTPLANE_DNS_RESOLVER="127.0.0.1:%d" % silent.getsockname()[1])
    try:
        _, ka = s.new_tenant("slow dns")
        ea = edge(s, ka)
        zone = rnd("slow") + ".test"
        names = ["a." + zone, "b." + zone, "c." + zone]
        p = prop(s, ka, ea, names).json
        t0 = time.monotonic()
        dc = dns_check(s, ka, p["id"])
        took = time.monotonic() - t0
        print("  dns-check against a silent resolver: %.1f s (budget 20 s; the per-query "
              "timeouts alone add up to 36 s)" % took)
        check(19.0 <= took <= 21.5, "took %.1f s" % took)
        check(dc["ready"] is False and [h["hostname"] for h in dc["hostnames"]] == names, dc)
        check(all(not h["ready"] for h in dc["hostnames"]), dc)
        check("ran out of time" in dc["hostnames"][-1]["detail"], dc)
        # A DNS failure proves nothing: every claim stays pending.
        check(all(h["verification"]["status"] == "pending" for h in dc["hostnames"]), dc)
    finally:
        s.cleanup()
        silent.close()


if __name__ == "__main__":
    run(globals())
