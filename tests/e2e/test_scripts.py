"""test_scripts.py - the operators' curl scripts in deploy/scripts/, run for
real against a running server (CERTPLANE_URL + CERTPLANE_TOKEN), wired to the
ACME test bed so that follow-order.sh follows real orders.

Exit codes every script keeps (deploy/scripts/lib.sh): 0 done, 1 the
script's own "no" (follow-order.sh: failed/canceled), 2 usage (nothing sent
to the API), 3 API unreachable, 4 API error, 5 follow-order.sh --timeout."""
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import SRC, CheckFailed, Server, Testbed, check, expect, free_port, run  # noqa: E402

SCRIPTS = os.path.join(SRC, "deploy", "scripts")
ALL = ["create-tenant.sh", "expiring-certificates.sh", "failed-deliveries.sh",
       "force-renewal.sh", "follow-order.sh"]
TB = Testbed().ensure()
srv = None


def script_env(token=None, url=None):
    return dict(os.environ, CERTPLANE_URL=url or "http://127.0.0.1:%d" % srv.port,
                CERTPLANE_TOKEN=srv.token if token is None else token)


def script(name, *args, token=None, url=None):
    return subprocess.run(["bash", os.path.join(SCRIPTS, name)] + list(args),
                          env=script_env(token, url), capture_output=True, text=True, timeout=60)


def said_once(p, name, text):
    """stderr is exactly one message from the script, and it holds text."""
    lines = [l for l in p.stderr.splitlines() if l.startswith(name + ":")]
    check(len(lines) == 1 and text in lines[0] and p.stderr.count(text) == 1,
          "%s: one message holding %r, got: %r" % (name, text, p.stderr))


def tsv(out):
    lines = [l.split("\t") for l in out.strip().splitlines()]
    return lines[0], lines[1:]


def route_exists(method, path_pattern):
    return (method + " " + path_pattern) in srv.run("routes").stdout.splitlines()


def setup():
    global srv
    # one attempt per webhook delivery, so a dead receiver fails at once
    env = TB.server_env()
    env.update({"CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0]"})
    srv = Server(env=env).start()


def test_usage_errors_and_missing_token():
    p = script("create-tenant.sh")
    check(p.returncode == 2 and "usage: create-tenant.sh" in p.stderr, p)
    p = script("expiring-certificates.sh", "soon")
    check(p.returncode == 2 and "usage: expiring-certificates.sh" in p.stderr, p)
    p = script("force-renewal.sh", "not-a-uuid", str(uuid.uuid4()))
    check(p.returncode == 2 and "UUID" in p.stderr, p)
    p = script("follow-order.sh", "not-a-uuid")
    check(p.returncode == 2 and "UUID" in p.stderr, p)
    p = script("follow-order.sh", "--timeout", "soon", str(uuid.uuid4()))
    check(p.returncode == 2 and "--timeout" in p.stderr, p)
    env = dict(os.environ, CERTPLANE_URL="http://127.0.0.1:%d" % srv.port)
    env.pop("CERTPLANE_TOKEN", None)
    p = subprocess.run(["bash", os.path.join(SCRIPTS, "create-tenant.sh"), "x"], env=env,
                       capture_output=True, text=True, timeout=30)
    check(p.returncode == 2, p)
    said_once(p, "create-tenant.sh", "CERTPLANE_TOKEN")
    # an API error: its status, title and detail, printed once; exit 4
    p = script("create-tenant.sh", "x", token="cpk_wrong")
    check(p.returncode == 4, p)
    said_once(p, "create-tenant.sh", "401 Unauthorized: missing or invalid API key")
    p = script("expiring-certificates.sh", "30", token="cpk_wrong")
    check(p.returncode == 4 and p.stdout == "", p)
    said_once(p, "expiring-certificates.sh", "401 Unauthorized")


