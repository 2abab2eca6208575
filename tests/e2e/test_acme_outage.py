"""test_acme_outage.py - the CA goes away and comes back.

Pebble (with challtestsrv) is stopped through the testbed script while
orders are placed: they back off with reason ca_unreachable, keeping their
state and counting attempts. Pebble is started again - a restarted Pebble
has forgotten every account, so certplane must register again - and every
order completes. The test bed is left running for the other tests.
"""
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run  # noqa: E402

TB = Testbed().ensure()


def test_pebble_down_then_back_with_amnesia():
    env = TB.server_env()
    s = Server(env=env).start()
    try:
        tid, key = s.new_tenant()
        # A first certificate registers the account while Pebble is up.
        first = expect(s.post("/v1/certificates", {
            "source": "acme", "name": "before", "hostnames": ["b%s.test" % uuid.uuid4().hex[:10]]},
            token=key), 202).json
        s.wait_for(lambda: s.get("/v1/certificates/" + first["id"], token=key).json["status"]
                   == "active", timeout=60, what="first certificate")

        TB.stop()
        try:
            ids = [expect(s.post("/v1/certificates", {
                "source": "acme", "name": "o%d" % i,
                "hostnames": ["o%s.test" % uuid.uuid4().hex[:10]]}, token=key), 202).json["id"]
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
        finally:
            TB.start()

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
