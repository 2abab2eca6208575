"""test_foundation.py - end-to-end tests of the foundation: tenants, API keys,
edge hostnames, properties and deployments over real HTTP; every error status
of the contract; tenant isolation on every route that takes an id;
idempotent POST replay; keyset pagination under inserts; CORS; restart
durability, the audit log and the `check-config` / `migrate` commands;
file modes in data_dir (0700, its files 0600, whatever the umask, and
tightened when an older install left them looser), and an operator token
that cannot be read stops start-up instead of being replaced.
"""
import json
import os
import signal
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, PG, Server, check, expect, field_error, run  # noqa: E402

S = Server().start()
FOREIGN_ID = "00000000-0000-4000-8000-000000000000"


def edge(token, label=None):
    body = {"label": label} if label else None
    return expect(S.post("/v1/edge-hostnames", body, token=token), 201).json


def prop(token, edge_id, hostnames, **kw):
    body = {"name": kw.pop("name", "site"), "hostnames": hostnames, "edge_hostname_id": edge_id}
    body.update(kw)
    return expect(S.post("/v1/properties", body, token=token), 201).json


# ------------------------------------------------------------------ CRUD

def test_tenants_crud():
    t = expect(S.post("/v1/tenants", {"name": "acme corp"}), 201).json
    check(set(t) >= {"id", "name", "created_at"} and t["name"] == "acme corp", t)
    check(expect(S.get("/v1/tenants/" + t["id"]), 200).json == t)
    check(t["id"] in [x["id"] for x in S.list_all("/v1/tenants")])
    r = expect(S.post("/v1/tenants", {}), 422)
    check(field_error(r, "name"), r)
    r = expect(S.post("/v1/tenants", {"name": "x", "nmae": "typo"}), 422)
    check(field_error(r, "nmae"), r)
    expect(S.delete("/v1/tenants/" + t["id"]), 204)
    expect(S.get("/v1/tenants/" + t["id"]), 404)
    expect(S.delete("/v1/tenants/" + t["id"]), 404)
    expect(S.get("/v1/tenants/not-a-uuid"), 404)


def test_api_keys_shown_once():
    t = expect(S.post("/v1/tenants", {"name": "keys"}), 201).json
    path = "/v1/tenants/%s/api-keys" % t["id"]
    k = expect(S.post(path, {"name": "ci"}), 201)
    check(k.json["key"].startswith("cpk_") and k.header("cache-control") == "no-store", k)
    listed = S.list_all(path)
    check([x["id"] for x in listed] == [k.json["id"]], listed)
    check(all("key" not in x and "key_hash" not in x for x in listed), listed)
    check(k.json["key"] not in S.get(path).text)
    # The key works, only inside its tenant, and stops working once deleted.
    expect(S.get("/v1/edge-hostnames", token=k.json["key"]), 200)
    expect(S.delete("%s/%s" % (path, k.json["id"])), 204)
    expect(S.get("/v1/edge-hostnames", token=k.json["key"]), 401)
    expect(S.delete("%s/%s" % (path, k.json["id"])), 404)
    expect(S.post("/v1/tenants/%s/api-keys" % FOREIGN_ID, {"name": "x"}), 404)
    expect(S.get("/v1/tenants/%s/api-keys" % FOREIGN_ID), 404)


def test_edge_hostnames_crud():
    _, key = S.new_tenant("edges")
    gen = edge(key)
    check(set(gen) == {"id", "hostname", "label", "created_at"}, gen)
    check(gen["hostname"] == gen["label"] + ".edge.certplane.localhost", gen)
    named = edge(key, "shop-1")
    check(named["hostname"] == "shop-1.edge.certplane.localhost", named)
    check(expect(S.get("/v1/edge-hostnames/" + named["id"], token=key), 200).json == named)
    ids = [x["id"] for x in S.list_all("/v1/edge-hostnames", token=key)]
    check(ids == [gen["id"], named["id"]], ids)
    for bad in ["Shop", "a.b", "-x", "x-", "a" * 64, "*", "sh_op", "caf\u00e9", ""]:
        r = expect(S.post("/v1/edge-hostnames", {"label": bad}, token=key), 422, bad)
        check(field_error(r, "label"), r)
    r = expect(S.post("/v1/edge-hostnames", {"label": 7}, token=key), 422)
    check(field_error(r, "label"), r)
    expect(S.delete("/v1/edge-hostnames/" + gen["id"], token=key), 204)
    expect(S.get("/v1/edge-hostnames/" + gen["id"], token=key), 404)
    expect(S.delete("/v1/edge-hostnames/" + gen["id"], token=key), 404)


