"""test_instances.py - three certplane instances on one PostgreSQL, all equal
(issue 11).

One PostgreSQL (tests/testbed/pg-server, or the server of CERTPLANE_PG_URL),
one Pebble. Three instances share the database, the master key and the
operator token; each has its own data directory and API port, and all three
answer HTTP-01 on the test bed's one port (SO_REUSEPORT: the kernel spreads
Pebble's connections over them, so each token must be answerable by every
instance). 200 one-name certificates are ordered round-robin through the
three APIs; the second instance is killed with SIGKILL while orders run, and
is not restarted: the other two finish its work when its job leases lapse.

Checks: every certificate active with exactly one version and one CA order,
no order failed; every certificate.issued event of the tenant reached the
webhook receiver, and no event came with two different webhook-ids (nor a
webhook-id that is not the event's id); the housekeeping lease is held by
a live instance; an event committed on one instance reaches an event stream
open on another within seconds (LISTEN/NOTIFY, not the stream's keepalive).

Needs PostgreSQL: without it the test FAILS (no skip).
"""
import base64
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Postgres, Server, Testbed, check, expect, run, serve_loopback  # noqa: E402

TB = Testbed().ensure()
N = 200


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


class Receiver:
    """Records every webhook delivery: (webhook-id, the certificate in its data)."""

    def __init__(self):
        self.got = []
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                try:
                    cert = json.loads(body)["data"]["certificate_id"]
                except (ValueError, KeyError, TypeError):
                    cert = None
                with outer.lock:
                    outer.got.append((self.headers.get("webhook-id"), cert))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = serve_loopback(H)
        self.url = "http://127.0.0.1:%d/hook" % self.srv.server_address[1]

    def seen(self):
        with self.lock:
            return list(self.got)

    def close(self):
        self.srv.shutdown()


