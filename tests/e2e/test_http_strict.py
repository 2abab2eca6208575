"""test_http_strict.py - the HTTP layer under attack, with raw sockets.

1. strictness: differing duplicate Content-Length, Content-Length with
   Transfer-Encoding, an unknown transfer coding (501), control characters
   and NUL in headers (a valid operator token followed by "\\0junk" does not
   authenticate), %2f / %00 inside a path segment, and an early 413 for a
   declared length over max_body_bytes (answered before the body is sent):
   each answered once with Connection: close, and the pipelined request
   behind it never answered; the same on the HTTP-01 listener;
2. a slow drip (one byte a second) is closed at the receive deadline;
3. floods from 127.0.0.2 (4000 idle connections and drip connections)
   while a victim on 127.0.0.1 keeps making requests, on the API port and on
   the HTTP-01 port: the victim's p50 and max latency stay within 2x of its
   idle figures and every request succeeds;
4. a resolver that never answers: tenant A's 10 concurrent dns-checks take
   at most net_tenant_concurrency net threads (the rest 429 naming the
   limit) while tenant B's requests stay within 2x of idle;
5. 12 concurrent POST /v1/certificates with one Idempotency-Key: exactly
   one certificate; the others replay it or get 409 (in progress); another
   actor or tenant with the same key gets its own; a tenant key never gets
   the operator's replay on an operator route;
6. the HTTP-01 responder answers a pending token only to its own Host
   (case-folded, port and trailing dot removed), never once the
   authorization is valid or the order failed.
"""
import http.client
import json
import multiprocessing
import os
import re
import resource
import socket
import statistics
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, free_port, run  # noqa: E402

ATTACKER = "127.0.0.2"
VICTIM = "127.0.0.1"


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    check(hard >= need, "RLIMIT_NOFILE hard limit %d < %d: the flood cannot run" % (hard, need))
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, need * 2), hard))


def raw(port, data, timeout=5.0, src=VICTIM):
    """Send data on a new connection; read until the server closes it.
    Returns (bytes, closed)."""
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(src, 0))
    c.sendall(data)
    out, closed = b"", False
    deadline = time.time() + timeout
    try:
        while time.time() < deadline:
            d = c.recv(65536)
            if not d:
                closed = True
                break
            out += d
    except socket.timeout:
        pass
    except ConnectionResetError:
        closed = True
    c.close()
    return out, closed


