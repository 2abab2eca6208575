"""test_acme_difficult_ca.py - a CA that keeps failing never fails an order
(issue 15): only the CA's final word does.

1. 100 HTTP-01 orders at Pebble's usual 5 % nonce rejection: the baseline
   time for the closing note;
2. the same 100 with Pebble rejecting half of all good nonces
   (PEBBLE_WFE_NONCEREJECT=50): all valid, one version each, distinct
   serials, no failed order;
3. the same at 50 % with the server killed with SIGKILL 20 times while the
   orders run; integrity_check ok afterwards;
4. a small TLS front in front of Pebble answers 500s, 503s with
   Retry-After, serverInternal problems, drops and resets connections, first
   for a share of the requests and then for all of them: the orders back off
   with transient reasons only (never failed), and every one completes once
   the front passes everything again;
5. the CA's final word (rejectedIdentifier) fails an order at once with its
   reason; 503s keep an order pending until its deadline (hours, not
   attempts: created_at moved back 25 h) and only then fail it with
   ca_unreachable; a Retry-After of 2 h is honoured, and one that ends past
   the deadline fails the order with ca_rate_limited.

The test bed's ports are fixed, so 2 and 3 restart the shared test bed with
the env and restore the default one afterwards (as test_acme_outage.py
stops and restarts Pebble). 1-name certificates, workers=4,
PEBBLE_VA_NOSLEEP (the testbed script's default).
"""
import http.client
import http.server
import json
import os
import random
import socket
import ssl
import struct
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run, serve_loopback  # noqa: E402

TB = Testbed().ensure()
N = 100
KILLS = 20
TRANSIENT = {"ca_unreachable", "ca_rate_limited", "ca_server_error", "ca_bad_nonce",
             "ca_protocol_error", "ca_order_not_ready", "internal"}


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


def server(**extra):
    env = TB.server_env()
    # One tenant places 100 orders at once here: lift its in-flight quota
    # (default 50, test_fairness.py tests it).
    env.update({"CERTPLANE_WORKERS": "4", "CERTPLANE_LOG_LEVEL": "debug",
                "CERTPLANE_QUOTA_ORDERS_IN_FLIGHT": "1000"})
    env.update(extra)
    return Server(env=env).start()


def restart_testbed(extra_env=None):
    TB.stop()
    TB.start(extra_env)


def serve_names(s, key, names):
    """Put names on a property of the tenant, CNAMEd to its edge hostname:
    what an HTTP-01 order needs before any CA request (issuance scope)."""
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for i in range(0, len(names), 50):
        chunk = names[i:i + 50]
        for n in chunk:
            TB.set_cname(n, eh["hostname"])
        expect(s.post("/v1/properties", {"name": "served", "hostnames": chunk,
                                         "edge_hostname_id": eh["id"]}, token=key), 201)


def create(s, key, n, prefix):
    names = [rnd(prefix) + ".test" for _ in range(n)]
    serve_names(s, key, names)
    return [expect(s.post("/v1/certificates", {"source": "acme", "name": "%s%d" % (prefix, i),
                                               "hostnames": [names[i]]},
                          token=key), 202).json["id"] for i in range(n)]


def orders_by_status(s, key):
    out = {}
    for o in s.list_all("/v1/orders", token=key, limit=500):
        out.setdefault(o["status"], []).append(o)
    return out


def check_no_failed(s, key):
    failed = orders_by_status(s, key).get("failed", [])
    check(not failed, "failed orders: %r" % [(o["id"], o["error"]) for o in failed[:5]])


def wait_all_valid(s, key, ids, timeout):
    want = set(ids)

    def done():
        by = orders_by_status(s, key)
        check(not by.get("failed"), "an order failed: %r" % (by.get("failed") or [None])[0])
        valid = {o["certificate_id"] for o in by.get("valid", [])}
        return True if want <= valid else None
    s.wait_for(done, timeout=timeout, interval=0.5, what="%d orders valid" % len(ids))


def check_outcome(s, key, ids):
    """Every certificate active with exactly one version, distinct serials,
    every order valid without error, one order per certificate."""
    serials = set()
    for cid in ids:
        c = s.get("/v1/certificates/" + cid, token=key).json
        check(c["status"] == "active", c)
        vs = s.list_all("/v1/certificates/%s/versions" % cid, token=key)
        check(len(vs) == 1, "exactly one version for %s: %r" % (cid, vs))
        serials.add(vs[0]["serial"])
    check(len(serials) == len(ids), "distinct serials: %d of %d" % (len(serials), len(ids)))
    orders = [o for o in s.list_all("/v1/orders", token=key, limit=500) if o["certificate_id"] in ids]
    check(len(orders) == len(ids), "one order per certificate: %d" % len(orders))
    for o in orders:
        check(o["status"] == "valid" and o["error"] is None, o)


