#!/usr/bin/env python3
"""issuance.py - certificates per second through certplane's API against
Pebble, next to lego run as 20 parallel processes.

certplane: one server (workers=WORKERS, default 16), N certificates
(default 100) created with POST /v1/certificates {source: "acme"} as fast as
the API takes them; the clock stops when every one is active. Validation is
HTTP-01 through certplane's own responder on 127.0.0.1:5002 (its production
path). The names are put on the tenant's properties and CNAMEd to its edge
hostname before the clock starts (an HTTP-01 order may only hold names the
tenant has verified by CNAME; the order engine checks each live).

lego 4.9.1: 20 processes in parallel, each with its own account, issuing
N/20 certificates one after the other (100 in total by default). Only one
process can bind Pebble's fixed HTTP-01 port 5002, so lego uses DNS-01 with
its exec provider publishing into challtestsrv (acme-testbed.md section 9,
EXEC_POLLING_INTERVAL=1, EXEC_SEQUENCE_INTERVAL=1, --dns.disable-cp). That
is lego's faster mode against this testbed (1.9 s vs 5.9 s per certificate
in acme-testbed.md section 10), so the comparison does not favour certplane.

Both use fresh random names (no authorization reuse), Pebble's defaults
(5 % badNonce, PEBBLE_VA_NOSLEEP=1 from the testbed script), P-256 keys.
Usage: CERTPLANE_BIN=build/certplane python3 tests/bench/issuance.py [N]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Server, Testbed, expect  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
PROCS = 20
WORKERS = os.environ.get("WORKERS", "16")


def bench_certplane(tb):
    env = tb.server_env()
    # One tenant alone: the per-tenant cap (tenant_max_running_jobs, at most
    # half the lane's workers) is for sharing; here the lane gets 2 x WORKERS
    # threads and the tenant a cap of WORKERS, so WORKERS orders run at once as
    # before, and the in-flight order quota is lifted for the N orders.
    env.update({"CERTPLANE_WORKERS": str(2 * int(WORKERS)), "CERTPLANE_LOG_LEVEL": "warn",
                "CERTPLANE_TENANT_MAX_RUNNING_JOBS": WORKERS,
                "CERTPLANE_QUOTA_ORDERS_IN_FLIGHT": "1000000",
                "CERTPLANE_QUOTA_CERTIFICATES": "1000000",
                "CERTPLANE_HTTP_THREADS": "8"})
    s = Server(env=env).start()
    try:
        tid, key = s.new_tenant()
        eh = expect(s.post("/v1/edge-hostnames", {"label": "bench"}, token=key), 201).json
        tb.add_a(eh["hostname"])
        warm = "w%s.bench.test" % uuid.uuid4().hex[:10]
        names = ["c%s.bench.test" % uuid.uuid4().hex[:12] for _ in range(N)]
        todo = [warm] + names
        for i in range(0, len(todo), 100):
            for n in todo[i:i + 100]:
                tb.set_cname(n, eh["hostname"])
            expect(s.post("/v1/properties", {"name": "bench %d" % i, "hostnames": todo[i:i + 100],
                                             "edge_hostname_id": eh["id"]}, token=key), 201)
        # Warm-up: the account registration is a one-off, not per certificate.
        w = expect(s.post("/v1/certificates", {"source": "acme", "name": "warm",
                                               "hostnames": [warm]},
                          token=key), 202).json
        s.wait_for(lambda: s.get("/v1/certificates/" + w["id"], token=key).json["status"] == "active",
                   timeout=60)
        t0 = time.time()
        ids = []
        for i in range(N):
            r = expect(s.post("/v1/certificates", {"source": "acme", "name": "b%d" % i,
                                                   "hostnames": [names[i]]},
                              token=key), 202).json
            ids.append(r["id"])
        pending = set(ids)
        while pending:
            for o in s.list_all("/v1/orders", token=key, limit=500):
                if o["status"] == "valid":
                    pending.discard(o["certificate_id"])
                elif o["status"] == "failed":
                    raise SystemExit("order failed: %r" % o)
            if pending:
                time.sleep(0.05)
        dt = time.time() - t0
        return dt
    finally:
        s.cleanup()


def bench_lego(tb):
    d = tempfile.mkdtemp(prefix="bench-lego-")
    hook = os.path.join(d, "hook")
    with open(hook, "w") as f:
        f.write("#!/bin/sh\ncase \"$1\" in\n"
                "  present) curl -sSf -d \"{\\\"host\\\":\\\"$2\\\",\\\"value\\\":\\\"$3\\\"}\" "
                "\"$CHALLTESTSRV_URL/set-txt\" ;;\n"
                "  cleanup) curl -sSf -d \"{\\\"host\\\":\\\"$2\\\"}\" \"$CHALLTESTSRV_URL/clear-txt\" ;;\n"
                "esac\n")
    os.chmod(hook, 0o755)
    env = dict(os.environ)
    env.update({"EXEC_PATH": hook, "EXEC_POLLING_INTERVAL": "1", "EXEC_PROPAGATION_TIMEOUT": "30",
                "EXEC_SEQUENCE_INTERVAL": "1", "LEGO_CA_CERTIFICATES": tb.env["ACME_CA_BUNDLE"],
                "CHALLTESTSRV_URL": tb.env["CHALLTESTSRV_URL"]})
    per = N // PROCS
    script = ("for i in $(seq %d); do lego --server %s --accept-tos --email bench@example.com "
              "--path \"$P\" --key-type ec256 --domains \"l$(head -c6 /dev/urandom | od -An -tx1 | tr -d ' \\n').bench.test\" "
              "--dns exec --dns.resolvers %s --dns.disable-cp run >>\"$P.log\" 2>&1 || exit 1; done"
              % (per, tb.env["ACME_DIRECTORY_URL"], tb.env["DNS_RESOLVER"]))
    t0 = time.time()
    procs = []
    for p in range(PROCS):
        e = dict(env)
        e["P"] = os.path.join(d, "p%d" % p)
        procs.append(subprocess.Popen(["sh", "-c", script], env=e))
    rcs = [p.wait() for p in procs]
    dt = time.time() - t0
    if any(rcs):
        print("lego failures: %d of %d processes (see %s/*.log)" % (sum(1 for r in rcs if r), PROCS, d))
    else:
        shutil.rmtree(d, ignore_errors=True)
    return dt, PROCS * per


def main():
    tb = Testbed().ensure()
    cp = bench_certplane(tb)
    print("certplane: %d certificates in %.2f s = %.2f certs/s (HTTP-01, workers=%s)"
          % (N, cp, N / cp, WORKERS), flush=True)
    lg, n_lego = bench_lego(tb)
    print("lego x%d:  %d certificates in %.2f s = %.2f certs/s (DNS-01 exec provider)"
          % (PROCS, n_lego, lg, n_lego / lg), flush=True)
    ratio = (N / cp) / (n_lego / lg)
    print("ratio certplane/lego: %.1fx (target >= 5x)" % ratio)


if __name__ == "__main__":
    main()