def test_properties_crud_and_deployments():
    _, key = S.new_tenant("props")
    e1, e2 = edge(key), edge(key)
    p = prop(key, e1["id"], ["www.crud.example", "*.crud.example"], name="crud site")
    check(set(p) == {"id", "name", "hostnames", "edge_hostname_id", "edge_hostname",
                     "certificate_id", "certificate_renew_automation", "version", "staging",
                     "production", "served", "created_at", "updated_at",
                     "hostname_verification"}, p)
    # Each hostname is a pending claim until DNS verifies it (test_tenant_isolation.py).
    check([v["hostname"] for v in p["hostname_verification"]] == p["hostnames"], p)
    check(all(v["status"] == "pending" and len(v["token"]) == 32 for v in
              p["hostname_verification"]), p)
    check(p["hostnames"] == ["www.crud.example", "*.crud.example"] and p["version"] == 1, p)
    check(p["edge_hostname"] == e1["hostname"] and p["certificate_id"] is None, p)
    check(p["certificate_renew_automation"] is False and p["staging"] is None
          and p["production"] is None, p)
    # The same resource on read, but for what the (asynchronous) verification
    # job may have recorded meanwhile.
    def settled(x):
        x = json.loads(json.dumps(x))
        for v in x["hostname_verification"]:
            v.pop("checked_at")
            v.pop("detail")
        return x
    check(settled(expect(S.get("/v1/properties/" + p["id"], token=key), 200).json) == settled(p))
    got = S.list_all("/v1/properties", token=key, query={"hostname": "www.crud.example"})
    check([x["id"] for x in got] == [p["id"]], got)
    check(S.list_all("/v1/properties", token=key, query={"hostname": "nope.crud.example"}) == [])

    # Renaming or moving the edge keeps the version; hostnames bump it.
    q = expect(S.patch("/v1/properties/" + p["id"], {"name": "renamed", "edge_hostname_id": e2["id"]},
                       token=key), 200).json
    check(q["name"] == "renamed" and q["edge_hostname"] == e2["hostname"] and q["version"] == 1, q)
    q = expect(S.patch("/v1/properties/" + p["id"], {"hostnames": ["*.crud.example", "www.crud.example"]},
                       token=key), 200).json
    check(q["version"] == 1, "reordering is not a change: %r" % q)
    q = expect(S.patch("/v1/properties/" + p["id"], {"hostnames": ["www.crud.example", "api.crud.example"]},
                       token=key), 200).json
    check(q["version"] == 2 and q["hostnames"] == ["www.crud.example", "api.crud.example"], q)
    # The wildcard was released: another property may take it.
    other = prop(key, e1["id"], ["*.crud.example"])
    q = expect(S.patch("/v1/properties/" + p["id"], {"certificate_renew_automation": True},
                       token=key), 200).json
    check(q["certificate_renew_automation"] is True and q["version"] == 2, q)
    r = expect(S.patch("/v1/properties/" + p["id"], {"hostnames": ["*.w.crud.example"]}, token=key), 422)
    check(field_error(r, "hostnames[0]"), r)
    r = expect(S.patch("/v1/properties/" + other["id"], {"certificate_renew_automation": True},
                       token=key), 422)
    check(field_error(r, "hostnames[0]"), "automation on with a wildcard: %r" % r)
    r = expect(S.patch("/v1/properties/" + p["id"], {"name": None}, token=key), 422)
    check(field_error(r, "name"), r)
    expect(S.patch("/v1/properties/" + p["id"], {"certificate_id": None}, token=key), 200)

    # Deployments freeze the current version.
    d = expect(S.post("/v1/properties/%s/deployments" % p["id"], {"environment": "production"},
                      token=key), 201).json
    check(set(d) == {"id", "property_id", "environment", "version", "hostnames",
                     "certificate_id", "created_at"}, d)
    check(d["version"] == 2 and d["environment"] == "production"
          and d["hostnames"] == ["www.crud.example", "api.crud.example"], d)
    cur = expect(S.get("/v1/properties/" + p["id"], token=key), 200).json
    check(cur["production"] == {"version": 2, "deployed_at": d["created_at"]} and cur["staging"] is None, cur)
    expect(S.patch("/v1/properties/" + p["id"], {"hostnames": ["www.crud.example"]}, token=key), 200)
    s = expect(S.post("/v1/properties/%s/deployments" % p["id"], {"environment": "staging"},
                      token=key), 201).json
    check(s["version"] == 3, s)
    cur = expect(S.get("/v1/properties/" + p["id"], token=key), 200).json
    check(cur["staging"]["version"] == 3 and cur["production"]["version"] == 2, cur)
    deps = S.list_all("/v1/properties/%s/deployments" % p["id"], token=key)
    check([x["id"] for x in deps] == [d["id"], s["id"]], deps)
    r = expect(S.post("/v1/properties/%s/deployments" % p["id"], {"environment": "prod"}, token=key), 422)
    check(field_error(r, "environment"), r)
    r = expect(S.post("/v1/properties/%s/deployments" % p["id"], {}, token=key), 422)
    check(field_error(r, "environment"), r)

    expect(S.delete("/v1/properties/" + p["id"], token=key), 204)
    expect(S.get("/v1/properties/" + p["id"], token=key), 404)
    expect(S.get("/v1/properties/%s/deployments" % p["id"], token=key), 404)
    expect(S.delete("/v1/properties/" + p["id"], token=key), 404)
    # Its hostnames are free again.
    prop(key, e1["id"], ["www.crud.example"])