def stream_sees(s, key, needle, act, within):
    """Open GET /v1/events/stream on s, run act(), and return the seconds
    until needle appears in the stream (CheckFailed after within)."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=within)
    try:
        sock.sendall(("GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: "
                      "Bearer %s\r\nAccept: text/event-stream\r\n\r\n" % key).encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += sock.recv(65536)
        check(got.startswith(b"HTTP/1.1 200"), "stream refused: %r" % got[:200])
        got = b""
        t0 = time.time()
        act()
        while needle not in got:
            left = within - (time.time() - t0)
            check(left > 0, "%r not in the stream within %.0f s" % (needle, within))
            sock.settimeout(left)
            d = sock.recv(65536)
            check(d, "stream ended")
            got += d
        return time.time() - t0
    finally:
        sock.close()


def serve_names(s, key, names):
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for i in range(0, len(names), 50):
        chunk = names[i:i + 50]
        for n in chunk:
            TB.set_cname(n, eh["hostname"])
        expect(s.post("/v1/properties", {"name": rnd("p"), "hostnames": chunk,
                                         "edge_hostname_id": eh["id"]}, token=key), 201)


def test_three_instances_one_killed():
    pg = Postgres()
    rcv = Receiver()
    servers = []
    try:
        url = pg.createdb("cp_instances_%d" % os.getpid())
        common = TB.server_env()
        common.update({
            "CERTPLANE_DATABASE": url,
            "CERTPLANE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "CERTPLANE_OPERATOR_TOKEN": "cpop_" + uuid.uuid4().hex,
            "CERTPLANE_WORKERS": "4",
            # the dead instance's jobs come back when their leases lapse
            "CERTPLANE_JOB_LEASE_SECONDS": "15",
            "CERTPLANE_EVENT_STREAM_KEEPALIVE_SECONDS": "60",
            "CERTPLANE_QUOTA_ORDERS_IN_FLIGHT": "1000",
            "CERTPLANE_QUOTA_CERTIFICATES": "1000",
            "CERTPLANE_QUOTA_HOSTNAMES": "1000",
        })
        env = dict(os.environ)
        env.update(common)
        d = tempfile.mkdtemp(prefix="cp-migrate-")
        env["CERTPLANE_DATA_DIR"] = d
        p = subprocess.run([BIN, "migrate"], env=env, capture_output=True, text=True, cwd=d)
        shutil.rmtree(d, ignore_errors=True)
        check(p.returncode == 0, "certplane migrate: %s" % p.stderr[-2000:])
        for _ in range(3):
            servers.append(Server(env=dict(common)).start())
        a, b, c = servers
        tid, key = a.new_tenant("instances")
        killed_at = None
        hook = expect(a.post("/v1/webhooks", {"url": rcv.url, "events": ["certificate.issued"]},
                             token=key), 201).json
        # An event committed on a reaches a stream open on c at once: the
        # commit's NOTIFY wakes c (its keepalive, 60 s, cannot explain it).
        dt = stream_sees(c, key, b"webhook.test", lambda: expect(
            a.post("/v1/webhooks/%s/test" % hook["id"], token=key), 202), within=5)
        print("  an event committed on instance a reached a stream on instance c in %.3f s" % dt)
        names = [rnd("i") + ".test" for _ in range(N)]
        serve_names(a, key, names)
        ids = []
        live = list(servers)
        orphans = []
        running_b = ("SELECT id FROM jobs WHERE state = 'running' AND lease_owner LIKE 'pid%d-%%'"
                     % b.proc.pid)
        for i, n in enumerate(names):
            s = live[i % len(live)]
            ids.append(expect(s.post("/v1/certificates", {"source": "acme", "name": "c%d" % i,
                                                          "hostnames": [n]}, token=key),
                              202).json["id"])
            # Past the middle, kill b the moment it works on something: its
            # running jobs hold leases that must lapse before others take them.
            if i >= N // 2 and len(live) == 3:
                orphans = [r[0] for r in pg.sql(url, running_b)]
                if orphans:
                    b.kill9()
                    live = [a, c]
                    killed_at = i
        servers_left = [a, c]

        def all_active():
            rows = pg.sql(url, "SELECT status, count(*) FROM certificates WHERE tenant_id = '%s' "
                               "GROUP BY status" % tid)
            by = {r[0]: int(r[1]) for r in rows}
            failed = pg.sql(url, "SELECT count(*) FROM orders WHERE status = 'failed'")[0][0]
            check(failed == "0", "an order failed: %r" % pg.sql(
                url, "SELECT error_reason, error_detail FROM orders WHERE status = 'failed' LIMIT 3"))
            return True if by.get("active", 0) == N else None
        a.wait_for(all_active, timeout=600, interval=1, what="%d certificates active" % N)

        # The kill landed on work in flight, and the others finished it.
        check(orphans, "the killed instance never held a running job: the kill tested nothing")
        left = pg.sql(url, "SELECT id, state, lease_owner FROM jobs WHERE id IN (%s) AND "
                           "(state = 'running' OR lease_owner LIKE 'pid%d-%%')"
                      % (",".join(str(j) for j in orphans), b.proc.pid))
        check(not left, "jobs of the killed instance not taken over: %r" % left[:3])

        versions = pg.sql(url, "SELECT certificate_id, count(*) FROM certificate_versions "
                               "GROUP BY certificate_id HAVING count(*) <> 1")
        check(not versions, "certificates with other than one version: %r" % versions[:5])
        orders = pg.sql(url, "SELECT certificate_id, count(*) FROM orders "
                             "GROUP BY certificate_id HAVING count(*) <> 1")
        check(not orders, "certificates with other than one CA order: %r" % orders[:5])
        check(int(pg.sql(url, "SELECT count(DISTINCT certificate_id) FROM orders")[0][0]) == N)

        # Events: every certificate.issued event reached the receiver under
        # its own id as webhook-id, and no certificate's event came under two.
        events = {r[1]: r[0] for r in pg.sql(
            url, "SELECT id, CAST(payload AS json)->'data'->>'certificate_id' FROM events "
                 "WHERE tenant_id = '%s' AND type = 'certificate.issued'" % tid)}
        check(len(events) == N and set(events) == set(ids),
              "one certificate.issued per certificate: %d" % len(events))
        a.wait_for(lambda: True if set(ids) <= {c for _, c in rcv.seen()} else None,
                   timeout=120, interval=1, what="every certificate.issued delivered")
        by_cert = {}
        for wid, cert in rcv.seen():
            if cert is not None:  # None: the webhook.test event above
                by_cert.setdefault(cert, set()).add(wid)
        bad = {c: w for c, w in by_cert.items() if w != {events.get(c)}}
        check(not bad, "deliveries under another or several webhook-ids: %r" % list(bad.items())[:3])

        # Housekeeping: one live leader (b died; its lease lapses).
        a.wait_for(lambda: True if pg.sql(url, "SELECT holder FROM leases WHERE name = "
                                                "'housekeeping' AND expires_at >= unixepoch()")
                   else None, timeout=30, what="a housekeeping leader")
        print("  %d certificates through 3 instances, one killed at %d with %d jobs running: "
              "all valid, one order and one version each; %d deliveries for %d events"
              % (N, killed_at, len(orphans), len(rcv.seen()), len(events)))
        for s in servers_left:
            check(s.stop() == 0, "clean stop")
    finally:
        for s in servers:
            s.cleanup()
        rcv.close()
        pg.close()


if __name__ == "__main__":
    run(globals())
