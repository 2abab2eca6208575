"""test_portal_concurrency.py - what a portal with two tabs open needs (issue 12):

1. every single-object GET answers a strong ETag; If-None-Match with it is
   304; a PATCH answers the ETag of the object as it now is;
2. If-Match on PATCH and DELETE: two clients PATCH with the same ETag at the
   same moment, exactly one wins, the other gets 412 problem+json and the
   object shows the winner's change; DELETE with a stale ETag is 412 and
   deletes nothing; If-Match: * and no If-Match are unconditional;
3. GET /v1/summary: its numbers equal what the lists show, and another
   tenant's certificates are never counted;
4. POST /v1/orders/{id}/verify answers per pending TXT record whether the
   configured resolver sees it: false, then true once the test publishes it
   through challtestsrv.
"""
import http.client
import json
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()
srv = Server(env=TB.server_env()).start()
TID, KEY = srv.new_tenant("tabs")
OTHER_TID, OTHER_KEY = srv.new_tenant("other")


def rnd(prefix):
    return "%s-%s" % (prefix, uuid.uuid4().hex[:10])


def self_signed(key, days, name=None):
    host = "%s.tabs.example.com" % rnd("h")
    return expect(srv.post("/v1/certificates", {"source": "self_signed", "name": name or host,
                                                "hostnames": [host], "validity_days": days},
                           token=key), 201).json


def etag_of(path, key=KEY):
    r = expect(srv.get(path, token=key), 200)
    tag = r.header("etag")
    check(tag and tag.startswith('"') and tag.endswith('"') and not tag.startswith("W/"),
          "strong ETag on %s: %r" % (path, tag))
    return tag


