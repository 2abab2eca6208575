"""test_edge_sync.py - certificates to the edge, and proof they are served
(issue 14, part 3), with a real nginx (Debian's) as the edge.

The edge: nginx on 127.0.0.1:<port> whose `ssl_certificate` and
`ssl_certificate_key` name `<dir>/$ssl_server_name.crt|.key` (loaded per
handshake, nginx >= 1.15.9), fed by `certplane edge-sync` (a process of its
own, the edge key in CERTPLANE_EDGE_TOKEN) with `--reload-cmd "nginx -s
reload ..."`. certplane runs with `edge_check_address` = that nginx, so after
each production deployment and renewal its edge_check job hand-shakes with
SNI for each hostname and records what is served on the property.

It proves:
- the roles: an edge key is operator-made, reads the feed and nothing else
  (403 on tenant routes); tenant keys and the operator get 403 on the feed;
  an answer with entries leaves one audit record (edge_feed.read); an empty
  long-poll waits about `wait` seconds and records nothing;
- the feed only has production: a staging deployment adds no entry, nor do
  hostnames the tenant has not verified; a production one adds its hostnames
  with chain and key; a deleted production property adds removals, which
  edge-sync turns into deleted files (and nginx stops serving the names);
- a waiting long-poll answers at once when an entry commits, and does not
  hold up a clean shutdown;
- after renewals (Pebble issuing LIFE-second certificates), nginx fed by
  edge-sync serves each new certificate: the test's own TLS handshake with
  SNI gives the fingerprint of the API's current version, and the property
  shows served.matches true for it, with a deployment.verified event; the
  files are 0600 and the cursor file resumes a restarted edge-sync;
- an edge left on the old certificate (edge-sync stopped before a renewal)
  is reported: served.matches false with the old fingerprint, and a
  deployment.mismatch event naming the new version.
"""
import calendar
import hashlib
import http.client
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Server, Testbed, check, expect, free_port, run  # noqa: E402

TB = Testbed().ensure()
LIFE = 40     # seconds: Pebble's certificateValidityPeriod here (renewal at LIFE / 2)
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def rnd(prefix="h"):
    return "%s%s" % (prefix, uuid.uuid4().hex[:10])


