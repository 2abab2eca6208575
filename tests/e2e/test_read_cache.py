"""test_read_cache.py - GET /v1/certificates/{id} and GET /v1/properties/{id}
answer from a per-thread cache of rendered bytes (api/read_cache.c) on a
SQLite file, valid for the process's write generation (a WAL hook bumps it
after every commit, db/driver_sqlite.c) and the wall-clock second of the
render. What this checks:

1. the cache is really on with SQLite (off with PostgreSQL): the server says
   so at start, and a row changed behind the server's back (an outside
   writer it cannot see) is still answered from the cache within that second
   on SQLite and at once on PostgreSQL, and seen on SQLite after the second;
2. read-your-writes on every path that changes the bytes, each run right
   after a second boundary so that a warm entry would still be valid if the
   change did not invalidate it: PATCH of the certificate (ETag and
   If-None-Match follow), a property pointing at it and leaving it
   (`property_ids`), a renewal order and its cancel, a property PATCH, deployments, hostname
   verification by a worker's background check and by the dns-check on a net
   thread (a tiny DNS server here answers the TXT records), and a
   certificate that expires (the time-derived status);
3. a read-scoped key reads the same bytes and still may not write, right
   after cached reads; tenant B gets 404 for A's ids on the very connection
   (and so the thread) whose cache holds them; a deleted key is 401 and a
   deleted object 404 on the next request.
Runs without the ACME test bed (renewals go to a CA that refuses
connections); a worker's new version from a real CA is read-your-writes
checked in test_acme.py (test_seed_flow_renewed_by_scheduler).
"""
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import PG, Server, check, expect, run  # noqa: E402