def statuses(data):
    """Status codes of every response in a raw byte stream."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


PIPELINED = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def server(**env):
    e = {"CERTPLANE_HTTP01_LISTEN": "127.0.0.1:%d" % free_port()}
    e.update(env)
    return Server(env=e).start()


def http01_port(s):
    return int(s.env["CERTPLANE_HTTP01_LISTEN"].rsplit(":", 1)[1])


# ------------------------------------------------------------ 1. strictness

def strict_cases(token):
    post = b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + \
        b"\r\nContent-Type: application/json\r\n"
    return [
        ("differing Content-Length", 400,
         post + b"Content-Length: 2\r\nContent-Length: 12\r\n\r\n{}" + b"x" * 10),
        ("Content-Length with Transfer-Encoding", 400,
         post + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("unknown transfer coding", 501, post + b"Transfer-Encoding: gzip\r\n\r\n"),
        ("chunked after another coding", 501, post + b"Transfer-Encoding: gzip, chunked\r\n\r\n"),
        ("NUL after a valid bearer token", 400,
         b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
         b"\x00junk\r\n\r\n"),
        ("NUL in the last header", 400,
         b"GET /v1/tenants HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("control character in a header", 400,
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\nX-B: c\r\n\r\n"),
        ("escape character in a header", 400,
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x1b[2Jb\r\n\r\n"),
        ("%2f inside a path segment", 400,
         b"GET /v1/tenants/a%2fb HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token +
         b"\r\n\r\n"),
        ("%2F inside a path segment", 400, b"GET /v1/tenants/a%2Fb HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("%00 inside a path segment", 400, b"GET /v1/tenants/a%00b HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("%00 in the query", 400, b"GET /v1/tenants?cursor=a%00b HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]


def test_strictness_api():
    s = server()
    try:
        tok = s.token.encode()
        for what, status, data in strict_cases(tok):
            out, closed = raw(s.port, data + PIPELINED)
            check(statuses(out) == [status], "%s: answers %s: %r" % (what, statuses(out), out[:300]))
            check(b"\r\nConnection: close\r\n" in out, "%s: no Connection: close: %r" % (what, out[:300]))
            check(b"application/problem+json" in out, "%s: not a problem: %r" % (what, out[:300]))
            check(closed, "%s: the connection stayed open" % what)
        # The control: the same pipelining with a clean request is answered twice,
        # and identical duplicate Content-Length headers are one length.
        out, _ = raw(s.port, PIPELINED + PIPELINED, timeout=2)
        check(statuses(out) == [200, 200], out)
        ok = (b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
              b"\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
              b"Content-Length: 12\r\n\r\n{\"name\":\"a\"}")
        out, _ = raw(s.port, ok + PIPELINED, timeout=2)
        check(statuses(out) == [201, 200], out)
        # The NUL-suffixed token was not taken as the operator token: no tenant
        # was created or listed by it, and the plain token still works.
        expect(s.get("/v1/tenants"), 200)

        # Early 413: only the headers are sent; the answer comes at once.
        c = socket.create_connection(("127.0.0.1", s.port), timeout=5)
        t0 = time.time()
        c.sendall(b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + tok +
                  b"\r\nContent-Type: application/json\r\nContent-Length: 99999999\r\n\r\n")
        out = b""
        while True:
            d = c.recv(65536)
            if not d:
                break
            out += d
        took = time.time() - t0
        c.close()
        check(statuses(out) == [413] and b"Connection: close" in out, out)
        check(took < 2, "413 took %.2fs: the body was awaited" % took)
        # A client that sends its whole oversized body still reads the 413
        # (lingering close), rather than a reset.
        out, closed = raw(s.port, b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: "
                          b"application/json\r\nContent-Length: 3000000\r\n\r\n" +
                          b" " * 3000000 + PIPELINED)
        check(statuses(out) == [413] and closed, out[:300])
        # The server log shows no pipelined request handled after a refused one.
        expect(s.get("/healthz", auth=False), 200)
    finally:
        s.cleanup()


def test_strictness_http01():
    s = server()
    try:
        port = http01_port(s)
        cases = [
            ("differing Content-Length", 400,
             b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            ("Content-Length with Transfer-Encoding", 400,
             b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked"
             b"\r\n\r\n0\r\n\r\n"),
            ("unknown transfer coding", 501,
             b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            ("NUL in a header", 400,
             b"GET /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: a.test\x00b\r\n\r\n"),
            ("%2f in a path segment", 400,
             b"GET /.well-known/acme-challenge/a%2fb HTTP/1.1\r\nHost: x\r\n\r\n"),
        ]
        for what, status, data in cases:
            out, closed = raw(port, data + PIPELINED)
            check(statuses(out) == [status], "%s: answers %s: %r" % (what, statuses(out), out[:300]))
            check(b"\r\nConnection: close\r\n" in out and closed, "%s: stayed open" % what)
        out, _ = raw(port, PIPELINED + PIPELINED, timeout=2)
        check(statuses(out) == [404, 404], out)
    finally:
        s.cleanup()


# ------------------------------------------------------------ 2. slow drip

def test_slow_drip_closed_at_deadline():
    s = server(CERTPLANE_HTTP_REQUEST_DEADLINE_SECONDS="3", CERTPLANE_HTTP_IDLE_TIMEOUT_SECONDS="5")
    try:
        for port in (s.port, http01_port(s)):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            t0 = time.time()
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            closed_at = None
            c.settimeout(1.0)
            while time.time() - t0 < 12:
                try:
                    c.send(b"X")  # one byte a second: never idle for 5 s
                    d = c.recv(4096)
                    if not d:
                        closed_at = time.time() - t0
                        break
                except socket.timeout:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed_at = time.time() - t0
                    break
            c.close()
            check(closed_at is not None, "port %d: a dripping connection stayed open 12 s" % port)
            check(2.5 <= closed_at <= 5.0, "port %d: closed after %.2fs (deadline 3 s)" % (port, closed_at))
            print("  port %d: drip closed after %.2fs" % (port, closed_at))
        # A request that keeps a connection busy in the server (here: many
        # keep-alive requests one after another) is not cut by the deadline.
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
        t0 = time.time()
        n = 0
        while time.time() - t0 < 4:
            c.request("GET", "/healthz")
            r = c.getresponse()
            r.read()
            check(r.status == 200, r.status)
            n += 1
            time.sleep(0.2)
        c.close()
        check(n >= 15, n)
    finally:
        s.cleanup()


# ------------------------------------------------------------ 3. floods

def timed_samples(fn, n, gap=0.0):
    """Run fn n times, gap seconds apart; the latencies in ms. fn must
    return True on success."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        ok = fn()
        times.append((time.perf_counter() - t0) * 1000)
        check(ok, "a victim request failed")
        if gap:
            time.sleep(gap)
    return times


