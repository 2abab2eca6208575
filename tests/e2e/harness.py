"""harness.py - the end-to-end test harness for certplane.

Starts the real `certplane` binary (CERTPLANE_BIN) on a free loopback port
with a temporary data directory, talks to it over real HTTP, and can stop it
cleanly (SIGTERM), kill it (-9) and restart it on the same data. Also starts
the ACME test bed (Pebble + challtestsrv, tests/testbed/acme-testbed) for the
tests that need a real CA, and offers a tiny test runner: every function
named test_* in a module runs in order; any failed check fails the module.

Standard library only, so the suite runs on a fresh Debian with python3.
"""
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse

SRC = os.environ.get("CERTPLANE_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("CERTPLANE_BIN", os.path.join(SRC, "build", "certplane"))
TESTBED_SCRIPT = os.path.join(SRC, "tests", "testbed", "acme-testbed")
TESTBED_DIR = os.environ.get("CERTPLANE_TESTBED_DIR", "/tmp/cp-testbed")
# The storage backend under test: SQLite files (default) or, with
# CERTPLANE_TEST_DB=pg, a database per data directory on the PostgreSQL server
# of CERTPLANE_PG_URL (tests/testbed/pg-server).
PG = os.environ.get("CERTPLANE_TEST_DB") == "pg"


class CheckFailed(AssertionError):
    pass


# psql's field and record separators (-F/-R): control characters no stored
# value holds.
PG_FS, PG_RS = "\x1f", "\x1e"


def _pg_literal(v):
    """v as a PostgreSQL literal: NULL, a number as is, a string quoted."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, bytes):
        v = v.decode()
    v = str(v)
    if "\0" in v:
        raise CheckFailed("a NUL byte cannot be a PostgreSQL text literal")
    return "'" + v.replace("'", "''") + "'"


def _pg_inline(query, params):
    """query with its ? / ?N placeholders (outside quotes) replaced by the
    literals of params."""
    out, i, nxt, n = [], 0, 0, len(query)
    while i < n:
        c = query[i]
        if c in "'\"":
            j = i + 1
            while j < n:
                if query[j] == c:
                    if j + 1 < n and query[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            out.append(query[i:j + 1])
            i = j + 1
        elif c == "?":
            j = i + 1
            while j < n and query[j].isdigit():
                j += 1
            k = int(query[i + 1:j]) - 1 if j > i + 1 else nxt
            nxt = k + 1
            if not 0 <= k < len(params):
                raise CheckFailed("placeholder %s has no parameter" % query[i:j])
            out.append(_pg_literal(params[k]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out) + ";\n"


def _pg_value(v):
    if v == "\\N":
        return None
    if re.fullmatch(r"-?\d+", v):
        return int(v)
    return v


def check(cond, msg="check failed"):
    if not cond:
        raise CheckFailed(msg)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Resp:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers          # dict, lower-case names
        self.body = body                # bytes
        self.text = body.decode("utf-8", "replace")
        try:
            self.json = json.loads(self.text) if self.text else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.text[:500])

    def header(self, name):
        return self.headers.get(name.lower())


def expect(resp, status, msg=""):
    """Check the status; on a problem response also check its shape."""
    if resp.status != status:
        raise CheckFailed("expected %d, got %r %s" % (status, resp, msg))
    if status >= 400:
        check(resp.header("content-type") == "application/problem+json",
              "problem responses are application/problem+json: %r" % resp)
        j = resp.json
        check(isinstance(j, dict) and j.get("status") == status and "title" in j
              and "type" in j and "detail" in j and isinstance(j.get("errors"), list),
              "problem+json shape: %r" % resp)
    return resp


def field_error(resp, field):
    """True if the 422 problem names field."""
    return any(e.get("field") == field for e in (resp.json or {}).get("errors", []))


def serve_loopback(handler, port=0, tls=None):
    """Serve handler (an http.server.BaseHTTPRequestHandler class) on
    127.0.0.1:port (0: a free port) from a daemon thread, each connection in
    a daemon thread of its own; with tls (an ssl.SSLContext), over TLS. The
    one way e2e tests stand up a webhook receiver or a front for the CA.
    Returns the server: its port is server.server_address[1]; stop it with
    shutdown() and server_close()."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    httpd.daemon_threads = True
    if tls:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


PG_SERVER_SCRIPT = os.path.join(SRC, "tests", "testbed", "pg-server")


def pg_create_database(base, name):
    """Create the database name afresh (dropped first, WITH (FORCE)) on the
    PostgreSQL server of the URL base (a connection to another database of
    that server) and return its URL: base with name for its path. The one
    place e2e tests make a database; a psql failure fails the check."""
    for sql in ("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, "CREATE DATABASE %s" % name):
        p = subprocess.run(["psql", base, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", sql],
                           capture_output=True, text=True)
        check(p.returncode == 0, "psql %s: %s" % (sql, p.stderr))
    head, _, rest = base.partition("://")
    host, _, query = rest.partition("?")
    return "%s://%s/%s%s" % (head, host.split("/")[0], name, "?" + query if query else "")


class Postgres:
    """The PostgreSQL server of CERTPLANE_PG_URL, or one of our own
    (tests/testbed/pg-server in a temporary directory, stopped by close),
    for a test that needs PostgreSQL whatever CERTPLANE_TEST_DB says."""

    def __init__(self):
        self.dir = None
        self.base = os.environ.get("CERTPLANE_PG_URL")
        if not self.base:
            self.dir = tempfile.mkdtemp(prefix="cp-pg-inst-")
            p = subprocess.run([PG_SERVER_SCRIPT, "start", self.dir], capture_output=True, text=True)
            check(p.returncode == 0, "pg-server start failed (PostgreSQL is required): %s"
                  % p.stderr[-2000:])
            self.base = "postgresql://certplane@/postgres?host=%s" % self.dir

    def createdb(self, name):
        """A fresh database name on this server: its URL (pg_create_database)."""
        return pg_create_database(self.base, name)

    def sql(self, url, q):
        """Run q on the database of url: its rows as lists of strings."""
        p = subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", q],
                           capture_output=True, text=True)
        check(p.returncode == 0, "psql %s: %s" % (q, p.stderr))
        return [line.split("|") for line in p.stdout.splitlines() if line]

    def close(self):
        if self.dir:
            subprocess.run([PG_SERVER_SCRIPT, "stop", self.dir], capture_output=True)
            shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    """One certplane process on a temporary data directory."""

    def __init__(self, env=None, data_dir=None, keep=False):
        self.port = free_port()
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="certplane-e2e-")
        self.log_path = os.path.join(self.data_dir, "server.log")
        self.env = dict(os.environ)
        self.env.update({
            "CERTPLANE_LISTEN": "127.0.0.1:%d" % self.port,
            "CERTPLANE_DATA_DIR": self.data_dir,
            "CERTPLANE_HTTP01_LISTEN": "",
            "CERTPLANE_SCHEDULER_INTERVAL_SECONDS": "1",
            "CERTPLANE_RATE_LIMIT_PER_SECOND": "0",
            "CERTPLANE_WORKERS": "4",
        })
        self.env.update(env or {})
        self.pg_name = None
        if PG and "CERTPLANE_DATABASE" not in (env or {}):
            self.env["CERTPLANE_DATABASE"] = self._pg_database()
        self.proc = None
        self.keep = keep
        self.token = None
        self._conn = None

    def _pg_database(self):
        """The PostgreSQL database of this data directory (CERTPLANE_TEST_DB=pg):
        created and migrated on first use, its URL kept in the directory, so a
        second Server on the same directory (a restart) finds the same data."""
        keep = os.path.join(self.data_dir, "pg.url")
        if os.path.exists(keep):
            with open(keep) as f:
                return f.read().strip()
        base = os.environ.get("CERTPLANE_PG_URL")
        if not base:
            raise CheckFailed("CERTPLANE_TEST_DB=pg needs CERTPLANE_PG_URL (tests/testbed/pg-server)")
        name = "cpe_%d_%s" % (os.getpid(), os.path.basename(self.data_dir).split("-")[-1].lower())
        name = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
        url = pg_create_database(base, name)
        self.env["CERTPLANE_DATABASE"] = url
        p = subprocess.run([BIN, "migrate"], env=self.env, cwd=self.data_dir,
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise CheckFailed("certplane migrate on %s failed: %s" % (name, p.stderr[-2000:]))
        with open(os.open(keep, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(url)
        self.pg_name = name
        return url

    # ---- the database, whichever the backend ----
    def sql(self, query, *params):
        """Run one statement on this server's database and return its rows
        as tuples (a write returns []; it is committed at once). Placeholders
        are ? or ?N; write SQL both engines accept (no PRAGMA, no SQLite-only
        functions: CAST(x AS TEXT), plain comparisons). SQLite: python's
        sqlite3 on data_dir/certplane.db. PostgreSQL: psql on the server's
        CERTPLANE_DATABASE, params as quoted literals; values come back as
        int (an integer's text), None (NULL) or str. For PostgreSQL, query
        may start with SET/PREPARE statements: only the last one's rows are
        returned (it must be the only one with output)."""
        if not PG:
            con = sqlite3.connect(os.path.join(self.data_dir, "certplane.db"), timeout=10,
                                  isolation_level=None)
            try:
                return [tuple(r) for r in con.execute(query, params).fetchall()]
            finally:
                con.close()
        out = self._psql(_pg_inline(query, params))
        if out.endswith("\n"):
            out = out[:-1]
        if not out:
            return []
        return [tuple(_pg_value(v) for v in rec.split(PG_FS)) for rec in out.split(PG_RS)]

    def sql_exec(self, script):
        """Run several statements (no parameters, no rows) in one go."""
        if not PG:
            con = sqlite3.connect(os.path.join(self.data_dir, "certplane.db"), timeout=10,
                                  isolation_level=None)
            try:
                con.executescript(script)
            finally:
                con.close()
            return
        self._psql(script)

    def _psql(self, script):
        url = self.env.get("CERTPLANE_DATABASE")
        check(url, "no CERTPLANE_DATABASE in PostgreSQL mode")
        p = subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-P", "null=\\N",
                            "-F", PG_FS, "-R", PG_RS, "-f", "-"], input=script,
                           capture_output=True, text=True, timeout=120,
                           env=dict(os.environ, PGOPTIONS="-c client_min_messages=warning"))
        if p.returncode != 0:
            raise CheckFailed("psql failed: %s\nscript: %s" % (p.stderr.strip(), script[:2000]))
        return p.stdout

    def pg_dump(self):
        """PostgreSQL mode: the whole database at rest (pg_dump's plain SQL)."""
        check(PG, "pg_dump is for PostgreSQL mode")
        p = subprocess.run(["pg_dump", "-d", self.env["CERTPLANE_DATABASE"]],
                           capture_output=True, timeout=120)
        if p.returncode != 0:
            raise CheckFailed("pg_dump failed: %s" % p.stderr.decode("utf-8", "replace"))
        check(b"CREATE TABLE" in p.stdout, "pg_dump wrote no schema")
        return p.stdout

    def check_db_sound(self):
        """Fail unless the database is sound. SQLite: PRAGMA integrity_check
        says ok. PostgreSQL: it answers (SELECT 1), no index is left invalid
        (pg_index.indisvalid), and amcheck's bt_index_check with
        heapallindexed verifies every B-tree index of the schema, and that
        every table row is in each of its indexes (the extension is created
        in a schema of its own, cp_amcheck, so the domain schema stays as
        migrated)."""
        if not PG:
            con = sqlite3.connect(os.path.join(self.data_dir, "certplane.db"), timeout=10)
            try:
                r = con.execute("PRAGMA integrity_check").fetchall()
            finally:
                con.close()
            check(r == [("ok",)], "integrity_check: %r" % r)
            return
        check(self.sql("SELECT 1") == [(1,)], "SELECT 1")
        bad = self.sql("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE NOT i.indisvalid OR NOT i.indisready")
        check(bad == [], "invalid indexes: %r" % bad)
        self.sql_exec("CREATE SCHEMA IF NOT EXISTS cp_amcheck;\n"
                      "CREATE EXTENSION IF NOT EXISTS amcheck SCHEMA cp_amcheck;\n")
        n = self.sql("SELECT count(cp_amcheck.bt_index_check(c.oid, true)) FROM pg_index i "
                     "JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam "
                     "JOIN pg_namespace s ON s.oid = c.relnamespace "
                     "WHERE a.amname = 'btree' AND s.nspname = 'public'")
        check(n and n[0][0] > 0, "amcheck checked no index: %r" % n)

    # ---- process control ----
    def start(self, wait=True):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([BIN, "serve"], env=self.env, stdout=self.logf,
                                     stderr=self.logf, cwd=self.data_dir)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise CheckFailed("certplane exited with %s; log:\n%s" % (self.proc.returncode, self.log()[-3000:]))
            try:
                if self.request("GET", "/healthz", auth=False).status == 200:
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise CheckFailed("certplane did not become healthy")
        tok = self.env.get("CERTPLANE_OPERATOR_TOKEN")
        if not tok:
            with open(os.path.join(self.data_dir, "operator.token")) as f:
                tok = f.read().strip()
        self.token = tok

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise CheckFailed("certplane did not stop within %ds after signal %d" % (timeout, sig))
        self._close()
        return self.proc.returncode if self.proc else None

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.stop(signal.SIGKILL)
        if self.own_dir and not self.keep:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            if self.pg_name:  # the database made for this directory goes with it
                subprocess.run(["psql", os.environ["CERTPLANE_PG_URL"], "-qAtX", "-c",
                                "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.pg_name],
                               capture_output=True, timeout=60)

    def log(self, settle=0.3):
        """The server's log so far. The request log (http.request lines) is
        written by a flusher thread within 100 ms, so by default this waits
        settle seconds first: a check that a secret is NOT in the log must
        see every line of the requests before it. Polling for an event line
        (written at once) may pass settle=0."""
        if settle and self.proc and self.proc.poll() is None:
            time.sleep(settle)
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def run(self, *args, check_rc=True):
        """Run a certplane sub-command on this server's configuration."""
        p = subprocess.run([BIN] + list(args), env=self.env, cwd=self.data_dir,
                           capture_output=True, text=True, timeout=120)
        if check_rc and p.returncode != 0:
            raise CheckFailed("certplane %s failed: %s %s" % (args, p.stdout, p.stderr))
        return p

    # ---- HTTP ----
    def _close(self):
        if self._conn:
            self._conn.close()
            self._conn = None

    def request(self, method, path, body=None, token=None, auth=True, headers=None,
                raw=None, tenant=None, query=None):
        """One HTTP request over a kept-alive connection. body: JSON value;
        raw: bytes sent as is. token: API key (default: operator)."""
        h = {}
        if auth:
            h["Authorization"] = "Bearer " + (token or self.token)
        if tenant:
            h["X-Tenant-ID"] = tenant
        data = None
        if raw is not None:
            data = raw
            h["Content-Type"] = "application/json"
        elif body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        if query:
            path = path + "?" + urllib.parse.urlencode(query)
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self._conn.request(method, path, body=data, headers=h)
                r = self._conn.getresponse()
                resp = Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
                if r.getheader("connection", "").lower() == "close":
                    self._close()
                return resp
            except (http.client.HTTPException, ConnectionError, BrokenPipeError):
                self._close()
                if attempt == 1:
                    raise

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def patch(self, path, body=None, **kw):
        return self.request("PATCH", path, body=body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def new_tenant(self, name="tenant"):
        """Create a tenant and an API key; returns (tenant_id, key)."""
        t = expect(self.post("/v1/tenants", {"name": name}), 201).json
        k = expect(self.post("/v1/tenants/%s/api-keys" % t["id"], {"name": "test key"}), 201).json
        return t["id"], k["key"]

    def list_all(self, path, token=None, limit=50, **kw):
        """Follow next_cursor through every page; returns all items."""
        items, cursor = [], None
        while True:
            q = dict(kw.pop("query", {}) or {})
            q["limit"] = str(limit)
            if cursor:
                q["cursor"] = cursor
            r = expect(self.get(path, token=token, query=q, **kw), 200)
            items += r.json["data"]
            cursor = r.json["next_cursor"]
            if not cursor:
                return items

    def wait_for(self, fn, timeout=60, interval=0.2, what="condition"):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            last = fn()
            if last:
                return last
            time.sleep(interval)
        raise CheckFailed("timed out waiting for %s (last: %r)" % (what, last))


class Testbed:
    """The ACME test bed (Pebble + challtestsrv) on its fixed loopback ports."""

    def __init__(self, directory=TESTBED_DIR):
        self.dir = directory
        self.env = {}

    def start(self, extra_env=None):
        env = dict(os.environ)
        env.update(extra_env or {})
        subprocess.run([TESTBED_SCRIPT, "start", self.dir], env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        self.load_env()
        return self

    def ensure(self):
        """Reuse a running test bed, or start one."""
        st = subprocess.run([TESTBED_SCRIPT, "status", self.dir], capture_output=True)
        if st.returncode == 0 and os.path.exists(os.path.join(self.dir, "env")):
            self.load_env()
            return self
        subprocess.run([TESTBED_SCRIPT, "stop", self.dir], capture_output=True) if os.path.isdir(self.dir) else None
        return self.start()

    def stop(self):
        subprocess.run([TESTBED_SCRIPT, "stop", self.dir], capture_output=True, timeout=60)

    def load_env(self):
        with open(os.path.join(self.dir, "env")) as f:
            for line in f:
                line = line.strip()
                if line.startswith("export "):
                    k, v = line[7:].split("=", 1)
                    self.env[k] = v

    def server_env(self):
        """The CERTPLANE_* settings that wire a server to this test bed."""
        return {
            "CERTPLANE_ACME_DIRECTORY_URL": self.env["ACME_DIRECTORY_URL"],
            "CERTPLANE_ACME_CA_BUNDLE": self.env["ACME_CA_BUNDLE"],
            "CERTPLANE_DNS_RESOLVER": self.env["DNS_RESOLVER"],
            "CERTPLANE_HTTP01_LISTEN": "127.0.0.1:%s" % self.env["ACME_HTTP01_PORT"],
            "CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true",
        }

    def https_context(self):
        """A server TLS context with the test bed's https-cert.pem and
        https-key.pem (ALPN http/1.1), for a front that stands in for
        Pebble (serve_loopback's tls)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(self.dir, "https-cert.pem"),
                            os.path.join(self.dir, "https-key.pem"))
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    def cts(self, path, body):
        """POST to challtestsrv's management API."""
        c = http.client.HTTPConnection("127.0.0.1", 8055, timeout=10)
        c.request("POST", path, body=json.dumps(body))
        r = c.getresponse()
        r.read()
        c.close()
        check(r.status == 200, "challtestsrv %s -> %d" % (path, r.status))

    def set_cname(self, host, target):
        self.cts("/set-cname", {"host": host, "target": target})

    def clear_cname(self, host):
        self.cts("/clear-cname", {"host": host})

    def add_a(self, host, addr="127.0.0.1"):
        self.cts("/add-a", {"host": host, "addresses": [addr]})

    def set_txt(self, host, value):
        self.cts("/set-txt", {"host": host if host.endswith(".") else host + ".", "value": value})

    def clear_txt(self, host):
        self.cts("/clear-txt", {"host": host if host.endswith(".") else host + "."})


def check_backend(module_globals):
    """A module declaring SQLITE_ONLY = "reason" tests what only the file
    engine has (its backup procedure): in PG mode it runs on SQLite, saying
    so, so that a whole-suite run on PostgreSQL still runs it, never skips it."""
    global PG
    reason = module_globals.get("SQLITE_ONLY")
    if PG and reason:
        print("  runs on SQLite in a PostgreSQL run: %s" % reason, flush=True)
        PG = False


def run(module_globals):
    """Run every test_* function of the calling module in definition order."""
    check_backend(module_globals)
    tests = [(n, f) for n, f in module_globals.items() if n.startswith("test_") and callable(f)]
    only = os.environ.get("TEST_ONLY")
    failed = ran = 0
    for name, fn in tests:
        if only and only not in name:
            continue
        ran += 1
        t0 = time.time()
        try:
            fn()
            print("ok   %-55s %.2fs" % (name, time.time() - t0), flush=True)
        except Exception:
            failed += 1
            print("FAIL %-55s %.2fs" % (name, time.time() - t0), flush=True)
            traceback.print_exc()
    print("%d passed, %d failed" % (ran - failed, failed))
    # TEST_ONLY matching nothing is a typo, not a pass.
    sys.exit(1 if failed or not ran else 0)