class TxtDns:
    """A UDP DNS server on 127.0.0.1 that answers TXT queries for the names
    in self.txt (authoritative), NODATA for other types of those names and
    NXDOMAIN for the rest."""

    def __init__(self):
        self.txt = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _answer(self, q):
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        flags = 0x8400 | (struct.unpack(">H", q[2:4])[0] & 0x0100) | 0x0080
        answers = b""
        if name in self.txt and qtype == 16:
            v = self.txt[name].encode()
            rdata = bytes([len(v)]) + v
            answers = b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 0, len(rdata)) + rdata
        elif name not in self.txt:
            flags |= 3  # NXDOMAIN
        return q[:2] + struct.pack(">HHHHH", flags, 1, 1 if answers else 0, 0, 0) + \
            question + answers

    def _serve(self):
        while not self.stop.is_set():
            try:
                q, addr = self.sock.recvfrom(4096)
                self.sock.sendto(self._answer(q), addr)
            except (socket.timeout, OSError, IndexError, struct.error):
                pass

    @property
    def hostport(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


DNS = TxtDns()
S = Server(env={
    "CERTPLANE_DNS_RESOLVER": DNS.hostport,
    # Renewal orders fail at once: nothing listens there.
    "CERTPLANE_ACME_DIRECTORY_URL": "http://127.0.0.1:9/directory",
    "CERTPLANE_SCHEDULER_INTERVAL_SECONDS": "300",
}).start()
TA, KA = S.new_tenant("reader")
TB, KB = S.new_tenant("other")


def after_second_boundary():
    """Sleep to just after the next wall-clock second, so that what follows
    (a warm GET, a change, the GET that must see it: well under a second)
    runs inside one second, where a stale entry would still be valid."""
    t = time.time()
    time.sleep(1.02 - (t - int(t)))
    return time.time()


def get(path, key=KA, **kw):
    return expect(S.get(path, token=key, **kw), 200)


def listed(list_path, oid, key=KA):
    """The object oid as the (uncached) list renders it, as text."""
    body = get(list_path + "?limit=500", key).json
    hits = [o for o in body["data"] if o["id"] == oid]
    check(len(hits) == 1, "%s lacks %s" % (list_path, oid))
    return hits[0]


def warm(path, key=KA):
    """GET path twice (the second from this thread's cache); the body."""
    a = get(path, key)
    b = get(path, key)
    check(a.body == b.body and a.header("etag") == b.header("etag"), (a, b))
    return a


def fresh(path, change, key=KA):
    """Within one second: warm path, run change(), GET path; the GET after
    the change (its Resp) and the one before."""
    for _ in range(3):
        t0 = after_second_boundary()
        before = warm(path, key)
        change()
        after = get(path, key)
        if int(time.time()) == int(t0):
            return before, after
    check(False, "could not fit warm, change and GET into one second")


def new_cert(name, key=KA, hostnames=None):
    return expect(S.post("/v1/certificates", {
        "source": "self_signed", "name": name,
        "hostnames": hostnames or ["%s.rc.example.com" % name]}, token=key), 201).json


def edge(key=KA):
    return expect(S.post("/v1/edge-hostnames", {"label": "rc%d" % (time.time_ns() % 10**9)},
                         token=key), 201).json


# ---------------------------------------------------------------- 1. on/off

def ready_line():
    # the listener answers /healthz a moment before the line is written
    def find():
        for line in S.log().splitlines():
            try:
                j = json.loads(line)
            except ValueError:
                continue
            if j.get("event") == "server.ready" or j.get("msg") == "server.ready" or \
                    "server.ready" in line:
                return j
        return None
    return S.wait_for(find, timeout=10, what="the server.ready line in the log")


def test_cache_on_for_sqlite_off_for_pg():
    check(ready_line().get("read_cache") is (not PG), ready_line())
    c = new_cert("outside")
    path = "/v1/certificates/" + c["id"]
    # An outside writer: the server's hook never runs for it.
    for _ in range(3):
        t0 = after_second_boundary()
        warm(path)
        S.sql("UPDATE certificates SET name = ? WHERE id = ?", "outside-%d" % t0, c["id"])
        r = get(path)
        if int(time.time()) == int(t0):
            break
    if PG:
        check(r.json["name"] == "outside-%d" % t0, "PostgreSQL reads the database: %r" % r)
    else:
        check(r.json["name"] == "outside", "SQLite answers from the cache: %r" % r)
        time.sleep(1.05)
        check(get(path).json["name"] == "outside-%d" % t0, "the entry ends with its second")


# ------------------------------------------------------- 2. read your writes

def test_certificate_patch_and_etag():
    c = new_cert("patched")
    path = "/v1/certificates/" + c["id"]
    before, after = fresh(path, lambda: expect(S.patch(path, {
        "name": "patched2", "metadata": {"k": "v"}}, token=KA), 200))
    check(after.json["name"] == "patched2" and after.json["metadata"] == {"k": "v"}, after)
    check(after.header("etag") != before.header("etag"), (before.headers, after.headers))
    old = S.get(path, token=KA, headers={"If-None-Match": before.header("etag")})
    check(old.status == 200 and old.body == after.body, old)
    new = S.get(path, token=KA, headers={"If-None-Match": after.header("etag")})
    check(new.status == 304 and new.body == b"" and new.header("etag") == after.header("etag"),
          new)
    check(after.json == listed("/v1/certificates", c["id"]), after)


def test_property_ids_of_certificate():
    c = new_cert("pointed")
    path = "/v1/certificates/" + c["id"]
    e = edge()
    made = {}

    def create():
        made["p"] = expect(S.post("/v1/properties", {
            "name": "p", "hostnames": ["www.pointed.rc.example.com"],
            "edge_hostname_id": e["id"], "certificate_id": c["id"]}, token=KA), 201).json
    _, after = fresh(path, create)
    check(after.json["property_ids"] == [made["p"]["id"]], after)
    ppath = "/v1/properties/" + made["p"]["id"]
    _, after = fresh(path, lambda: expect(S.patch(ppath, {"certificate_id": None}, token=KA), 200))
    check(after.json["property_ids"] == [], after)
    expect(S.patch(ppath, {"certificate_id": c["id"]}, token=KA), 200)
    _, after = fresh(path, lambda: expect(S.delete(ppath, token=KA), 204))
    check(after.json["property_ids"] == [], after)


def test_renewal_order_and_cancel():
    c = new_cert("renewed")
    path = "/v1/certificates/" + c["id"]
    made = {}

    def renew():
        made["o"] = expect(S.post(path + "/renew", token=KA), 202).json
    before, after = fresh(path, renew)
    check(before.json["status"] == "active" and after.json["status"] == "renewing", after)
    check(after.json == listed("/v1/certificates", c["id"]), after)
    # The worker's attempts at the unreachable CA (its own connection) leave
    # the certificate as it is; the cancel puts it back.
    S.wait_for(lambda: get("/v1/orders/" + made["o"]["id"]).json["attempts"] > 0, timeout=20,
               what="a worker attempt")
    _, after = fresh(path, lambda: expect(S.post("/v1/orders/%s/cancel" % made["o"]["id"],
                                                 token=KA), 200))
    check(after.json["status"] != "renewing", after)
    check(after.json == listed("/v1/certificates", c["id"]), after)


def test_property_patch_deployments_and_verification():
    e = edge()
    host = "www.verify%d.rc.example.com" % (time.time_ns() % 10**9)
    other = "api." + host.split(".", 1)[1]
    p = expect(S.post("/v1/properties", {"name": "v", "hostnames": [host], "edge_hostname_id":
                                         e["id"]}, token=KA), 201).json
    path = "/v1/properties/" + p["id"]
    # The create's background check (a worker): pending, checked at some point.
    S.wait_for(lambda: listed("/v1/properties", p["id"])["hostname_verification"][0]["checked_at"],
               timeout=30, what="the first background check")
    check(get(path).json == listed("/v1/properties", p["id"]), "after the worker's check")
    _, after = fresh(path, lambda: expect(S.patch(path, {"name": "v2"}, token=KA), 200))
    check(after.json["name"] == "v2", after)
    for env in ["staging", "production"]:
        _, after = fresh(path, lambda: expect(S.post(path + "/deployments", {"environment": env},
                                                     token=KA), 201))
        check(after.json[env] and after.json[env]["version"] == 1, after)
    # The dns-check runs on a net thread and stores the verdict there.
    tok = [v for v in after.json["hostname_verification"] if v["hostname"] == host][0]["token"]
    DNS.txt["_certplane-verify." + host] = tok
    _, after = fresh(path, lambda: check(
        get(path + "/dns-check").json["hostnames"][0]["verification"]["status"] == "verified",
        "dns-check verifies"))
    v = after.json["hostname_verification"][0]
    check(v["status"] == "verified" and v["method"] == "txt", after)
    # A hostname added by PATCH is checked by a worker in the background.
    DNS.txt["_certplane-verify." + other] = "wrong"
    expect(S.patch(path, {"hostnames": [host, other]}, token=KA), 200)
    pv = expect(S.get(path, token=KA), 200).json["hostname_verification"]
    DNS.txt["_certplane-verify." + other] = [v for v in pv if v["hostname"] == other][0]["token"]
    expect(S.patch(path, {"name": "v3"}, token=KA), 200)  # queues the check again
    get(path)
    S.wait_for(lambda: all(v["status"] == "verified" for v in
                           listed("/v1/properties", p["id"])["hostname_verification"]),
               timeout=30, what="the worker verifies the new hostname")
    check(get(path).json == listed("/v1/properties", p["id"]), "after the worker's verification")


def short_lived_cert(name, seconds):
    """A self-signed certificate (PEM, key PEM) valid until `seconds` from now
    (openssl ca -selfsign takes exact dates)."""
    d = tempfile.mkdtemp(prefix="rc-short-")
    j = lambda n: os.path.join(d, n)  # noqa: E731
    open(j("index.txt"), "w").close()
    with open(j("serial"), "w") as f:
        f.write("1000\n")
    with open(j("ca.cnf"), "w") as f:
        f.write("[ca]\ndefault_ca = t\n[t]\ndir = %s\ndatabase = $dir/index.txt\n"
                "new_certs_dir = $dir\nserial = $dir/serial\ndefault_md = sha256\n"
                "policy = any\nunique_subject = no\ncopy_extensions = copy\n"
                "[any]\ncommonName = supplied\n" % d)
    fmt = lambda t: time.strftime("%Y%m%d%H%M%SZ", time.gmtime(t))  # noqa: E731
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", j("k.pem"), "-out",
                    j("c.csr"), "-subj", "/CN=" + name, "-addext", "subjectAltName=DNS:" + name],
                   check=True, capture_output=True)
    end = int(time.time()) + seconds
    subprocess.run(["openssl", "ca", "-batch", "-selfsign", "-config", j("ca.cnf"), "-keyfile",
                    j("k.pem"), "-in", j("c.csr"), "-out", j("c.pem"), "-notext",
                    "-startdate", fmt(time.time() - 3600), "-enddate", fmt(end)],
                   check=True, capture_output=True)
    return open(j("c.pem")).read(), open(j("k.pem")).read(), end