def test_property_validation():
    _, key = S.new_tenant("validation")
    e = edge(key)
    base = {"name": "v", "hostnames": ["ok.valid.example"], "edge_hostname_id": e["id"]}

    def bad(change, field):
        body = dict(base)
        body.update(change)
        r = expect(S.post("/v1/properties", body, token=key), 422, repr(change))
        check(field_error(r, field), "%r should name %s: %r" % (change, field, r))

    bad({"hostnames": []}, "hostnames")
    bad({"hostnames": ["x%d.valid.example" % i for i in range(101)]}, "hostnames")
    bad({"hostnames": "ok.valid.example"}, "hostnames")
    bad({"hostnames": ["ok.valid.example", "Upper.valid.example"]}, "hostnames[1]")
    bad({"hostnames": ["ok.valid.example", "ok.valid.example"]}, "hostnames[1]")
    bad({"hostnames": ["trailing.dot.example."]}, "hostnames[0]")
    bad({"hostnames": ["single"]}, "hostnames[0]")
    bad({"hostnames": [("a" * 63 + ".") * 4 + "com"]}, "hostnames[0]")
    bad({"hostnames": ["a" * 64 + ".example"]}, "hostnames[0]")
    bad({"hostnames": ["caf\u00e9.example"]}, "hostnames[0]")
    bad({"hostnames": [None]}, "hostnames[0]")
    bad({"hostnames": ["*.w.valid.example"], "certificate_renew_automation": True}, "hostnames[0]")
    bad({"name": ""}, "name")
    bad({"name": "n" * 201}, "name")
    bad({"edge_hostname_id": "nope"}, "edge_hostname_id")
    bad({"edge_hostname_id": FOREIGN_ID}, "edge_hostname_id")
    bad({"certificate_id": "nope"}, "certificate_id")
    bad({"certificate_id": FOREIGN_ID}, "certificate_id")
    bad({"certificate_renew_automation": "yes"}, "certificate_renew_automation")
    bad({"colour": "blue"}, "colour")
    r = expect(S.post("/v1/properties", {"hostnames": ["x.valid.example"]}, token=key), 422)
    check(field_error(r, "name") and field_error(r, "edge_hostname_id"), r)
    # Punycode and a wildcard without automation are fine.
    p = prop(key, e["id"], ["xn--caf-dma.valid.example", "*.valid.example"])
    check(p["hostnames"] == ["xn--caf-dma.valid.example", "*.valid.example"], p)
    # An edge hostname in use cannot be deleted.
    r = expect(S.delete("/v1/edge-hostnames/" + e["id"], token=key), 409)
    expect(S.delete("/v1/properties/" + p["id"], token=key), 204)
    expect(S.delete("/v1/edge-hostnames/" + e["id"], token=key), 204)


