#!/usr/bin/env python3
"""renewals.py - sustained renewals against Pebble (issue 10): CERTS ACME
certificates of VALIDITY seconds renewed by certplane's scheduler for
DURATION seconds. Run it through tests/bench/renewals.sh, which makes the
network namespace and the test bed with certificateValidityPeriod=VALIDITY
(PEBBLE_VA_NOSLEEP=1) and exports the test bed's environment.

A certificate obtained from a CA and shorter than 10 days renews at half its
lifetime (lifecycle/lifecycle.h), so each one renews once per WINDOW =
VALIDITY / 2 seconds and the fleet needs CERTS / WINDOW orders a second.

Seed (the flow of tests/e2e/test_renewal_window.py, spread over TENANTS
tenants): per certificate a self-signed P-256 bootstrap with auto_renew, a
property with one hostname CNAMEd (challtestsrv) to its tenant's edge
hostname, renew automation on. The production deployments (which make a
bootstrap due at once) are paced evenly over one WINDOW, so that the fleet's
renewal moments are spread over the window as in a steady state instead of
all falling in the same second. The clock starts when every certificate has
its first CA-issued version.

Then, for DURATION seconds:
  - renewals: CA-issued versions created (certificate_versions.created_at,
    order_id set), in per-minute buckets, and the rate over the run;
  - backlog, sampled every SAMPLE seconds: certificates due and not started
    (certificates.next_attention_at <= now: the stored moment the scheduler
    must act; NULL while an order is in flight) and acme_order jobs queued
    and due (run_at <= now) but not claimed, plus the queued total and
    running;
  - versions per certificate in the run against DURATION / WINDOW: each
    must have between floor(e) - 1 and ceil(e) + 1 renewals, e = DURATION /
    WINDOW (the max and min are printed);
  - CPU seconds (utime + stime from /proc) of certplane and Pebble over the
    run, and per renewal.
The database is read with Python's sqlite3 in read-only mode (WAL: the
reader never blocks the server).

Exit 1 when the rate is below MIN_RATE (default 10/s), when the backlog grows
(least-squares slope over the run times DURATION above max(20, 2 % of
CERTS)), or when a certificate renews too often or too rarely.

Knobs (environment): CERTS (700), VALIDITY (120), DURATION (600), TENANTS
(10), WORKERS (acme lane workers, 16), SAMPLE (10), MIN_RATE (10),
KEEP=1 keeps the data directory.
"""
import math
import os
import signal
import sqlite3
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import Server, Testbed, expect  # noqa: E402

CERTS = int(os.environ.get("CERTS", "700"))
VALIDITY = int(os.environ.get("VALIDITY", "120"))
DURATION = int(os.environ.get("DURATION", "600"))
TENANTS = int(os.environ.get("TENANTS", "10"))
WORKERS = int(os.environ.get("WORKERS", "16"))
SAMPLE = int(os.environ.get("SAMPLE", "10"))
MIN_RATE = float(os.environ.get("MIN_RATE", "10"))
WINDOW = VALIDITY / 2.0


