"""test_acme_outage.py - the CA goes away and comes back.

Pebble alone is stopped (by the PID the testbed script recorded) while
orders are placed: the hostnames' DNS still answers (HTTP-01 orders check
each name's CNAME before asking the CA), so they back off with reason
ca_unreachable, keeping their state and counting attempts. The test bed is
then restarted - a restarted Pebble has forgotten every account, so
certplane must register again; challtestsrv has forgotten the CNAMEs, which
are set again while no order is due - and every order completes. The test
bed is left running for the other tests.
"""
import calendar
import os
import signal
import socket
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()


def stop_pebble_only():
    with open(os.path.join(TB.dir, "pebble.pid")) as f:
        pid = int(f.read().strip())
    check(os.path.realpath("/proc/%d/exe" % pid).endswith("pebble"), "pid %d is pebble" % pid)
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", 14000), timeout=0.2).close()
            time.sleep(0.1)
        except OSError:
            return
    raise AssertionError("pebble did not stop")


class Edge:
    """One edge hostname of the tenant; names() puts fresh names on a
    property CNAMEd to it (set again after challtestsrv restarts)."""

    def __init__(self, s, key):
        self.s, self.key, self.all = s, key, []
        self.eh = expect(s.post("/v1/edge-hostnames", {"label": "o" + uuid.uuid4().hex[:8]},
                                token=key), 201).json
        self.repoint()

    def repoint(self):
        TB.add_a(self.eh["hostname"])
        for n in self.all:
            TB.set_cname(n, self.eh["hostname"])

    def names(self, n):
        new = ["o%s.test" % uuid.uuid4().hex[:10] for _ in range(n)]
        self.all += new
        self.repoint()
        expect(self.s.post("/v1/properties", {"name": "p", "hostnames": new,
                                              "edge_hostname_id": self.eh["id"]},
                           token=self.key), 201)
        return new


def test_pebble_down_then_back_with_amnesia():
    env = TB.server_env()
    s = Server(env=env).start()
    try:
        tid, key = s.new_tenant()
        # A first certificate registers the account while Pebble is up.
        edge = Edge(s, key)
        first = expect(s.post("/v1/certificates", {
            "source": "acme", "name": "before", "hostnames": edge.names(1)},
            token=key), 202).json
        s.wait_for(lambda: s.get("/v1/certificates/" + first["id"], token=key).json["status"]
                   == "active", timeout=60, what="first certificate")

        names = edge.names(3)
        stop_pebble_only()
        try:
            ids = [expect(s.post("/v1/certificates", {
                "source": "acme", "name": "o%d" % i,
                "hostnames": [names[i]]}, token=key), 202).json["id"]
                for i in range(3)]

            def backing_off():
                os_ = s.list_all("/v1/orders", token=key, query={"status": "pending"})
                ok = [o for o in os_ if o["error"] and o["error"]["reason"] == "ca_unreachable"
                      and o["attempts"] >= 1 and o["next_attempt_at"]]
                return ok if len(ok) == 3 else None
            orders = s.wait_for(backing_off, timeout=30, what="orders backing off")
            check(all(o["certificate_id"] in ids for o in orders), orders)
            time.sleep(4)  # let them fail a few more times
            attempts = [o["attempts"] for o in s.list_all("/v1/orders", token=key,
                                                          query={"status": "pending"})]
            check(max(attempts) >= 2, "attempts keep counting: %r" % attempts)
            check(max(attempts) <= 6, "backoff, not a hot loop: %r" % attempts)

            # Restart while no order is due for 3 s, so none checks its DNS
            # before the CNAMEs are back.
            def quiet():
                os_ = s.list_all("/v1/orders", token=key, query={"status": "pending"})
                due = [calendar.timegm(time.strptime(o["next_attempt_at"], "%Y-%m-%dT%H:%M:%SZ"))
                       for o in os_ if o["next_attempt_at"]]
                return len(due) == 3 and min(due) > time.time() + 3
            s.wait_for(quiet, timeout=60, interval=0.1, what="no order due for 3 s")
        finally:
            TB.stop()
            TB.start()
            edge.repoint()

        def all_active():
            st = [s.get("/v1/certificates/" + i, token=key).json["status"] for i in ids]
            return st if all(x == "active" for x in st) else None
        s.wait_for(all_active, timeout=90, interval=0.5, what="orders complete after the outage")
        for o in s.list_all("/v1/orders", token=key):
            check(o["status"] == "valid" and o["error"] is None, o)
        # Pebble forgot the account: certplane registered again.
        check(s.log().count('"event":"acme.account"') >= 2, "re-registered after the restart")
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(globals())
