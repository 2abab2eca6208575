"""test_keys_webhooks.py - API key scopes, expiry and self-management;
webhook redelivery and secret rotation with an overlap (issue 12).

Keys: a "read" key may GET but gets 403 (problem+json naming the scope) on
POST/PATCH/DELETE, and the victim object is unchanged; an expired key is a
401 with WWW-Authenticate even while its answer sits in the auth cache; a
tenant's admin key creates and deletes its own keys (/v1/api-keys), the
deleted key fails on the very next request, tenants cannot see or delete
each other's keys, a read key cannot create or delete keys; every create
and delete is in the audit log.

Webhooks: a redelivery reaches a real receiver on loopback with the same
webhook-id and a valid signature, as a new attempt of the same delivery;
after a rotation the header carries two signatures (new first), each
checked against the new and the old secret; after a short overlap only the
new one, which the old secret does not verify.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, field_error, run  # noqa: E402
from test_webhooks import Receiver, verify  # noqa: E402

_server = None


def server():
    global _server
    if _server is None:
        _server = Server(env={
            "CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
            "CERTPLANE_WEBHOOK_TIMEOUT_SECONDS": "2",
            "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0,1,1,1,1,1,1,1,1,1,1,1]",
        }).start()
    return _server


def is_problem(r, status):
    return (r.status == status and r.header("content-type").startswith("application/problem+json")
            and r.json.get("status") == status)


def test_read_scope():
    s = server()
    tid, admin = s.new_tenant("scoped")
    k = expect(s.post("/v1/tenants/%s/api-keys" % tid, {"name": "ro", "scope": "read"}), 201).json
    check(k["scope"] == "read" and k["expires_at"] is None, k)
    ro = k["key"]
    rcv = Receiver()
    try:
        w = expect(s.post("/v1/webhooks", {"url": rcv.url("/ok"), "events": ["*"],
                                           "description": "orig"}, token=admin), 201).json
        check(expect(s.get("/v1/webhooks/" + w["id"], token=ro), 200).json["description"] == "orig")
        expect(s.get("/v1/webhooks", token=ro), 200)
        expect(s.get("/v1/api-keys", token=ro), 200)
        writes = [
            ("POST", "/v1/webhooks", {"url": rcv.url("/ok"), "events": ["*"]}),
            ("PATCH", "/v1/webhooks/" + w["id"], {"description": "hijacked"}),
            ("DELETE", "/v1/webhooks/" + w["id"], None),
            ("POST", "/v1/webhooks/%s/rotate-secret" % w["id"], None),
            ("POST", "/v1/api-keys", {"name": "escalate", "scope": "admin"}),
            ("DELETE", "/v1/api-keys/" + k["id"], None),
        ]
        for method, path, body in writes:
            r = s.request(method, path, body=body, token=ro)
            check(is_problem(r, 403), "%s %s: %r" % (method, path, r))
            check("read" in r.json["detail"], r.json)
        # The victim data is as it was: nothing created, changed or deleted.
        got = expect(s.get("/v1/webhooks/" + w["id"], token=admin), 200).json
        check(got["description"] == "orig", got)
        check(len(s.list_all("/v1/webhooks", token=admin)) == 1)
        keys = s.list_all("/v1/api-keys", token=admin)
        check(sorted(x["scope"] for x in keys) == ["admin", "read"], keys)
        # Bad grants name their field.
        for body, field in [({"name": "x", "scope": "root"}, "scope"),
                            ({"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
                            ({"name": "x", "expires_at": "tomorrow"}, "expires_at"),
                            ({"name": "x", "expires_at": "2999-01-01T00:00:00Z"}, "expires_at"),
                            ({"name": "x", "colour": "red"}, "colour")]:
            r = expect(s.post("/v1/api-keys", body, token=admin), 422, str(body))
            check(field_error(r, field), (field, r))
    finally:
        rcv.close()


def test_expired_key():
    s = server()
    tid, admin = s.new_tenant("expiring")
    until = int(time.time()) + 2
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until))
    k = expect(s.post("/v1/api-keys", {"name": "short", "expires_at": stamp}, token=admin),
               201).json
    check(k["expires_at"] == stamp, k)
    expect(s.get("/v1/webhooks", token=k["key"]), 200)  # valid, and now in the auth cache
    time.sleep(max(0, until - time.time()) + 0.3)
    r = s.get("/v1/webhooks", token=k["key"])
    check(is_problem(r, 401) and "expired" in r.json["detail"], r)
    check(r.header("www-authenticate").startswith("Bearer"), r.headers)
    expect(s.get("/v1/webhooks", token=admin), 200)


def test_self_managed_keys():
    s = server()
    ta, a = s.new_tenant("tenant-a")
    tb, b = s.new_tenant("tenant-b")
    r = expect(s.post("/v1/api-keys", {"name": "portal", "scope": "read"}, token=a), 201)
    k = r.json
    check(r.header("cache-control") == "no-store" and k["key"].startswith("cpk_"), r)
    check(r.header("location") == "/v1/api-keys/" + k["id"], r.headers)
    check(k["tenant_id"] == ta and k["scope"] == "read", k)
    listed = s.list_all("/v1/api-keys", token=a)
    check(k["id"] in [x["id"] for x in listed], listed)
    check(all("key" not in x and "key_hash" not in x for x in listed), listed)
    expect(s.get("/v1/webhooks", token=k["key"]), 200)
    # Tenant B neither sees nor deletes A's keys; A's key keeps working.
    check(all(x["tenant_id"] == tb for x in s.list_all("/v1/api-keys", token=b)))
    check(is_problem(s.delete("/v1/api-keys/" + k["id"], token=b), 404))
    expect(s.get("/v1/webhooks", token=k["key"]), 200)
    # The operator sees the same list with X-Tenant-ID, and needs it.
    got = s.list_all("/v1/api-keys", tenant=ta)
    check(sorted(x["id"] for x in got) == sorted(x["id"] for x in listed), got)
    expect(s.get("/v1/api-keys"), 400)
    # A deletes it: the very next request with it fails (auth cache revoked).
    expect(s.delete("/v1/api-keys/" + k["id"], token=a), 204)
    r = s.get("/v1/webhooks", token=k["key"])
    check(r.status == 401 and r.header("www-authenticate"), r)
    expect(s.delete("/v1/api-keys/" + k["id"], token=a), 404)
    # Deleting the key in use is allowed; the next request with it fails.
    a2 = expect(s.post("/v1/api-keys", {"name": "second admin"}, token=a), 201).json
    check(a2["scope"] == "admin", a2)
    expect(s.get("/v1/webhooks", token=a2["key"]), 200)
    expect(s.delete("/v1/api-keys/" + a2["id"], token=a2["key"]), 204)
    expect(s.get("/v1/webhooks", token=a2["key"]), 401)
    expect(s.get("/v1/webhooks", token=a), 200)
    # Audited, with who did it.
    log = s.list_all("/v1/audit-log", token=a)
    acts = {(e["action"], e["resource_id"]) for e in log}
    for want in [("api_key.create", k["id"]), ("api_key.delete", k["id"]),
                 ("api_key.create", a2["id"]), ("api_key.delete", a2["id"])]:
        check(want in acts, (want, acts))
    check(not any(k["key"] in json.dumps(e) for e in log), "no key text in the audit log")
    check(k["key"] not in s.log(), "no key text in the server log")


def deliveries(s, key, wid):
    return s.list_all("/v1/webhooks/%s/deliveries" % wid, token=key)


def delivery(s, key, wid, did):
    return next((d for d in deliveries(s, key, wid) if d["id"] == did), None)


def test_redeliver():
    s = server()
    _, key = s.new_tenant("redeliver")
    _, other = s.new_tenant("redeliver-other")
    rcv = Receiver()
    try:
        w = expect(s.post("/v1/webhooks", {"url": rcv.url("/ok"), "events": ["*"]}, token=key),
                   201).json
        t = expect(s.post("/v1/webhooks/%s/test" % w["id"], token=key), 202).json
        did = t["delivery_id"]
        s.wait_for(lambda: (delivery(s, key, w["id"], did) or {}).get("state") == "delivered",
                   timeout=10, what="first delivery")
        first = rcv.seen("/ok")
        check(len(first) == 1, first)
        base = "/v1/webhooks/%s/deliveries/%s/redeliver" % (w["id"], did)
        # Another tenant: 404 for the endpoint it cannot see; bad ids too.
        check(is_problem(s.post(base, token=other), 404))
        expect(s.post("/v1/webhooks/%s/deliveries/%s/redeliver" % (w["id"], w["id"]),
                      token=key), 404)
        expect(s.post("/v1/webhooks/%s/deliveries/nope/redeliver" % w["id"], token=key), 404)
        r = expect(s.post(base, token=key), 202).json
        check(r == {"event_id": t["event_id"], "delivery_id": did, "webhook_id": w["id"]}, r)
        s.wait_for(lambda: len(rcv.seen("/ok")) == 2, timeout=10, what="redelivery arrives")
        _, h1, b1, _ = first[0]
        _, h2, b2, _ = rcv.seen("/ok")[1]
        check(h2["webhook-id"] == h1["webhook-id"] == t["event_id"], (h1, h2))
        check(b2 == b1 and verify(w["secret"], h2, b2), h2)
        d = s.wait_for(lambda: (lambda x: x if x and x["state"] == "delivered"
                                and len(x["attempts"]) == 2 else None)(
            delivery(s, key, w["id"], did)), timeout=10, what="second attempt recorded")
        check([x["attempt"] for x in d["attempts"]] == [1, 2], d)
        check(len(deliveries(s, key, w["id"])) == 1, "the same delivery, not a new event")
        log = s.list_all("/v1/audit-log", token=key)
        check(any(e["action"] == "webhook.redeliver" and e["resource_id"] == did for e in log))
        # A delivery still retrying is left to its schedule: 409.
        f = expect(s.post("/v1/webhooks", {"url": rcv.url("/fail/1000"), "events": ["*"]},
                          token=key), 201).json
        tf = expect(s.post("/v1/webhooks/%s/test" % f["id"], token=key), 202).json
        s.wait_for(lambda: len(rcv.seen("/fail/1000")) >= 1, timeout=10, what="failing attempt")
        r = s.post("/v1/webhooks/%s/deliveries/%s/redeliver" % (f["id"], tf["delivery_id"]),
                   token=key)
        check(is_problem(r, 409), r)
        expect(s.delete("/v1/webhooks/" + f["id"], token=key), 204)
    finally:
        rcv.close()


def signatures(hdrs):
    parts = hdrs["webhook-signature"].split(" ")
    check(all(p.startswith("v1,") for p in parts), hdrs)
    return parts


def only(sig, hdrs):
    """hdrs with webhook-signature reduced to the one entry sig."""
    h = dict(hdrs)
    h["webhook-signature"] = sig
    return h


def send_test(s, key, rcv, wid, path):
    n = len(rcv.seen(path))
    expect(s.post("/v1/webhooks/%s/test" % wid, token=key), 202)
    s.wait_for(lambda: len(rcv.seen(path)) > n, timeout=10, what="test delivery")
    _, h, b, _ = rcv.seen(path)[n]
    return h, b


def test_rotate_secret():
    s = server()
    _, key = s.new_tenant("rotate")
    _, other = s.new_tenant("rotate-other")
    rcv = Receiver()
    try:
        w = expect(s.post("/v1/webhooks", {"url": rcv.url("/ok"), "events": ["*"]}, token=key),
                   201).json
        old = w["secret"]
        base = "/v1/webhooks/%s/rotate-secret" % w["id"]
        check(is_problem(s.post(base, {"overlap_seconds": 60}, token=other), 404))
        for bad in [{"overlap_seconds": -1}, {"overlap_seconds": 10 ** 9},
                    {"overlap_seconds": "60"}, {"overlap": 60}]:
            r = expect(s.post(base, bad, token=key), 422, str(bad))
            check(field_error(r, "overlap_seconds") or field_error(r, "overlap"), r)
        # Rotation 1 (default overlap, no body): both signatures, new first.
        r = expect(s.post(base, token=key), 200)
        new = r.json["secret"]
        check(r.header("cache-control") == "no-store" and new.startswith("whsec_") and new != old)
        check(r.json["previous_secret_expires_at"] is not None and r.json["id"] == w["id"], r.json)
        check("secret" not in expect(s.get("/v1/webhooks/" + w["id"], token=key), 200).json)
        h, b = send_test(s, key, rcv, w["id"], "/ok")
        sigs = signatures(h)
        check(len(sigs) == 2, h)
        check(verify(new, only(sigs[0], h), b) and not verify(old, only(sigs[0], h), b), sigs)
        check(verify(old, only(sigs[1], h), b) and not verify(new, only(sigs[1], h), b), sigs)
        # Rotation 2 with a 2 s overlap: after it, only the newest secret signs.
        r = expect(s.post(base, {"overlap_seconds": 2}, token=key), 200).json
        newest = r["secret"]
        check(newest not in (old, new), "a fresh secret")
        time.sleep(2.5)
        h, b = send_test(s, key, rcv, w["id"], "/ok")
        sigs = signatures(h)
        check(len(sigs) == 1 and verify(newest, h, b), h)
        check(not verify(new, h, b) and not verify(old, h, b), h)
        # overlap_seconds 0: the old secret stops at once.
        r = expect(s.post(base, {"overlap_seconds": 0}, token=key), 200).json
        check(r["previous_secret_expires_at"] is None, r)
        h, b = send_test(s, key, rcv, w["id"], "/ok")
        check(len(signatures(h)) == 1 and verify(r["secret"], h, b) and not verify(newest, h, b))
        log = s.list_all("/v1/audit-log", token=key)
        check(sum(e["action"] == "webhook.rotate_secret" for e in log) == 3, log)
        dump = s.log()
        check(all(x not in dump for x in (old, new, newest, r["secret"])), "no secret in the log")
    finally:
        rcv.close()


def test_zz_cleanup():
    if _server:
        _server.cleanup()


if __name__ == "__main__":
    run(globals())
