"""test_list_order.py - newest-first lists and the two list filters (issue 12).

(a) every list endpoint (every GET of openapi.yaml that pages with `cursor`
    must take the shared `Order` parameter too) walked page by page with limit=2 in both orders: the
    ?order=desc walk is exactly the ?order=asc walk reversed, each page's
    next_cursor continues in its page's order, no row twice, none lost; a bad
    `order` is a 400 naming it;
(b) GET /v1/orders?hostname= and GET /v1/properties?certificate_id= return
    exactly the matching rows of the caller's tenant in both orders (another
    tenant's ids find nothing), bad values are a 422 naming the field;
(c) the filters' queries are index range scans in both orders (EXPLAIN QUERY
    PLAN on the server's own database: no table SCAN, no temp B-tree sort).
"""
import json
import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import PG, Server, Testbed, check, expect, run  # noqa: E402
import test_openapi as oa  # noqa: E402

TB = Testbed().ensure()


def walk(srv, path, token, order, query=None, limit=2):
    """Every row of path in order, following next_cursor; checks the pages."""
    rows, cursor, pages = [], None, 0
    while True:
        q = dict(query or {}, limit=str(limit))
        if order:
            q["order"] = order
        if cursor:
            q["cursor"] = cursor
        r = expect(srv.get(path, token=token, query=q), 200)
        page = r.json["data"]
        check(len(page) <= limit, "%s: page longer than limit: %r" % (path, r))
        rows += page
        cursor = r.json["next_cursor"]
        pages += 1
        check(pages < 200, "%s: the cursor does not end" % path)
        if not cursor:
            return rows
        check(len(page) == limit, "%s: a short page with a next_cursor: %r" % (path, r))


def ids(rows):
    return [r["id"] for r in rows]


def same_reversed(srv, path, token, query=None):
    asc = walk(srv, path, token, None, query)
    check(ids(walk(srv, path, token, "asc", query)) == ids(asc),
          "%s: order=asc is not the default order" % path)
    desc = walk(srv, path, token, "desc", query)
    check(len(set(ids(desc))) == len(desc), "%s desc: a row twice: %s" % (path, ids(desc)))
    check(ids(desc) == ids(asc)[::-1],
          "%s: desc is not asc reversed:\n  asc  %s\n  desc %s" % (path, ids(asc), ids(desc)))
    return asc


def setup():
    env = dict(TB.server_env(), CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true")
    srv = Server(env=env).start()
    u = uuid.uuid4().hex[:8]
    ta, ka = srv.new_tenant("order-a")
    tb, kb = srv.new_tenant("order-b")
    for i in range(2):
        expect(srv.post("/v1/tenants/%s/api-keys" % ta, {"name": "extra %d" % i}), 201)
    edges = [expect(srv.post("/v1/edge-hostnames", {"label": "e%d%s" % (i, u)}, token=ka), 201).json
             for i in range(3)]
    certs = [expect(srv.post("/v1/certificates", {
        "source": "self_signed", "name": "c%d" % i, "hostnames": ["c%d-%s.example.com" % (i, u)],
        "validity_days": 30}, token=ka), 201).json for i in range(5)]
    c0, c1 = certs[0]["id"], certs[1]["id"]
    props = []
    for i in range(5):
        props.append(expect(srv.post("/v1/properties", {
            "name": "p%d" % i, "hostnames": ["p%d-%s.example.com" % (i, u)],
            "edge_hostname_id": edges[i % 3]["id"], "certificate_id": c0 if i % 2 == 0 else c1,
            "certificate_renew_automation": False}, token=ka), 201).json)
    for env_ in ("staging", "production", "staging"):
        expect(srv.post("/v1/properties/%s/deployments" % props[0]["id"],
                        {"environment": env_}, token=ka), 201)
    hook = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                           token=ka), 201).json
    for i in range(2):
        expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/h%d" % i, "events": ["*"]},
                        token=ka), 201)
    for i in range(2):  # edge keys (the operator's)
        expect(srv.post("/v1/edge-keys", {"name": "edge %d" % i}), 201)
    # a Slack channel (verified at once) that every later event reaches
    chan = expect(srv.post("/v1/notification-channels", {
        "type": "slack", "url": "http://127.0.0.1:9/slack", "events": ["*"]}, token=ka), 201).json
    # ACME orders (dns-01: each waits for its TXT record, so they stay put);
    # two of them name the same identifier.
    shared = "shared-%s.example.com" % u
    orders = []
    for i, hosts in enumerate([[shared], ["o1-%s.example.com" % u], [shared, "o2-%s.example.com" % u],
                               ["o3-%s.example.com" % u]]):
        r = expect(srv.post("/v1/certificates", {"source": "acme", "name": "o%d" % i,
                                                 "hostnames": hosts, "challenge": "dns-01"},
                            token=ka), 202).json
        orders.append(r["order"]["id"])
    # a fresh deliveries row or two for the first webhook
    expect(srv.post("/v1/certificates", {"source": "self_signed", "name": "late",
                                         "hostnames": ["late-%s.example.com" % u],
                                         "validity_days": 30}, token=ka), 201)
    return dict(srv=srv, ta=ta, ka=ka, tb=tb, kb=kb, c0=c0, c1=c1, props=props, hook=hook,
                shared=shared, orders=orders, u=u, chan=chan)