def cpu_seconds(pid):
    """utime + stime of pid in seconds (fields 14 and 15 of /proc/pid/stat)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pebble_pid(tb):
    with open(os.path.join(tb.dir, "pebble.pid")) as f:
        return int(f.read().strip())


def server_env(tb):
    env = tb.server_env()
    # Tuned for throughput on a test bed: the order budget lifted far above
    # the bench's rate (the default, 18,000/h = 5/s, would be the limit
    # otherwise), the scheduler ticking every second, WORKERS acme workers
    # shared by TENANTS tenants (each may run WORKERS / 2 at once), quotas
    # lifted for the fleet, warn-level logs (no line per request).
    per_tenant = max(1, WORKERS // 2)
    env.update({
        "CERTPLANE_WORKERS": str(WORKERS),
        "CERTPLANE_TENANT_MAX_RUNNING_JOBS": str(per_tenant),
        "CERTPLANE_CA_ORDERS_PER_HOUR": "3600000",
        "CERTPLANE_CA_ORDER_BURST": "100000",
        "CERTPLANE_SCHEDULER_INTERVAL_SECONDS": "1",
        "CERTPLANE_LOG_LEVEL": "warn",
        "CERTPLANE_QUOTA_CERTIFICATES": "1000000",
        "CERTPLANE_QUOTA_PROPERTIES": "1000000",
        "CERTPLANE_QUOTA_HOSTNAMES": "1000000",
        "CERTPLANE_QUOTA_ORDERS_IN_FLIGHT": "1000000",
        "CERTPLANE_HTTP_THREADS": "4",
        # A failed renewal comes back after 5 s, not a minute: a failure
        # shows as a missed window in the per-certificate counts.
        "CERTPLANE_RENEW_BACKOFF_SECONDS": "[5,10,20]",
    })
    return env


def seed(s, tb):
    """Create the fleet; returns [(tenant key, certificate id, property id)]."""
    fleet = []
    tenants = []
    for t in range(TENANTS):
        _, key = s.new_tenant("renewals-%d" % t)
        eh = expect(s.post("/v1/edge-hostnames", {"label": "r%d" % t}, token=key), 201).json
        tb.add_a(eh["hostname"])
        tenants.append((key, eh))
    t0 = time.time()
    for i in range(CERTS):
        key, eh = tenants[i % TENANTS]
        name = "r%s.renewals.test" % uuid.uuid4().hex[:12]
        tb.set_cname(name, eh["hostname"])
        cert = expect(s.post("/v1/certificates", {
            "source": "self_signed", "name": "renew-%d" % i, "hostnames": [name],
            "validity_days": 10, "auto_renew": "letsencrypt", "key_type": "ecdsa-p256"},
            token=key), 201).json
        prop = expect(s.post("/v1/properties", {
            "name": "renew-%d" % i, "hostnames": [name], "edge_hostname_id": eh["id"],
            "certificate_id": cert["id"], "certificate_renew_automation": True},
            token=key), 201).json
        fleet.append((key, cert["id"], prop["id"]))
    print("seeded %d certificates over %d tenants in %.1f s" % (CERTS, TENANTS, time.time() - t0))
    # Deploy evenly over one window: the renewal moments of a steady state.
    t0 = time.time()
    for i, (key, _, pid) in enumerate(fleet):
        delay = t0 + i * WINDOW / CERTS - time.time()
        if delay > 0:
            time.sleep(delay)
        expect(s.post("/v1/properties/%s/deployments" % pid, {"environment": "production"},
                      token=key), 201)
    print("deployed %d properties to production over %.1f s" % (CERTS, time.time() - t0))
    return fleet


def db_open(s):
    return sqlite3.connect("file:%s?mode=ro" % os.path.join(s.data_dir, "certplane.db"),
                           uri=True, timeout=30)


def backlog(db):
    now = int(time.time())
    due = db.execute("SELECT count(*) FROM certificates WHERE next_attention_at <= ?",
                     (now,)).fetchone()[0]
    rows = db.execute("SELECT state, sum(run_at <= ?), count(*) FROM jobs "
                      "WHERE kind = 'acme_order' AND state IN ('queued', 'running') "
                      "GROUP BY state", (now,)).fetchall()
    st = {r[0]: (r[1] or 0, r[2]) for r in rows}
    return {"due_not_started": due, "queued_due": st.get("queued", (0, 0))[0],
            "queued": st.get("queued", (0, 0))[1], "running": st.get("running", (0, 0))[1]}


STALL = int(os.environ.get("STALL", "45"))


class Stalled(Exception):
    pass


def pebble_diagnosis(tb):
    """After a stall: Pebble's goroutine dump (SIGQUIT makes the Go runtime
    print every goroutine and exit) searched for its known lock cycle."""
    try:
        os.kill(pebble_pid(tb), signal.SIGQUIT)
    except OSError:
        return "Pebble is not running"
    time.sleep(2)
    with open(os.path.join(tb.dir, "pebble.log"), errors="replace") as f:
        dump = f.read()
    dump = dump[dump.find("goroutine "):]
    blocked = dump.count("semacquire")
    cycle = ("MemoryStore).FindValidAuthorization" in dump and
             "WebFrontEndImpl).Authz(" in dump and blocked > 0)
    return ("Pebble deadlocked: %d goroutines blocked on locks%s; dump in %s/pebble.log"
            % (blocked, " (the FindValidAuthorization / Authz lock cycle, see "
               "tests/bench/README.md)" if cycle else "", tb.dir))


class Progress:
    """Raises Stalled when no CA-issued version appeared for STALL seconds
    while orders are queued or running."""

    def __init__(self, db):
        self.db, self.n, self.t = db, -1, time.time()

    def check(self, b):
        n = self.db.execute("SELECT count(*) FROM certificate_versions "
                            "WHERE order_id IS NOT NULL").fetchone()[0]
        if n != self.n or (b["queued_due"] + b["running"]) == 0:
            self.n, self.t = n, time.time()
        elif time.time() - self.t > STALL:
            raise Stalled("no certificate issued for %d s with %d orders running and %d "
                          "queued and due" % (STALL, b["running"], b["queued_due"]))


def slope(xs, ys):
    n = len(xs)
    if n < 2:
        return 0.0
    mx, my = sum(xs) / n, sum(ys) / n
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den if den else 0.0


def main():
    # SIGTERM/SIGINT end the run through the finally below (server killed,
    # data directory removed).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    tb = Testbed().ensure()
    s = Server(env=server_env(tb))
    if os.environ.get("KEEP") == "1":
        s.keep = True
    s.start()
    failures = []
    try:
        db_path = os.path.join(s.data_dir, "certplane.db")
        if not os.path.exists(db_path):
            raise SystemExit("no database at %s" % db_path)
        fleet = seed(s, tb)
        ids = [c for _, c, _ in fleet]
        db = db_open(s)

        def issued():
            q = ("SELECT count(DISTINCT certificate_id) FROM certificate_versions "
                 "WHERE order_id IS NOT NULL")
            return db.execute(q).fetchone()[0]
        deadline = time.time() + max(120, 4 * WINDOW)
        next_note = time.time() + SAMPLE
        prog = Progress(db)
        while issued() < CERTS:
            prog.check(backlog(db))
            if time.time() > deadline:
                raise SystemExit("only %d of %d certificates issued before the run"
                                 % (issued(), CERTS))
            if time.time() >= next_note:
                next_note += SAMPLE
                print("  waiting for the first issuance: %d of %d, backlog %r"
                      % (issued(), CERTS, backlog(db)))
            time.sleep(1)
        t0 = time.time()
        cpu0 = (cpu_seconds(s.proc.pid), cpu_seconds(pebble_pid(tb)))
        print("first issuance of all %d done; running %d s (window %.0f s, %.1f renewals/s "
              "needed)" % (CERTS, DURATION, WINDOW, CERTS / WINDOW))
        samples = []
        print("%6s %8s %10s %8s %7s %7s %8s" % ("t", "renewed", "due_n_st", "q_due", "queued",
                                               "running", "rate/s"))
        last_n, last_t = 0, t0
        while True:
            now = time.time()
            if now - t0 >= DURATION:
                break
            time.sleep(min(SAMPLE, t0 + DURATION - now))
            now = time.time()
            b = backlog(db)
            prog.check(b)
            n = db.execute("SELECT count(*) FROM certificate_versions WHERE order_id IS NOT NULL "
                           "AND created_at >= ?", (int(t0),)).fetchone()[0]
            samples.append((now - t0, b))
            print("%6.0f %8d %10d %8d %7d %7d %8.1f" % (now - t0, n, b["due_not_started"],
                                                       b["queued_due"], b["queued"], b["running"],
                                                       (n - last_n) / (now - last_t)))
            last_n, last_t = n, now
        t1 = time.time()
        cpu1 = (cpu_seconds(s.proc.pid), cpu_seconds(pebble_pid(tb)))
        elapsed = t1 - t0
        lo_t, hi_t = int(math.ceil(t0)), int(t1)  # whole seconds inside the run
        span = hi_t - lo_t
        rows = db.execute("SELECT certificate_id, created_at FROM certificate_versions "
                          "WHERE order_id IS NOT NULL AND created_at >= ? AND created_at < ?",
                          (lo_t, hi_t)).fetchall()
        per_cert = {c: 0 for c in ids}
        buckets = [0] * int(math.ceil(span / 60.0))
        for cid, created in rows:
            per_cert[cid] = per_cert.get(cid, 0) + 1
            buckets[min(len(buckets) - 1, (created - lo_t) // 60)] += 1
        total = len(rows)
        rate = total / span if span > 0 else 0.0
        print("\nrenewals: %d in %d s = %.2f/s (target >= %.1f/s)" % (total, span, rate, MIN_RATE))
        for k, n in enumerate(buckets):
            secs = min(60, span - 60 * k)
            print("  minute %2d: %5d renewals, %.2f/s" % (k + 1, n, n / secs if secs else 0))
        if rate < MIN_RATE:
            failures.append("rate %.2f/s < %.1f/s" % (rate, MIN_RATE))

        # Backlog: due-but-not-started + queued-and-due must not grow.
        xs = [t for t, _ in samples]
        ys = [b["due_not_started"] + b["queued_due"] for _, b in samples]
        growth = slope(xs, ys) * elapsed
        limit = max(20.0, 0.02 * CERTS)
        print("backlog (due not started + queued due): first %s, last %s, max %s; "
              "fitted growth over the run %+.1f (limit %.0f)"
              % (ys[0] if ys else "-", ys[-1] if ys else "-", max(ys) if ys else "-",
                 growth, limit))
        if growth > limit:
            failures.append("backlog grows: %+.1f over the run" % growth)

        # Once per window: versions per certificate against span / WINDOW.
        e = span / WINDOW
        lo, hi = int(math.floor(e)) - 1, int(math.ceil(e)) + 1
        counts = sorted(per_cert.values())
        hist = {}
        for c in counts:
            hist[c] = hist.get(c, 0) + 1
        print("renewals per certificate: min %d, max %d, expected %.2f (allowed %d..%d); "
              "histogram %s" % (counts[0], counts[-1], e, lo, hi,
                                " ".join("%d:%d" % kv for kv in sorted(hist.items()))))
        over = [c for c, n in per_cert.items() if n > hi]
        under = [c for c, n in per_cert.items() if n < lo]
        if over:
            failures.append("%d certificate(s) renewed more than %d times, e.g. %s"
                            % (len(over), hi, over[0]))
        if under:
            failures.append("%d certificate(s) renewed fewer than %d times, e.g. %s"
                            % (len(under), lo, under[0]))
        failed = db.execute("SELECT count(*) FROM orders WHERE status = 'failed'").fetchone()[0]
        print("failed orders (whole run, seeding included): %d" % failed)

        cp_cpu, pb_cpu = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        print("CPU over the run: certplane %.1f s (%.1f%% of a core, %.2f ms/renewal), "
              "Pebble %.1f s (%.1f%%, %.2f ms/renewal)"
              % (cp_cpu, 100 * cp_cpu / elapsed, 1000 * cp_cpu / max(1, total),
                 pb_cpu, 100 * pb_cpu / elapsed, 1000 * pb_cpu / max(1, total)))
        db.close()
    except Stalled as e:
        failures.append("stalled: %s; %s" % (e, pebble_diagnosis(tb)))
    finally:
        if s.keep:
            print("data directory kept: %s" % s.data_dir)
        s.cleanup()
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