def ts(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def restart_testbed(extra_env=None):
    TB.stop()
    TB.start(extra_env)


def served_fp(port, hostname):
    """The SHA-256 (hex) of the leaf nginx serves for SNI hostname, or None."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                der = tls.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return hashlib.sha256(der).hexdigest() if der else None


class Edge:
    """nginx serving <dir>/certs/$ssl_server_name.{crt,key}, and edge-sync."""

    def __init__(self, server_url, token, port):
        self.dir = tempfile.mkdtemp(prefix="cp-edge-")
        self.certs = os.path.join(self.dir, "certs")
        os.mkdir(self.certs, 0o700)
        self.port = port
        self.conf = os.path.join(self.dir, "nginx.conf")
        self.url, self.token = server_url, token
        self.reloads = os.path.join(self.dir, "reloads")
        with open(self.conf, "w") as f:
            f.write("""
user root;
worker_processes 1;
pid %(d)s/nginx.pid;
error_log %(d)s/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path %(d)s/tmp-body;
  proxy_temp_path %(d)s/tmp-proxy;
  fastcgi_temp_path %(d)s/tmp-fcgi;
  uwsgi_temp_path %(d)s/tmp-uwsgi;
  scgi_temp_path %(d)s/tmp-scgi;
  server {
    listen 127.0.0.1:%(p)d ssl;
    ssl_certificate %(c)s/$ssl_server_name.crt;
    ssl_certificate_key %(c)s/$ssl_server_name.key;
    location / { return 200 "edge\\n"; }
  }
}
""" % {"d": self.dir, "p": self.port, "c": self.certs})
        self.nginx = None
        self.sync = None
        self.sync_log = os.path.join(self.dir, "edge-sync.log")

    def start_nginx(self):
        self.nginx = subprocess.Popen([NGINX, "-c", self.conf, "-p", self.dir,
                                       "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("nginx did not listen: %s" % self.nginx.stderr.read())

    def start_sync(self):
        reload_cmd = "%s -c %s -p %s -s reload && echo x >> %s" % (
            NGINX, self.conf, self.dir, self.reloads)
        env = dict(os.environ, CERTPLANE_EDGE_TOKEN=self.token)
        self.sync = subprocess.Popen([BIN, "edge-sync", "--url", self.url, "--dir", self.certs,
                                      "--wait", "5", "--reload-cmd", reload_cmd],
                                     env=env, stdout=open(self.sync_log, "ab"),
                                     stderr=subprocess.STDOUT)

    def stop_sync(self):
        if self.sync and self.sync.poll() is None:
            t0 = time.time()
            self.sync.send_signal(signal.SIGTERM)
            rc = self.sync.wait(timeout=10)
            check(rc == 0, "edge-sync exits 0 on SIGTERM (rc %r)" % rc)
            check(time.time() - t0 < 3, "edge-sync stops at once, mid long-poll")
        self.sync = None

    def reload_count(self):
        try:
            with open(self.reloads) as f:
                return len(f.readlines())
        except FileNotFoundError:
            return 0

    def cleanup(self):
        if self.sync and self.sync.poll() is None:
            self.sync.kill()
            self.sync.wait()
        if self.nginx and self.nginx.poll() is None:
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def site(s, key, tag, env="production", auto=True, validity=10, pointed=True):
    """A self-signed bootstrap certificate (renewed from the CA when auto),
    an edge hostname, a property whose hostnames CNAME to it (verified before
    it is deployed; pointed=False: not pointed, so never verified), deployed."""
    zone = rnd(tag) + ".test"
    names = ["www." + zone, "shop." + zone]
    cert = expect(s.post("/v1/certificates", {
        "source": "self_signed", "name": tag, "hostnames": names, "validity_days": validity,
        "auto_renew": "letsencrypt" if auto else "none"}, token=key), 201).json
    eh = expect(s.post("/v1/edge-hostnames", {"label": rnd("e")}, token=key), 201).json
    TB.add_a(eh["hostname"])
    for n in names if pointed else []:
        TB.set_cname(n, eh["hostname"])
    prop = expect(s.post("/v1/properties", {
        "name": tag, "hostnames": names, "edge_hostname_id": eh["id"],
        "certificate_id": cert["id"], "certificate_renew_automation": auto}, token=key), 201).json
    if pointed:
        s.wait_for(lambda: all(v["status"] == "verified" for v in expect(
            s.get("/v1/properties/" + prop["id"], token=key), 200).json["hostname_verification"]),
            timeout=30, what="the hostnames verified")
    expect(s.post("/v1/properties/%s/deployments" % prop["id"], {"environment": env},
                  token=key), 201)
    return cert["id"], prop["id"], names


def feed(s, edge_key, after=0, wait=0):
    return expect(s.get("/v1/edge/deployments", token=edge_key,
                        query={"after": after, "wait": wait}), 200).json


def test_roles_feed_production_only():
    s = None
    try:
        s = Server(env=TB.server_env()).start()
        _, key_a = s.new_tenant("edge-a")
        _, key_b = s.new_tenant("edge-b")
        # Only the operator makes edge keys; the key is shown once.
        expect(s.post("/v1/edge-keys", {"name": "pop-1"}, token=key_a), 403)
        ek = expect(s.post("/v1/edge-keys", {"name": "pop-1"}), 201).json
        check(ek["role"] == "edge" and ek["key"].startswith("cpk_"), ek)
        check(expect(s.get("/v1/edge-keys"), 200).json["data"][0].get("key") is None,
              "the key is never listed")
        edge = ek["key"]
        # Tenant keys (admin and read scope) and the operator cannot read the feed.
        expect(s.get("/v1/edge/deployments", token=key_a), 403)
        rk = expect(s.post("/v1/api-keys", {"name": "r", "scope": "read"}, token=key_b), 201).json
        expect(s.get("/v1/edge/deployments", token=rk["key"]), 403)
        expect(s.get("/v1/edge/deployments"), 403)
        # The edge key reads the feed and nothing else.
        for path in ("/v1/certificates", "/v1/properties", "/v1/events", "/v1/tenants",
                     "/v1/edge-keys", "/metrics"):
            expect(s.get(path, token=edge), 403, path)
        expect(s.post("/v1/certificates", {"source": "self_signed", "name": "x",
                                           "hostnames": ["x.test"]}, token=edge), 403)
        expect(s.get("/v1/edge/deployments", token=edge, query={"wait": 99}), 422)
        expect(s.get("/v1/edge/deployments", token=edge, query={"after": "x"}), 422)
        # An empty long-poll waits, and is not audited.
        t0 = time.time()
        empty = feed(s, edge, wait=1)
        check(empty == {"cursor": 0, "data": []}, empty)
        check(0.9 <= time.time() - t0 < 3, "waited %.2f s" % (time.time() - t0))
        # Staging adds nothing; production adds its hostnames (A and B).
        site(s, key_a, "stg", env="staging", auto=False)
        check(feed(s, edge)["data"] == [], "staging is not in the feed")
        # A tenant cannot put a certificate on the edge for names it has not
        # verified (here: not pointed at the CDN at all).
        site(s, key_b, "unv", auto=False, pointed=False)
        check(feed(s, edge)["data"] == [], "unverified hostnames are not in the feed")
        ca, pa, names_a = site(s, key_a, "pa", auto=False)
        cb, pb, names_b = site(s, key_b, "pb", auto=False)
        page = feed(s, edge)
        got = [(e["hostname"], e["property_id"], e["removed"]) for e in page["data"]]
        check(got == [(n, pa, False) for n in names_a] + [(n, pb, False) for n in names_b], got)
        cert_a = expect(s.get("/v1/certificates/" + ca, token=key_a), 200).json
        pem_a = expect(s.get("/v1/certificates/%s/pem" % ca, token=key_a), 200).body.decode()
        keypem_a = expect(s.get("/v1/certificates/%s/private-key" % ca, token=key_a),
                          200).body.decode()
        e0 = page["data"][0]
        check(e0["certificate_id"] == ca and e0["version"] == cert_a["version"] and
              e0["fingerprint_sha256"] == cert_a["fingerprint_sha256"], e0)
        check(e0["chain_pem"].strip() == pem_a.strip(), "the entry's chain is the certificate's")
        check(e0["key_pem"].strip() == keypem_a.strip(), "the entry's key is the certificate's")
        check(page["cursor"] == page["data"][-1]["cursor"], page["cursor"])
        # Resumable: after the last cursor, nothing; from the middle, the rest.
        check(feed(s, edge, after=page["cursor"])["data"] == [], "nothing after the cursor")
        mid = page["data"][1]["cursor"]
        check([e["cursor"] for e in feed(s, edge, after=mid)["data"]] ==
              [e["cursor"] for e in page["data"][2:]], "resumes after a cursor")
        # One audit record for the answers with entries, by the edge key.
        audits = [a for a in s.list_all("/v1/audit-log") if a["action"] == "edge_feed.read"]
        check(len(audits) == 2 and all(a["actor"] == ek["id"] for a in audits), audits)
        # A long-poll that is waiting returns as soon as an entry commits.
        last = page["cursor"]
        expect(s.delete("/v1/properties/" + pb, token=key_b), 204)
        rem = feed(s, edge, after=last, wait=5)["data"]
        check([(e["hostname"], e["removed"]) for e in rem] == [(n, True) for n in names_b], rem)
        check(all("key_pem" not in e for e in rem), "a removal carries no key")
        # Tenant B cannot see A's property served state, nor anything of A.
        expect(s.get("/v1/properties/" + pa, token=key_b), 404)
        # A waiting long-poll does not hold up a clean shutdown.
        box = {}

        def poll():  # a connection of its own
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
            try:
                c.request("GET", "/v1/edge/deployments?after=1000000&wait=25",
                          headers={"Authorization": "Bearer " + edge})
                r = c.getresponse()
                box["r"] = (r.status, r.read())
            except (OSError, http.client.HTTPException) as e:
                box["e"] = e
            c.close()
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        t0 = time.time()
        s.stop()
        th.join(timeout=10)
        check(time.time() - t0 < 5, "stopped in %.1f s with a long-poll open" % (time.time() - t0))
        check(not th.is_alive(), "the long-poll answered")
        check(box.get("r", (200,))[0] == 200, "the long-poll answered 200 (empty): %r" % box)
    finally:
        if s:
            s.cleanup()


def current(s, key, cert_id):
    return expect(s.get("/v1/certificates/" + cert_id, token=key), 200).json


def served(s, key, prop_id):
    return expect(s.get("/v1/properties/" + prop_id, token=key), 200).json["served"]


def test_edge_sync_nginx_renewals_and_mismatch():
    restart_testbed({"ACME_TESTBED_CERT_VALIDITY_SECONDS": str(LIFE)})
    s = edge = None
    try:
        nginx_port = free_port()
        env = TB.server_env()
        env.update({"CERTPLANE_EDGE_CHECK_ADDRESS": "127.0.0.1:%d" % nginx_port,
                    "CERTPLANE_RENEW_BACKOFF_SECONDS": "[3,3,3]"})
        s = Server(env=env).start()
        _, key = s.new_tenant("edge-sync")
        ek = expect(s.post("/v1/edge-keys", {"name": "nginx"}), 201).json
        edge = Edge("http://127.0.0.1:%d" % s.port, ek["key"], nginx_port)
        # A staging-only site of the same tenant: never written to the edge.
        _, _, stg_names = site(s, key, "stg", env="staging", auto=False)
        cert_id, prop_id, names = site(s, key, "live")
        edge.start_nginx()
        edge.start_sync()

        def serving_current(min_version):
            """The version nginx serves for every hostname == the API's current
            one (>= min_version), and served.matches true for it."""
            c = current(s, key, cert_id)
            if c["version"] < min_version:
                return None
            fps = [served_fp(edge.port, n) for n in names]
            if any(fp != c["fingerprint_sha256"] for fp in fps):
                return None
            sv = served(s, key, prop_id)
            if not all(n in sv and sv[n]["fingerprint"] == c["fingerprint_sha256"] and
                       sv[n]["matches"] is True for n in names):
                return None
            return c

        # The CA-issued first renewal of the bootstrap (v2), then one renewal.
        v2 = s.wait_for(lambda: serving_current(2), timeout=40, what="nginx serves v2, matches")
        print("   v%d served, fingerprint %s" % (v2["version"], v2["fingerprint_sha256"][:16]))
        v3 = s.wait_for(lambda: serving_current(v2["version"] + 1), timeout=LIFE + 15,
                        what="nginx serves the renewed version, matches")
        check(v3["fingerprint_sha256"] != v2["fingerprint_sha256"], "a new certificate")
        print("   renewed: v%d served, fingerprint %s" % (v3["version"],
                                                         v3["fingerprint_sha256"][:16]))
        ver = s.list_all("/v1/events", token=key, query={"type": "deployment.verified"})
        check(any(e["data"]["version"] == v3["version"] and e["data"]["property_id"] == prop_id
                  and e["data"]["fingerprint"] == v3["fingerprint_sha256"] for e in ver),
              "deployment.verified for v%d: %r" % (v3["version"], [e["data"] for e in ver]))
        # Files: 0600, one pair per production hostname, none for staging.
        for n in names:
            for ext in (".crt", ".key"):
                mode = os.stat(os.path.join(edge.certs, n + ext)).st_mode & 0o777
                check(mode == 0o600, "%s%s mode %o" % (n, ext, mode))
        for n in stg_names:
            check(not os.path.exists(os.path.join(edge.certs, n + ".crt")), "staging not written")
        check(edge.reload_count() >= 2, "reloaded after batches: %d" % edge.reload_count())
        with open(os.path.join(edge.certs, ".cursor")) as f:
            cursor = int(f.read())
        check(cursor > 0, "cursor stored")

        # The edge stops following: the next renewal is not served.
        edge.stop_sync()
        old = current(s, key, cert_id)
        old_fp = served_fp(edge.port, names[0])
        check(old_fp == old["fingerprint_sha256"], "serving the current one when stopped")
        t_stop = time.time()

        def mismatch():
            c = current(s, key, cert_id)
            if c["version"] <= old["version"]:
                return None
            sv = served(s, key, prop_id)
            if not all(n in sv and sv[n]["matches"] is False for n in names):
                return None
            ev = [e for e in s.list_all("/v1/events", token=key,
                                        query={"type": "deployment.mismatch"})
                  if e["data"]["version"] > old["version"]]
            return (c, sv, ev) if ev else None
        c, sv, ev = s.wait_for(mismatch, timeout=LIFE + 30, what="mismatch reported")
        print("   mismatch reported %.0f s after edge-sync stopped (v%d deployed)"
              % (time.time() - t_stop, c["version"]))
        for n in names:
            check(sv[n]["fingerprint"] == old["fingerprint_sha256"],
                  "served shows the old fingerprint: %r" % sv[n])
            check(served_fp(edge.port, n) == old["fingerprint_sha256"], "nginx still old")
        hosts = {h["hostname"]: h for h in ev[0]["data"]["hostnames"]}
        check(set(hosts) == set(names) and not any(h["matches"] for h in hosts.values()), hosts)
        check(ev[0]["data"]["fingerprint"] != old["fingerprint_sha256"], ev[0]["data"])
        # Renewals off, then a restarted edge-sync resumes from its cursor and
        # catches up with what it missed.
        expect(s.patch("/v1/properties/" + prop_id, {"certificate_renew_automation": False},
                       token=key), 200)
        time.sleep(2)
        edge.start_sync()
        s.wait_for(lambda: all(served_fp(edge.port, n) == current(s, key, cert_id)
                               ["fingerprint_sha256"] for n in names),
                   timeout=20, what="restarted edge-sync catches up")
        with open(edge.sync_log) as f:
            log = f.read()
        starts = [ln for ln in log.splitlines() if "edge_sync.start" in ln]
        check(len(starts) == 2 and "from cursor 0 " in starts[0] and
              "from cursor 0 " not in starts[1], "the restart resumed from its cursor: %r"
              % starts)
        # The property deleted: edge-sync removes its files, nginx stops
        # serving the names.
        expect(s.delete("/v1/properties/" + prop_id, token=key), 204)
        s.wait_for(lambda: not any(os.path.exists(os.path.join(edge.certs, n + ext))
                                   for n in names for ext in (".crt", ".key")),
                   timeout=20, what="edge-sync removed the files of the removed hostnames")
        check(all(served_fp(edge.port, n) is None for n in names), "nginx serves them no more")
        with open(edge.sync_log) as f:
            log = f.read()
        check(ek["key"] not in log and "PRIVATE KEY" not in log, "no key in edge-sync's log")
        check(ek["key"] not in s.log(), "no edge key in the server's log")
    finally:
        if edge:
            edge.cleanup()
        if s:
            s.cleanup()
        restart_testbed()


if __name__ == "__main__":
    run(globals())