def test_every_list_both_orders():
    f = setup()
    srv, ka = f["srv"], f["ka"]
    try:
        srv.wait_for(lambda: len(walk(srv, "/v1/webhooks/%s/deliveries" % f["hook"]["id"], ka,
                                      None)) >= 3, timeout=15, what="deliveries")
        srv.wait_for(lambda: len(walk(srv, "/v1/notification-channels/%s/deliveries"
                                      % f["chan"]["id"], ka, None)) >= 3, timeout=15,
                     what="channel deliveries")
        # one order.dns_challenge_required per authorization (5)
        srv.wait_for(lambda: len(walk(srv, "/v1/events", ka, None)) >= 5, timeout=15,
                     what="events")
        lists = [
            ("/v1/certificates", ka, None, 7),
            ("/v1/certificates", ka, {"status": "active"}, 6),
            ("/v1/certificates", ka, {"expiring_within_days": "60"}, 6),
            ("/v1/certificates", ka, {"hostname": f["shared"]}, 2),
            ("/v1/certificates/%s/versions" % f["c0"], ka, None, 1),
            ("/v1/properties", ka, None, 5),
            ("/v1/properties/%s/deployments" % f["props"][0]["id"], ka, None, 3),
            ("/v1/edge-hostnames", ka, None, 3),
            ("/v1/orders", ka, None, 4),
            ("/v1/events", ka, None, 5),
            ("/v1/events", ka, {"type": "order.dns_challenge_required"}, 5),
            ("/v1/webhooks", ka, None, 3),
            ("/v1/webhooks/%s/deliveries" % f["hook"]["id"], ka, None, 3),
            ("/v1/notification-channels", ka, None, 1),
            ("/v1/notification-channels/%s/deliveries" % f["chan"]["id"], ka, None, 3),
            ("/v1/audit-log", None, None, 10),
            ("/v1/tenants", None, None, 2),
            ("/v1/edge-keys", None, None, 2),
            ("/v1/tenants/%s/api-keys" % f["ta"], None, None, 3),
        ]
        for path, tok, q, at_least in lists:
            rows = same_reversed(srv, path, tok, q)
            check(len(rows) >= at_least, "%s %s: %d rows, expected >= %d: %s"
                  % (path, q, len(rows), at_least, [r.get("type") for r in rows]))
        # Every list the document has: paged lists take Order, and a list
        # not named above (added later) is walked with the tenant's key.
        walked = {p.split("?")[0] for p, _, _, _ in lists}
        pattern_of = {"/v1/certificates/%s/versions" % f["c0"]: "/v1/certificates/{id}/versions",
                      "/v1/properties/%s/deployments" % f["props"][0]["id"]:
                          "/v1/properties/{id}/deployments",
                      "/v1/webhooks/%s/deliveries" % f["hook"]["id"]: "/v1/webhooks/{id}/deliveries",
                      "/v1/notification-channels/%s/deliveries" % f["chan"]["id"]:
                          "/v1/notification-channels/{id}/deliveries",
                      "/v1/tenants/%s/api-keys" % f["ta"]: "/v1/tenants/{id}/api-keys"}
        walked = {pattern_of.get(p, p) for p in walked}
        for path, item in oa.load_spec()["paths"].items():
            op = item.get("get")
            if not op:
                continue
            names = [(oa.resolve(p) or {}).get("name") for p in
                     item.get("parameters", []) + op.get("parameters", [])]
            if "cursor" not in names:
                continue
            check("order" in names, "GET %s pages (cursor) but documents no order" % path)
            if path not in walked:
                check("{" not in path, "GET %s: a list with path ids this test does not walk"
                      % path)
                same_reversed(srv, path, ka)
        # A bad order is a 400 naming it, on every list.
        for path, tok, _, _ in lists:
            r = expect(srv.get(path, token=tok, query={"order": "newest"}), 422)
            check(any(e.get("field") == "order" for e in r.json["errors"]), r)
        # desc from a cursor: the rows below it, newest first.
        first = expect(srv.get("/v1/certificates", token=ka,
                               query={"order": "desc", "limit": "3"}), 200).json
        rest = expect(srv.get("/v1/certificates", token=ka,
                              query={"order": "desc", "limit": "50",
                                     "cursor": first["next_cursor"]}), 200).json
        allrows = ids(walk(srv, "/v1/certificates", ka, None))
        check(ids(first["data"]) + ids(rest["data"]) == allrows[::-1], (first, rest))
    finally:
        srv.cleanup()