# ---------------------------------------------------------- error statuses

def test_error_statuses():
    tid, key = S.new_tenant("errors")
    e = edge(key)
    # 400 malformed JSON (and a body that is not an object is 422)
    r = expect(S.post("/v1/properties", raw=b'{"name": ', token=key), 400)
    expect(S.post("/v1/properties", raw=b'[1, 2]', token=key), 422)
    expect(S.post("/v1/properties", token=key), 400)
    # 401: no key, a bad key, a malformed header
    expect(S.get("/v1/properties", auth=False), 401)
    expect(S.get("/v1/properties", token="cpk_not-a-real-key"), 401)
    expect(S.get("/v1/properties", auth=False, headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)
    expect(S.get("/v1/tenants", auth=False), 401)
    # 403: a tenant key on operator routes
    expect(S.get("/v1/tenants", token=key), 403)
    expect(S.post("/v1/tenants", {"name": "x"}, token=key), 403)
    expect(S.post("/v1/tenants/%s/api-keys" % tid, {"name": "x"}, token=key), 403)
    # 400: the operator acting in a tenant must say which
    expect(S.get("/v1/properties"), 400)
    check(expect(S.get("/v1/properties", tenant=tid), 200).json["data"] == [])
    expect(S.get("/v1/properties", tenant=FOREIGN_ID), 404)
    # 404: unknown routes, unknown and malformed ids
    expect(S.get("/v1/nope", token=key), 404)
    expect(S.get("/nope", auth=False), 404)
    expect(S.get("/v1/properties/" + FOREIGN_ID, token=key), 404)
    expect(S.get("/v1/properties/NOT-A-UUID", token=key), 404)
    # 405 with Allow
    r = expect(S.delete("/v1/properties", token=key), 405)
    allow = [m.strip() for m in r.header("allow").split(",")]
    check("GET" in allow and "POST" in allow and "DELETE" not in allow, r.headers)
    r = expect(S.request("PUT", "/v1/properties/" + FOREIGN_ID, {"name": "x"}, token=key), 405)
    check("PATCH" in r.header("allow"), r.headers)
    # 409: a hostname on another property of the same tenant; an edge hostname
    # in use. (Another tenant's PENDING claim blocks nothing; its VERIFIED
    # claim is a 409: test_tenant_isolation.py.)
    prop(key, e["id"], ["taken.errors.example"])
    r = expect(S.post("/v1/properties", {"name": "again", "hostnames": ["mine.errors.example",
               "taken.errors.example"], "edge_hostname_id": e["id"]}, token=key), 409)
    check("taken.errors.example" in r.json["detail"] and field_error(r, "hostnames[1]"), r)
    check(len(S.list_all("/v1/properties", token=key)) == 1, "nothing half-written")
    _, key2 = S.new_tenant("errors 2")
    e2 = edge(key2)
    expect(S.post("/v1/properties", {"name": "pending too", "hostnames": ["taken.errors.example"],
                                     "edge_hostname_id": e2["id"]}, token=key2), 201)
    expect(S.delete("/v1/edge-hostnames/" + e["id"], token=key), 409)
    label = e["label"]
    r = expect(S.post("/v1/edge-hostnames", {"label": label}, token=key2), 409)
    # 415
    expect(S.post("/v1/properties", raw=b'{}', token=key, headers={"Content-Type": "text/plain"}), 415)
    # 422 naming the field; query parameters too
    r = expect(S.get("/v1/properties", token=key, query={"limit": "0"}), 422)
    check(field_error(r, "limit"), r)
    r = expect(S.get("/v1/properties", token=key, query={"cursor": "garbage"}), 422)
    check(field_error(r, "cursor"), r)
    r = expect(S.get("/v1/properties", token=key, query={"hostname": "UP.example"}), 422)
    check(field_error(r, "hostname"), r)


def test_body_limit_413():
    s = Server(env={"CERTPLANE_MAX_BODY_BYTES": "4096"}).start()
    try:
        _, key = s.new_tenant("big")
        r = expect(s.post("/v1/edge-hostnames", {"label": "x" * 5000}, token=key), 413)
        r = expect(s.post("/v1/properties", raw=b'{"name": "' + b"n" * 8000 + b'"}', token=key), 413)
        r = expect(s.post("/v1/edge-hostnames", {"label": "small"}, token=key), 201)
        expect(s.get("/healthz", auth=False), 200)
    finally:
        s.cleanup()


def test_rate_limit_429():
    s = Server(env={"CERTPLANE_RATE_LIMIT_PER_SECOND": "1", "CERTPLANE_RATE_LIMIT_BURST": "2"}).start()
    try:
        t = expect(s.post("/v1/tenants", {"name": "rl"}), 201).json
        time.sleep(2.1)  # refill the operator's bucket
        key = expect(s.post("/v1/tenants/%s/api-keys" % t["id"], {"name": "k"}), 201).json["key"]
        codes = [s.get("/v1/edge-hostnames", token=key) for _ in range(5)]
        limited = [r for r in codes if r.status == 429]
        check(limited, "no 429 in %r" % codes)
        for r in limited:
            expect(r, 429)
            check(int(r.header("retry-after")) >= 1, r.headers)
        # The limit is per key: another key is not affected; it refills.
        time.sleep(2.1)
        expect(s.get("/v1/edge-hostnames", token=key), 200)
        expect(s.get("/healthz", auth=False), 200)
    finally:
        s.cleanup()


# ---------------------------------------------------------- tenant isolation

def test_tenant_isolation():
    ta, ka = S.new_tenant("iso a")
    tb, kb = S.new_tenant("iso b")
    ea = edge(ka)
    pa = prop(ka, ea["id"], ["iso-a.example"])
    da = expect(S.post("/v1/properties/%s/deployments" % pa["id"], {"environment": "production"},
                       token=ka), 201).json
    eb = edge(kb)
    # B sees nothing of A's, in lists or by id.
    check(ea["id"] not in [x["id"] for x in S.list_all("/v1/edge-hostnames", token=kb)])
    check(pa["id"] not in [x["id"] for x in S.list_all("/v1/properties", token=kb)])
    check(S.list_all("/v1/properties", token=kb, query={"hostname": "iso-a.example"}) == [])
    check(all(x.get("tenant_id") in (None, tb) for x in S.list_all("/v1/audit-log", token=kb)))
    for method, path, body in [
        ("GET", "/v1/edge-hostnames/" + ea["id"], None),
        ("DELETE", "/v1/edge-hostnames/" + ea["id"], None),
        ("GET", "/v1/properties/" + pa["id"], None),
        ("PATCH", "/v1/properties/" + pa["id"], {"name": "mine now"}),
        ("DELETE", "/v1/properties/" + pa["id"], None),
        ("POST", "/v1/properties/%s/deployments" % pa["id"], {"environment": "staging"}),
        ("GET", "/v1/properties/%s/deployments" % pa["id"], None),
    ]:
        expect(S.request(method, path, body, token=kb), 404, "%s %s" % (method, path))
        # The operator inside tenant B is just as blind.
        expect(S.request(method, path, body, tenant=tb), 404, "operator %s %s" % (method, path))
    # A's edge hostname is as unknown to B as a missing one.
    r = expect(S.post("/v1/properties", {"name": "x", "hostnames": ["iso-b.example"],
               "edge_hostname_id": ea["id"]}, token=kb), 422)
    check(field_error(r, "edge_hostname_id"), r)
    pb = prop(kb, eb["id"], ["iso-b.example"])
    r = expect(S.patch("/v1/properties/" + pb["id"], {"edge_hostname_id": ea["id"]}, token=kb), 422)
    check(field_error(r, "edge_hostname_id"), r)
    # A tenant key with someone else's X-Tenant-ID is refused.
    expect(S.get("/v1/properties", token=kb, tenant=ta), 404)
    # A is untouched.
    cur = expect(S.get("/v1/properties/" + pa["id"], token=ka), 200).json
    check(cur["name"] == pa["name"] and cur["production"]["version"] == da["version"], cur)
    check(expect(S.get("/v1/properties/" + pa["id"], tenant=ta), 200).json["id"] == pa["id"])


def test_tenant_delete_cascades():
    t, key = S.new_tenant("doomed")
    e = edge(key, "doomed-edge")
    p = prop(key, e["id"], ["doomed.example"])
    expect(S.post("/v1/properties/%s/deployments" % p["id"], {"environment": "production"}, token=key), 201)
    expect(S.delete("/v1/tenants/" + t), 204)
    expect(S.get("/v1/properties", token=key), 401)
    # The hostnames and the edge label are free for others again.
    _, k2 = S.new_tenant("heir")
    e2 = edge(k2, "doomed-edge")
    prop(k2, e2["id"], ["doomed.example"])


# ------------------------------------------------------------- idempotency

def test_idempotent_post_replay():
    _, key = S.new_tenant("idem")
    h = {"Idempotency-Key": "create-edge-1"}
    r1 = expect(S.post("/v1/edge-hostnames", {"label": "idem-edge"}, token=key, headers=h), 201)
    r2 = expect(S.post("/v1/edge-hostnames", {"label": "idem-edge"}, token=key, headers=h), 201)
    check(r2.json == r1.json and r2.header("idempotent-replayed") == "true", (r1, r2.headers))
    check(r1.header("idempotent-replayed") is None)
    check(len(S.list_all("/v1/edge-hostnames", token=key)) == 1)
    r = expect(S.post("/v1/edge-hostnames", {"label": "other"}, token=key, headers=h), 422)
    check(field_error(r, "Idempotency-Key"), r)
    body = {"name": "idem", "hostnames": ["idem.example"], "edge_hostname_id": r1.json["id"]}
    h = {"Idempotency-Key": "create-prop-1"}
    p1 = expect(S.post("/v1/properties", body, token=key, headers=h), 201)
    p2 = expect(S.post("/v1/properties", body, token=key, headers=h), 201)
    check(p1.json == p2.json and p2.header("idempotent-replayed") == "true")
    check(len(S.list_all("/v1/properties", token=key)) == 1)
    # Keys are scoped by tenant: the same key elsewhere is a new request.
    _, k2 = S.new_tenant("idem 2")
    r = expect(S.post("/v1/edge-hostnames", {"label": "idem-edge-2"}, token=k2,
                      headers={"Idempotency-Key": "create-edge-1"}), 201)
    check(r.header("idempotent-replayed") is None)
    expect(S.post("/v1/edge-hostnames", {}, token=key, headers={"Idempotency-Key": "x" * 256}), 422)


# -------------------------------------------------------------- pagination

def test_pagination_stable_under_inserts():
    _, key = S.new_tenant("pages")
    original = [edge(key)["id"] for _ in range(23)]
    seen, cursor, pages = [], None, 0
    while True:
        q = {"limit": "5"}
        if cursor:
            q["cursor"] = cursor
        r = expect(S.get("/v1/edge-hostnames", token=key, query=q), 200).json
        check(len(r["data"]) <= 5)
        seen += [x["id"] for x in r["data"]]
        edge(key)  # insert while walking
        pages += 1
        cursor = r["next_cursor"]
        if not cursor or pages > 50:
            break
    for i in original:
        check(seen.count(i) == 1, "item seen %d times" % seen.count(i))
    check(len(seen) == len(set(seen)), "no duplicates")
    # Properties page the same way.
    e = edge(key)
    pids = [prop(key, e["id"], ["p%d.pages.example" % i])["id"] for i in range(7)]
    walked = [x["id"] for x in S.list_all("/v1/properties", token=key, limit=2)]
    check(walked == pids, walked)


# -------------------------------------------------------------------- CORS

def test_cors():
    s = Server(env={"CERTPLANE_CORS_ORIGINS": "https://portal.example"}).start()
    try:
        pre = {"Origin": "https://portal.example", "Access-Control-Request-Method": "POST",
               "Access-Control-Request-Headers": "authorization, content-type"}
        r = s.request("OPTIONS", "/v1/properties", auth=False, headers=pre)
        check(r.status in (200, 204), r)
        check(r.header("access-control-allow-origin") == "https://portal.example", r.headers)
        check("POST" in r.header("access-control-allow-methods"), r.headers)
        hdrs = r.header("access-control-allow-headers").lower()
        check("authorization" in hdrs and "content-type" in hdrs and "idempotency-key" in hdrs, r.headers)
        r = s.get("/v1/tenants", headers={"Origin": "https://portal.example"})
        expect(r, 200)
        check(r.header("access-control-allow-origin") == "https://portal.example", r.headers)
        # An error still carries CORS so the browser app can read it.
        r = expect(s.get("/v1/tenants", auth=False, headers={"Origin": "https://portal.example"}), 401)
        check(r.header("access-control-allow-origin") == "https://portal.example", r.headers)
        # A foreign origin gets nothing.
        bad = dict(pre, Origin="https://evil.example")
        r = s.request("OPTIONS", "/v1/properties", auth=False, headers=bad)
        check(r.header("access-control-allow-origin") is None, r.headers)
        r = s.get("/v1/tenants", headers={"Origin": "https://evil.example"})
        check(r.header("access-control-allow-origin") is None, r.headers)
    finally:
        s.cleanup()


# ------------------------------------------------- restart, audit, commands

def test_restart_keeps_data_and_audit():
    s = Server().start()
    try:
        tid, key = s.new_tenant("durable")
        e = expect(s.post("/v1/edge-hostnames", {"label": "durable"}, token=key), 201).json
        body = {"name": "d", "hostnames": ["durable.example"], "edge_hostname_id": e["id"]}
        p = expect(s.post("/v1/properties", body, token=key), 201).json
        expect(s.patch("/v1/properties/" + p["id"], {"name": "d2"}, token=key), 200)
        expect(s.post("/v1/properties/%s/deployments" % p["id"], {"environment": "production"},
                      token=key), 201)
        e2 = expect(s.post("/v1/edge-hostnames", {}, token=key), 201).json
        expect(s.delete("/v1/edge-hostnames/" + e2["id"], token=key), 204)
        # The property's verification job records its check once (then the
        # next one is minutes away): snapshot after it.
        s.wait_for(lambda: expect(s.get("/v1/properties/" + p["id"], token=key), 200)
                   .json["hostname_verification"][0]["checked_at"], timeout=30,
                   what="the create-time verification recorded")
        before = {path: s.list_all(path, token=key) for path in
                  ["/v1/edge-hostnames", "/v1/properties", "/v1/properties/%s/deployments" % p["id"]]}
        tenants = s.list_all("/v1/tenants")
        check(s.stop() == 0, "clean exit on SIGTERM")
        s.start()
        for path, items in before.items():
            check(s.list_all(path, token=key) == items, path)
        check(s.list_all("/v1/tenants") == tenants)
        actions = [(a["action"], a["resource_id"]) for a in s.list_all("/v1/audit-log", token=key)]
        for want in [("tenant.create", tid), ("edge_hostname.create", e["id"]),
                     ("property.create", p["id"]), ("property.update", p["id"]),
                     ("property.deploy", p["id"]), ("edge_hostname.delete", e2["id"])]:
            check(want in actions, "%r not in %r" % (want, actions))
        entry = [a for a in s.list_all("/v1/audit-log", token=key) if a["action"] == "property.create"][0]
        check(entry["tenant_id"] == tid and entry["actor"] != "operator" and entry["created_at"], entry)
        # The operator sees every tenant's entries.
        check(len(s.list_all("/v1/audit-log")) >= len(actions))
        # Commands on the same configuration.
        cfg = s.run("check-config")
        check(s.token not in cfg.stdout + cfg.stderr, "check-config must not print the token")
        check("edge_zone" in cfg.stdout, cfg.stdout)
        s.stop()
        m = s.run("migrate")
        s.start()
        check(expect(s.get("/v1/properties/" + p["id"], token=key), 200).json["name"] == "d2")
        expect(s.get("/readyz", auth=False), 200)
    finally:
        s.cleanup()
    # migrate on an empty data directory creates the schema.
    fresh = Server()
    try:
        m = fresh.run("migrate")
        check(m.returncode == 0)
        bad = subprocess.run([BIN, "check-config"], env=dict(fresh.env, CERTPLANE_WORKERS="many"),
                             capture_output=True, text=True, timeout=60)
        check(bad.returncode != 0, "a wrongly typed setting is an error")
    finally:
        fresh.cleanup()


# ------------------------------------------------------------------ files

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_file_modes():
    s = Server()
    old = os.umask(0)  # the server must not depend on its parent's umask
    try:
        os.chmod(s.data_dir, 0o755)  # as an older install or a loose mkdir left it
        s.start()
        d = s.data_dir
        check(mode(d) == 0o700, "data_dir is 0700: %o" % mode(d))
        check("data_dir.mode" in s.log(), "tightening data_dir is logged")
        dbfiles = ["certplane.db", "certplane.db-wal", "certplane.db-shm"]
        files = ([] if PG else dbfiles) + ["master.keys", "operator.token", "certplane.lock"]
        for f in dbfiles if PG else []:  # the database is on the server, not in data_dir
            check(not os.path.exists(os.path.join(d, f)), "no %s on PostgreSQL" % f)
        for f in files:
            p = os.path.join(d, f)
            check(os.path.exists(p), "%s exists while serving" % f)
            check(mode(p) == 0o600, "%s is 0600: %o" % (f, mode(p)))
        t, _ = s.new_tenant("modes")  # writes through the WAL
        s.stop()
        # Files made looser while stopped are tightened on the next start.
        for f in ("operator.token",) if PG else ("certplane.db", "operator.token"):
            os.chmod(os.path.join(d, f), 0o644)
        s.start()
        for f in files:
            p = os.path.join(d, f)
            if os.path.exists(p):
                check(mode(p) == 0o600, "%s is 0600 after restart: %o" % (f, mode(p)))
        expect(s.get("/v1/tenants/" + t), 200)  # same token, same data
        m = s.run("migrate")
        check(m.returncode == 0)
        for name in os.listdir(d):
            p = os.path.join(d, name)
            if os.path.isfile(p) and name != "server.log":  # the harness's own log
                check(mode(p) & 0o077 == 0, "%s is private: %o" % (name, mode(p)))
        for f in dbfiles if PG else []:  # nor after a restart and a migrate
            check(not os.path.exists(os.path.join(d, f)), "no %s on PostgreSQL" % f)
    finally:
        os.umask(old)
        s.cleanup()


def serve_must_refuse(s, what):
    """Start `serve` on s's data directory: it must exit non-zero by itself."""
    p = subprocess.Popen([BIN, "serve"], env=s.env, cwd=s.data_dir, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.send_signal(signal.SIGKILL)
        p.communicate()
        raise AssertionError("serve started although the operator token is %s" % what)
    check(p.returncode != 0, "serve exits non-zero when the token is %s" % what)
    check("operator token" in err or "operator.token" in err,
          "the message names the token (%s): %r" % (what, err[-500:]))


def test_operator_token_read_error_stops_startup():
    s = Server()
    try:
        tok = os.path.join(s.data_dir, "operator.token")
        # A directory in its place: the read fails with EISDIR, even as root.
        os.mkdir(tok)
        serve_must_refuse(s, "a directory")
        check(os.path.isdir(tok), "the directory is left as it was")
        os.rmdir(tok)
        # Too large to be a token (a read error other than ENOENT): the old
        # code replaced it with a new token, locking every operator out.
        big = "cpo_" + "x" * 5000
        with open(tok, "w") as f:
            f.write(big)
        serve_must_refuse(s, "oversized")
        with open(tok) as f:
            check(f.read() == big, "an unreadable token file is not replaced")
        os.remove(tok)
        # A symlink loop (ELOOP) is an error too, and stays.
        os.symlink(tok, tok)
        serve_must_refuse(s, "a symlink loop")
        check(os.path.islink(tok), "the link is left as it was")
        os.remove(tok)
        # An empty file would hash to the empty token.
        open(tok, "w").close()
        serve_must_refuse(s, "empty")
        check(os.path.getsize(tok) == 0)
        os.remove(tok)
        # Missing: a new one is made (0600) and the server starts.
        s.start()
        check(mode(tok) == 0o600)
        expect(s.get("/v1/tenants"), 200)
        first = s.token
        s.restart()
        check(s.token == first, "an existing token is kept across restarts")
    finally:
        s.cleanup()


def test_server_healthy_after_all():
    expect(S.get("/healthz", auth=False), 200)
    expect(S.get("/readyz", auth=False), 200)


if __name__ == "__main__":
    try:
        run(globals())
    finally:
        S.cleanup()
