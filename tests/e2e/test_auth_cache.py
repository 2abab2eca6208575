"""test_auth_cache.py - API key lookups are cached (db/tenants.c), and the
cache never outlives a revocation: a deleted key, or a key of a deleted
tenant, fails on the very next request, also while other requests with that
key are in flight on other connections (an answer read just before the
delete committed must not survive it). The operator's X-Tenant-ID of a
deleted tenant is 404 at once too.
"""
import http.client
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, run  # noqa: E402

S = Server().start()


def hammer(key, path, stop, seen):
    """GET path with key on its own keep-alive connection until stop is set;
    appends (start, end, status) of every request to seen."""
    conn = http.client.HTTPConnection("127.0.0.1", S.port, timeout=30)
    while not stop.is_set():
        t0 = time.monotonic()
        conn.request("GET", path, headers={"Authorization": "Bearer " + key})
        r = conn.getresponse()
        r.read()
        seen.append((t0, time.monotonic(), r.status))
    conn.close()


def revoked_under_load(key, path, revoke):
    """Four connections GET path with key (warming the cache) while revoke()
    runs; every request that started after revoke() returned must be 401,
    and the ones that ended before it began 200."""
    stop, seen = threading.Event(), []
    threads = [threading.Thread(target=hammer, args=(key, path, stop, seen)) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    begun = time.monotonic()
    revoke()
    done = time.monotonic()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    # While the DELETE is in flight either answer is right; before it was
    # sent the key works, once its 204 is back it never does.
    before = [s for t0, t1, s in seen if t1 < begun]
    after = [s for t0, t1, s in seen if t0 > done]
    check(len(before) > 20 and set(before) == {200}, "before the revocation: %r" % before[:20])
    check(len(after) > 4 and set(after) == {401}, "after the revocation: %r" % after[:20])
    expect(S.get(path, token=key), 401)


def test_deleted_key_fails_next_request():
    tid, key = S.new_tenant("cache")
    other = expect(S.post("/v1/tenants/%s/api-keys" % tid, {"name": "other"}), 201).json["key"]
    kid = [k for k in S.list_all("/v1/tenants/%s/api-keys" % tid) if k["name"] == "test key"][0]["id"]
    revoked_under_load(key, "/v1/edge-hostnames",
                       lambda: expect(S.delete("/v1/tenants/%s/api-keys/%s" % (tid, kid)), 204))
    # Only that key: the tenant's other key still works.
    expect(S.get("/v1/edge-hostnames", token=other), 200)


def test_deleted_tenant_fails_next_request():
    tid, key = S.new_tenant("gone")
    expect(S.get("/v1/edge-hostnames", tenant=tid), 200)  # cache the operator's X-Tenant-ID
    revoked_under_load(key, "/v1/properties",
                       lambda: expect(S.delete("/v1/tenants/" + tid), 204))
    expect(S.get("/v1/edge-hostnames", tenant=tid), 404)


def test_failed_delete_revokes_nothing():
    tid, key = S.new_tenant("kept")
    expect(S.get("/v1/edge-hostnames", token=key), 200)
    expect(S.delete("/v1/tenants/%s/api-keys/%s" % (tid, "00000000-0000-4000-8000-000000000000")), 404)
    expect(S.get("/v1/edge-hostnames", token=key), 200)
    # A wrong key is never cached as anything: it stays 401, the right one 200.
    for _ in range(3):
        expect(S.get("/v1/edge-hostnames", token=key[:-1] + ("A" if key[-1] != "A" else "B")), 401)
    expect(S.get("/v1/edge-hostnames", token=key), 200)


if __name__ == "__main__":
    try:
        run(globals())
    finally:
        S.cleanup()
