"""test_order_engine.py - the order engine and its worker's lease, and the
shutdown order (issue 10).

A small TLS front sits between certplane and Pebble (the Host kept, so
Pebble's URLs name the front) and, for chosen hostnames only, plays a CA
that is slow to decide: it answers the authorization of that name as
"pending" with a Retry-After, or holds its challenge POST.

1. Retry-After far longer than the job lease (600 s): the job is re-queued
   for then, not slept through - it is queued (no lease) with run_at about
   600 s away, and a second certificate issues meanwhile on the only worker.
2. A Retry-After the worker waits out (20 s, under the cap): SIGTERM during
   the wait ends the process in under 2 s; the job is queued again, due
   now, and after a restart the order completes.
3. The HTTP-01 responder stops after the workers: the challenge POST is
   held by the front until SIGTERM has been sent, and only then reaches
   Pebble, which validates during our shutdown. The token is served after
   "server.stopping", the authorization turns valid (not "connection
   refused"), and "workers.stopped" is logged before "http01.stopped".
"""
import http.client
import http.server
import json
import os
import re
import signal
import ssl
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, Testbed, check, expect, run, serve_loopback  # noqa: E402

TB = Testbed().ensure()


class Front:
    """A TLS front for Pebble on a free port. retry_after[name] = n: every
    authorization of name, and every poll of its answered challenge, is
    answered "pending" with Retry-After: n.
    hold_challenge = name: a challenge POST of that name's authorization
    waits until release is set, is then forwarded, and answered a second
    after Pebble took it (so that Pebble validates before our next poll).
    seen[name] records Pebble's real authorization and challenge-poll
    statuses."""

    def __init__(self):
        self.retry_after = {}
        self.hold_challenge = None
        self.held = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.seen = {}
        self.challenge_of = {}  # challenge URL path -> name
        front = self
        upstream = ssl.create_default_context(cafile=TB.env["ACME_CA_BUNDLE"])

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def forward(self, body):
                c = http.client.HTTPSConnection("127.0.0.1", 14000, context=upstream, timeout=30)
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() in ("host", "content-type", "accept", "user-agent")}
                c.request(self.command, self.path, body=body, headers=hdrs)
                r = c.getresponse()
                out = r.read()
                c.close()
                return r.status, [(k, v) for k, v in r.getheaders() if k.lower() not in (
                    "content-length", "transfer-encoding", "connection", "date", "server")], out

            def handle_any(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                name = front.challenge_of.get(self.path) if self.path.startswith("/chalZ/") else None
                if name and name == front.hold_challenge:
                    front.held.set()
                    front.release.wait(30)
                    time.sleep(0.2)
                status, hdrs, out = self.forward(body)
                if name and name == front.hold_challenge:
                    time.sleep(1.0)
                if self.path.startswith("/authZ/") and status == 200:
                    out, hdrs = front.authz(out, hdrs)
                elif name and status == 200 and is_poll(body):
                    out, hdrs = front.challenge(name, out, hdrs)
                self.send_response(status)
                for k, v in hdrs:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(out)

            do_GET = do_POST = do_HEAD = handle_any

        self.httpd = serve_loopback(Handler, tls=TB.https_context())
        self.port = self.httpd.server_address[1]

    def authz(self, out, hdrs):
        """Record Pebble's answer for an authorization; rewrite it for a
        name with a Retry-After."""
        a = json.loads(out)
        name = a.get("identifier", {}).get("value")
        with self.lock:
            self.seen.setdefault(name, []).append(a.get("status"))
            for ch in a.get("challenges", []):
                self.challenge_of[re.sub(r"^https://[^/]+", "", ch.get("url", ""))] = name
            ra = self.retry_after.get(name)
        if ra is None:
            return out, hdrs
        a["status"] = "pending"
        for ch in a.get("challenges", []):
            ch["status"] = "pending"
            ch.pop("validated", None)
        return json.dumps(a).encode(), hdrs + [("Retry-After", str(ra))]

    def challenge(self, name, out, hdrs):
        """As authz() for a poll of an answered challenge (the order engine
        polls the challenge, not its authorization)."""
        c = json.loads(out)
        with self.lock:
            self.seen.setdefault(name, []).append(c.get("status"))
            ra = self.retry_after.get(name)
        if ra is None:
            return out, hdrs
        c["status"] = "pending"
        c.pop("validated", None)
        return json.dumps(c).encode(), hdrs + [("Retry-After", str(ra))]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def is_poll(body):
    """True for a POST-as-GET (a JWS with an empty payload), false for the
    challenge's answer ("{}")."""
    try:
        return body is not None and json.loads(body).get("payload") == ""
    except ValueError:
        return False


def rnd(prefix):
    return "%s%s.test" % (prefix, uuid.uuid4().hex[:12])


class Tenant:
    """A tenant with one edge hostname; issue() puts a fresh name on a
    property CNAMEd to it and asks for a certificate."""

    def __init__(self, s):
        self.s = s
        self.tid, self.key = s.new_tenant()
        self.eh = expect(s.post("/v1/edge-hostnames", {"label": "e" + uuid.uuid4().hex[:8]},
                                token=self.key), 201).json
        TB.add_a(self.eh["hostname"])

    def issue(self, prefix):
        name = rnd(prefix)
        TB.set_cname(name, self.eh["hostname"])
        expect(self.s.post("/v1/properties", {"name": "p", "hostnames": [name],
                                              "edge_hostname_id": self.eh["id"]},
                           token=self.key), 201)
        cid = expect(self.s.post("/v1/certificates", {"source": "acme", "name": prefix,
                                                      "hostnames": [name]},
                                 token=self.key), 202).json["id"]
        return name, cid

    def order(self, cid):
        os_ = [o for o in self.s.list_all("/v1/orders", token=self.key)
               if o["certificate_id"] == cid]
        check(len(os_) == 1, os_)
        return os_[0]

    def wait_active(self, cid, timeout=30):
        self.s.wait_for(lambda: self.s.get("/v1/certificates/" + cid, token=self.key).json[
            "status"] == "active", timeout=timeout, interval=0.2, what="certificate %s" % cid)


def job_of(s, order_id):
    rows = s.sql("SELECT state, lease_owner, run_at FROM jobs WHERE kind = 'acme_order' "
                 "AND payload LIKE ? ORDER BY id DESC LIMIT 1", "%" + order_id + "%")
    return rows[0] + (int(time.time()),) if rows else None


def events(log, name):
    """The log lines of event name, as objects, in order."""
    return [json.loads(x) for x in log.splitlines() if '"event":"%s"' % name in x]


def server(front, **extra):
    env = TB.server_env()
    env.update({"CERTPLANE_ACME_DIRECTORY_URL": "https://127.0.0.1:%d/dir" % front.port,
                "CERTPLANE_WORKERS": "1", "CERTPLANE_LOG_LEVEL": "debug"})
    env.update(extra)
    return Server(env=env).start()


def test_retry_after_past_the_lease_requeues_and_frees_the_worker():
    front = Front()
    s = server(front)
    try:
        t = Tenant(s)
        _, first = t.issue("w")  # the account registration, once
        t.wait_active(first)
        name, cid = t.issue("l")
        front.retry_after[name] = 600
        # The learning GET, then the poll after the challenge (answered
        # "pending", Retry-After: 600).
        s.wait_for(lambda: len(front.seen.get(name, [])) >= 2, timeout=20, interval=0.05,
                   what="the worker polled the held authorization")
        o = t.order(cid)
        state, owner, run_at, now = s.wait_for(
            lambda: (lambda j: j if j and j[0] == "queued" else None)(job_of(s, o["id"])),
            timeout=5, what="job back in the queue (not held through the Retry-After)")
        check(owner is None, "no lease held: %r" % owner)
        check(now + 590 <= run_at <= now + 601, "run_at %d s away" % (run_at - now))
        check(t.order(cid)["status"] == "validating", t.order(cid))
        req = [e for e in events(s.log(), "acme.order_requeued") if e["order_id"] == o["id"]]
        check(req and req[0]["retry_in"] == 600, req)
        # The only worker is free: another certificate issues meanwhile.
        t0 = time.time()
        _, other = t.issue("o")
        t.wait_active(other)
        print("  second certificate active %.1f s later on the one worker" % (time.time() - t0))
        check(t.order(cid)["status"] == "validating", "the held order waits for its time")
    finally:
        s.cleanup()
        front.close()


def test_sigterm_during_a_retry_after_wait_is_prompt():
    front = Front()
    s = server(front)
    try:
        t = Tenant(s)
        _, first = t.issue("w")
        t.wait_active(first)
        name, cid = t.issue("s")
        front.retry_after[name] = 20
        # The learning GET, then the poll after the challenge: the worker
        # is now in its 20 s wait.
        s.wait_for(lambda: len(front.seen.get(name, [])) >= 2, timeout=20, interval=0.05,
                   what="the worker polled the held authorization")
        time.sleep(0.5)
        t0 = time.time()
        s.proc.send_signal(signal.SIGTERM)
        s.proc.wait(30)
        took = time.time() - t0
        print("  SIGTERM during a 20 s Retry-After wait: exited in %.2f s" % took)
        check(took < 2.0, "shutdown waited out the sleep: %.2f s" % took)
        check(s.proc.returncode == 0, "clean exit: %r" % s.proc.returncode)
        o_id = [e for e in events(s.log(), "job.run") if e.get("result") == "retry"]
        check(o_id, "the job was given back as a retry")
        oid, status = s.sql("SELECT id, status FROM orders WHERE certificate_id = ?", cid)[0]
        check(status == "validating", status)
        state, owner, run_at, now = job_of(s, oid)
        check(state == "queued" and owner is None and run_at <= now + 1,
              "queued again, due now: %r" % ((state, owner, run_at, now),))
        # The next process goes on where it stopped.
        del front.retry_after[name]
        s.start()
        t.wait_active(cid)
        check(len(events(s.log(), "acme.order_placed")) == 2, "no fresh CA order was needed")
    finally:
        s.cleanup()
        front.close()


def test_http01_responder_outlives_the_workers():
    front = Front()
    s = server(front)
    try:
        t = Tenant(s)
        _, first = t.issue("w")
        t.wait_active(first)
        name = rnd("h")
        front.hold_challenge = name
        # issue() with the chosen name: set up as Tenant.issue does.
        TB.set_cname(name, t.eh["hostname"])
        expect(s.post("/v1/properties", {"name": "p", "hostnames": [name],
                                         "edge_hostname_id": t.eh["id"]}, token=t.key), 201)
        cid = expect(s.post("/v1/certificates", {"source": "acme", "name": "h",
                                                 "hostnames": [name]}, token=t.key), 202).json["id"]
        check(front.held.wait(20), "the challenge POST reached the front")
        s.proc.send_signal(signal.SIGTERM)
        s.wait_for(lambda: '"event":"server.stopping"' in s.log(settle=0), timeout=5, interval=0.02,
                   what="server.stopping logged")
        front.release.set()  # Pebble validates now, during our shutdown
        s.proc.wait(30)
        log = s.log()
        check(s.proc.returncode == 0, "clean exit: %r" % s.proc.returncode)
        after = log[log.index('"event":"server.stopping"'):]
        served = [e for e in events(after, "http01.request") if e["host"] == name]
        check(served and served[0]["status"] == 200,
              "the token was served during the shutdown: %r" % served)
        check("valid" in front.seen.get(name, []),
              "Pebble validated the name: %r" % front.seen.get(name))
        check("invalid" not in front.seen.get(name, []), front.seen.get(name))
        check('"event":"workers.stopped"' in after and '"event":"http01.stopped"' in after,
              "both stops logged")
        check(after.index('"event":"workers.stopped"') < after.index('"event":"http01.stopped"'),
              "the workers stop before the HTTP-01 responder")
        # The order completes, on the same CA order (no challenge_retry).
        front.hold_challenge = None
        s.start()
        t.wait_active(cid)
        check(not events(s.log(), "acme.order_reset"), "no fresh CA order needed")
    finally:
        s.cleanup()
        front.close()


if __name__ == "__main__":
    run(globals())