def test_expiry_is_seen_at_once():
    pem, kpem, end = short_lived_cert("short.rc.example.com", 3)
    c = expect(S.post("/v1/certificates", {"source": "upload", "name": "short",
                                           "certificate": pem, "private_key": kpem},
                      token=KA), 201).json
    path = "/v1/certificates/" + c["id"]
    seen = []
    while time.time() < end + 2:
        t0 = time.time()
        seen.append((t0, get(path).json["status"]))
    # not_after is `end`: from second end + 1 on the certificate is expired
    # (lifecycle: now > not_after), whatever was cached a moment before.
    late = [s for t, s in seen if int(t) > end]
    early = [s for t, s in seen if int(t) < end]
    check(late and set(late) == {"expired"}, seen[-5:])
    check(early and "expired" not in early, seen[:5])


# -------------------------------------------------- 3. who may read the bytes

def same_bytes(obj, **kw):
    """The tenant key and another reader get the same bytes. Without the
    cache (PostgreSQL) a worker's write (a hostname re-check) may land
    between two reads: a pair read back to back agrees within 3 tries."""
    for _ in range(3):
        a, b = get(obj), get(obj, **kw)
        if a.body == b.body:
            return True
    return False


def test_read_key_other_tenant_deleted_key_and_object():
    c = new_cert("guarded")
    path = "/v1/certificates/" + c["id"]
    e = edge()
    p = expect(S.post("/v1/properties", {"name": "g", "hostnames": ["g.rc.example.com"],
                                         "edge_hostname_id": e["id"]}, token=KA), 201).json
    ppath = "/v1/properties/" + p["id"]
    ro = expect(S.post("/v1/tenants/%s/api-keys" % TA, {"name": "ro", "scope": "read"}),
                201).json
    for obj in [path, ppath]:
        a = warm(obj)
        # Same connection (and thread) as the cached entry: B never gets it.
        expect(S.get(obj, token=KB), 404)
        expect(S.get(obj, token=KB, headers={"If-None-Match": a.header("etag")}), 404)
        expect(S.get(obj, tenant=TB), 404)  # the operator in tenant B
        check(same_bytes(obj, key=ro["key"]), "the read key reads the same bytes")
        check(same_bytes(obj, tenant=TA), "the operator in tenant A too")
        before = get(obj)
        expect(S.patch(obj, {"name": "nope"}, token=ro["key"]), 403)
        check(json.loads(get(obj).body)["name"] == json.loads(before.body)["name"],
              "a refused write changes nothing")
    # The read key sees the admin key's write at once.
    _, after = fresh(path, lambda: expect(S.patch(path, {"name": "guarded2"}, token=KA), 200),
                     key=ro["key"])
    check(after.json["name"] == "guarded2", after)
    # A deleted key is refused on its next request, cached bytes or not.
    warm(path, ro["key"])
    expect(S.delete("/v1/tenants/%s/api-keys/%s" % (TA, ro["id"])), 204)
    expect(S.get(path, token=ro["key"]), 401)
    # A deleted object is gone on the next request.
    for obj in [ppath, path]:
        after_second_boundary()
        warm(obj)
        expect(S.delete(obj, token=KA), 204)
        expect(S.get(obj, token=KA), 404)


if __name__ == "__main__":
    try:
        run(globals())
    finally:
        S.cleanup()
        DNS.close()