def one_request(method, path, key, body, headers):
    """One request on its own connection (a second tab)."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    h = {"Authorization": "Bearer " + key, "Content-Type": "application/json"}
    h.update(headers)
    c.request(method, path, body=json.dumps(body) if body is not None else None, headers=h)
    r = c.getresponse()
    out = (r.status, r.getheader("etag"), r.getheader("content-type"), r.read())
    c.close()
    return out


def race(path, bodies, tag):
    """PATCH path with each body at once, all with If-Match tag."""
    barrier = threading.Barrier(len(bodies))
    results = [None] * len(bodies)

    def tab(i):
        barrier.wait()
        results[i] = one_request("PATCH", path, KEY, bodies[i], {"If-Match": tag})
    threads = [threading.Thread(target=tab, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_etag_on_reads_and_304():
    cert = self_signed(KEY, 30)
    edge = expect(srv.post("/v1/edge-hostnames", {"label": rnd("e")}, token=KEY), 201).json
    hook = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                           token=KEY), 201).json
    paths = ["/v1/certificates/" + cert["id"], "/v1/edge-hostnames/" + edge["id"],
             "/v1/webhooks/" + hook["id"]]
    for p in paths:
        tag = etag_of(p)
        check(etag_of(p) == tag, "stable ETag on " + p)
        r = srv.get(p, token=KEY, headers={"If-None-Match": tag})
        check(r.status == 304 and r.body == b"" and r.header("etag") == tag, (p, r, r.headers))
        r = srv.get(p, token=KEY, headers={"If-None-Match": '"0000000000000000"'})
        check(r.status == 200 and r.json["id"] == p.rsplit("/", 1)[1], (p, r))
    # the operator's single-object read too
    etag_of("/v1/tenants/" + TID, key=srv.token)
    # lists carry none (a page is not one object)
    check(srv.get("/v1/certificates", token=KEY).header("etag") is None, "no ETag on a list")


def settle(path):
    """A property's ETag also changes when the background claim check it
    queues records its result (hostname_verification.checked_at): wait until
    two reads 0.3 s apart agree."""
    def same():
        a = etag_of(path)
        time.sleep(0.3)
        return a if etag_of(path) == a else None
    return srv.wait_for(same, timeout=10, interval=0, what="settled ETag of " + path)


def check_race(path, field, values, background=False):
    tag = settle(path) if background else etag_of(path)
    results = race(path, [{field: v} for v in values], tag)
    won = [i for i, r in enumerate(results) if r[0] == 200]
    lost = [i for i, r in enumerate(results) if r[0] == 412]
    check(len(won) == 1 and len(lost) == len(values) - 1, (path, [r[:3] for r in results]))
    for i in lost:
        check(results[i][2] == "application/problem+json" and
              json.loads(results[i][3])["status"] == 412, results[i])
    winner = values[won[0]]
    if background:
        settle(path)
    cur = expect(srv.get(path, token=KEY), 200)
    check(cur.json[field] == winner, (path, cur.json[field], winner))
    # the winner's answer carries the ETag of the object as it now is
    check(background or results[won[0]][1] == cur.header("etag"),
          (results[won[0]][1], cur.headers))
    # the loser retries with the fresh tag and wins
    r = srv.patch(path, {field: values[lost[0]]}, token=KEY,
                  headers={"If-Match": cur.header("etag")})
    expect(r, 200)
    check(r.json[field] == values[lost[0]] and r.header("etag") != cur.header("etag"), r)
    # a stale tag is refused, nothing changes
    r = srv.patch(path, {field: "stale"}, token=KEY, headers={"If-Match": tag})
    expect(r, 412)
    check(expect(srv.get(path, token=KEY), 200).json[field] == values[lost[0]], path)


def test_two_tabs_patch_one_wins():
    cert = self_signed(KEY, 30)
    check_race("/v1/certificates/" + cert["id"], "name", ["tab-a", "tab-b"])
    edge = expect(srv.post("/v1/edge-hostnames", {"label": rnd("p")}, token=KEY), 201).json
    prop = expect(srv.post("/v1/properties", {"name": "p", "hostnames": [
        "%s.tabs.example.com" % rnd("w")], "edge_hostname_id": edge["id"]}, token=KEY), 201).json
    check_race("/v1/properties/" + prop["id"], "name", ["tab-a", "tab-b"], background=True)
    hook = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                           token=KEY), 201).json
    check_race("/v1/webhooks/" + hook["id"], "description", ["tab-a", "tab-b"])


def test_if_match_star_absent_and_lists():
    cert = self_signed(KEY, 30)
    p = "/v1/certificates/" + cert["id"]
    expect(srv.patch(p, {"name": "star"}, token=KEY, headers={"If-Match": "*"}), 200)
    expect(srv.patch(p, {"name": "plain"}, token=KEY), 200)
    tag = etag_of(p)
    # a list naming the current tag matches; a weak tag never does (strong comparison)
    expect(srv.patch(p, {"name": "listed"}, token=KEY,
                     headers={"If-Match": '"0000000000000000", ' + tag}), 200)
    tag = etag_of(p)
    expect(srv.patch(p, {"name": "weak"}, token=KEY, headers={"If-Match": "W/" + tag}), 412)
    check(expect(srv.get(p, token=KEY), 200).json["name"] == "listed", p)
    # another tenant's object stays a 404, whatever the tag
    expect(srv.patch(p, {"name": "x"}, token=OTHER_KEY, headers={"If-Match": tag}), 404)


def test_delete_with_stale_etag():
    cert = self_signed(KEY, 30)
    p = "/v1/certificates/" + cert["id"]
    stale = etag_of(p)
    expect(srv.patch(p, {"name": "changed"}, token=KEY), 200)
    r = expect(srv.delete(p, token=KEY, headers={"If-Match": stale}), 412)
    check(r.header("content-type") == "application/problem+json", r.headers)
    expect(srv.get(p, token=KEY), 200)
    expect(srv.delete(p, token=KEY, headers={"If-Match": etag_of(p)}), 204)
    expect(srv.get(p, token=KEY), 404)
    hook = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                           token=KEY), 201).json
    hp = "/v1/webhooks/" + hook["id"]
    expect(srv.delete(hp, token=KEY, headers={"If-Match": '"0000000000000000"'}), 412)
    expect(srv.delete(hp, token=KEY, headers={"If-Match": "*"}), 204)


def statuses(key):
    out = {}
    for st in ("pending", "active", "renewing", "expired", "failed"):
        out[st] = len(srv.list_all("/v1/certificates", token=key, limit=500,
                                   query={"status": st}))
    return out


def test_summary_matches_lists_and_isolates():
    for d in (40, 12, 25, 7, 60, 33):
        self_signed(KEY, d)
    # the other tenant's certificate expires sooner than any of ours
    theirs = self_signed(OTHER_KEY, 1)
    self_signed(OTHER_KEY, 2)
    edge = expect(srv.post("/v1/edge-hostnames", {"label": rnd("s")}, token=KEY), 201).json
    expect(srv.post("/v1/properties", {"name": "s", "hostnames": [
        "%s.tabs.example.com" % rnd("v"), "%s.tabs.example.com" % rnd("v")],
        "edge_hostname_id": edge["id"]}, token=KEY), 201)

    s = expect(srv.get("/v1/summary", token=KEY), 200).json
    every = srv.list_all("/v1/certificates", token=KEY, limit=500)
    check(s["certificates"]["total"] == len(every), (s["certificates"], len(every)))
    check(s["certificates"]["by_status"] == statuses(KEY), (s["certificates"], statuses(KEY)))
    live = sorted((c for c in every if c.get("not_after")), key=lambda c: c["not_after"])
    check([e["id"] for e in s["expiring_soonest"]] == [c["id"] for c in live[:5]],
          (s["expiring_soonest"], [(c["id"], c["not_after"]) for c in live[:5]]))
    for e, c in zip(s["expiring_soonest"], live):
        check(e["name"] == c["name"] and e["not_after"] == c["not_after"], (e, c))
    check(theirs["id"] not in [e["id"] for e in s["expiring_soonest"]], "foreign expiry shown")
    failing = [c for c in every if c.get("failure_count", 0) > 0]
    check(s["failing_renewals"]["count"] == len(failing) and
          len(s["failing_renewals"]["top"]) == min(5, len(failing)), s["failing_renewals"])
    pending = 0
    for p in srv.list_all("/v1/properties", token=KEY, limit=500):
        pending += sum(1 for v in p["hostname_verification"] if v["status"] == "pending")
    check(s["hostname_verifications"]["pending"] == pending and pending >= 2,
          (s["hostname_verifications"], pending))

    o = expect(srv.get("/v1/summary", token=OTHER_KEY), 200).json
    check(o["certificates"]["total"] == 2 and o["certificates"]["by_status"]["active"] == 2, o)
    check(o["expiring_soonest"][0]["id"] == theirs["id"], o)
    check(o["hostname_verifications"]["pending"] == 0, o)
    # the operator names the tenant
    op = expect(srv.get("/v1/summary", tenant=OTHER_TID), 200).json
    check(op["certificates"] == o["certificates"], (op, o))
    expect(srv.get("/v1/summary"), 400)
    # a deletion is counted at once
    expect(srv.delete("/v1/certificates/" + theirs["id"], token=OTHER_KEY), 204)
    o = expect(srv.get("/v1/summary", token=OTHER_KEY), 200).json
    check(o["certificates"]["total"] == 1, o)


def test_verify_shows_txt_visibility():
    zone = rnd("vis") + ".test"
    r = expect(srv.post("/v1/certificates", {"source": "acme", "name": "v", "hostnames": [zone],
                                             "challenge": "dns-01"}, token=KEY), 202).json
    oid = r["order"]["id"]

    def shown():
        o = expect(srv.get("/v1/orders/" + oid, token=KEY), 200).json
        a = o["authorizations"]
        return o if a and a[0]["challenge"] and a[0]["challenge"].get("txt_record_value") else None
    o = srv.wait_for(shown, timeout=20, what="TXT record shown")
    ch = o["authorizations"][0]["challenge"]
    TB.clear_txt(ch["txt_record_name"])
    v = expect(srv.post("/v1/orders/%s/verify" % oid, token=KEY), 202).json
    check(v["id"] == oid and v["challenge"] == "dns-01", v)
    check(v["records"] == [{"name": ch["txt_record_name"], "type": "TXT",
                            "value": ch["txt_record_value"], "visible": False, "seen": [],
                            "detail": None}], v["records"])
    TB.set_txt(ch["txt_record_name"], ch["txt_record_value"])
    v = expect(srv.post("/v1/orders/%s/verify" % oid, token=KEY), 202).json
    check(len(v["records"]) == 1 and v["records"][0]["visible"] is True and
          v["records"][0]["seen"] == [ch["txt_record_value"]], v["records"])
    # another tenant cannot look
    expect(srv.post("/v1/orders/%s/verify" % oid, token=OTHER_KEY), 404)
    # the order then completes as before
    c = srv.wait_for(lambda: (lambda c: c if c["status"] in ("active", "failed") else None)(
        srv.get("/v1/certificates/" + r["id"], token=KEY).json), timeout=30, what="issued")
    check(c["status"] == "active", c)
    TB.clear_txt(ch["txt_record_name"])


def test_zz_cleanup():
    srv.cleanup()


run(globals())
