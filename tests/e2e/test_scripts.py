"""test_scripts.py - the operators' curl scripts in deploy/scripts/, run for
real against a running server (CERTPLANE_URL + CERTPLANE_TOKEN)."""
import os
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import SRC, Server, check, expect, run  # noqa: E402

SCRIPTS = os.path.join(SRC, "deploy", "scripts")
srv = None


def script(name, *args, token=None):
    env = dict(os.environ, CERTPLANE_URL="http://127.0.0.1:%d" % srv.port,
               CERTPLANE_TOKEN=token or srv.token)
    return subprocess.run(["bash", os.path.join(SCRIPTS, name)] + list(args), env=env,
                          capture_output=True, text=True, timeout=60)


def tsv(out):
    lines = [l.split("\t") for l in out.strip().splitlines()]
    return lines[0], lines[1:]


def route_exists(method, path_pattern):
    return (method + " " + path_pattern) in srv.run("routes").stdout.splitlines()


def setup():
    global srv
    # one attempt per webhook delivery, so a dead receiver fails at once
    srv = Server(env={"CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
                      "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0]"}).start()


def test_usage_errors_and_missing_token():
    p = script("create-tenant.sh")
    check(p.returncode != 0 and "usage" in p.stderr, p)
    p = script("expiring-certificates.sh", "soon")
    check(p.returncode != 0 and "usage" in p.stderr, p)
    p = script("force-renewal.sh", "not-a-uuid", str(uuid.uuid4()))
    check(p.returncode != 0 and "UUID" in p.stderr, p)
    env = dict(os.environ, CERTPLANE_URL="http://127.0.0.1:%d" % srv.port)
    env.pop("CERTPLANE_TOKEN", None)
    p = subprocess.run(["bash", os.path.join(SCRIPTS, "create-tenant.sh"), "x"], env=env,
                       capture_output=True, text=True, timeout=30)
    check(p.returncode != 0 and "CERTPLANE_TOKEN" in p.stderr, p)
    p = script("create-tenant.sh", "x", token="cpk_wrong")
    check(p.returncode != 0 and "401" in p.stderr, p)


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


def test_teardown():
    srv.cleanup()


setup()
run(globals())