class Listener:
    """A TCP port that counts the connections made to it (and answers none)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port, self.accepted, self.done = self.sock.getsockname()[1], 0, False
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        while not self.done:
            try:
                c, _ = self.sock.accept()
                self.accepted += 1
                c.close()
            except socket.timeout:
                pass

    def close(self):
        self.done = True
        self.t.join()
        self.sock.close()


def test_help_and_unknown_options_never_reach_the_api():
    lst = Listener()
    url = "http://127.0.0.1:%d" % lst.port
    try:
        names_before = [t["name"] for t in srv.list_all("/v1/tenants")]
        for name in ALL:
            for flag in ("--help", "-h"):
                # --help works with no token at all, and prints the usage on stdout
                p = script(name, flag, token="", url=url)
                check(p.returncode == 0 and p.stdout.startswith("usage: " + name)
                      and "Exit:" in p.stdout and p.stderr == "", (name, flag, p))
            p = script(name, "x", "--help", token="", url=url)
            check(p.returncode == 0 and p.stdout.startswith("usage: " + name), (name, p))
            for bad in (["--bogus"], ["--bogus=1", str(uuid.uuid4())], ["-x", "thing"],
                        [str(uuid.uuid4()), "--tenant-id", str(uuid.uuid4())]):
                p = script(name, *bad, url=url)
                check(p.returncode == 2 and p.stdout == "", (name, bad, p))
                said_once(p, name, "unknown option")
                check("usage: " + name in p.stderr, p.stderr)
        check(lst.accepted == 0, "%d connections reached the API" % lst.accepted)
        # create-tenant.sh --help made no tenant; a name with a dash goes after --
        names = [t["name"] for t in srv.list_all("/v1/tenants")]
        check(names == names_before and "--help" not in names, names)
        p = script("create-tenant.sh", "--", "--help")
        check(p.returncode == 0, p)
        check("--help" in [t["name"] for t in srv.list_all("/v1/tenants")])
    finally:
        lst.close()


def test_unreachable_api():
    dead = "http://127.0.0.1:%d" % free_port()
    for name, args in [("create-tenant.sh", ["x"]), ("expiring-certificates.sh", ["30"]),
                       ("failed-deliveries.sh", [str(uuid.uuid4())]),
                       ("force-renewal.sh", [str(uuid.uuid4()), str(uuid.uuid4())]),
                       ("follow-order.sh", [str(uuid.uuid4())])]:
        p = script(name, *args, url=dead)
        check(p.returncode == 3 and p.stdout == "", (name, p))
        said_once(p, name, "cannot reach the API at %s (connection refused)" % dead)


def test_create_tenant():
    p = script("create-tenant.sh", "Shop \"quoted\" & co")
    check(p.returncode == 0, p)
    f = dict(l.split(None, 1) for l in p.stdout.strip().splitlines())
    check(f["name"] == "Shop \"quoted\" & co", f)
    t = expect(srv.get("/v1/tenants/" + f["tenant_id"]), 200).json
    check(t["name"] == f["name"])
    # the printed key works, and only in its tenant
    r = expect(srv.get("/v1/audit-log", token=f["api_key"]), 200)
    check(all(e["tenant_id"] == f["tenant_id"] for e in r.json["data"]))
    keys = expect(srv.get("/v1/tenants/%s/api-keys" % f["tenant_id"]), 200).json["data"]
    check([k["id"] for k in keys] == [f["key_id"]], keys)


def self_signed(key, name, days):
    return expect(srv.post("/v1/certificates", {"source": "self_signed", "name": name,
                                                "hostnames": ["%s.example.com" % name],
                                                "validity_days": days}, token=key), 201).json


def test_expiring_certificates():
    if not route_exists("POST", "/v1/certificates"):
        print("SKIP expiring-certificates.sh: no /v1/certificates yet")
        return
    a, ka = srv.new_tenant("exp-a")
    b, kb = srv.new_tenant("exp-b")
    soon_a = self_signed(ka, "soon-a-" + uuid.uuid4().hex[:6], 5)
    soon_b = self_signed(kb, "soon-b-" + uuid.uuid4().hex[:6], 10)
    late = self_signed(ka, "late-" + uuid.uuid4().hex[:6], 90)
    p = script("expiring-certificates.sh", "30")
    check(p.returncode == 0, p)
    head, rows = tsv(p.stdout)
    check(head[:3] == ["not_after", "tenant_id", "certificate_id"], head)
    by_id = {r[2]: r for r in rows}
    check(soon_a["id"] in by_id and soon_b["id"] in by_id and late["id"] not in by_id, p.stdout)
    check(by_id[soon_a["id"]][1] == a and by_id[soon_b["id"]][1] == b)
    ids = [r[2] for r in rows]
    check(ids.index(soon_a["id"]) < ids.index(soon_b["id"]), "soonest first: %s" % p.stdout)
    # a tenant key sees only its own
    p = script("expiring-certificates.sh", "30", token=kb)
    check(p.returncode == 0, p)
    ids = [r[2] for r in tsv(p.stdout)[1]]
    check(ids == [soon_b["id"]], p.stdout)
    p = script("expiring-certificates.sh", "1")
    check(p.returncode == 0 and not tsv(p.stdout)[1], p.stdout)


def test_force_renewal():
    if not route_exists("POST", "/v1/certificates/{id}/renew"):
        print("SKIP force-renewal.sh: POST /v1/certificates/{id}/renew does not exist yet")
        return
    t, key = srv.new_tenant("renew")
    p = script("force-renewal.sh", t, str(uuid.uuid4()))
    check(p.returncode != 0 and "404" in p.stderr, p)
    c = self_signed(key, "renew-" + uuid.uuid4().hex[:6], 30)
    p = script("force-renewal.sh", t, c["id"])
    if p.returncode == 0:
        f = dict(l.split(None, 1) for l in p.stdout.strip().splitlines())
        o = expect(srv.get("/v1/orders/" + f["order_id"], token=key), 200).json
        check(o["certificate_id"] == c["id"] and o["kind"] == "renew", o)
    else:
        # a certificate that cannot be renewed is a clear 4xx, not a crash
        check(any(" %d " % s in p.stderr for s in (409, 422)), p)
    # another tenant's certificate: 404
    t2, _ = srv.new_tenant("renew-other")
    p = script("force-renewal.sh", t2, c["id"])
    check(p.returncode != 0 and "404" in p.stderr, p)


def test_failed_deliveries():
    if not route_exists("GET", "/v1/webhooks/{id}/deliveries"):
        print("SKIP failed-deliveries.sh: GET /v1/webhooks/{id}/deliveries does not exist yet")
        return
    t, key = srv.new_tenant("hooks")
    # a receiver that refuses connections: port 9 (discard) on loopback
    w = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                        token=key), 201).json
    ok = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/other", "events": ["certificate.issued"]},
                         token=key), 201).json
    expect(srv.post("/v1/webhooks/%s/test" % w["id"], token=key), 202)

    def failed():
        r = expect(srv.get("/v1/webhooks/%s/deliveries" % w["id"], token=key,
                           query={"state": "failed"}), 200)
        return r.json["data"]
    d = srv.wait_for(failed, timeout=30, what="a failed delivery")[0]
    p = script("failed-deliveries.sh", t)
    check(p.returncode == 0, p)
    head, rows = tsv(p.stdout)
    check(head[1:4] == ["webhook_id", "url", "delivery_id"], head)
    check(len(rows) == 1 and rows[0][1] == w["id"] and rows[0][3] == d["id"], p.stdout)
    check(rows[0][4] == "webhook.test" and int(rows[0][5]) >= 1 and rows[0][6], rows)
    check(ok["id"] not in p.stdout)
    p = script("failed-deliveries.sh", str(uuid.uuid4()))
    check(p.returncode != 0 and "404" in p.stderr, p)


def dns01_order(key, prefix):
    zone = "%s%s.test" % (prefix, uuid.uuid4().hex[:10])
    r = expect(srv.post("/v1/certificates", {"source": "acme", "name": prefix, "hostnames": [zone],
                                             "challenge": "dns-01"}, token=key), 202).json
    return zone, r["order"]["id"]


class Follow:
    """follow-order.sh running in the background, its stdout read line by line."""

    def __init__(self, *args, token=None):
        self.p = subprocess.Popen(["bash", os.path.join(SCRIPTS, "follow-order.sh")] + list(args),
                                  env=script_env(token), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        self.lines = []

    def until(self, pred, timeout=60, what="a line"):
        # readline blocks: a watchdog kills a script that hangs
        dog = threading.Timer(timeout, self.p.kill)
        dog.start()
        try:
            return self._until(pred, what)
        finally:
            dog.cancel()

    def _until(self, pred, what):
        while True:
            line = self.p.stdout.readline()
            if not line:
                break
            f = line.rstrip("\n").split("\t")
            self.lines.append(f)
            if pred(f):
                return f
        self.p.kill()
        raise CheckFailed("follow-order.sh: no %s; got %r, stderr %r"
                          % (what, self.lines, self.p.stderr.read()))

    def finish(self, timeout=90):
        out, err = self.p.communicate(timeout=timeout)
        self.lines += [l.split("\t") for l in out.splitlines()]
        return self.p.returncode, err

    def statuses(self):
        return [f[2] for f in self.lines if f[1] == "status"]


def test_follow_order_valid():
    """A DNS-01 order followed with a tenant key: the TXT record it prints is
    published, the order turns valid, the script exits 0."""
    _, key = srv.new_tenant("follow")
    zone, oid = dns01_order(key, "fol")
    t0 = time.time()
    f = Follow(oid, token=key)
    rec = f.until(lambda l: l[1] == "record", what="record to publish")
    check(rec[2:4] == [zone, "TXT"] and rec[4] == "_acme-challenge." + zone and len(rec[5]) == 43,
          rec)
    TB.set_txt(rec[4], rec[5])
    expect(srv.post("/v1/orders/%s/verify" % oid, token=key), 202)
    rc, err = f.finish()
    check(rc == 0 and err == "", (rc, err, f.lines))
    st = f.statuses()
    check(st[0] in ("pending", "validating") and st[-1] == "valid", f.lines)
    sl = [l[2:] for l in f.lines if l[1] == "status"]
    check(all(a != b for a, b in zip(sl, sl[1:])), "only changes: %r" % f.lines)
    check(len([l for l in f.lines if l[1] == "record"]) == 1, "each record once: %r" % f.lines)
    check(all(len(l[0]) == 20 and l[0].endswith("Z") for l in f.lines), f.lines)
    o = expect(srv.get("/v1/orders/" + oid, token=key), 200).json
    check(o["status"] == "valid", o)
    print("follow-order.sh: valid after %.1f s" % (time.time() - t0))
    TB.clear_txt(rec[4])


def test_follow_order_canceled_and_errors():
    """The operator follows a tenant's order (--tenant); canceled -> exit 1.
    An unknown order -> 404, exit 4; --timeout -> exit 5."""
    tid, key = srv.new_tenant("follow-cancel")
    zone, oid = dns01_order(key, "can")
    f = Follow("--tenant", tid, oid)
    f.until(lambda l: l[1] == "record", what="record to publish")
    expect(srv.post("/v1/orders/%s/cancel" % oid, token=key), 200)
    rc, err = f.finish(timeout=40)
    check(rc == 1 and err == "" and f.statuses()[-1] == "canceled", (rc, err, f.lines))
    p = script("follow-order.sh", str(uuid.uuid4()), token=key)
    check(p.returncode == 4 and p.stdout == "", p)
    said_once(p, "follow-order.sh", "404 Not Found")
    p = script("follow-order.sh", oid)  # the operator without --tenant
    check(p.returncode == 4, p)
    said_once(p, "follow-order.sh", "X-Tenant-ID")
    _, oid2 = dns01_order(key, "tmo")
    t0 = time.time()
    p = script("follow-order.sh", "--timeout=2", oid2, token=key)
    check(p.returncode == 5 and time.time() - t0 < 10, p)
    # a DNS-01 order waits for its TXT record (validating once the CA gave it)
    first = p.stdout.splitlines()[0].split("\t")
    check(first[1] == "status" and first[2] in ("pending", "validating"), p.stdout)
    last = [l.split("\t") for l in p.stdout.splitlines() if l.split("\t")[1] == "status"][-1]
    said_once(p, "follow-order.sh", "is still %s after 2s" % last[2])
    expect(srv.post("/v1/orders/%s/cancel" % oid2, token=key), 200)


def test_teardown():
    srv.cleanup()


setup()
run(globals())