def integrity_ok(s):
    s.check_db_sound()


def warm_up(s, key):
    """One certificate first: the account registration is a one-off."""
    ids = create(s, key, 1, "w")
    wait_all_valid(s, key, ids, 60)


def hundred_orders(kills=0):
    """N one-name orders; with kills, they are created in `kills` batches and
    the server is killed with SIGKILL at a random moment after each batch
    (Pebble issues ~50 a second here, so kills spread over all 100 need
    the orders to keep coming)."""
    s = server()
    try:
        tid, key = s.new_tenant()
        warm_up(s, key)
        t0 = time.time()
        ids = []
        stages = {}
        rng = random.Random()
        # A kill counts when orders are in flight at that moment; a batch can
        # finish before its random kill, so there are a few spare batches and
        # the test needs `kills` kills that landed, not `kills` attempts.
        batches = kills + kills // 4
        landed = 0
        for k in range(batches):
            if landed == kills:
                break
            ids += create(s, key, N // batches + (1 if k < N % batches else 0), "n")
            time.sleep(rng.uniform(0.0, 0.05))
            s.kill9()
            # The statuses at the moment of the kill, from the dead server's file.
            by = dict(s.sql("SELECT status, count(*) FROM orders GROUP BY status"))
            why = s.sql("SELECT error_reason, error_detail FROM orders WHERE status = 'failed'") \
                if "failed" in by else []
            check("failed" not in by, "an order failed: %r %r" % (by, why))
            in_flight = {st: n for st, n in by.items() if st != "valid"}
            landed += 1 if in_flight else 0
            for st, n in in_flight.items():
                stages[st] = stages.get(st, 0) + n
            s.start()
        check(landed == kills, "%d of the kills landed on orders in flight, %d wanted"
              % (landed, kills))
        ids += create(s, key, N - len(ids), "n")
        if kills:
            print("  orders in flight at the %d kills, by status: %r" % (kills, stages))
        wait_all_valid(s, key, ids, 600)
        dt = time.time() - t0
        check(len(ids) == N, len(ids))
        check_outcome(s, key, ids)
        log = s.log()
        s.stop()
        integrity_ok(s)
        return dt, log
    finally:
        s.cleanup()


def test_100_orders_at_5_percent_nonce_rejection():
    dt, log = hundred_orders()
    print("  100 orders at 5 %% badNonce: %.1f s (%d badNonce retries)"
          % (dt, log.count('"event":"acme_bad_nonce"')))


def test_100_orders_at_50_percent_nonce_rejection():
    restart_testbed({"PEBBLE_WFE_NONCEREJECT": "50"})
    try:
        dt, log = hundred_orders()
    finally:
        restart_testbed()
    retries = log.count('"event":"acme_bad_nonce"')
    print("  100 orders at 50 %% badNonce: %.1f s (%d badNonce retries, %d backoffs)"
          % (dt, retries, log.count('"event":"acme.order_backoff"')))
    # Pebble really rejected about half: at least one retry per order.
    check(retries >= N, "badNonce retries: %d" % retries)


def test_100_orders_at_50_percent_with_20_kills():
    restart_testbed({"PEBBLE_WFE_NONCEREJECT": "50"})
    try:
        dt, log = hundred_orders(kills=KILLS)
    finally:
        restart_testbed()
    print("  100 orders at 50 %% badNonce, %d x SIGKILL: %.1f s (%d badNonce retries, "
          "%d backoffs, %d fresh CA orders after a validation met us down)"
          % (KILLS, dt, log.count('"event":"acme_bad_nonce"'),
             log.count('"event":"acme.order_backoff"'), log.count('"reason":"challenge_retry"')))


# ------------------------------------------------------------ a failing front

def problem(short, detail):
    return json.dumps({"type": "urn:ietf:params:acme:error:" + short, "detail": detail}).encode()


class Front:
    """A TLS front for Pebble on a free port. mode 'pass' forwards every
    request (Host kept, so Pebble's URLs name the front); 'fail' fails a
    share (fail_ratio) of them, in turn with each of KINDS: a 500 page, a
    503 with Retry-After: 1, a serverInternal problem, a rateLimited 429
    with and one without Retry-After, a badNonce (with a nonce Pebble never
    issued), a dropped connection (no answer) and a reset; the rest are
    forwarded. 'badnonce' answers every POST with badNonce; 'fixed' answers
    every request under only_path with the kind `fixed`."""
    KINDS = ("500", "503", "serverInternal", "429", "429 bare", "badNonce", "drop", "reset")

    def __init__(self):
        self.mode = "pass"
        self.fail_ratio = 1.0
        self.seq = 0
        self.fixed, self.only_path = None, "/"
        self.lock = threading.Lock()
        self.failures = {}
        front = self
        upstream = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                how = front.pick(self.command, self.path)
                if how == "drop":
                    self.close_connection = True
                    self.connection.close()
                    return
                if how == "reset":
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if how:
                    status, ctype, extra, out = {
                        "500": (500, "text/html", {}, b"<html>internal error</html>"),
                        "503": (503, "text/html", {"Retry-After": "1"}, b"<html>busy</html>"),
                        "serverInternal": (500, "application/problem+json", {}, problem(
                            "serverInternal", "the front says no")),
                        "429": (429, "application/problem+json", {"Retry-After": "1"}, problem(
                            "rateLimited", "slow down")),
                        "429 bare": (429, "application/problem+json", {}, problem(
                            "rateLimited", "slow down, no hint")),
                        "429 long": (429, "application/problem+json", {"Retry-After": "7200"},
                                     problem("rateLimited", "come back in two hours")),
                        "rejectedIdentifier": (400, "application/problem+json", {}, problem(
                            "rejectedIdentifier", "the front refuses this name")),
                        "badNonce": (400, "application/problem+json", {
                            "Replay-Nonce": "bogus%d" % random.randrange(1 << 30)}, problem(
                            "badNonce", "the front rejects your nonce")),
                    }[how]
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(out)
                    return
                c = http.client.HTTPSConnection("127.0.0.1", 14000, context=upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("host", "content-type", "accept", "user-agent")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                out = r.read()
                c.close()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection",
                                         "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_HEAD = handle_any

        self.httpd = serve_loopback(Handler, tls=TB.https_context())
        self.port = self.httpd.server_address[1]

    def pick(self, method, path):
        with self.lock:
            if self.mode == "fixed":
                how = self.fixed if path.startswith(self.only_path) else None
            elif self.mode == "badnonce":
                how = "badNonce" if method == "POST" else None
            elif self.mode == "pass" or random.random() >= self.fail_ratio:
                return None
            else:
                how = self.KINDS[self.seq % len(self.KINDS)]
                self.seq += 1
            if not how:
                return None
            self.failures[how] = self.failures.get(how, 0) + 1
            return how

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_ca_answers_500s_and_drops_connections_then_recovers():
    front = Front()
    s = server(CERTPLANE_ACME_DIRECTORY_URL="https://127.0.0.1:%d/dir" % front.port)
    try:
        tid, key = s.new_tenant()
        warm_up(s, key)
        ids = create(s, key, 20, "f")
        # Orders get under way, then the CA starts failing: first half of the
        # requests, then all of them.
        s.wait_for(lambda: any(o["status"] != "pending" for o in
                               s.list_all("/v1/orders", token=key, limit=500)),
                   timeout=30, interval=0.05, what="orders under way")
        # Every POST is a badNonce (more than the client's immediate
        # retries), then half the requests fail, then all of them.
        seen = set()
        for mode, ratio, secs in (("badnonce", 1.0, 3), ("fail", 0.5, 6), ("fail", 1.0, 6)):
            front.mode, front.fail_ratio = mode, ratio
            t_end = time.time() + secs
            while time.time() < t_end:
                for o in s.list_all("/v1/orders", token=key, limit=500):
                    check(o["status"] != "failed", "an order failed: %r" % o)
                    if o["status"] != "valid" and o["error"]:
                        seen.add(o["error"]["reason"])
                time.sleep(0.5)
        backoffs = set()
        for line in s.log().splitlines():
            if '"event":"acme.order_backoff"' in line:
                backoffs.add(json.loads(line).get("reason"))
        print("  front failures: %r; reasons shown %s; backoff reasons %s"
              % (front.failures, sorted(seen), sorted(backoffs)))
        check(seen and seen <= TRANSIENT, "only transient reasons while failing: %r" % seen)
        check(backoffs <= TRANSIENT, "only transient reasons in backoffs: %r" % backoffs)
        check({"ca_unreachable", "ca_server_error", "ca_rate_limited", "ca_bad_nonce"} <= backoffs,
              "each kind of transient failure met: %r" % backoffs)
        check(set(front.failures) == set(Front.KINDS), "every kind served: %r" % front.failures)
        pending = [o for o in s.list_all("/v1/orders", token=key, limit=500) if o["status"] != "valid"]
        check(pending, "some orders were still waiting for the CA")
        check(max(o["attempts"] for o in pending) >= 2, "orders back off and try again")
        t0 = time.time()
        front.mode = "pass"
        wait_all_valid(s, key, ids, 120)
        print("  all 20 valid %.1f s after the CA recovered" % (time.time() - t0))
        check_outcome(s, key, ids)
    finally:
        s.cleanup()
        front.close()


def order_of(s, key, cid):
    os_ = [o for o in s.list_all("/v1/orders", token=key, limit=500) if o["certificate_id"] == cid]
    check(len(os_) == 1, os_)
    return os_[0]


def age_order(s, order_id, seconds):
    """Move an order's creation back in time (its deadline with it) and make
    its job due now, as if that much time had passed."""
    s.sql("UPDATE orders SET created_at = created_at - ? WHERE id = ?", seconds, order_id)
    s.sql("UPDATE jobs SET run_at = ? WHERE kind = 'acme_order' AND state = 'queued' "
          "AND payload LIKE ?", int(time.time()), "%" + order_id + "%")


def test_deadline_in_hours_and_the_cas_final_word():
    front = Front()
    s = server(CERTPLANE_ACME_DIRECTORY_URL="https://127.0.0.1:%d/dir" % front.port)
    try:
        tid, key = s.new_tenant()
        warm_up(s, key)

        # A definitive answer fails the order at once, naming it.
        front.mode, front.fixed, front.only_path = "fixed", "rejectedIdentifier", "/order-plz"
        cid = create(s, key, 1, "r")[0]
        o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
            order_of(s, key, cid)), timeout=30, what="rejected order failed")
        check(o["error"]["reason"] == "ca_rejected_identifier" and o["attempts"] == 0, o)
        check("refuses this name" in o["error"]["detail"], o)

        # 503s: the order backs off, keeps trying for hours, not attempts ...
        front.fixed, front.only_path = "503", "/"
        cid = create(s, key, 1, "u")[0]
        o = s.wait_for(lambda: (lambda o: o if o["attempts"] >= 2 else None)(
            order_of(s, key, cid)), timeout=30, what="order backing off")
        check(o["status"] == "pending" and o["error"]["reason"] == "ca_unreachable", o)
        check(s.get("/v1/certificates/" + cid, token=key).json["status"] == "pending", cid)
        # ... until its deadline (24 h by default) has passed.
        age_order(s, o["id"], 25 * 3600)
        o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
            order_of(s, key, cid)), timeout=30, what="order failed at its deadline")
        check(o["error"]["reason"] == "ca_unreachable", o)
        check(o["error"]["detail"].startswith("the CA kept failing for 24 h"), o)
        check(s.get("/v1/certificates/" + cid, token=key).json["status"] == "failed", cid)

        # rateLimited with a Retry-After: never asked again before it, and a
        # Retry-After beyond the deadline ends the order with ca_rate_limited.
        front.fixed, front.only_path = "429 long", "/order-plz"
        cid = create(s, key, 1, "l")[0]
        o = s.wait_for(lambda: (lambda o: o if o["attempts"] >= 1 else None)(
            order_of(s, key, cid)), timeout=30, what="rate-limited order backing off")
        check(o["status"] == "pending" and o["error"]["reason"] == "ca_rate_limited", o)
        nxt = time.mktime(time.strptime(o["next_attempt_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        check(nxt >= time.time() + 7000, "Retry-After honoured: %s" % o["next_attempt_at"])
        age_order(s, o["id"], 23 * 3600)  # one hour left, the CA asks for two
        o = s.wait_for(lambda: (lambda o: o if o["status"] == "failed" else None)(
            order_of(s, key, cid)), timeout=30, what="order failed: Retry-After past deadline")
        check(o["error"]["reason"] == "ca_rate_limited" and o["attempts"] == 1, o)
        check("kept failing" in o["error"]["detail"], o)
        check(not any(x["error"] and x["error"]["reason"] == "ca_error"
                      for x in s.list_all("/v1/orders", token=key, limit=500)), "no ca_error")
    finally:
        s.cleanup()
        front.close()


if __name__ == "__main__":
    run(globals())