def timed(fn, n):
    """(p50, max) in ms of n runs of fn."""
    times = timed_samples(fn, n)
    return statistics.median(times), max(times)


class Flood:
    """Idle and drip connections from ATTACKER against port, run in a
    child process so that the attacker's threads never compete with the
    victim's client for this interpreter's lock."""

    def __init__(self, port, idle=4000, drip=40):
        self.port, self.idle_n, self.drip_n = port, idle, drip
        self.stop = multiprocessing.Event()
        self.ready = multiprocessing.Event()
        self.report = multiprocessing.Queue()
        self.proc = None

    def _open(self, timeout=2):
        try:
            return socket.create_connection(("127.0.0.1", self.port), timeout=timeout,
                                            source_address=(ATTACKER, 0))
        except OSError:
            return None

    def _drip(self):
        while not self.stop.is_set():
            c = self._open()
            if not c:
                time.sleep(0.2)
                continue
            try:
                c.sendall(b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
                while not self.stop.wait(1.0):
                    c.send(b"x")
            except OSError:
                pass  # closed at the deadline: come back
            c.close()

    @staticmethod
    def _held(socks):
        """How many of the idle connections the server still holds open."""
        n = 0
        for c in socks:
            c.setblocking(False)
            try:
                if c.recv(1) == b"":
                    continue
                n += 1
            except BlockingIOError:
                n += 1
            except OSError:
                pass
        return n

    def _main(self):
        threads = [threading.Thread(target=self._drip, daemon=True) for _ in range(self.drip_n)]
        for t in threads:
            t.start()
        socks = []
        for _ in range(self.idle_n):
            c = self._open(timeout=0.5)
            if c:
                socks.append(c)
        time.sleep(1.0)
        self.report.put((len(socks), self._held(socks)))
        self.ready.set()
        # Keep flooding while the victim measures: 200 new connections a
        # second (the refused ones are closed by the server at once).
        while not self.stop.is_set():
            for _ in range(20):
                c = self._open(timeout=0.5)
                if c:
                    socks.append(c)
            alive = []
            for c in socks:
                if self._held([c]):
                    alive.append(c)
                else:
                    c.close()
            socks = alive
            self.stop.wait(0.1)
        for t in threads:
            t.join(5)
        for c in socks:
            c.close()

    def start(self):
        self.proc = multiprocessing.Process(target=self._main, daemon=True)
        self.proc.start()
        check(self.ready.wait(60), "the flood did not start")
        self.opened, self.held = self.report.get(timeout=10)
        return self

    def close(self):
        self.stop.set()
        self.proc.join(20)


def victim_api(s, key):
    def one():
        c = http.client.HTTPConnection(VICTIM, s.port, timeout=10)
        try:
            c.request("GET", "/v1/properties", headers={"Authorization": "Bearer " + key})
            r = c.getresponse()
            body = r.read()
            return r.status == 200 and json.loads(body)["data"] is not None
        finally:
            c.close()
    return one


def victim_http01(port, token, host, body):
    def one():
        c = http.client.HTTPConnection(VICTIM, port, timeout=10)
        try:
            c.request("GET", "/.well-known/acme-challenge/" + token, headers={"Host": host})
            r = c.getresponse()
            return r.status == 200 and r.read().decode() == body
        finally:
            c.close()
    return one


SLACK_MS = 1.0


def flood_and_measure(port, victim, what, rounds=3):
    """The victim's latency before, during and after a flood; the idle
    figures bracket the attack (before and after, same conditions). The p50
    must hold in every round. A single maximum is at the mercy of whatever
    else this shared machine runs (idle windows alone show 5-40 ms spikes),
    so the max may take up to `rounds` rounds; a flood that really holds
    the victim up fails every one."""
    victim()  # warm up
    for attempt in range(1, rounds + 1):
        before = timed_samples(victim, 100, 0.01)
        fl = Flood(port).start()
        try:
            during = timed_samples(victim, 200, 0.01)
        finally:
            fl.close()
        after = timed_samples(victim, 100, 0.01)
        idle_p50, idle_max = statistics.median(before + after), max(max(before), max(after))
        p50, mx = statistics.median(during), max(during)
        print("  %s round %d: idle p50 %.2f ms max %.2f ms; flooded p50 %.2f ms max %.2f ms; "
              "the server holds %d of the attacker's %d idle connections"
              % (what, attempt, idle_p50, idle_max, p50, mx, fl.held, fl.opened))
        check(fl.held <= 64, "%s: the server holds %d connections from one address" % (what, fl.held))
        # SLACK_MS: the flood's client shares the 2 cores with the server
        # (and ASan slows the server 2-3x), so a sub-millisecond idle p50
        # gets an absolute allowance for CPU contention, not for waiting.
        if p50 <= 2 * idle_p50 + SLACK_MS and mx <= 2 * idle_max + SLACK_MS:
            return
    check(False, "%s: p50 %.2f ms / max %.2f ms > 2x idle %.2f / %.2f ms + %.1f in %d rounds"
          % (what, p50, mx, idle_p50, idle_max, SLACK_MS, rounds))


def test_floods_from_another_address():
    raise_nofile(4500)  # 4000 idle connections and the drips, with room
    s = server()
    try:
        _, key = s.new_tenant("victim")
        flood_and_measure(s.port, victim_api(s, key), "API")
        token, host, body = pending_authz(s, "victim.http01.test")
        flood_and_measure(http01_port(s), victim_http01(http01_port(s), token, host, body),
                          "HTTP-01")
        expect(s.get("/healthz", auth=False), 200)
    finally:
        s.cleanup()


# ------------------------------------------------------------ 4. dead resolver

def test_dead_resolver_one_tenant_only():
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    stop = threading.Event()

    def swallow():
        dead.settimeout(0.2)
        while not stop.is_set():
            try:
                dead.recvfrom(4096)  # read and drop: never an answer
            except (socket.timeout, OSError):
                pass
    threading.Thread(target=swallow, daemon=True).start()
    s = server(CERTPLANE_DNS_RESOLVER="127.0.0.1:%d" % dead.getsockname()[1])
    try:
        _, ka = s.new_tenant("slow dns")
        _, kb = s.new_tenant("bystander")
        edge = expect(s.post("/v1/edge-hostnames", {"label": "dead"}, token=ka), 201).json
        prop = expect(s.post("/v1/properties", {"name": "p", "hostnames": ["dead.example.test"],
                                                "edge_hostname_id": edge["id"]}, token=ka), 201).json
        edge_b = expect(s.post("/v1/edge-hostnames", {"label": "alive"}, token=kb), 201).json
        expect(s.post("/v1/properties", {"name": "b", "hostnames": ["b.example.test"],
                                         "edge_hostname_id": edge_b["id"]}, token=kb), 201)
        victim = victim_api(s, kb)
        victim()

        def check_dns(results):
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            t0 = time.time()
            c.request("GET", "/v1/properties/%s/dns-check" % prop["id"],
                      headers={"Authorization": "Bearer " + ka})
            r = c.getresponse()
            body = r.read()
            results.append((r.status, time.time() - t0, r.getheader("Retry-After"), body))
            c.close()
        # As for the floods: p50 and max within 2x idle (+ SLACK_MS) in one of 3 rounds.
        for attempt in range(1, 4):
            before = timed_samples(victim, 60, 0.02)
            results = []
            threads = [threading.Thread(target=check_dns, args=(results,)) for _ in range(10)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            during = timed_samples(victim, 150, 0.02)  # 3 s of the dns-checks' wait
            for t in threads:
                t.join(60)
            after = timed_samples(victim, 60, 0.02)
            idle_p50, idle_max = statistics.median(before + after), max(before + after)
            p50, mx = statistics.median(during), max(during)
            codes = sorted(r[0] for r in results)
            print("  round %d: bystander idle p50 %.2f ms max %.2f ms; during 10 dns-checks "
                  "p50 %.2f ms max %.2f ms; dns-check answers %s, slowest %.1fs"
                  % (attempt, idle_p50, idle_max, p50, mx, codes, max(r[1] for r in results)))
            check(len(results) == 10, results)
            limited = [r for r in results if r[0] == 429]
            ran = [r for r in results if r[0] == 200]
            check(len(ran) == 2 and len(limited) == 8, codes)
            for st, took, ra, body in limited:
                check(ra == "1" and b"net_tenant_concurrency" in body and took < 1,
                      (st, took, ra, body))
            if p50 <= 2 * idle_p50 + SLACK_MS and mx <= 2 * idle_max + SLACK_MS:
                break
        else:
            check(False, "bystander p50 %.2f ms / max %.2f ms > 2x idle %.2f / %.2f ms + %.1f "
                  "in 3 rounds" % (p50, mx, idle_p50, idle_max, SLACK_MS))
    finally:
        stop.set()
        s.cleanup()
        dead.close()


# ------------------------------------------------------------ 5. idempotency

def test_idempotency_key_under_concurrency():
    s = server()
    try:
        tid, key = s.new_tenant("idem")
        body = {"source": "self_signed", "name": "once", "hostnames": ["once.idem.test"],
                "key_type": "rsa-2048"}
        idem = "key-" + uuid.uuid4().hex
        answers = []
        barrier = threading.Barrier(12)

        def post():
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=60)
            barrier.wait()
            c.request("POST", "/v1/certificates", body=json.dumps(body),
                      headers={"Authorization": "Bearer " + key, "Content-Type": "application/json",
                               "Idempotency-Key": idem})
            r = c.getresponse()
            answers.append((r.status, r.getheader("Idempotent-Replayed"), json.loads(r.read())))
            c.close()
        threads = [threading.Thread(target=post) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted(a[0] for a in answers)
        print("  12 concurrent POSTs with one key: %s" % codes)
        check(len(answers) == 12 and set(codes) <= {201, 409}, codes)
        certs = s.list_all("/v1/certificates", token=key)
        check(len(certs) == 1, "%d certificates for one key" % len(certs))
        for st, replayed, j in answers:
            if st == 201:
                check(j["id"] == certs[0]["id"], j)
            else:
                check("in progress" in j["detail"], j)
        # After the first finished, a retry replays it.
        r = expect(s.post("/v1/certificates", body, token=key, headers={"Idempotency-Key": idem}), 201)
        check(r.json["id"] == certs[0]["id"] and r.header("idempotent-replayed") == "true", r)
        # Same key, other body: 422 naming the header.
        r = expect(s.post("/v1/certificates", dict(body, name="other"), token=key,
                          headers={"Idempotency-Key": idem}), 422)
        # Another actor of the same tenant, and another tenant: their own resource.
        key2 = expect(s.post("/v1/tenants/%s/api-keys" % tid, {"name": "second"}), 201).json["key"]
        r2 = expect(s.post("/v1/certificates", body, token=key2, headers={"Idempotency-Key": idem}), 201)
        check(r2.json["id"] != certs[0]["id"] and r2.header("idempotent-replayed") is None, r2.json)
        _, kb = s.new_tenant("idem other")
        r3 = expect(s.post("/v1/certificates", body, token=kb, headers={"Idempotency-Key": idem}), 201)
        check(r3.json["id"] not in (certs[0]["id"], r2.json["id"]), r3.json)
        check(len(s.list_all("/v1/certificates", token=key)) == 2, "tenant A has its two")
        check(len(s.list_all("/v1/certificates", token=kb)) == 1, "tenant B has its one")
        # A replay only after the role check: the operator creates a tenant
        # with a key; a tenant key with the same key and body gets 403, not
        # the operator's answer (which held an id the tenant must not see).
        tk = "tenant-" + uuid.uuid4().hex
        op = expect(s.post("/v1/tenants", {"name": "made once"}, headers={"Idempotency-Key": tk}), 201)
        r = expect(s.post("/v1/tenants", {"name": "made once"}, token=key,
                          headers={"Idempotency-Key": tk}), 403)
        check(op.json["id"] not in r.text, r.text)
        r = expect(s.post("/v1/tenants", {"name": "made once"}, headers={"Idempotency-Key": tk}), 201)
        check(r.json["id"] == op.json["id"] and r.header("idempotent-replayed") == "true", r)
        # The operator acting in a tenant is another scope than without one.
        r = expect(s.post("/v1/certificates", body, tenant=tid, headers={"Idempotency-Key": idem}), 201)
        check(r.json["id"] not in (certs[0]["id"], r2.json["id"]), r.json)
        # A stale pending reservation (its holder crashed) expires: forge one.
        stale = "stale-" + uuid.uuid4().hex
        kid = [k for k in s.list_all("/v1/tenants/%s/api-keys" % tid) if k["name"] == "test key"][0]["id"]
        import hashlib
        bh = hashlib.sha256(json.dumps(body).encode()).hexdigest()
        s.sql("INSERT INTO idempotency (actor, tenant_id, method, path, key, state, owner, "
              "lease_until, body_hash, created_at) VALUES (?, ?, 'POST', '/v1/certificates', ?, "
              "'pending', 'dead', ?, ?, ?)", kid, tid, stale, int(time.time()) + 3600, bh,
              int(time.time()))
        expect(s.post("/v1/certificates", body, token=key, headers={"Idempotency-Key": stale}), 409)
        s.sql("UPDATE idempotency SET lease_until = ? WHERE key = ?", int(time.time()) - 1, stale)
        r = expect(s.post("/v1/certificates", body, token=key, headers={"Idempotency-Key": stale}), 201)
        check(r.header("idempotent-replayed") is None, r)
        # A response holding a secret (a new API key) is stored sealed, and
        # its replay survives a master key rotation.
        kk = "apikey-" + uuid.uuid4().hex
        k1 = expect(s.post("/v1/tenants/%s/api-keys" % tid, {"name": "sealed"},
                           headers={"Idempotency-Key": kk}), 201)
        stored = s.sql("SELECT response FROM idempotency WHERE key = ?", kk)[0][0]
        stored = stored.encode() if isinstance(stored, str) else bytes(stored)
        check(stored.startswith(b"cpk1:") and k1.json["key"].encode() not in stored,
              "the stored replay of a new API key is not sealed")
        s.stop()
        s.run("rotate-master-key")
        s.start()
        k2 = expect(s.post("/v1/tenants/%s/api-keys" % tid, {"name": "sealed"},
                           headers={"Idempotency-Key": kk}), 201)
        check(k2.json["key"] == k1.json["key"] and k2.header("idempotent-replayed") == "true", k2)
    finally:
        s.cleanup()


# ------------------------------------------------------------ 6. HTTP-01 Host

def pending_authz(s, name):
    """Insert an HTTP-01 order with a pending authorization for name (as
    the engine stores one after the CA's answer); returns (token, Host
    header to use, key authorization)."""
    tid, _ = s.new_tenant("http01 " + name)
    token = uuid.uuid4().hex + "_tok-" + uuid.uuid4().hex[:8]
    ka = token + ".thumbprint"
    oid = str(uuid.uuid4())
    now = int(time.time())
    s.sql("INSERT INTO orders (id, tenant_id, certificate_id, kind, status, challenge, "
          "identifiers, ca, key_type, created_at, updated_at) VALUES (?, ?, ?, 'issue', "
          "'validating', 'http-01', ?, 'letsencrypt', 'ecdsa-p256', ?, ?)",
          oid, tid, str(uuid.uuid4()), json.dumps([name]), now, now)
    s.sql("INSERT INTO order_authorizations (order_id, position, url, identifier, status, "
          "challenge_type, token, key_authorization) VALUES (?, 0, 'https://ca/authz', ?, "
          "'pending', 'http-01', ?, ?)", oid, name, token, ka)
    return token, name + ":5002", ka


def http01_get(port, token, host):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.putrequest("GET", "/.well-known/acme-challenge/" + token, skip_host=True)
    if host is not None:
        c.putheader("Host", host)
    c.endheaders()
    r = c.getresponse()
    body = r.read().decode()
    c.close()
    return r.status, body


def test_http01_answers_only_its_host():
    s = server()
    try:
        port = http01_port(s)
        name = "www.%s.http01.test" % uuid.uuid4().hex[:8]
        token, host, ka = pending_authz(s, name)
        other_token, _, _ = pending_authz(s, "other.http01.test")
        for h in (name, host, name.upper() + ":80", name + ".", name + ".:5002", "WwW." + name[4:]):
            st, body = http01_get(port, token, h)
            check(st == 200 and body == ka, "Host %r: %d %r" % (h, st, body))
        for h in ("other.http01.test", "other.http01.test:5002", "x" + name, name[4:], "",
                  "[::1]:5002", name + "..", "alpha.edge.cdn.test"):
            st, _ = http01_get(port, token, h)
            check(st == 404, "Host %r: %d" % (h, st))
        # HTTP/1.1 without Host is refused by libmicrohttpd's strict mode.
        st, _ = http01_get(port, token, None)
        check(st == 400, "no Host: %d" % st)
        # Another tenant's token for this Host is not this name's answer.
        st, _ = http01_get(port, other_token, host)
        check(st == 404, st)
        s.sql("UPDATE order_authorizations SET status = 'valid' WHERE token = ?", token)
        st, _ = http01_get(port, token, host)
        check(st == 404, "a valid authorization is still answered")
        s.sql("UPDATE order_authorizations SET status = 'pending' WHERE token = ?", token)
        s.sql("UPDATE orders SET status = 'failed' WHERE id = (SELECT order_id FROM "
              "order_authorizations WHERE token = ?)", token)
        st, _ = http01_get(port, token, host)
        check(st == 404, "a failed order's token is still answered")
    finally:
        s.cleanup()


if __name__ == "__main__":
    run(globals())
