"""test_scheduler_budget.py - the renewal scheduler spreads a burst of due
certificates at the CA's order budget (issue 10, sched/sched.h).

A data directory is filled by the bulk seeder (tests/bench/seed, every
certificate due now, auto_renew letsencrypt, carried by a production
property with renew automation), then `certplane serve` runs its scheduler
with a budget of 3,600 orders an hour (one a second) and a burst of 5. The
CA is unreachable on purpose: only when each renewal order is scheduled to
start matters here, and the order failing afterwards is the backoff path.

Checks, from the `renew.started` log lines (each order's `run_at`) and the
database:
  - no fixed per-tick cap and no burst at the CA: every order starts in a
    second of its own (one slot per second), the first ones within the
    first seconds, never more than burst + elapsed seconds + 1 by any time;
  - a restart in the middle neither doubles the rate nor fires a new burst
    (the budget resumes after the orders already scheduled);
  - every due certificate gets its renewal order (none is starved);
  - each certificate is ordered once (one order per certificate).
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from harness import PG, Server, check, run, BIN, SRC

N = 20
BURST = 5


def seed_dir():
    d = tempfile.mkdtemp(prefix="certplane-e2e-budget-")
    env = dict(os.environ)
    env["CERTPLANE_BUILD"] = os.path.dirname(BIN)
    if PG:  # the seeder fills the directory's database (made here, kept in pg.url)
        env["CERTPLANE_DATABASE"] = Server(data_dir=d).env["CERTPLANE_DATABASE"]
    out = subprocess.run(["sh", os.path.join(SRC, "tests", "bench", "seed"), "--data-dir", d,
                          "--certificates", str(N), "--tenants", "4", "--due-fraction", "1",
                          "--pool", "8"], env=env, capture_output=True, text=True)
    check(out.returncode == 0, "seed failed: %s %s" % (out.stdout, out.stderr))
    return d


def started(s):
    rows = []
    for line in s.log().splitlines():
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("event") == "renew.started":
            rows.append((o["certificate_id"], o["run_at"]))
    return rows


def test_budget_spreads_a_burst():
    d = seed_dir()
    s = Server(data_dir=d, env={
        "CERTPLANE_ACME_DIRECTORY_URL": "https://127.0.0.1:9/directory",
        "CERTPLANE_CA_ORDERS_PER_HOUR": "3600",
        "CERTPLANE_CA_ORDER_BURST": str(BURST),
        "CERTPLANE_SCHEDULER_INTERVAL_SECONDS": "2",
    })
    due = s.sql("SELECT count(*) FROM certificates WHERE next_attention_at <= ?",
                int(time.time()))[0][0]
    check(due == N, "seeded %d due certificates, want %d" % (due, N))
    try:
        t0 = time.time()
        s.start()
        # Within the first seconds: some orders, never more than the budget.
        time.sleep(3)
        early = started(s)
        elapsed = time.time() - t0
        check(1 <= len(early) <= BURST + int(elapsed) + 1,
              "%d orders after %.1f s (burst %d, 1/s)" % (len(early), elapsed, BURST))
        # A restart in the middle: the budget resumes after the orders
        # already scheduled (never two in one second, never a new burst).
        s.restart()
        time.sleep(2)
        mid = started(s)
        elapsed = time.time() - t0
        check(len(mid) <= BURST + int(elapsed) + 1,
              "%d orders after %.1f s and a restart (burst %d, 1/s)" % (len(mid), elapsed, BURST))
        s.wait_for(lambda: len(started(s)) >= N, timeout=N + 20, interval=0.5,
                   what="every due certificate ordered")
        rows = started(s)
        ids = [r[0] for r in rows]
        check(len(set(ids)) == N, "certificates ordered: %d distinct of %d" % (len(set(ids)), N))
        check(len(ids) == N, "an order per certificate, got %d orders" % len(ids))
        runs = sorted(r[1] for r in rows)
        # One slot per second: no two orders start in the same second, and
        # the whole burst is spread over about N seconds, not fired at once.
        check(len(set(runs)) == len(runs), "two orders in one second: %s" % runs)
        check(runs[-1] - runs[0] >= N - 1, "spread over %d s, want >= %d" % (runs[-1] - runs[0], N - 1))
        check(runs[-1] - runs[0] <= N + 5, "spread over %d s: too slow" % (runs[-1] - runs[0]))
        # The stored attention time: an order in flight or a failure
        # backoff took every one of them out of the due range.
        time.sleep(2)
        left = s.sql("SELECT count(*) FROM certificates WHERE next_attention_at <= ?",
                     int(time.time()) - 60)[0][0]
        check(left == 0, "%d certificates still due a minute ago" % left)
    finally:
        s.stop()
        s.cleanup()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    run(globals())
