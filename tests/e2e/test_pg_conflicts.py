"""test_pg_conflicts.py - a write that meets a conflict on PostgreSQL is run
again, not failed (issue 11): the API runs a handler whose transaction was
rolled back by a lock timeout, serialization failure or deadlock again (up
to 4 attempts) before it answers 503.

The database is given lock_timeout = 200 ms. Another session holds the
tenant's row (which a property create locks for its quota check) for 0.5 s:
the create's first attempts fail with 55P03, a later one succeeds, and the
client sees 201 with one property. Held for 5 s, every attempt fails: the
client gets 503 with Retry-After, and nothing of the request is written.

Needs PostgreSQL (CERTPLANE_PG_URL, or a server of its own); without it the
test FAILS.
"""
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Postgres, Server, check, expect, run  # noqa: E402


def hold_tenant_row(url, tenant_id, seconds, locked):
    """Lock the tenant's row in another session for seconds; set locked once held."""
    p = subprocess.Popen(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdin.write("BEGIN;\nSELECT 'held' FROM tenants WHERE id = '%s' FOR UPDATE;\n" % tenant_id)
    p.stdin.flush()
    check(p.stdout.readline().strip() == "held", "could not lock the tenant row")
    locked.set()
    time.sleep(seconds)
    p.stdin.write("COMMIT;\n")
    p.stdin.close()
    p.wait(timeout=30)


def test_lock_timeout_is_retried_then_answered():
    pg = Postgres()
    s = None
    try:
        url = pg.createdb("cp_conflicts_%d" % os.getpid())
        pg.sql(url, "ALTER DATABASE cp_conflicts_%d SET lock_timeout = '200ms'" % os.getpid())
        s = Server(env={"CERTPLANE_DATABASE": url})
        s.run("migrate")
        s.start()
        tid, key = s.new_tenant("conflicts")
        eh = expect(s.post("/v1/edge-hostnames", {"label": "edge"}, token=key), 201).json

        def create(name, hold):
            locked = threading.Event()
            t = threading.Thread(target=hold_tenant_row, args=(url, tid, hold, locked))
            t.start()
            check(locked.wait(10), "the lock was not taken")
            t0 = time.time()
            r = s.post("/v1/properties", {"name": name, "hostnames": [name + ".example.test"],
                                          "edge_hostname_id": eh["id"]}, token=key)
            dt = time.time() - t0
            t.join()
            return r, dt

        # Held 0.5 s: the first attempts time out at 200 ms, a later one wins.
        r, dt_short = create("short", 0.5)
        expect(r, 201, "a conflict shorter than the retries is not the client's problem")
        check(dt_short >= 0.4, "the request waited out the lock (%.2f s)" % dt_short)
        check(s.log().count('"http.retry"') >= 1, "the lock timeout happened and was retried")
        # Held 5 s: every attempt fails; 503, Retry-After, nothing written.
        r, dt = create("long", 5)
        expect(r, 503)
        check(r.header("retry-after") == "1", "Retry-After on the 503: %r" % r.header("retry-after"))
        check(dt < 4, "four attempts, not a wait for the lock (%.2f s)" % dt)
        names = [p["name"] for p in s.list_all("/v1/properties", token=key)]
        check(names == ["short"], "only the property that succeeded exists: %r" % names)
        rows = pg.sql(url, "SELECT count(*) FROM property_hostnames WHERE hostname LIKE 'long.%'")
        check(rows[0][0] == "0", "no hostname of the refused request is stored")
        print("  a 0.5 s lock (lock_timeout 200 ms) waited out in %.2f s by retrying; "
              "a 5 s lock answered 503 after four attempts in %.2f s" % (dt_short, dt))
    finally:
        if s:
            s.cleanup()
        pg.close()


if __name__ == "__main__":
    run(globals())
