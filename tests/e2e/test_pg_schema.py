"""test_pg_schema.py - the PostgreSQL schema (migrations/pg/) is the SQLite
schema (migrations/*.sql) in another engine (issue 11).

The SQLite schema is what `certplane migrate` makes on a fresh data
directory; the PostgreSQL one is migrations/pg/*.sql applied by psql (with
ON_ERROR_STOP) to a fresh database of a throwaway server
(tests/testbed/pg-server). Compared: tables and views, each column (name,
type class, NOT NULL, default), primary keys, unique constraints, CHECK
constraints, indexes (name, uniqueness, columns, partial WHERE), foreign
keys (columns, target, ON DELETE) and triggers (name, table, timing, event,
UPDATE OF columns, WHEN). Then the trigger effects: one sequence of
portable INSERT/UPDATE/DELETE statements runs on both databases, and after
every statement its outcome (rows changed, or a constraint error) and every
trigger-maintained row (metric_counts, tenant_counts, job_tenants,
certificate_names, order_names, certificates.next_attention_at/not_after)
must be the same.

The deliberate differences (migrations/pg/017_schema.sql, top comment) are
listed in EXPECTED_DIFFERENCES; anything else fails. PostgreSQL missing is a
failure, never a skip.
"""
import glob
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, CheckFailed, Server, check, run  # noqa: E402

PG_SERVER = os.path.join(SRC, "tests", "testbed", "pg-server")
PG_DIR = tempfile.mkdtemp(prefix="cp-pgschema-")

# (table, column) -> (sqlite type class, postgresql type class): the one
# column whose type differs on purpose (a BLOB that only ever holds text).
EXPECTED_TYPES = {("idempotency", "response"): ("blob", "text")}
# index -> (sqlite key columns, postgresql key columns): SQLite's index
# carries the rowid (certificates.seq) after its keys, which PostgreSQL's
# must name to walk one status in seq order (db_certificate_list).
EXPECTED_INDEX_COLUMNS = {
    "certificates_tenant_status": (("tenant_id", "status"), ("tenant_id", "status", "seq")),
}
# (table, column) -> (sqlite default tokens, postgresql default tokens).
EXPECTED_DEFAULTS = {("idempotency", "response"): (("x''",), ("''",))}
# Tables only PostgreSQL has: its schema version (SQLite: PRAGMA user_version).
PG_ONLY_TABLES = {"schema_migrations"}

sq = None       # sqlite3 connection to the migrated database
pg_url = None   # the PostgreSQL database's URL
srv = None


# ------------------------------------------------------------------ helpers

