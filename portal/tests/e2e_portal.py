"""e2e_portal.py - the portal's browser test (CTest e2e_portal, label portal).

Starts certplane (CERTPLANE_BIN) on the ACME test bed with the built portal
(portal/dist; `npm ci && npm run build` in portal/ first, as
deploy/quickstart.sh does), creates a tenant and its API key (operator work,
not the portal's), then runs portal/tests/seed-flow.mjs: Debian's Chromium
driven by playwright-core walks the seed flow through the UI only.
Screenshots go to CERTPLANE_PORTAL_SCREENSHOTS (CTest: build/portal-screenshots).
Also checks the static file server (server/portal.c): types, cache headers,
CSP, SPA routing and path traversal. A missing piece (portal not built,
no chromium, no playwright-core) fails the test.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("CERTPLANE_SRC", os.path.abspath(os.path.join(HERE, "..", "..")))
sys.path.insert(0, os.path.join(SRC, "tests", "e2e"))
from harness import Server, Testbed, check, expect, run  # noqa: E402

PORTAL = os.path.join(SRC, "portal")
DIST = os.path.join(PORTAL, "dist")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("CERTPLANE_PORTAL_SCREENSHOTS",
                       os.path.join(SRC, "build", "portal-screenshots"))
TB = Testbed().ensure()


def server():
    env = TB.server_env()
    env.update({"CERTPLANE_PORTAL_DIR": DIST,
                "CERTPLANE_RENEW_BACKOFF_SECONDS": "[1,1,1,1]",
                "CERTPLANE_DNS01_TIMEOUT_SECONDS": "120",
                # one attempt: the test webhook's delivery fails at once (redeliver)
                "CERTPLANE_WEBHOOK_RETRY_SCHEDULE": "[0]"})
    return Server(env=env).start()


def prerequisites():
    check(os.path.isfile(os.path.join(DIST, "index.html")),
          "the portal is not built: run `npm ci && npm run build` in portal/")
    check(os.path.isdir(os.path.join(PORTAL, "node_modules", "playwright-core")),
          "playwright-core is not installed: run `npm ci` in portal/")
    check(os.access(CHROMIUM, os.X_OK), "no chromium at %s (apt-get install chromium)" % CHROMIUM)
    check(shutil.which("node"), "node is not installed")


def test_static_files():
    prerequisites()
    s = server()
    try:
        r = s.get("/", auth=False)
        check(r.status == 302 and r.header("location") == "/portal/", r)
        r = expect(s.get("/portal/", auth=False), 200)
        check(r.header("content-type") == "text/html; charset=utf-8", r.headers)
        check(r.header("cache-control") == "no-cache", r.headers)
        csp = r.header("content-security-policy") or ""
        check("default-src 'none'" in csp and "script-src 'self'" in csp and
              "unsafe" not in csp and "frame-ancestors 'none'" in csp, csp)
        check(r.header("x-content-type-options") == "nosniff", r.headers)
        # SPA routing: a page of the app is index.html.
        page = expect(s.get("/portal/certificates/123", auth=False), 200)
        check(page.body == r.body, "sub-path answers index.html")
        assets = [f for f in os.listdir(os.path.join(DIST, "assets"))]
        js = [f for f in assets if f.endswith(".js")]
        check(js, assets)
        a = expect(s.get("/portal/assets/" + js[0], auth=False), 200)
        check(a.header("content-type") == "text/javascript; charset=utf-8", a.headers)
        check(a.header("cache-control") == "public, max-age=31536000, immutable", a.headers)
        css = [f for f in assets if f.endswith(".css")]
        check(css and expect(s.get("/portal/assets/" + css[0], auth=False), 200)
              .header("content-type") == "text/css; charset=utf-8", css)
        check(s.get("/portal/assets/missing.js", auth=False).status == 404, "missing asset")
        # Nothing outside the directory's plain names: traversal, hidden
        # files, encoded dots and slashes.
        for p in ["/portal/../openapi.yaml", "/portal/assets/../../package.json",
                  "/portal/%2e%2e/package.json", "/portal/..%2fpackage.json",
                  "/portal/.gitignore", "/portal//etc/passwd", "/portal/assets/..",
                  "/portal/a\\..\\b.js", "/portal/%00.js"]:
            r = s.get(p, auth=False)
            check(r.status in (400, 404), "%s -> %r" % (p, r))
            check(b"import" not in r.body and b"devDependencies" not in r.body, p)
        check(s.request("POST", "/portal/", auth=False).status == 405, "POST /portal/")
        # The API is untouched; portal requests have their log line too.
        expect(s.get("/healthz", auth=False), 200)
        check('"route":"portal"' in s.log() and '"status":404' in s.log(), "portal log lines")
    finally:
        s.cleanup()


def test_seed_flow_in_chromium():
    prerequisites()
    s = server()
    pem_dir = None
    try:
        _, key = s.new_tenant("portal")
        zone = "p" + uuid.uuid4().hex[:10] + ".test"
        pem_dir = tempfile.mkdtemp(prefix="cp-portal-pem-")
        crt, pkey = os.path.join(pem_dir, "up.crt"), os.path.join(pem_dir, "up.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", pkey, "-out", crt,
                        "-days", "30", "-subj", "/CN=up." + zone, "-addext",
                        "subjectAltName=DNS:up." + zone, "-addext",
                        "basicConstraints=critical,CA:FALSE"], check=True, capture_output=True)
        env = dict(os.environ)
        env.update({"PORTAL_URL": "http://127.0.0.1:%d" % s.port, "API_KEY": key, "ZONE": zone,
                    "CHALLTESTSRV": "http://127.0.0.1:8055", "SCREENSHOTS": SHOTS,
                    "CHROMIUM": CHROMIUM, "UPLOAD_CERT": crt, "UPLOAD_KEY": pkey})
        p = subprocess.run(["node", os.path.join(PORTAL, "tests", "seed-flow.mjs")], env=env,
                           cwd=PORTAL, capture_output=True, text=True, timeout=240)
        sys.stdout.write(p.stdout)
        sys.stderr.write(p.stderr)
        check(p.returncode == 0, "seed-flow.mjs failed (rc %d)" % p.returncode)
        # What the page showed is what the API holds.
        certs = s.list_all("/v1/certificates", token=key)
        boot = [c for c in certs if c["name"] == "bootstrap"]
        check(len(boot) == 1 and boot[0]["version"] >= 2 and boot[0]["issuer"] and
              boot[0]["source"] == "self_signed", boot)
        dns = [c for c in certs if c["name"] == "api-dns01"]
        check(len(dns) == 1 and dns[0]["status"] == "active", dns)
        up = [c for c in certs if c["name"] == "uploaded"]
        check(len(up) == 1 and up[0]["source"] == "upload" and up[0]["sans"] == ["up." + zone], up)
        for n in ["01-signin-error", "06-property-not-pointed", "07-property-pointed",
                  "08-certificate-renewed", "10-order-valid", "17-webhooks"]:
            check(os.path.getsize(os.path.join(SHOTS, n + ".png")) > 1000, n)
    finally:
        s.cleanup()
        if pem_dir:
            shutil.rmtree(pem_dir, ignore_errors=True)


run(globals())
