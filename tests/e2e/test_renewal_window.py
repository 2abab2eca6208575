"""test_renewal_window.py - short-lived certificates renewed once per window
(issue 10, lifecycle/lifecycle.h), against Pebble issuing LIFE-second
certificates (ACME_TESTBED_CERT_VALIDITY_SECONDS; the shared test bed is
restarted with it and restored to its default in `finally`, as
test_acme_difficult_ca.py does).

Seed flow for CERTS certificates: a self-signed bootstrap (10 days, inside
renew_before_days = 25, so due at once), an edge hostname, a property whose
hostnames CNAME (challtestsrv) to it, with renew automation, deployed to
production. The scheduler (interval 1 s) renews the bootstrap at once, then
every CA-issued version when half its lifetime is left (LIFE / 2: shorter than
10 days). Over OBSERVE seconds it proves:

- `renewal.renew_after` of every version is exactly the rule's moment
  (bootstrap: its not_before; CA-issued: not_after - lifetime / 2);
- each renewal order was created at that moment: not before it, and within
  the scheduler interval + SLACK after it;
- one renewal per window: the CA-issued versions counted against elapsed
  time / window, one order per new version, no failed order, no loop;
- reminders relative to the lifetime: a version renewed at half its
  lifetime never reaches 1/3 left, so no certificate.expiring is sent (the
  old fixed thresholds sent a "1 day" warning to a LIFE-second certificate
  at issuance).
"""
import calendar
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()
LIFE = 60        # seconds: Pebble's certificateValidityPeriod for this test
WINDOW = LIFE // 2
OBSERVE = 100    # seconds of renewals watched (3 windows)
CERTS = 3
INTERVAL = 1     # scheduler_interval_seconds (harness default)
SLACK = 4        # seconds: a tick's start spread (<= interval) + one job pass


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def ts(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def restart_testbed(extra_env=None):
    TB.stop()
    TB.start(extra_env)


def seed(s, key, i):
    """Bootstrap certificate + edge hostname + CNAMEd property in production."""
    zone = rnd("rw%d" % i) + ".test"
    names = ["www." + zone, "shop." + zone]
    cert = expect(s.post("/v1/certificates", {
        "source": "self_signed", "name": "short-%d" % i, "hostnames": names,
        "validity_days": 10, "auto_renew": "letsencrypt"}, token=key), 201).json
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for n in names:
        TB.set_cname(n, eh["hostname"])
    prop = expect(s.post("/v1/properties", {
        "name": "shop-%d" % i, "hostnames": names, "edge_hostname_id": eh["id"],
        "certificate_id": cert["id"], "certificate_renew_automation": True}, token=key), 201).json
    dep = expect(s.post("/v1/properties/%s/deployments" % prop["id"],
                        {"environment": "production"}, token=key), 201).json
    # The server's own moment (whole seconds, as the order's created_at):
    # the test's clock could put it a second after an order started at once.
    return cert["id"], prop["id"], ts(dep["created_at"])


def test_one_renewal_per_window():
    restart_testbed({"ACME_TESTBED_CERT_VALIDITY_SECONDS": str(LIFE)})
    s = None
    try:
        env = TB.server_env()
        env.update({"CERTPLANE_RENEW_BACKOFF_SECONDS": "[5,5,5]"})
        s = Server(env=env).start()
        _, key = s.new_tenant("renewal-window")
        seeded = [seed(s, key, i) for i in range(CERTS)]
        certs = [c for c, _, _ in seeded]
        deployed = {c: t for c, _, t in seeded}
        # What the API said, per certificate and version, while it was current.
        seen = {c: {} for c in certs}
        t0 = time.time()
        while time.time() - t0 < OBSERVE:
            for c in certs:
                r = expect(s.get("/v1/certificates/" + c, token=key), 200).json
                ra = r["renewal"]["renew_after"]
                if ra is not None:
                    seen[c].setdefault(r["version"], ts(ra))
            time.sleep(0.5)
        # Stop renewals (automation off) and let an order in flight finish.
        for _, p, _ in seeded:
            expect(s.patch("/v1/properties/" + p, {"certificate_renew_automation": False},
                           token=key), 200)
        t_end = time.time()

        def settled():
            os_ = s.list_all("/v1/orders", token=key)
            return all(o["status"] in ("valid", "failed", "canceled") for o in os_)
        s.wait_for(settled, timeout=60, what="no order in flight")
        for c in certs:  # a version an order in flight stored meanwhile
            r = expect(s.get("/v1/certificates/" + c, token=key), 200).json
            seen[c].setdefault(r["version"], ts(r["renewal"]["renew_after"]))
        total_renewals = 0
        for c in certs:
            vs = sorted(s.list_all("/v1/certificates/%s/versions" % c, token=key),
                        key=lambda v: v["version"])
            orders = sorted(s.list_all("/v1/orders", token=key, query={"certificate_id": c}),
                            key=lambda o: ts(o["created_at"]))
            check(vs[0]["order_id"] is None and all(v["order_id"] for v in vs[1:]), vs)
            check([o["status"] for o in orders] == ["valid"] * len(orders), orders)
            check([o["kind"] for o in orders] == ["renew"] * len(orders), orders)
            # One order per new version, in order: no extra order anywhere.
            check([o["id"] for o in orders] == [v["order_id"] for v in vs[1:]],
                  "orders %r versions %r" % ([o["id"] for o in orders],
                                             [v["order_id"] for v in vs]))
            for v, o in zip(vs, orders + [None]):
                nb, na = ts(v["not_before"]), ts(v["not_after"])
                life = na - nb
                if v["order_id"]:
                    check(abs(life - LIFE) <= 2, "Pebble's lifetime: %d" % life)
                    want = na - life // 2
                else:
                    want = nb  # bootstrap inside renew_before_days: due at once
                ra = seen[c].get(v["version"])
                check(ra is not None, "renew_after of version %d seen" % v["version"])
                check(ra == want, "v%d renew_after %d, rule says %d (not_before %d, life %d)"
                      % (v["version"], ra, want, nb, life))
                if o is None:
                    # The current version: its moment had not passed (by more
                    # than a tick) when renewals were switched off.
                    check(t_end < ra + INTERVAL + SLACK,
                          "current v%d overdue: renew_after %d, stopped %d"
                          % (v["version"], ra, t_end))
                    continue
                # The scheduler acts from renew_after on, once the certificate
                # is a candidate (deployed to production): the bootstrap's
                # moment (its not_before) is already past then.
                created = ts(o["created_at"])
                late = created - max(ra, deployed[c]) if v["version"] == 1 else created - ra
                check(created >= ra, "v%d renewed before its renew_after" % v["version"])
                print("   %s v%d -> v%d: renew_after %s, order created %+d s"
                      % (c[:8], v["version"], v["version"] + 1,
                         time.strftime("%H:%M:%S", time.gmtime(ra)), late))
                check(0 <= late <= INTERVAL + SLACK,
                      "v%d renewed %+d s from its renew_after" % (v["version"], late))
            # One renewal per window: CA versions against elapsed time / window.
            ca = [v for v in vs if v["order_id"]]
            first = ts(ca[0]["not_before"])
            elapsed = ts(vs[-1]["created_at"]) - first
            renewals = len(ca) - 1
            lo = int(elapsed // (WINDOW + INTERVAL + SLACK))
            hi = int(elapsed // (WINDOW - 2)) + 1
            print("   %s: %d CA-issued versions, %d renewals in %d s (window %d s): "
                  "expected %d..%d" % (c[:8], len(ca), renewals, elapsed, WINDOW, lo, hi))
            check(lo <= renewals <= hi, "%d renewals in %d s" % (renewals, elapsed))
            check(len(ca) >= OBSERVE // (WINDOW + INTERVAL + SLACK),
                  "at least one renewal per window over the run: %d" % len(ca))
            total_renewals += len(orders)
        # Renewed at half the lifetime: never 1/3 left, so no reminder at all.
        exp = s.list_all("/v1/events", token=key, query={"type": "certificate.expiring"})
        check(exp == [], "no expiry reminder for renewed short-lived certificates: %r"
              % [e["data"] for e in exp][:3])
        ren = s.list_all("/v1/events", token=key, query={"type": "certificate.renewed"})
        check(len(ren) == total_renewals, "%d renewed events, %d orders"
              % (len(ren), total_renewals))
        # Automation off: nothing more is ordered.
        time.sleep(3)
        check(len(s.list_all("/v1/orders", token=key)) == total_renewals, "no order after")
    finally:
        if s:
            s.cleanup()
        restart_testbed()


if __name__ == "__main__":
    run(globals())