def test_filters():
    f = setup()
    srv, ka, kb = f["srv"], f["ka"], f["kb"]
    try:
        # orders?hostname=: the two orders naming the shared identifier.
        want = {f["orders"][0], f["orders"][2]}
        for order in ("asc", "desc"):
            got = walk(srv, "/v1/orders", ka, order, {"hostname": f["shared"]}, limit=1)
            check(set(ids(got)) == want and len(got) == 2, (order, got))
            check(all(f["shared"] in o["identifiers"] for o in got), got)
        asc = ids(walk(srv, "/v1/orders", ka, "asc", {"hostname": f["shared"]}))
        check(asc == [f["orders"][0], f["orders"][2]], asc)
        check(walk(srv, "/v1/orders", ka, None, {"hostname": "nothing-%s.example.com" % f["u"]}) == [])
        check(walk(srv, "/v1/orders", kb, None, {"hostname": f["shared"]}) == [],
              "another tenant sees the orders by hostname")
        # combined with status / certificate_id
        got = walk(srv, "/v1/orders", ka, "desc", {"hostname": f["shared"], "status": "valid"})
        check(got == [], got)
        for bad in ("Not_A_Host", "x" * 300, "a..b"):
            r = expect(srv.get("/v1/orders", token=ka, query={"hostname": bad}), 422)
            check(any(e.get("field") == "hostname" for e in r.json["errors"]), r)

        # properties?certificate_id=: 3 use c0, 2 use c1.
        p = f["props"]
        for order, rev in (("asc", False), ("desc", True)):
            got = ids(walk(srv, "/v1/properties", ka, order, {"certificate_id": f["c0"]}, limit=2))
            want = [p[0]["id"], p[2]["id"], p[4]["id"]]
            check(got == (want[::-1] if rev else want), (order, got))
            got = ids(walk(srv, "/v1/properties", ka, order, {"certificate_id": f["c1"]}))
            want = [p[1]["id"], p[3]["id"]]
            check(got == (want[::-1] if rev else want), (order, got))
        got = ids(walk(srv, "/v1/properties", ka, None, {"certificate_id": f["c0"],
                                                         "hostname": p[2]["hostnames"][0]}))
        check(got == [p[2]["id"]], got)
        check(walk(srv, "/v1/properties", kb, None, {"certificate_id": f["c0"]}) == [],
              "another tenant sees properties by certificate_id")
        check(walk(srv, "/v1/properties", ka, None, {"certificate_id": str(uuid.uuid4())}) == [])
        r = expect(srv.get("/v1/properties", token=ka, query={"certificate_id": "nope"}), 422)
        check(any(e.get("field") == "certificate_id" for e in r.json["errors"]), r)

        # (c) the plans, on the server's database.
        # (what, the statement's shape in db/, the index range it must be)
        plans = [
            ("orders by hostname",
             "SELECT o.seq FROM order_names n CROSS JOIN orders o "
             "WHERE o.seq = n.order_seq AND n.tenant_id = ?1 AND n.name = ?2 "
             "AND n.order_seq {cmp} ?3 AND o.tenant_id = ?1 "
             "AND (CAST(?4 AS TEXT) IS NULL OR o.status = CAST(?4 AS TEXT)) "
             "ORDER BY n.order_seq {dir} LIMIT 51",
             "SEARCH n USING PRIMARY KEY (tenant_id=? AND name=? AND order_seq{cmp}?)"),
            ("properties by certificate",
             "SELECT p.seq FROM properties p "
             "WHERE p.tenant_id = ?1 AND p.certificate_id = ?2 AND p.seq {cmp} ?3 "
             "AND (CAST(?4 AS TEXT) IS NULL OR p.id IN (SELECT property_id FROM "
             "property_hostnames WHERE hostname = CAST(?4 AS TEXT))) "
             "ORDER BY p.seq {dir} LIMIT 51",
             "SEARCH p USING INDEX properties_tenant_certificate (tenant_id=? AND "
             "certificate_id=? AND seq{cmp}?)"),
        ]
        for what, sql, want in plans:
            for cmp, d in ((">", ""), ("<", "DESC")):
                if PG:
                    pg_plan(srv, what, sql.format(cmp=cmp, dir=d), cmp, d, f["ta"])
                    continue
                q = "EXPLAIN QUERY PLAN " + sql.format(cmp=cmp, dir=d)
                detail = [row[3] for row in srv.sql(q, f["ta"], "x", 0, None)]
                text = "\n".join(detail)
                check(detail and detail[0] == want.format(cmp=cmp)
                      and not any(l.startswith("SCAN") for l in detail)
                      and "TEMP B-TREE" not in text,
                      "%s %s is not the index range scan %r:\n%s"
                      % (what, d or "ASC", want.format(cmp=cmp), text))
    finally:
        srv.cleanup()


