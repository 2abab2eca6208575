#!/usr/bin/env python3
"""instances.py - certificates per second with 1, 2 and 3 certplane
instances sharing one PostgreSQL (issue 11). Run it through
tests/bench/instances.sh, which makes the network namespace, the test bed
(Pebble's VA sleeping up to SLEEP seconds per validation) and the
PostgreSQL server, and exports their environment.

For each instance count n in COUNTS (1 2 3): a fresh database (certplane
migrate), n instances with WORKERS acme workers each, the same master key
and operator token, HTTP-01 answered by all n on the test bed's one port
(SO_REUSEPORT); CERTS one-name certificates created round-robin
through the n APIs and over TENANTS tenants, each hostname CNAMEd to its
tenant's edge hostname.
The clock runs from the first create to the last certificate active.

Printed per n: certificates per second, overall (first create to last
active) and steady (issuances between the 10th and 90th percentile of their
times: without the ramp and the last validations' tail), and CPU seconds per certificate of
certplane (all n processes), PostgreSQL (every process of the cluster) and
Pebble, from /proc utime + stime over the run. Exit 1 when n = 3's steady
rate is below MIN_SPEEDUP (2.7) times n = 1's.

Knobs (environment): CERTS (180), WORKERS (4), TENANTS (12: the
certificates are spread over them, since one tenant's running orders are
capped across all instances), COUNTS ("1 2 3"),
MIN_SPEEDUP (2.7), SLEEP (from instances.sh, for the report).
"""
import base64
import os
import subprocess
import sys
import time
import uuid

SRC = os.environ["CERTPLANE_SRC"]
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
from harness import BIN, Server, Testbed, check, expect  # noqa: E402

CERTS = int(os.environ.get("CERTS", "180"))
WORKERS = int(os.environ.get("WORKERS", "4"))
TENANTS = int(os.environ.get("TENANTS", "12"))
COUNTS = [int(x) for x in os.environ.get("COUNTS", "1 2 3").split()]
MIN_SPEEDUP = float(os.environ.get("MIN_SPEEDUP", "2.7"))
PG_DIR = os.environ["PG_DIR"]
BASE = os.environ["CERTPLANE_PG_URL"]
TB = Testbed(os.environ["CERTPLANE_TESTBED_DIR"]).ensure()
TICK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def pg_pids():
    with open(os.path.join(PG_DIR, "data", "postmaster.pid")) as f:
        master = int(f.readline())
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == master:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def pebble_pid():
    with open(os.path.join(TB.dir, "pebble.pid")) as f:
        return int(f.read().strip())


def psql(url, sql):
    p = subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                       capture_output=True, text=True)
    check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr))
    return p.stdout.strip()


