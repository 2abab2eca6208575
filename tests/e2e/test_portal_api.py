"""test_portal_api.py - what the API owes a portal (issue 12), in the headers
a generated browser client reads:

1. every 401 names its scheme: `WWW-Authenticate: Bearer realm="certplane"`
   (no key, a wrong key, a malformed header; tenant, operator and metrics
   routes), and CORS lets a page read it;
2. every 201 carries `Location`, the URL of what it created, the same on an
   idempotent replay; a GET there answers that object (an API key has no
   single-object GET: its Location is where it is revoked), a deployment's
   only within its property and tenant; 200 and 202 answers carry none.
"""
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check, expect, run  # noqa: E402

srv = None
ORIGIN = "https://portal.example.com"


def setup():
    global srv
    srv = Server(env={"CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                      "CERTPLANE_CORS_ORIGINS": ORIGIN}).start()


def bearer(r):
    return r.header("www-authenticate") == 'Bearer realm="certplane"'


def test_401_names_bearer():
    _, key = srv.new_tenant("auth")
    cases = [("GET", "/v1/certificates", {}), ("GET", "/v1/tenants", {}),
             ("POST", "/v1/webhooks", {}), ("GET", "/metrics", {}),
             ("GET", "/v1/orders/" + str(uuid.uuid4()), {})]
    for method, path, _ in cases:
        for variant in ("none", "wrong", "malformed", "basic"):
            if variant == "none":
                r = srv.request(method, path, auth=False)
            elif variant == "wrong":
                r = srv.request(method, path, token="cpk_" + "x" * 40)
            elif variant == "malformed":
                r = srv.request(method, path, auth=False, headers={"Authorization": "Bearer"})
            else:
                r = srv.request(method, path, auth=False,
                                headers={"Authorization": "Basic dXNlcjpwYXNz"})
            expect(r, 401, "%s %s (%s)" % (method, path, variant))
            check(bearer(r), "%s %s (%s): WWW-Authenticate %r"
                  % (method, path, variant, r.header("www-authenticate")))
            check(r.header("content-type") == "application/problem+json", r.headers)
    # a page on an allowed origin can read it
    r = srv.request("GET", "/v1/certificates", auth=False, headers={"Origin": ORIGIN})
    expect(r, 401)
    check(bearer(r) and "WWW-Authenticate" in r.header("access-control-expose-headers"), r.headers)
    # only 401s carry it
    for r in (srv.get("/v1/certificates", token=key), srv.get("/v1/tenants", token=key),
              srv.get("/healthz", auth=False)):
        check(r.status != 401 and r.header("www-authenticate") is None, r)


def location_of(r, collection):
    loc = r.header("location")
    check(loc == "%s/%s" % (collection, r.json["id"]), "Location %r for %s %r"
          % (loc, collection, r.json.get("id")))
    return loc


def test_201_has_location():
    # the operator's creations
    r = expect(srv.post("/v1/tenants", {"name": "portal"}), 201)
    tid = r.json["id"]
    loc = location_of(r, "/v1/tenants")
    check(expect(srv.get(loc), 200).json["id"] == tid)
    r = expect(srv.post("/v1/tenants/%s/api-keys" % tid, {"name": "portal key"}), 201)
    key, key_loc = r.json["key"], location_of(r, "/v1/tenants/%s/api-keys" % tid)
    check(r.header("cache-control") == "no-store", r.headers)

    # the tenant's: each Location answers the object it names
    made = {}
    r = expect(srv.post("/v1/edge-hostnames", {"label": "p" + uuid.uuid4().hex[:8]},
                        token=key), 201)
    made["/v1/edge-hostnames"] = r
    host = "www.portal-%s.example.com" % uuid.uuid4().hex[:8]
    r = expect(srv.post("/v1/certificates", {"source": "self_signed", "name": "portal",
                                             "hostnames": [host], "validity_days": 30},
                        token=key), 201)
    made["/v1/certificates"] = r
    r = expect(srv.post("/v1/properties", {"name": "portal", "hostnames": [host],
                                           "edge_hostname_id": made["/v1/edge-hostnames"].json["id"],
                                           "certificate_id": r.json["id"]}, token=key), 201)
    made["/v1/properties"] = r
    r = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                        token=key), 201)
    made["/v1/webhooks"] = r
    for collection, r in made.items():
        loc = location_of(r, collection)
        got = expect(srv.get(loc, token=key), 200).json
        check(got["id"] == r.json["id"], (loc, got))
    pid = made["/v1/properties"].json["id"]
    deps = "/v1/properties/%s/deployments" % pid
    r = expect(srv.post(deps, {"environment": "staging"}, token=key), 201)
    loc = location_of(r, deps)
    check(expect(srv.get(loc, token=key), 200).json == r.json, loc)
    # only within its property and tenant
    other_t, other_key = srv.new_tenant("portal-other")
    expect(srv.get(loc, token=other_key), 404)
    expect(srv.get("/v1/properties/%s/deployments/%s" % (uuid.uuid4(), r.json["id"]), token=key), 404)
    expect(srv.get(deps + "/not-a-uuid", token=key), 404)

    # an idempotent replay answers the same Location
    h = {"Idempotency-Key": "portal-" + uuid.uuid4().hex}
    body = {"label": "q" + uuid.uuid4().hex[:8]}
    r1 = expect(srv.post("/v1/edge-hostnames", body, token=key, headers=h), 201)
    r2 = expect(srv.post("/v1/edge-hostnames", body, token=key, headers=h), 201)
    check(r2.header("idempotent-replayed") == "true", r2.headers)
    check(r1.header("location") == r2.header("location") == location_of(r1, "/v1/edge-hostnames"),
          (r1.headers, r2.headers))
    # a replayed secret-bearing 201 (sealed) too
    h = {"Idempotency-Key": "portal-key-" + uuid.uuid4().hex}
    k1 = expect(srv.post("/v1/tenants/%s/api-keys" % tid, {"name": "k"}, headers=h), 201)
    k2 = expect(srv.post("/v1/tenants/%s/api-keys" % tid, {"name": "k"}, headers=h), 201)
    check(k2.header("idempotent-replayed") == "true" and
          k1.header("location") == k2.header("location") ==
          location_of(k1, "/v1/tenants/%s/api-keys" % tid), (k1.headers, k2.headers))

    # CORS: a page may read it
    r = srv.request("POST", "/v1/edge-hostnames", body={"label": "c" + uuid.uuid4().hex[:8]},
                    token=key, headers={"Origin": ORIGIN})
    expect(r, 201)
    check("Location" in r.header("access-control-expose-headers"), r.headers)

    # not on answers that create nothing
    for r in (srv.get("/v1/certificates", token=key),
              srv.patch("/v1/properties/" + pid, {"name": "renamed"}, token=key),
              srv.post("/v1/webhooks/%s/test" % made["/v1/webhooks"].json["id"], token=key),
              srv.post("/v1/edge-hostnames", {"label": "Bad Label!"}, token=key)):
        check(r.status != 201 and r.header("location") is None, r)
    # the api key's Location is where it is revoked
    expect(srv.delete(key_loc), 204)
    expect(srv.get("/v1/certificates", token=key), 401)


def test_teardown():
    srv.cleanup()


setup()
run(globals())