# PostgreSQL: the table and index that must drive each statement of (c).
PG_DRIVER = {"orders by hostname": ("order_names", "order_names_pkey", "order_seq"),
             "properties by certificate": ("properties", "properties_tenant_certificate", "seq")}


def pg_plan(srv, what, sql, cmp, d, tenant):
    """The PostgreSQL plan of sql (?N as the driver's $N) is the index range
    scan on PG_DRIVER's index, in the order asked (no Sort, no Seq Scan), as
    a generic plan (what a prepared statement settles on) and as a custom
    plan for these values. Sequential and bitmap scans are disabled first: a
    test database of a few rows is cheaper to scan whole, so the planner is
    asked whether an index range serves the statement, not which is cheaper
    on this size."""
    table, index, col = PG_DRIVER[what]
    body = sql
    for i in range(4, 0, -1):
        body = body.replace("?%d" % i, "$%d" % i)
    for mode in ("force_generic_plan", "force_custom_plan"):
        rows = srv.sql("SET enable_seqscan = off; SET enable_bitmapscan = off; "
                       "SET plan_cache_mode = %s; PREPARE q (text, text, bigint, text) AS %s; "
                       "EXPLAIN (FORMAT JSON) EXECUTE q(?, ?, ?, ?)" % (mode, body),
                       tenant, "x", 0, None)
        plan = json.loads(rows[0][0])[0]["Plan"]
        nodes, todo = [], [plan]
        while todo:
            n = todo.pop()
            nodes.append(n)
            todo += n.get("Plans", [])
        text = json.dumps(plan, indent=1)
        drive = [n for n in nodes if n.get("Relation Name") == table]
        check(len(drive) == 1 and drive[0]["Node Type"] in ("Index Scan", "Index Only Scan")
              and drive[0].get("Index Name") == index
              and "%s %s " % (col, cmp) in drive[0].get("Index Cond", "")
              and drive[0]["Scan Direction"] == ("Backward" if d else "Forward")
              and not any(n["Node Type"] in ("Sort", "Incremental Sort", "Seq Scan")
                          for n in nodes),
              "%s %s (%s) is not the index range scan of %s:\n%s"
              % (what, d or "ASC", mode, index, text))


run(globals())