def fresh_db(name):
    for sql in ("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, "CREATE DATABASE %s" % name):
        psql(BASE, sql)
    head, _, rest = BASE.partition("://")
    host, _, query = rest.partition("?")
    return "%s://%s/%s%s" % (head, host.split("/")[0], name, "?" + query if query else "")


def run(n):
    url = fresh_db("cp_bench_%d" % n)
    common = TB.server_env()
    common.update({
        "CERTPLANE_DATABASE": url,
        "CERTPLANE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "CERTPLANE_OPERATOR_TOKEN": "cpop_" + uuid.uuid4().hex,
        "CERTPLANE_WORKERS": str(WORKERS),
        "CERTPLANE_LOG_LEVEL": "warn",
        "CERTPLANE_QUOTA_ORDERS_IN_FLIGHT": "100000",
        "CERTPLANE_QUOTA_CERTIFICATES": "100000",
        "CERTPLANE_QUOTA_HOSTNAMES": "100000",
    })
    env = dict(os.environ, **common)
    env["CERTPLANE_DATA_DIR"] = "/tmp/cp-bench-migrate-%d" % n
    os.makedirs(env["CERTPLANE_DATA_DIR"], exist_ok=True)
    p = subprocess.run([BIN, "migrate"], env=env, capture_output=True, text=True,
                       cwd=env["CERTPLANE_DATA_DIR"])
    check(p.returncode == 0, "migrate: %s" % p.stderr)
    servers = [Server(env=dict(common)).start() for _ in range(n)]
    try:
        a = servers[0]
        # Many tenants, as on a CDN: one tenant's running orders are capped
        # (tenant_max_running_jobs, across every instance), so one tenant
        # alone would measure the cap, not the instances.
        keys, names = [], []
        for t in range(TENANTS):
            _, key = a.new_tenant("bench%d" % t)
            eh = expect(a.post("/v1/edge-hostnames", {"label": "e%s" % uuid.uuid4().hex[:8]},
                               token=key), 201).json
            TB.add_a(eh["hostname"])
            mine = ["b%s.test" % uuid.uuid4().hex[:12] for _ in range(CERTS // TENANTS + 1)]
            for h in mine:
                TB.set_cname(h, eh["hostname"])
            expect(a.post("/v1/properties", {"name": "p%d" % t, "hostnames": mine,
                                             "edge_hostname_id": eh["id"]}, token=key), 201)
            keys.append(key)
            names.append(mine)
        # One certificate first: the account registration is a one-off.
        expect(a.post("/v1/certificates", {"source": "acme", "name": "warm",
                                           "hostnames": [names[0].pop()]}, token=keys[0]), 202)
        a.wait_for(lambda: psql(url, "SELECT count(*) FROM certificates WHERE status = "
                                     "'active'") == "1" or None, timeout=120, what="warm-up")
        procs = [s.proc.pid for s in servers]
        pgp, peb = pg_pids(), pebble_pid()
        c0 = (sum(cpu_of(p) for p in procs), sum(cpu_of(p) for p in pgp), cpu_of(peb))
        t0 = time.time()
        for i in range(CERTS - 1):
            t = i % TENANTS
            expect(servers[i % n].post("/v1/certificates", {"source": "acme", "name": "c%d" % i,
                                                            "hostnames": [names[t].pop()]},
                                       token=keys[t]), 202)
        a.wait_for(lambda: psql(url, "SELECT count(*) FROM certificates WHERE status = "
                                     "'active'") == str(CERTS) or None,
                   timeout=1800, interval=0.5, what="%d certificates active" % CERTS)
        dt = time.time() - t0
        c1 = (sum(cpu_of(p) for p in procs), sum(cpu_of(p) for p in pgp), cpu_of(peb))
        failed = psql(url, "SELECT count(*) FROM orders WHERE status = 'failed'")
        check(failed == "0", "%s orders failed" % failed)
        m = CERTS - 1
        rate = m / dt
        # The steady state: issuance times (certificate_versions.created_at,
        # whole seconds) between the 10th and the 90th percentile, without
        # the ramp (workers filling) and the tail (the last VA sleeps).
        ts = sorted(int(x) for x in psql(url, "SELECT created_at FROM certificate_versions "
                                              "ORDER BY created_at").split())[1:]
        lo, hi = ts[len(ts) // 10], ts[len(ts) * 9 // 10]
        steady = (len(ts) * 8 // 10) / max(hi - lo, 1)
        print("instances=%d  %d certificates in %.1f s: %.2f/s overall, %.2f/s steady (p10-p90)"
              "   CPU s/cert: certplane %.4f  postgresql %.4f  pebble %.4f"
              % (n, m, dt, rate, steady, (c1[0] - c0[0]) / m, (c1[1] - c0[1]) / m,
                 (c1[2] - c0[2]) / m), flush=True)
        return rate, steady
    finally:
        for s in servers:
            s.cleanup()


def main():
    print("Pebble VA sleep up to %s s per validation; %d workers per instance; %d certificates"
          % (os.environ.get("SLEEP", "?"), WORKERS, CERTS), flush=True)
    rates = {n: run(n) for n in COUNTS}
    if 1 in rates and 3 in rates:
        overall = rates[3][0] / rates[1][0]
        steady = rates[3][1] / rates[1][1]
        print("speed-up 1 -> 3 instances: %.2fx overall, %.2fx steady (want >= %.1fx steady)"
              % (overall, steady, MIN_SPEEDUP))
        return 0 if steady >= MIN_SPEEDUP else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