def psql(sql=None, path=None, stop_on_error=True):
    """Run psql on pg_url: unaligned, tuples only, NULL printed as <NULL>.
    Returns stdout; a non-zero exit is a failure."""
    args = ["psql", pg_url, "-X", "-q", "-A", "-t", "-P", "null=<NULL>",
            "-v", "ON_ERROR_STOP=%d" % (1 if stop_on_error else 0)]
    if path:
        args += ["-f", path]
    p = subprocess.run(args, input=sql, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise CheckFailed("psql failed (%d): %s" % (p.returncode, p.stderr[-3000:]))
    return p.stdout


def pg_rows(sql):
    out = psql(sql)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


KEYWORDS = {"and", "or", "not", "in", "is", "null", "any", "array", "text", "bigint",
            "integer", "between", "check", "true", "false"}


def tokens(expr):
    """The identifiers, string literals and numbers of an SQL expression,
    without repeats, sorted, without keywords, casts, operators and parentheses: the two
    engines spell the same CHECK/WHERE/DEFAULT differently
    (x IN ('a') vs x = ANY (ARRAY['a'::text])) but with the same tokens."""
    if expr is None:
        return ()
    toks = re.findall(r"x?'(?:[^']|'')*'|[A-Za-z_][A-Za-z0-9_]*|\d+", expr)
    out = []
    for t in toks:
        if t.startswith("'") or t.startswith("x'"):
            out.append(t)
        elif t.lower() not in KEYWORDS:
            out.append(t.lower())
    # A set: PostgreSQL expands x BETWEEN a AND b to x >= a AND x <= b.
    return tuple(sorted(set(out)))


def type_class_sqlite(decl):
    d = (decl or "").upper()
    if "INT" in d:
        return "integer"
    if "CHAR" in d or "CLOB" in d or "TEXT" in d:
        return "text"
    if "REAL" in d or "FLOA" in d or "DOUB" in d:
        return "real"
    return "blob"


def type_class_pg(t):
    if t in ("bigint", "integer", "smallint"):
        return "integer"
    if t in ("text", "character varying", "character"):
        return "text"
    if t in ("real", "double precision", "numeric"):
        return "real"
    if t == "bytea":
        return "blob"
    return "other:" + t


def balanced(s, start):
    """The text inside the parenthesis that opens at s[start]."""
    depth = 0
    for i in range(start, len(s)):
        if s[i] == "(":
            depth += 1
        elif s[i] == ")":
            depth -= 1
            if depth == 0:
                return s[start + 1:i]
    raise CheckFailed("unbalanced parentheses in %r" % s)


def strip_comments(sql):
    return re.sub(r"--[^\n]*", "", sql)


# ------------------------------------------------------------------ setup

def setup():
    global sq, pg_url, srv
    check(os.path.exists(BIN), "certplane binary missing: %s" % BIN)
    check(shutil.which("psql") is not None, "psql is not installed (PostgreSQL is required)")
    # SQLite: the real migrate command on an empty data directory.
    srv = Server()
    srv.env["CERTPLANE_DATABASE"] = os.path.join(srv.data_dir, "certplane.db")
    srv.run("migrate")
    db_path = srv.env["CERTPLANE_DATABASE"]
    check(os.path.exists(db_path), "migrate made no database")
    sq = sqlite3.connect(db_path, isolation_level=None)
    sq.execute("PRAGMA foreign_keys=ON")   # as db/core.c opens it
    version = sq.execute("PRAGMA user_version").fetchone()[0]
    # The version is the last file's number (numbers are handed out per
    # branch, so a branch may hold 018 and 023 without 019..022).
    last = max(int(os.path.basename(f)[:3])
               for f in glob.glob(os.path.join(SRC, "migrations", "*.sql")))
    check(version == last, "user_version %d, last migration %03d" % (version, last))
    # PostgreSQL: a throwaway server and a fresh database.
    p = subprocess.run([PG_SERVER, "start", PG_DIR], capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "pg-server start failed (PostgreSQL is required): %s" % p.stderr)
    p = subprocess.run([PG_SERVER, "createdb", PG_DIR, "pgschema"], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode == 0, "pg-server createdb failed: %s" % p.stderr)
    pg_url = p.stdout.strip()
    files = sorted(glob.glob(os.path.join(SRC, "migrations", "pg", "*.sql")))
    check(files, "no migrations/pg/*.sql")
    for f in files:
        psql(path=f)


def teardown():
    if sq:
        sq.close()
    if srv:
        srv.cleanup()
    subprocess.run([PG_SERVER, "stop", PG_DIR], capture_output=True, timeout=60)
    shutil.rmtree(PG_DIR, ignore_errors=True)


# ------------------------------------------------------------ introspection

def sqlite_tables(kind="table"):
    return sorted(r[0] for r in sq.execute(
        "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,)))


def pg_tables():
    return sorted(r[0] for r in pg_rows(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))


def sqlite_columns(table):
    """name -> (class, notnull, default tokens); PK columns are NOT NULL
    (PostgreSQL enforces it; SQLite only for INTEGER PRIMARY KEY and
    WITHOUT ROWID tables, see test_primary_keys)."""
    out = {}
    for cid, name, decl, notnull, dflt, pk in sq.execute("PRAGMA table_info(%s)" % table):
        out[name] = (type_class_sqlite(decl), bool(notnull or pk), tokens(dflt))
    return out


def pg_columns(table):
    out = {}
    for name, typ, notnull, dflt in pg_rows(
            "SELECT a.attname, format_type(a.atttypid, NULL), a.attnotnull, "
            "pg_get_expr(d.adbin, d.adrelid) FROM pg_attribute a "
            "LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE a.attrelid = 'public.%s'::regclass AND a.attnum > 0 "
            "AND NOT a.attisdropped ORDER BY a.attnum" % table):
        out[name] = (type_class_pg(typ), notnull == "t",
                     tokens(None if dflt == "<NULL>" else dflt))
    return out


def sqlite_pk(table):
    cols = [(pk, name) for _, name, _, _, _, pk in sq.execute("PRAGMA table_info(%s)" % table)
            if pk]
    return tuple(name for _, name in sorted(cols))


def pg_pk(table):
    rows = pg_rows(
        "SELECT a.attname FROM pg_constraint c, unnest(c.conkey) WITH ORDINALITY k(n, i), "
        "pg_attribute a WHERE c.conrelid = 'public.%s'::regclass AND c.contype = 'p' "
        "AND a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i" % table)
    return tuple(r[0] for r in rows)


def sqlite_index_cols(index):
    """Key columns in order; an expression is "<expr>"."""
    cols = []
    for seqno, cid, name, desc, coll, key in sq.execute("PRAGMA index_xinfo(%s)" % index):
        if key:
            cols.append(name if cid >= 0 else "<expr>")
    return tuple(cols)


def sqlite_indexes(table):
    """(unique constraints: set of column tuples, indexes: name -> (unique,
    cols, where tokens or None))."""
    uniques, indexes = set(), {}
    for _, name, unique, origin, partial in sq.execute("PRAGMA index_list(%s)" % table):
        cols = sqlite_index_cols(name)
        if origin == "u":
            uniques.add(cols)
        elif origin == "c":
            sql = sq.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                             (name,)).fetchone()[0]
            where = None
            if partial:
                m = re.search(r"\bWHERE\b(.*)$", strip_comments(sql), re.S | re.I)
                check(m, "partial index %s without WHERE" % name)
                where = tokens(m.group(1))
            indexes[name] = (bool(unique), cols, where)
    return uniques, indexes


def pg_indexes(table):
    uniques, indexes = set(), {}
    rows = pg_rows(
        "SELECT i.relname, x.indisunique, x.indisprimary, "
        "EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid "
        "AND c.contype = 'u'), "
        "array_to_string(ARRAY(SELECT coalesce(a.attname, '<expr>') "
        "FROM unnest(x.indkey) WITH ORDINALITY k(n, o) "
        "LEFT JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.n AND k.n > 0 "
        "WHERE k.o <= x.indnkeyatts ORDER BY k.o), ','), "
        "pg_get_expr(x.indpred, x.indrelid) "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
        "WHERE x.indrelid = 'public.%s'::regclass" % table)
    for name, unique, primary, constraint, cols, where in rows:
        cols = tuple(cols.split(","))
        if primary == "t":
            continue
        if constraint == "t":
            uniques.add(cols)
        else:
            indexes[name] = (unique == "t", cols, None if where == "<NULL>" else tokens(where))
    return uniques, indexes


def sqlite_checks(table):
    sql = strip_comments(sq.execute("SELECT sql FROM sqlite_master WHERE type = 'table' "
                                    "AND name = ?", (table,)).fetchone()[0])
    out = []
    for m in re.finditer(r"\bCHECK\s*\(", sql, re.I):
        out.append(tokens(balanced(sql, m.end() - 1)))
    return sorted(out)


def pg_checks(table):
    rows = pg_rows("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                   "WHERE conrelid = 'public.%s'::regclass AND contype = 'c'" % table)
    return sorted(tokens(r[0]) for r in rows)


def sqlite_fks(table):
    fks = {}
    for fid, seq, target, frm, to, on_update, on_delete, match in sq.execute(
            "PRAGMA foreign_key_list(%s)" % table):
        fks.setdefault(fid, [target, [], [], on_delete])
        fks[fid][1].append(frm)
        fks[fid][2].append(to)
    return sorted((t, tuple(f), tuple(to), d) for t, f, to, d in fks.values())


def pg_fks(table):
    actions = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL",
               "d": "SET DEFAULT"}
    rows = pg_rows(
        "SELECT c.confrelid::regclass, "
        "array_to_string(ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY k(n, o) "
        "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.o), ','), "
        "array_to_string(ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY k(n, o) "
        "JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.o), ','), "
        "c.confdeltype FROM pg_constraint c "
        "WHERE c.conrelid = 'public.%s'::regclass AND c.contype = 'f'" % table)
    return sorted((t, tuple(f.split(",")), tuple(to.split(",")), actions[d])
                  for t, f, to, d in rows)


TRIGGER_RE = re.compile(
    r"CREATE\s+TRIGGER\s+(\w+)\s+(BEFORE|AFTER)\s+(INSERT|DELETE|UPDATE)"
    r"(?:\s+OF\s+([\w\s,]+?))?\s+ON\s+(\w+)(.*?)\bBEGIN\b", re.S | re.I)


def sqlite_triggers():
    out = {}
    for name, sql in sq.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"):
        m = TRIGGER_RE.match(strip_comments(sql).strip())
        check(m, "cannot parse trigger %s" % name)
        cols = tuple(sorted(c.strip() for c in m.group(4).split(","))) if m.group(4) else ()
        when = bool(re.search(r"\bWHEN\b", m.group(6), re.I))
        out[(m.group(5), name)] = (m.group(2).upper(), m.group(3).upper(), cols, when)
    return out


def pg_triggers():
    out = {}
    rows = pg_rows(
        "SELECT t.tgrelid::regclass, t.tgname, t.tgtype, "
        "array_to_string(ARRAY(SELECT a.attname FROM unnest(t.tgattr) k(n) "
        "JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k.n ORDER BY 1), ','), "
        "t.tgqual IS NOT NULL FROM pg_trigger t WHERE NOT t.tgisinternal")
    for table, name, tgtype, cols, when in rows:
        tgtype = int(tgtype)
        check(tgtype & 1, "trigger %s is not FOR EACH ROW" % name)
        timing = "BEFORE" if tgtype & 2 else "AFTER"
        events = [e for bit, e in ((4, "INSERT"), (8, "DELETE"), (16, "UPDATE")) if tgtype & bit]
        check(len(events) == 1, "trigger %s has events %s" % (name, events))
        out[(table, name)] = (timing, events[0], tuple(sorted(cols.split(","))) if cols else (),
                              when == "t")
    return out


# ------------------------------------------------------------ schema tests

def test_tables_and_views():
    s, p = set(sqlite_tables()), set(pg_tables())
    check(s == p - PG_ONLY_TABLES,
          "tables only in SQLite: %s; only in PostgreSQL: %s"
          % (sorted(s - p), sorted(p - s - PG_ONLY_TABLES)))
    check(PG_ONLY_TABLES <= p, "schema_migrations missing")
    check(pg_columns("schema_migrations") == {
        "version": ("integer", True, ()), "name": ("text", False, ()),
        "applied_at": ("integer", False, ())}, pg_columns("schema_migrations"))
    check(pg_pk("schema_migrations") == ("version",), "schema_migrations primary key")
    # The runner records each version it applies; 001 itself records none.
    check(pg_rows("SELECT count(*) FROM schema_migrations") == [("0",)],
          "schema_migrations is filled by the runner, not by 001")
    sv = sqlite_tables("view")
    pv = sorted(r[0] for r in pg_rows(
        "SELECT viewname FROM pg_views WHERE schemaname = 'public'"))
    check(sv == pv, "views: sqlite %s, postgresql %s" % (sv, pv))
    for v in sv:
        scols = [r[1] for r in sq.execute("PRAGMA table_info(%s)" % v)]
        pcols = list(pg_columns(v))
        check(scols == pcols, "view %s columns: %s vs %s" % (v, scols, pcols))


def test_columns():
    for t in sqlite_tables():
        s, p = sqlite_columns(t), pg_columns(t)
        check(list(s) == list(p), "%s: columns (in order) %s vs %s" % (t, list(s), list(p)))
        for c in s:
            sc, pc = s[c], p[c]
            exp_t = EXPECTED_TYPES.get((t, c), (sc[0], sc[0]))
            check((sc[0], pc[0]) == exp_t, "%s.%s: type %s vs %s" % (t, c, sc[0], pc[0]))
            check(sc[1] == pc[1], "%s.%s: NOT NULL %s vs %s" % (t, c, sc[1], pc[1]))
            exp_d = EXPECTED_DEFAULTS.get((t, c), (sc[2], sc[2]))
            check((sc[2], pc[2]) == exp_d, "%s.%s: default %s vs %s" % (t, c, sc[2], pc[2]))


def test_primary_keys():
    for t in sqlite_tables():
        check(sqlite_pk(t) == pg_pk(t), "%s: primary key %s vs %s" % (t, sqlite_pk(t), pg_pk(t)))
    # Every SQLite INTEGER PRIMARY KEY (a rowid alias) is an identity column.
    for t in sqlite_tables():
        pk = sqlite_pk(t)
        if len(pk) == 1 and sqlite_columns(t)[pk[0]][0] == "integer":
            ident = pg_rows("SELECT attidentity FROM pg_attribute WHERE attrelid = "
                            "'public.%s'::regclass AND attname = '%s'" % (t, pk[0]))
            check(ident == [("d",)], "%s.%s is not GENERATED BY DEFAULT AS IDENTITY" % (t, pk[0]))


def test_unique_constraints_and_indexes():
    for t in sqlite_tables():
        su, si = sqlite_indexes(t)
        pu, pi = pg_indexes(t)
        check(su == pu, "%s: UNIQUE constraints %s vs %s" % (t, sorted(su), sorted(pu)))
        check(set(si) == set(pi), "%s: indexes only in SQLite %s, only in PostgreSQL %s"
              % (t, sorted(set(si) - set(pi)), sorted(set(pi) - set(si))))
        for name in si:
            s, p = si[name], pi[name]
            check(s[0] == p[0], "index %s: unique %s vs %s" % (name, s[0], p[0]))
            cols = EXPECTED_INDEX_COLUMNS.get(name, (p[1], p[1]))
            check(s[1] == cols[0] and p[1] == cols[1],
                  "index %s: columns %s vs %s" % (name, s[1], p[1]))
            check((s[2] is None) == (p[2] is None), "index %s: partial %s vs %s"
                  % (name, s[2] is not None, p[2] is not None))
            check(s[2] == p[2], "index %s: WHERE %s vs %s" % (name, s[2], p[2]))


def test_checks():
    for t in sqlite_tables():
        check(sqlite_checks(t) == pg_checks(t),
              "%s: CHECK constraints %s vs %s" % (t, sqlite_checks(t), pg_checks(t)))


def test_foreign_keys():
    for t in sqlite_tables():
        check(sqlite_fks(t) == pg_fks(t), "%s: foreign keys %s vs %s"
              % (t, sqlite_fks(t), pg_fks(t)))


def test_triggers():
    s, p = sqlite_triggers(), pg_triggers()
    check(set(s) == set(p), "triggers only in SQLite %s, only in PostgreSQL %s"
          % (sorted(set(s) - set(p)), sorted(set(p) - set(s))))
    for k in s:
        check(s[k] == p[k], "trigger %s: %s vs %s" % (k, s[k], p[k]))


def test_indexes_used_by_shared_sql():
    """The SQLite spellings the domain SQL uses (ifnull, instr) run on
    PostgreSQL and reach the same expression indexes."""
    plans = psql(
        "SET enable_seqscan = off;\n"
        "EXPLAIN SELECT id FROM jobs WHERE state = 'queued' AND lane = 'acme' "
        "AND ifnull(tenant_id, '') = 't' AND run_at <= 5 ORDER BY run_at, id LIMIT 1;\n"
        "EXPLAIN SELECT hostname FROM property_hostnames WHERE "
        "substr(hostname, instr(hostname, '.') + 1) = 'a.test' AND status = 'verified';\n")
    check("jobs_lane_tenant_due" in plans, plans)
    check("property_hostnames_verified_parent" in plans, plans)
    check(pg_rows("SELECT ifnull(NULL::bigint, 5), ifnull('a', 'b'), instr('www.a.test', '.'), "
                  "instr('x', '.')") == [("5", "a", "4", "0")], "ifnull/instr")


# ------------------------------------------------------------ trigger effects

T0 = 1700000000
# Every row the triggers maintain, by a stable key (seq values are mapped
# to ids: explicit and default seqs need not agree between the engines).
DUMPS = [
    "SELECT 'metric_counts', family, k1, k2, n FROM metric_counts",
    "SELECT 'tenant_counts', tenant_id, family, k, n FROM tenant_counts",
    "SELECT 'job_tenants', lane, tenant_id, queued, running, next_run_at, last_served "
    "FROM job_tenants",
    "SELECT 'certificate_names', n.tenant_id, n.name, c.id FROM certificate_names n "
    "LEFT JOIN certificates c ON c.seq = n.cert_seq",
    "SELECT 'order_names', n.tenant_id, n.name, o.id FROM order_names n "
    "LEFT JOIN orders o ON o.seq = n.order_seq",
    "SELECT 'certificates', id, status, failure_count, next_attention_at, not_after "
    "FROM certificates",
    "SELECT 'attention', id, at FROM certificate_attention",
]


def cert(cid, tenant, status="pending", auto="letsencrypt", hostnames='["a.test"]', fc=0,
         seq=None):
    cols = "id, tenant_id, name, source, status, auto_renew, hostnames, failure_count, " \
           "created_at, updated_at"
    vals = "'%s', '%s', '%s', 'acme', '%s', '%s', '%s', %d, %d, %d" % (
        cid, tenant, cid, status, auto, hostnames, fc, T0, T0)
    if seq is not None:
        cols, vals = "seq, " + cols, "%d, " % seq + vals
    return "INSERT INTO certificates (%s) VALUES (%s)" % (cols, vals)


def version(vid, cid, tenant, v, sans, not_before, not_after):
    return ("INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, cert_pem, "
            "private_key, key_type, sans, issuer, serial, not_before, not_after, "
            "fingerprint_sha256, created_at) VALUES ('%s', '%s', '%s', %d, 'pem', 'cpk1:x', "
            "'ec-p256', '%s', 'ca', '01', %d, %d, 'ff', %d)"
            % (vid, cid, tenant, v, sans, not_before, not_after, T0))


def deploy(did, tenant, prop, env, hostnames, cid):
    c = "NULL" if cid is None else "'%s'" % cid
    return ("INSERT INTO deployments (id, tenant_id, property_id, environment, version, "
            "hostnames, certificate_id, created_at) VALUES ('%s', '%s', '%s', '%s', 1, '%s', "
            "%s, %d)" % (did, tenant, prop, env, hostnames, c, T0))


def order(oid, tenant, cid, idents, status="pending"):
    return ("INSERT INTO orders (id, tenant_id, certificate_id, kind, status, challenge, "
            "identifiers, ca, key_type, created_at, updated_at) VALUES ('%s', '%s', '%s', "
            "'renew', '%s', 'http-01', '%s', 'letsencrypt', 'ec-p256', %d, %d)"
            % (oid, tenant, cid, status, idents, T0, T0))


def job(kind, tenant, lane, state, run_at, dedupe=None):
    t = "NULL" if tenant is None else "'%s'" % tenant
    d = "NULL" if dedupe is None else "'%s'" % dedupe
    return ("INSERT INTO jobs (kind, tenant_id, lane, state, run_at, dedupe_key, created_at, "
            "updated_at) VALUES ('%s', %s, '%s', '%s', %d, %s, %d, %d)"
            % (kind, t, lane, state, run_at, d, T0, T0))


def claim(host, tenant, prop, status="pending"):
    return ("INSERT INTO property_hostnames (property_id, tenant_id, hostname, position, "
            "status, token, claimed_at) VALUES ('%s', '%s', '%s', 0, '%s', 'tok', %d)"
            % (prop, tenant, host, status, T0))


def delivery(did, tenant, hook, event, state="pending"):
    return ("INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, event_type, "
            "state, created_at, updated_at) VALUES ('%s', '%s', '%s', '%s', 'x', '%s', %d, %d)"
            % (did, tenant, hook, event, state, T0, T0))


class bad(str):
    """A statement both engines must reject with a constraint error."""


SCENARIO = [
    "INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'one', %d)" % T0,
    "INSERT INTO tenants (id, name, created_at) VALUES ('t2', 'two', %d)" % T0,
    bad("INSERT INTO tenants (id, name, created_at) VALUES ('t1', 'dup', %d)" % T0),   # unique
    "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, created_at) "
    "VALUES ('e1', 't1', 'edge1.cdn.test', 'e', %d)" % T0,
    "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, created_at) "
    "VALUES ('e2', 't2', 'edge2.cdn.test', 'e', %d)" % T0,
    "INSERT INTO properties (id, tenant_id, name, edge_hostname_id, certificate_renew_automation, "
    "created_at, updated_at) VALUES ('p1', 't1', 'p1', 'e1', 1, %d, %d)" % (T0, T0),
    "INSERT INTO properties (id, tenant_id, name, edge_hostname_id, certificate_renew_automation, "
    "created_at, updated_at) VALUES ('p2', 't2', 'p2', 'e2', 1, %d, %d)" % (T0, T0),
    bad("INSERT INTO properties (id, tenant_id, name, edge_hostname_id, created_at, "
        "updated_at) VALUES ('px', 't1', 'px', 'nope', %d, %d)" % (T0, T0)),    # fk
    # certificates: counts, names, attention
    cert("c1", "t1", hostnames='["a.test", "b.test", 7]'),
    cert("c2", "t1", status="active", auto="none", hostnames='["c.test"]'),
    cert("c3", "t2", fc=2, hostnames='["z.test"]'),
    cert("c4", "t1", seq=500, hostnames='["explicit.test"]'),       # an explicit seq
    cert("c5", "t2", hostnames='["after.test"]'),                   # a default seq after it
    bad(cert("cx", "t1", status="bogus")),                               # check
    bad("INSERT INTO certificates (id, tenant_id, name, source, profile, created_at, "
        "updated_at) VALUES ('cy', 't1', 'cy', 'acme', '', %d, %d)" % (T0, T0)),  # profile
    bad("INSERT INTO certificates (id, tenant_id, source, created_at, updated_at) "
        "VALUES ('cz', 't1', 'acme', %d, %d)" % (T0, T0)),                    # not null
    version("v1", "c1", "t1", 1, '["a.test", "b.test"]', T0, T0 + 90 * 86400),
    "UPDATE certificates SET version = 1, status = 'active', renew_after = %d WHERE id = 'c1'"
    % (T0 + 60 * 86400),
    deploy("d1", "t1", "p1", "production", '["a.test", "b.test"]', "c1"),
    deploy("d2", "t1", "p1", "staging", '["a.test"]', "c1"),
    # a SAN change: the deployed names differ from the version's
    deploy("d3", "t1", "p1", "production", '["a.test", "c.test"]', "c1"),
    deploy("d4", "t1", "p1", "production", '["a.test", "b.test"]', "c1"),
    # another certificate replaces c1 on p1 (c1 detached), then is removed
    # (c1 carried again)
    deploy("d4b", "t1", "p1", "production", '["a.test", "b.test"]', "c2"),
    "DELETE FROM deployments WHERE id = 'd4b'",
    "UPDATE certificates SET next_attempt_at = %d WHERE id = 'c1'" % (T0 + 70 * 86400),
    "UPDATE certificates SET next_attempt_at = NULL, renew_after = %d WHERE id = 'c1'"
    % (T0 + 95 * 86400),                                           # after expiry: NULL
    "UPDATE certificates SET renew_after = %d WHERE id = 'c1'" % (T0 + 30 * 86400),
    "UPDATE properties SET certificate_renew_automation = 0 WHERE id = 'p1'",
    "UPDATE properties SET certificate_renew_automation = 1 WHERE id = 'p1'",
    # orders: in flight, names
    order("o1", "t1", "c1", '["a.test", "*.a.test"]'),
    bad(order("o2", "t1", "c1", '["a.test"]')),                          # orders_in_flight
    "UPDATE orders SET status = 'validating' WHERE id = 'o1'",
    "UPDATE orders SET status = 'validating' WHERE id = 'o1'",      # no change
    "UPDATE orders SET identifiers = '[\"a.test\", \"d.test\", 3]' WHERE id = 'o1'",
    "UPDATE orders SET status = 'valid' WHERE id = 'o1'",
    order("o2", "t1", "c1", '["a.test"]'),
    "UPDATE orders SET status = 'failed' WHERE id = 'o2'",
    order("o3", "t2", "c3", '["z.test"]', status="issuing"),
    version("v2", "c1", "t1", 2, '["a.test", "e.test"]', T0 + 10, T0 + 100 * 86400),
    "UPDATE certificates SET version = 2 WHERE id = 'c1'",
    "UPDATE certificate_versions SET not_after = %d WHERE id = 'v2'" % (T0 + 80 * 86400),
    "UPDATE certificates SET hostnames = '[\"h.test\", \"i.test\"]' WHERE id = 'c3'",
    "UPDATE certificates SET tenant_id = 't2' WHERE id = 'c2'",
    "UPDATE certificates SET tenant_id = 't1' WHERE id = 'c2'",
    "DELETE FROM orders WHERE id = 'o2'",
    # failing renewals, status changes
    "UPDATE certificates SET failure_count = 1 WHERE id = 'c1'",
    "UPDATE certificates SET failure_count = 3 WHERE id = 'c1'",
    "UPDATE certificates SET failure_count = 0 WHERE id = 'c3'",
    "UPDATE certificates SET status = 'renewing' WHERE tenant_id = 't1'",
    "UPDATE certificates SET status = 'failed', failure_count = 0 WHERE id = 'c1'",
    "UPDATE certificates SET status = status",
    # hostname claims
    claim("a.test", "t1", "p1"),
    claim("a.test", "t2", "p2"),
    claim("b.test", "t1", "p1", status="verified"),
    "UPDATE property_hostnames SET status = 'verified' WHERE hostname = 'a.test' "
    "AND tenant_id = 't1'",
    bad("UPDATE property_hostnames SET status = 'verified' WHERE hostname = 'a.test' "
        "AND tenant_id = 't2'"),                                  # one verified per name
    bad(claim("a.test", "t1", "p1")),                                    # once per tenant
    "UPDATE property_hostnames SET status = 'pending' WHERE tenant_id = 't1'",
    "DELETE FROM property_hostnames WHERE hostname = 'b.test'",
    # jobs: fair queue counts, next_run_at, metric counts
    job("acme_order", "t1", "acme", "queued", T0 + 50),
    job("acme_order", "t1", "acme", "queued", T0 + 20),
    job("acme_order", "t1", "acme", "queued", T0 + 80, dedupe="k1"),
    job("acme_order", "t2", "acme", "running", T0 + 10),
    job("webhook_delivery", None, "webhook", "queued", T0 + 5),
    job("webhook_delivery", None, "webhook", "queued", T0 + 1),
    job("prune", None, "general", "done", T0),
    bad(job("acme_order", "t1", "acme", "queued", T0, dedupe="k1")),     # unique dedupe_key
    "UPDATE jobs SET state = 'running', lease_owner = 'w1' WHERE tenant_id = 't1' "
    "AND run_at = %d" % (T0 + 20),
    "UPDATE jobs SET run_at = %d WHERE tenant_id = 't1' AND state = 'queued' "
    "AND run_at = %d" % (T0 + 5, T0 + 80),
    "UPDATE jobs SET run_at = %d WHERE state = 'running'" % (T0 + 1000),
    "UPDATE jobs SET state = 'done' WHERE tenant_id = 't1' AND state = 'running'",
    "UPDATE jobs SET state = 'queued', run_at = %d WHERE state = 'running'" % (T0 + 3),
    "UPDATE jobs SET lane = 'general' WHERE tenant_id IS NULL AND run_at = %d" % (T0 + 1),
    "UPDATE jobs SET tenant_id = 't2' WHERE tenant_id IS NULL AND lane = 'webhook'",
    "UPDATE jobs SET kind = 'other' WHERE kind = 'prune'",
    "UPDATE jobs SET state = 'failed' WHERE state = 'queued' AND lane = 'acme' "
    "AND tenant_id = 't1' AND run_at = %d" % (T0 + 5),
    "UPDATE job_tenants SET last_served = 7 WHERE lane = 'acme'",
    "DELETE FROM jobs WHERE tenant_id = 't1'",
    "DELETE FROM jobs WHERE lane = 'general'",
    # webhook deliveries
    "INSERT INTO webhooks (id, tenant_id, url, secret, created_at, updated_at) "
    "VALUES ('w1', 't1', 'https://h.test/', 'cpk1:s', %d, %d)" % (T0, T0),
    delivery("wd1", "t1", "w1", "ev1"),
    delivery("wd2", "t1", "w1", "ev2"),
    bad(delivery("wd3", "t1", "w1", "ev2")),                            # unique (webhook, event)
    "UPDATE webhook_deliveries SET state = 'delivered' WHERE id = 'wd1'",
    "UPDATE webhook_deliveries SET state = 'failed' WHERE id = 'wd2'",
    "DELETE FROM webhook_deliveries WHERE id = 'wd1'",
    "DELETE FROM webhooks WHERE id = 'w1'",                         # cascade
    # deletions: a used edge hostname, a property (cascade to deployments),
    # a certificate (names, counts), a tenant (cascade to everything)
    bad("DELETE FROM edge_hostnames WHERE id = 'e1'"),                   # fk (no action)
    deploy("d5", "t1", "p1", "production", '["e.test", "a.test"]', "c1"),
    "UPDATE certificates SET status = 'active', failure_count = 0 WHERE id = 'c1'",
    "DELETE FROM deployments WHERE id = 'd5'",
    "DELETE FROM properties WHERE id = 'p1'",
    "DELETE FROM certificates WHERE id = 'c2'",
    job("acme_order", "t2", "acme", "queued", T0 + 9),
    "DELETE FROM tenants WHERE id = 't2'",
    cert("c6", "t1", hostnames='["last.test"]'),
]


def sqlite_run(stmt):
    try:
        cur = sq.execute(stmt)
        return "ok:%d" % cur.rowcount
    except sqlite3.IntegrityError:
        return "constraint"


def fmt(v):
    return "<NULL>" if v is None else str(v)


def sqlite_dump():
    rows = []
    for q in DUMPS:
        rows += ["|".join(fmt(v) for v in r) for r in sq.execute(q)]
    return sorted(rows)


def pg_scenario():
    """Every statement through pg_temp.try (its outcome as 'ok:<rows>' or
    'constraint'), each followed by the dumps, in one session."""
    script = [
        "CREATE FUNCTION pg_temp.try(q text) RETURNS text LANGUAGE plpgsql AS $f$\n"
        "DECLARE n bigint;\n"
        "BEGIN EXECUTE q; GET DIAGNOSTICS n = ROW_COUNT; RETURN 'ok:' || n;\n"
        "EXCEPTION WHEN integrity_constraint_violation THEN RETURN 'constraint';\n"
        "END $f$;"]
    for i, stmt in enumerate(SCENARIO):
        check("$q$" not in stmt, stmt)
        script.append("\\echo @@step %d" % i)
        script.append("SELECT pg_temp.try($q$%s$q$);" % stmt)
        script += [q + ";" for q in DUMPS]
    out = psql("\n".join(script) + "\n")
    steps = {}
    cur = None
    for line in out.splitlines():
        if line.startswith("@@step "):
            cur = int(line.split()[1])
            steps[cur] = []
        elif line:
            steps[cur].append(line)
    result = []
    for i in range(len(SCENARIO)):
        lines = steps.get(i)
        check(lines, "no output for step %d" % i)
        result.append((lines[0], sorted(lines[1:])))
    return result


def test_trigger_effects():
    pg = pg_scenario()
    for i, stmt in enumerate(SCENARIO):
        outcome = sqlite_run(stmt)
        dump = sqlite_dump()
        p_outcome, p_dump = pg[i]
        if outcome != p_outcome:
            raise CheckFailed("step %d %r: sqlite %s, postgresql %s" % (i, stmt, outcome,
                                                                         p_outcome))
        if dump != p_dump:
            only_s = [r for r in dump if r not in p_dump]
            only_p = [r for r in p_dump if r not in dump]
            raise CheckFailed("step %d %r: maintained rows differ\n only sqlite: %s\n"
                              " only postgresql: %s" % (i, stmt, only_s, only_p))
        check((outcome == "constraint") == isinstance(stmt, bad),
              "step %d %r: %s on both engines" % (i, stmt, outcome))
    # The scenario exercised what it says: the maintained tables were not
    # empty along the way.
    final = sqlite_dump()
    check(any(r.startswith("metric_counts|jobs|") for r in final), final)
    check(not any("|t2|" in r for r in final if r.startswith("tenant_counts")),
          "a deleted tenant's counts are gone: %s" % final)


def test_identity_columns():
    """An insert that omits seq gets one after the explicit ones the
    scenario left behind; an insert that gives seq keeps it."""
    rows = pg_rows("SELECT seq FROM certificates WHERE id = 'c4'")
    check(rows == [("500",)], "explicit seq kept: %s" % rows)
    rows = pg_rows("INSERT INTO tenants (id, name, created_at) VALUES ('t9', 'x', 1) "
                   "RETURNING seq")
    check(len(rows) == 1 and int(rows[0][0]) > 0, rows)
    rows = pg_rows("INSERT INTO jobs (kind, run_at, created_at, updated_at) "
                   "VALUES ('k', 1, 1, 1) RETURNING id")
    check(len(rows) == 1 and int(rows[0][0]) > 0, rows)


def race(holder_sql, waiter_sql, holder_then=None):
    """holder_sql runs in an open transaction; then waiter_sql (a whole
    transaction) starts and blocks on a row the holder locked; only once it
    waits (pg_stat_activity) does the holder run holder_then (if any) and
    commit."""
    args = ["psql", pg_url, "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    holder = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    waiter = None
    try:
        holder.stdin.write("BEGIN;\n%s;\nSELECT 1;\n" % holder_sql)
        holder.stdin.flush()
        deadline = time.time() + 30
        while not pg_rows("SELECT 1 FROM pg_stat_activity WHERE state = 'idle in transaction' "
                          "AND query = 'SELECT 1;'"):
            check(time.time() < deadline, "the holder never got its locks")
            time.sleep(0.05)
        waiter = subprocess.Popen(args + ["-c", "BEGIN; %s; COMMIT;" % waiter_sql],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        while not pg_rows("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"):
            check(time.time() < deadline, "the waiter never waited")
            check(waiter.poll() is None, "the waiter finished without waiting")
            time.sleep(0.05)
        holder.stdin.write("%sCOMMIT;\n" % ("%s;\n" % holder_then if holder_then else ""))
        holder.stdin.close()
        check(holder.wait(30) == 0, "holder: %s" % holder.stderr.read())
        check(waiter.wait(30) == 0, "waiter: %s" % waiter.stderr.read())
    finally:
        for proc in (holder, waiter):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()


def test_concurrent_writers_keep_derived_values():
    """READ COMMITTED: a trigger that re-derives a value from other rows
    must read them after it holds the row it writes. Naively translated (one
    UPDATE with the subquery) the waiter's snapshot predates the holder's
    commit and writes a stale value last; SQLite never runs writers at once."""
    psql("INSERT INTO tenants (id, name, created_at) VALUES ('r', 'r', 0);\n"
         "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, created_at) "
         "VALUES ('re', 'r', 'race.cdn.test', 'e', 0);\n"
         "INSERT INTO properties (id, tenant_id, name, edge_hostname_id, "
         "certificate_renew_automation, created_at, updated_at) "
         "VALUES ('rp', 'r', 'rp', 're', 1, 0, 0);\n"
         + cert("rc", "r", status="active", hostnames='["race.test"]') + ";\n"
         + version("rv", "rc", "r", 1, '["race.test"]', 100, 10000) + ";\n"
         "UPDATE certificates SET version = 1, renew_after = 5000 WHERE id = 'rc';\n"
         + deploy("rd", "r", "rp", "production", '["race.test"]', "rc") + ";\n"
         + order("ro", "r", "rc", '["race.test"]') + ";\n"
         + job("acme_order", "r", "acme", "queued", 300) + ";\n")
    check(pg_rows("SELECT next_attention_at FROM certificates WHERE id = 'rc'") == [("<NULL>",)],
          "an order in flight: no attention")
    # The order finishes (holder) while the property's automation is set
    # again (waiter): the certificate needs attention at renew_after.
    race("UPDATE orders SET status = 'valid' WHERE id = 'ro'",
         "UPDATE properties SET certificate_renew_automation = 1 WHERE id = 'rp'")
    rows = pg_rows("SELECT c.next_attention_at, a.at FROM certificates c "
                   "JOIN certificate_attention a ON a.id = c.id WHERE c.id = 'rc'")
    check(rows == [("5000", "5000")], "next_attention_at after the race: %s" % rows)
    # A job is queued (holder) while the tenant's only other queued job is
    # deleted (waiter): next_run_at is the new job's run_at. Another kind
    # than the deleted job's (a kind's metric_counts row is locked after
    # job_tenants, pg/024, so either kind waits on job_tenants first).
    race(job("acme_other", "r", "acme", "queued", 700),
         "DELETE FROM jobs WHERE tenant_id = 'r' AND run_at = 300")
    rows = pg_rows("SELECT queued, next_run_at FROM job_tenants WHERE tenant_id = 'r'")
    check(rows == [("1", "700")], "job_tenants after the race: %s" % rows)


def test_job_writers_lock_the_tenant_row_first():
    """A claim locks its tenant's job_tenants row (the cap check, FOR
    UPDATE) and then updates the job, whose triggers lock the metric_counts
    row of its (kind, state). An enqueue of the same tenant must wait on
    job_tenants before it takes that metric_counts row: the other order
    (counts_job_* firing before jobs_fair_*, before pg/024) deadlocks, and
    PostgreSQL aborts one of the two ("deadlock detected")."""
    psql("INSERT INTO tenants (id, name, created_at) VALUES ('lk', 'lk', 0);\n"
         + job("webhook_delivery", "lk", "webhooks", "queued", 100) + ";\n")
    race("SELECT running FROM job_tenants WHERE lane = 'webhooks' AND tenant_id = 'lk' "
         "FOR UPDATE",
         job("webhook_delivery", "lk", "webhooks", "queued", 200),
         holder_then="UPDATE jobs SET state = 'running' WHERE tenant_id = 'lk' AND run_at = 100")
    rows = pg_rows("SELECT queued, running FROM job_tenants WHERE tenant_id = 'lk'")
    check(rows == [("1", "1")], "job_tenants after the claim and the enqueue: %s" % rows)


def main():
    try:
        setup()
    except Exception:
        teardown()
        raise
    try:
        run(globals())
    finally:
        teardown()


if __name__ == "__main__":
    main()
