"""test_contract.py - requests generated from openapi.yaml, for every operation.

For each operation of the document (whatever it holds: routes added later are
covered the day they are documented), on a server with real fixtures behind
every path id (two tenants, each with keys, an edge hostname, certificates, a
property, a deployment, a webhook and its delivery, an ACME order):

  * a valid request is built from the schemas: the requestBody's required
    fields (enums, consts, formats, examples, bounds; each oneOf branch), the
    query parameters, path ids naming the fixtures; a few semantic inputs a
    schema cannot say (a reachable webhook URL, a PEM that matches its key)
    come from SEMANTIC below;
  * it is sent with every auth variant: no key, a wrong key, the tenant's
    key, another tenant's key on the first tenant's ids, the tenant's key
    naming another tenant in X-Tenant-ID, the operator with and without
    X-Tenant-ID, and a read-only key when keys have scopes (403 on writes);
  * an optional field sent as null must act as the field left out (the
    document's rule; NULL_REFUSED lists the operation that refuses it);
  * an id filter (?certificate_id=...) naming another tenant's object must
    find nothing;
  * it is mutated into invalid ones: each required field missing, each
    property of the wrong type, strings over maxLength, integers out of
    range, bad enum values, bad uuids, arrays over maxItems, an unknown field
    where additionalProperties is false, a body that is not an object; each
    query parameter out of its schema;

and every answer must be: not 5xx; a status the operation documents; a body
that matches that status's schema (problem+json for errors). The valid
request with the natural auth must succeed (2xx); an invalid one must be a
4xx, and a 422 must name the field it is about.
"""
import copy
import http.client
import os
import urllib.parse
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import Resp, Server, Testbed, check, expect, run  # noqa: E402
import test_openapi as oa  # noqa: E402

TB = Testbed().ensure()
METHODS = ("get", "put", "post", "patch", "delete")
ABSENT = object()

# Path segment before an {id} -> the fixture it names.
COLLECTION = {
    "tenants": "tenant", "api-keys": "api_key", "edge-hostnames": "edge_hostname",
    "properties": "property", "certificates": "certificate", "orders": "order",
    "webhooks": "webhook", "deliveries": "delivery", "events": "event",
    "deployments": "deployment", "versions": "version",
    "notification-channels": "notification_channel",
    "hostnames": "hostname",  # revocation (issue 14): a claimed hostname
    "edge-keys": "edge_key",
}
# A request field (body or query) that names a fixture by id.
ID_FIELDS = {
    "edge_hostname_id": "edge_hostname", "certificate_id": "certificate",
    "property_id": "property", "webhook_id": "webhook", "order_id": "order",
    "tenant_id": "tenant",
}


# A valid request whose documented answer is not a 2xx on these fixtures,
# and why (the state a schema cannot set up).
EXPECTED_STATUS = {
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver"):
        (409, "the fixture's delivery (to a closed port) is still on its retry schedule"),
    ("GET", "/v1/properties/{id}/dcv-delegation"):
        (404, "the fixture's server has no dcv_zone: DCV delegation is off (its 200 is "
              "test_dcv_delegation's)"),
    ("POST", "/v1/notification-channels/{id}/verify"):
        (422, "the one-time token is only in the verification mail (its 200 is "
              "test_notifications')"),
    ("POST", "/v1/certificates/{id}/revoke"):
        (409, "the fixture certificate is self-signed: no CA can revoke it"),
}

# The operations whose description says null is refused (422 naming the
# field) rather than the field left out, the document's general rule.
NULL_REFUSED = {("PATCH", "/v1/properties/{id}")}
# Deletions that must come before others (what uses an object goes first).
DELETE_FIRST = ["/v1/properties/{id}", "/v1/webhooks/{id}", "/v1/certificates/{id}",
                "/v1/edge-hostnames/{id}"]


def op_scope(path):
    """'public', 'operator', 'edge' or 'tenant': who the natural caller is."""
    if path in ("/healthz", "/readyz", "/openapi.yaml"):
        return "public"
    if path.startswith("/v1/tenants") or path == "/metrics" or path.startswith("/v1/edge-keys"):
        return "operator"
    if path.startswith("/v1/edge/"):
        return "edge"  # an edge key (role edge) only
    return "tenant"


def flat(schema):
    """schema resolved, with an allOf folded into one object (the form
    `allOf: [$ref], default: x` that names a shared schema)."""
    s = dict(oa.resolve(schema))
    for sub in s.pop("allOf", []):
        for k, v in flat(sub).items():
            s.setdefault(k, v)
    return s


def streams(op):
    """True when a 2xx of op is an endless stream (text/event-stream)."""
    return any("text/event-stream" in (oa.resolve(r).get("content") or {})
               for code, r in op.get("responses", {}).items() if code.startswith("2"))


def stream_request(srv, method, path, query=None, token=None, auth=True, tenant=None,
                   headers=None, body=None, raw=None):
    """A request whose 2xx answer is a stream: status and headers only (the
    body of a 2xx is not read; an error's body is)."""
    h = dict(headers or {})
    if auth:
        h["Authorization"] = "Bearer " + (token or srv.token)
    if tenant:
        h["X-Tenant-ID"] = tenant
    if query:
        path += "?" + urllib.parse.urlencode(query)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    try:
        conn.request(method, path, headers=h)
        r = conn.getresponse()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        data = b"" if 200 <= r.status < 300 else r.read()
        return Resp(r.status, hdrs, data)
    finally:
        conn.close()


# ----------------------------------------------------------- generation

class Gen:
    """Builds values from schemas; uniq keeps created names apart."""

    def __init__(self, fx):
        self.fx = fx
        self.n = 0

    def uniq(self):
        self.n += 1
        return "g%d%s" % (self.n, self.fx["u"])

    def hostname(self):
        return "%s.contract.example.com" % self.uniq()

    def value(self, schema, name=""):
        s = oa.resolve(schema)
        if "allOf" in s:
            merged = {}
            for sub in s["allOf"]:
                sub = oa.resolve(sub)
                for k, v in sub.items():
                    if k == "properties":
                        merged.setdefault("properties", {}).update(v)
                    elif k == "required":
                        merged["required"] = merged.get("required", []) + v
                    else:
                        merged[k] = v
            return self.value(merged, name)
        for key in ("oneOf", "anyOf"):
            if key in s:
                return self.value(s[key][0], name)
        if "const" in s:
            return s["const"]
        if name in ID_FIELDS and ID_FIELDS[name] in self.fx["ids"]:
            return self.fx["ids"][ID_FIELDS[name]]
        if "enum" in s:
            return next(v for v in s["enum"] if v is not None)
        t = s.get("type", "object")
        if isinstance(t, list):
            t = next(x for x in t if x != "null")
        if t == "object":
            out = {}
            for k in s.get("required", []):
                out[k] = self.value(s.get("properties", {}).get(k, {}), k)
            return out
        if t == "array":
            n = max(1, s.get("minItems", 1))
            item_name = {"hostnames": "hostname"}.get(name, name)
            return [self.value(s.get("items", {}), item_name) for _ in range(n)]
        if t == "boolean":
            return s.get("example", False)
        if t in ("integer", "number"):
            if "example" in s:
                return s["example"]
            return max(s.get("minimum", 1), 1) if s.get("maximum", 2) >= 1 else s.get("minimum", 0)
        # string
        fmt = s.get("format")
        if fmt == "uuid":
            return str(uuid.uuid4())
        if fmt == "uri":
            return "http://127.0.0.1:9/hook"
        if name in ("hostname",) or "hostname" in (s.get("description") or "").lower()[:40]:
            return self.hostname()
        if "pattern" in s and s["pattern"].startswith("^[a-z0-9]"):
            return self.uniq()
        text = "contract " + self.uniq()
        lo, hi = s.get("minLength", 1), s.get("maxLength", 200)
        text = (text + "x" * lo)[:max(lo, min(hi, len(text)))]
        return text


# The inputs a schema cannot express, by (METHOD, path, oneOf branch index):
# merged over the generated body. Each says why.
def semantic(fx, gen):
    host = gen.hostname
    return {
        # a self-signed certificate is issued at once (the ACME branch too,
        # dns-01 so that the order waits without touching DNS)
        ("POST", "/v1/certificates", 0): {"certificate": fx["pem"], "private_key": fx["key_pem"]},
        ("POST", "/v1/certificates", 1): {"hostnames": [host()], "validity_days": 30},
        ("POST", "/v1/certificates", 2): {"hostnames": [host()], "challenge": "dns-01"},
        ("POST", "/v1/properties", 0): {"hostnames": [host()],
                                        "certificate_renew_automation": False},
        ("POST", "/v1/webhooks", 0): {"events": ["*"]},
        ("POST", "/v1/notification-channels", 0): {"address": "ops-%s@example.com" % gen.uniq()},
        # CA names must be configured ones; "letsencrypt" always is
        ("PATCH", "/v1/tenants/{id}", 0): {"default_cas": ["letsencrypt"]},
    }


def body_variants(fx, gen, method, path, op):
    """[(branch, schema, valid body)] for op's JSON requestBody ([] if none)."""
    rb = op.get("requestBody")
    if not rb:
        return []
    media = rb.get("content", {}).get("application/json")
    if not media:
        return []
    schema = oa.resolve(media["schema"])
    branches = schema.get("oneOf") or [schema]
    out = []
    sem = semantic(fx, gen)
    for i, br in enumerate(branches):
        br = oa.resolve(br)
        body = gen.value(br)
        body.update(sem.get((method, path, i), {}))
        out.append((i, br, body))
    return out


def body_mutations(schema, body, foreign):
    """[(what, field, invalid body)] from the schema's top-level properties;
    foreign: the other tenant's fixture ids (a field naming one is invalid)."""
    schema = oa.resolve(schema)
    props = schema.get("properties", {})
    out = [("not an object", None, [])]
    for name in props:
        if name in ID_FIELDS and ID_FIELDS[name] in foreign and name in body:
            out.append(("%s of another tenant" % name, name,
                        dict(body, **{name: foreign[ID_FIELDS[name]]})))
    for name in schema.get("required", []):
        b = dict(body)
        b.pop(name, None)
        out.append(("%s missing" % name, name, b))
    if schema.get("additionalProperties") is False:
        out.append(("unknown field", "zz_unknown", dict(body, zz_unknown=1)))
    for name, ps in props.items():
        ps = flat(ps)
        if "oneOf" in ps or "anyOf" in ps:
            continue
        t = ps.get("type")
        types = t if isinstance(t, list) else [t]
        wrong = {"string": 12345, "integer": "twelve", "number": "twelve", "boolean": "yes",
                 "array": "not-a-list", "object": "not-an-object"}
        for ty in types:
            if ty in wrong and not any(oa.type_ok(wrong[ty], x) for x in types if x):
                out.append(("%s wrong type" % name, name, dict(body, **{name: wrong[ty]})))
                break
        if "string" in types:
            if "maxLength" in ps and ps["maxLength"] < 100000:
                out.append(("%s too long" % name, name,
                            dict(body, **{name: "a" * (ps["maxLength"] + 1)})))
            if "enum" in ps or "const" in ps:
                out.append(("%s bad enum" % name, name, dict(body, **{name: "zz-not-a-value"})))
            if ps.get("format") == "uuid":
                out.append(("%s bad uuid" % name, name, dict(body, **{name: "not-a-uuid"})))
            if ps.get("format") == "date-time":
                out.append(("%s bad date-time" % name, name, dict(body, **{name: "tomorrow"})))
            if "minLength" in ps and ps["minLength"] >= 1:
                out.append(("%s empty" % name, name, dict(body, **{name: ""})))
            if "pattern" in ps and "enum" not in ps:
                out.append(("%s against its pattern" % name, name, dict(body, **{name: "!! ~"})))
        if name in schema.get("required", []):
            out.append(("%s null" % name, name, dict(body, **{name: None})))
        if "integer" in types or "number" in types:
            if "minimum" in ps:
                out.append(("%s below minimum" % name, name,
                            dict(body, **{name: ps["minimum"] - 1})))
            if "maximum" in ps:
                out.append(("%s above maximum" % name, name,
                            dict(body, **{name: ps["maximum"] + 1})))
        if "array" in types:
            items = oa.resolve(ps.get("items", {}))
            if "maxItems" in ps and ps["maxItems"] <= 1000:
                out.append(("%s too many items" % name, name,
                            dict(body, **{name: ["i%d.example.com" % k
                                                 for k in range(ps["maxItems"] + 1)]})))
            if ps.get("minItems", 0) >= 1:
                out.append(("%s empty array" % name, name, dict(body, **{name: []})))
            if ps.get("uniqueItems") and isinstance(body.get(name), list) and body[name]:
                out.append(("%s duplicate items" % name, name,
                            dict(body, **{name: [body[name][0], body[name][0]]})))
            if items.get("type") == "string":
                out.append(("%s item wrong type" % name, name, dict(body, **{name: [7]})))
                if "maxLength" in items:
                    out.append(("%s item too long" % name, name,
                                dict(body, **{name: ["a" * (items["maxLength"] + 1)]})))
            if items.get("enum"):
                out.append(("%s item bad enum" % name, name, dict(body, **{name: ["zz-nope"]})))
    return out


def query_params(op, item):
    ps = [oa.resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
    return [p for p in ps if p.get("in") == "query"]


def query_valid(params, gen):
    """[(what, {name: valid value})]: each enum value, each integer bound,
    a fixture's id for an id filter, a hostname, the other order."""
    out = []
    for p in params:
        s = oa.resolve(p.get("schema", {}))
        name = p["name"]
        t = s.get("type")
        types = t if isinstance(t, list) else [t]
        if name == "cursor":
            continue
        if "enum" in s:
            out += [("?%s=%s" % (name, v), {name: str(v)}) for v in s["enum"] if v is not None]
        elif "integer" in types:
            for v in (s.get("minimum"), s.get("maximum")):
                if v is not None:
                    out.append(("?%s=%d" % (name, v), {name: str(v)}))
        elif name in ID_FIELDS and ID_FIELDS[name] in gen.fx["ids"]:
            out.append(("?%s=<fixture>" % name, {name: gen.fx["ids"][ID_FIELDS[name]]}))
        elif "hostname" in name:
            out.append(("?%s=<a hostname>" % name, {name: gen.hostname()}))
    return out


def header_params(op, item):
    ps = [oa.resolve(p) for p in item.get("parameters", []) + op.get("parameters", [])]
    return [p for p in ps if p.get("in") == "header" and p["name"].lower() != "x-tenant-id"]


def query_mutations(params):
    """[(what, param name, {name: invalid value})]."""
    out = []
    for p in params:
        s = flat(p.get("schema", {}))
        name = p["name"]
        t = s.get("type")
        types = t if isinstance(t, list) else [t]
        if "enum" in s:
            out.append(("?%s bad enum" % name, name, {name: "zz-not-a-value"}))
        if "integer" in types:
            out.append(("?%s not an integer" % name, name, {name: "twelve"}))
            if "minimum" in s:
                out.append(("?%s below minimum" % name, name, {name: str(s["minimum"] - 1)}))
            if "maximum" in s:
                out.append(("?%s above maximum" % name, name, {name: str(s["maximum"] + 1)}))
        if s.get("format") == "uuid":
            out.append(("?%s bad uuid" % name, name, {name: "not-a-uuid"}))
        if "maxLength" in s and "string" in types:
            out.append(("?%s too long" % name, name, {name: "a" * (s["maxLength"] + 1)}))
        if name == "cursor":
            out.append(("?cursor garbage", name, {name: "zz"}))
    return out


def fill(path, ids):
    segs, out, prev = path.split("/"), [], None
    for s in segs:
        if s.startswith("{") and s.endswith("}"):
            out.append(str(ids.get(COLLECTION.get(prev, ""), uuid.uuid4())))
        else:
            out.append(s)
        prev = s
    return "/".join(out)


# -------------------------------------------------------------- fixtures

def fixtures(srv):
    u = uuid.uuid4().hex[:6]

    def tenant(tag):
        tid, key = srv.new_tenant("contract-%s-%s" % (tag, u))
        ids = {"tenant": tid}
        k = expect(srv.post("/v1/tenants/%s/api-keys" % tid, {"name": "spare"}), 201).json
        ids["api_key"] = k["id"]
        e = expect(srv.post("/v1/edge-hostnames", {"label": "e%s%s" % (tag, u)}, token=key), 201).json
        ids["edge_hostname"] = e["id"]
        c = expect(srv.post("/v1/certificates", {
            "source": "self_signed", "name": "fx", "hostnames": ["fx-%s-%s.example.com" % (tag, u)],
            "validity_days": 30}, token=key), 201).json
        ids["certificate"] = c["id"]
        p = expect(srv.post("/v1/properties", {
            "name": "fx", "hostnames": ["p-%s-%s.example.com" % (tag, u)],
            "edge_hostname_id": e["id"], "certificate_id": c["id"],
            "certificate_renew_automation": False}, token=key), 201).json
        ids["property"] = p["id"]
        ids["hostname"] = p["hostnames"][0]
        d = expect(srv.post("/v1/properties/%s/deployments" % p["id"], {"environment": "staging"},
                            token=key), 201).json
        ids["deployment"] = d["id"]
        w = expect(srv.post("/v1/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
                            token=key), 201).json
        ids["webhook"] = w["id"]
        n = expect(srv.post("/v1/notification-channels", {
            "type": "email", "address": "fx-%s-%s@example.com" % (tag, u),
            "events": ["certificate.renewal_failed"]}, token=key), 201).json
        ids["notification_channel"] = n["id"]
        o = expect(srv.post("/v1/certificates", {
            "source": "acme", "name": "fx-acme", "hostnames": ["o-%s-%s.example.com" % (tag, u)],
            "challenge": "dns-01"}, token=key), 202).json
        ids["order"] = o["order"]["id"]
        ids["acme_certificate"] = o["id"]
        return ids, key

    a, ka = tenant("a")
    b, kb = tenant("b")
    # A read-only key, when the document has key scopes.
    create = oa.resolve(oa.load_spec()["paths"]["/v1/tenants/{id}/api-keys"]["post"]
                        ["requestBody"]["content"]["application/json"]["schema"])
    scope = flat(create.get("properties", {}).get("scope", {}))
    read_key = None
    if "read" in scope.get("enum", []):
        read_key = expect(srv.post("/v1/tenants/%s/api-keys" % a["tenant"],
                                   {"name": "read", "scope": "read"}), 201).json["key"]
    pem = expect(srv.get("/v1/certificates/%s/pem" % a["certificate"], token=ka), 200).text
    key = expect(srv.get("/v1/certificates/%s/private-key" % a["certificate"], token=ka), 200)
    key = key.json["private_key"] if key.json else key.text
    dl = srv.wait_for(lambda: srv.get("/v1/webhooks/%s/deliveries" % a["webhook"],
                                      token=ka).json["data"], timeout=15, what="a delivery")
    a["delivery"] = dl[0]["id"]
    ev = expect(srv.get("/v1/events", token=ka, query={"limit": "1"}), 200).json["data"]
    if ev:
        a["event"] = ev[0]["id"]
    edge_key = None
    if "/v1/edge-keys" in oa.load_spec()["paths"]:
        ek = expect(srv.post("/v1/edge-keys", {"name": "contract-%s" % u}), 201).json
        a["edge_key"], edge_key = ek["id"], ek["key"]
    return {"u": u, "ids": a, "tenant_key": ka, "other": b, "other_key": kb, "pem": pem,
            "key_pem": key, "read_key": read_key, "edge_key": edge_key}


# ------------------------------------------------------------------ test

def test_generated_requests_every_operation():
    # an SMTP relay configured (nothing listens: a verification mail only
    # waits in the outbox) so that email channels can be created
    env = dict(TB.server_env(), CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
               CERTPLANE_SMTP_URL="smtp://127.0.0.1:9", CERTPLANE_SMTP_FROM="certplane@example.com")
    srv = Server(env=env).start()
    problems, counts = [], {"requests": 0, "operations": 0, "mutations": 0}
    t0 = time.time()
    try:
        spec = oa.load_spec()
        fx = fixtures(srv)
        gen = Gen(fx)
        ka, kb, a, b = fx["tenant_key"], fx["other_key"], fx["ids"], fx["other"]

        def dup(body):
            return body if body is ABSENT else copy.deepcopy(body)

        def send(method, path, pattern, what, body=ABSENT, query=None, **kw):
            if body is not ABSENT:
                kw["body"] = body
            if streams(spec["paths"][pattern][method.lower()]):
                r = stream_request(srv, method, path, query=query, **kw)
            else:
                r = srv.request(method, path, query=query, **kw)
            counts["requests"] += 1
            before = len(problems)
            op_ = spec["paths"][pattern][method.lower()]
            if r.status >= 500:
                problems.append("%s %s (%s): %d: %s" % (method, pattern, what, r.status, r.text[:300]))
            elif streams(op_) and 200 <= r.status < 300:
                doc = oa.resolve(op_["responses"].get(str(r.status), {}))
                ctype = (r.header("content-type") or "").split(";")[0].strip()
                if ctype not in (doc.get("content") or {}):
                    problems.append("%s %s (%s): stream answered %d %r, documented %s"
                                    % (method, pattern, what, r.status, ctype,
                                       sorted(doc.get("content") or {})))
            else:
                oa.conform(method, pattern, r, problems)
            if len(problems) > before and r.status < 500:
                problems[-1] = "(%s) %s" % (what, problems[-1])
            return r

        def fresh_victim(pattern):
            """DELETE acts on an object made for it (POST on its collection,
            valid generated body), so the fixtures stay for the others."""
            coll, last = pattern.rsplit("/", 1)
            prev = coll.rsplit("/", 1)[1]
            post = spec["paths"].get(coll, {}).get("post")
            if not (last.startswith("{") and post and prev in COLLECTION):
                return None
            variants = body_variants(fx, gen, "POST", coll, post)
            body = variants[min(1, len(variants) - 1)][2] if variants else ABSENT
            scope = op_scope(coll)
            r = send("POST", fill(coll, a), coll, "a victim for DELETE", body=body,
                     **({"token": ka} if scope == "tenant" else {}))
            check(200 <= r.status < 300 and r.json and "id" in r.json,
                  "POST %s for a DELETE victim: %r" % (coll, r))
            return fill(pattern, dict(a, **{COLLECTION[prev]: r.json["id"]}))

        ops = []
        for pattern, item in spec["paths"].items():
            for m, op in item.items():
                if m in METHODS:
                    ops.append((m.upper(), pattern, item, op))
        # State changes that end an object's life run late: an order is
        # verified before it is canceled; deletions last, dependants first
        # (DELETE_FIRST), the tenant itself at the very end.
        def rank(o):
            m, p = o[0], o[1]
            if m != "DELETE":
                return (1 if p.endswith("/cancel") else 0, p)
            first = DELETE_FIRST.index(p) if p in DELETE_FIRST else len(DELETE_FIRST)
            return (2, p.startswith("/v1/tenants/{id}") and p.count("/") == 3, first,
                    -p.count("/"), p)
        ops.sort(key=rank)

        for method, pattern, item, op in ops:
            counts["operations"] += 1
            scope = op_scope(pattern)
            path_a = fill(pattern, a)
            if method == "DELETE":
                path_a = fresh_victim(pattern) or path_a
            variants = body_variants(fx, gen, method, pattern, op) or [(0, None, ABSENT)]
            qparams = query_params(op, item)
            natural = {"public": dict(auth=False), "operator": dict(),
                       "tenant": dict(token=ka), "edge": dict(token=fx["edge_key"])}[scope]
            for branch, schema, body in variants:
                tag = "valid" + (" branch %d" % branch if len(variants) > 1 else "")
                # 1. the natural caller: must succeed (DELETE: once, below)
                if method != "DELETE":
                    r = send(method, path_a, pattern, tag, body=dup(body), **natural)
                    if (method, pattern) in EXPECTED_STATUS:
                        if r.status != EXPECTED_STATUS[(method, pattern)][0]:
                            problems.append("%s %s (%s): answered %d, expected %d (%s)"
                                            % ((method, pattern, tag, r.status)
                                               + EXPECTED_STATUS[(method, pattern)]))
                    elif not 200 <= r.status < 300:
                        problems.append("%s %s (%s): a valid request answered %d: %s"
                                        % (method, pattern, tag, r.status, r.text[:300]))
                # 2. every auth variant, same request
                auth = [("no key", dict(auth=False)),
                        ("a wrong key", dict(token="cpk_" + "0" * 43)),
                        ("another tenant's key on these ids", dict(token=kb)),
                        ("the tenant's key, another X-Tenant-ID", dict(token=ka, tenant=b["tenant"])),
                        ("the operator, no X-Tenant-ID", dict()),
                        ("the operator, X-Tenant-ID", dict(tenant=a["tenant"])),
                        ("the tenant's key", dict(token=ka))]
                if fx["read_key"]:
                    auth.append(("a read key", dict(token=fx["read_key"])))
                if method == "DELETE":
                    # the natural one first: the rest must then answer a
                    # documented status for an object that is gone
                    auth = [("natural", natural)] + auth
                for what, kw in auth:
                    r = send(method, path_a, pattern, "%s, %s" % (tag, what),
                             body=dup(body), **kw)
                    if what == "natural" and not 200 <= r.status < 300:
                        problems.append("%s %s: a valid request answered %d: %s"
                                        % (method, pattern, r.status, r.text[:300]))
                    if (what == "a read key" and scope == "tenant"
                            and (method != "GET") != (r.status == 403)
                            and (method, pattern) not in EXPECTED_STATUS):
                        problems.append("%s %s: a read key answered %d" % (method, pattern, r.status))
                    if what == "no key" and scope != "public" and r.status != 401:
                        problems.append("%s %s: no key answered %d" % (method, pattern, r.status))
                    if what == "a wrong key" and scope != "public" and r.status != 401:
                        problems.append("%s %s: a wrong key answered %d" % (method, pattern, r.status))
                    if (what in ("the operator, X-Tenant-ID", "the tenant's key")
                            and scope == "tenant" and method != "DELETE"
                            and (method, pattern) not in EXPECTED_STATUS
                            and not 200 <= r.status < 300
                            and not (method == "POST" and r.status == 409)):
                        problems.append("%s %s (%s): a valid request answered %d: %s"
                                        % (method, pattern, what, r.status, r.text[:200]))
                    if (what == "another tenant's key on these ids" and "{" in pattern
                            and scope == "tenant" and 200 <= r.status < 300):
                        problems.append("%s %s: another tenant's key reached the object (%d)"
                                        % (method, pattern, r.status))
                # 3. an optional field given as null is the field left out
                #    (openapi.yaml's info): the request still succeeds
                if schema is not None and method in ("POST", "PUT", "PATCH") \
                        and not pattern.endswith("/cancel"):
                    for name in oa.resolve(schema).get("properties", {}):
                        ps = oa.resolve(oa.resolve(schema)["properties"][name])
                        if (name in oa.resolve(schema).get("required", []) or name in body
                                or "null" in (ps.get("type") if isinstance(ps.get("type"), list)
                                              else [ps.get("type")])):
                            continue  # null is a value of its own there
                        r = send(method, path_a, pattern, "%s: %s null" % (tag, name),
                                 body=dict(dup(body), **{name: None}), **natural)
                        if (method, pattern) in NULL_REFUSED:
                            if r.status != 422 or not any(e.get("field") == name for e in
                                                          r.json.get("errors", [])):
                                problems.append("%s %s (%s null, documented as refused) "
                                                "answered %d" % (method, pattern, name, r.status))
                        elif not 200 <= r.status < 300 and r.status != 409:
                            problems.append("%s %s (%s null, documented as absent) answered "
                                            "%d: %s" % (method, pattern, name, r.status,
                                                        r.text[:200]))
                # 4. the body's mutations, by the natural caller
                if schema is not None and method != "DELETE":
                    for what, field, bad in body_mutations(schema, body, b):
                        r = send(method, path_a, pattern, "%s: %s" % (tag, what), body=bad, **natural)
                        counts["mutations"] += 1
                        if os.environ.get("CONTRACT_VERBOSE"):
                            print("   %s %s %s -> %d %s" % (method, pattern, what, r.status,
                                                           r.text[:120]))
                        if not 400 <= r.status < 500:
                            problems.append("%s %s (%s): an invalid body answered %d: %s"
                                            % (method, pattern, what, r.status, r.text[:200]))
                        elif r.status == 422 and field and not any(
                                (e.get("field") or "").split("[")[0].split(".")[0] == field
                                for e in (r.json or {}).get("errors", [])):
                            problems.append("%s %s (%s): the 422 does not name %r: %s"
                                            % (method, pattern, what, field, r.text[:200]))
            # 5. request headers out of their schema (X-Tenant-ID is above),
            #    and a body of another media type
            if method in ("POST", "PUT", "PATCH"):
                body0 = variants[0][2]
                for hp in header_params(op, item):
                    hs = oa.resolve(hp.get("schema", {}))
                    if "maxLength" in hs:
                        r = send(method, path_a, pattern, "%s too long" % hp["name"],
                                 body=dup(body0) if body0 is not ABSENT else {},
                                 headers={hp["name"]: "k" * (hs["maxLength"] + 1)}, **natural)
                        if not 400 <= r.status < 500:
                            problems.append("%s %s: %s too long answered %d"
                                            % (method, pattern, hp["name"], r.status))
                if op.get("requestBody"):
                    r = send(method, path_a, pattern, "text/plain body", raw=b"name=x",
                             headers={"Content-Type": "text/plain"}, **natural)
                    if r.status != 415:
                        problems.append("%s %s: a text/plain body answered %d"
                                        % (method, pattern, r.status))
            # 4. query parameters: each valid value succeeds, each value out
            #    of its schema is a 4xx naming the parameter
            if method == "GET":
                for what, q in query_valid(qparams, gen):
                    r = send(method, path_a, pattern, what, query=q, **natural)
                    # A closed stream frees its slot only when the server
                    # next writes to it: past the documented per-tenant
                    # limit a stream is a 429, which conform() checked.
                    if streams(op) and r.status == 429:
                        continue
                    if not 200 <= r.status < 300:
                        problems.append("%s %s (%s): a valid query answered %d: %s"
                                        % (method, pattern, what, r.status, r.text[:200]))
                # an id filter naming another tenant's object finds nothing
                for p in qparams:
                    if p["name"] in ID_FIELDS and ID_FIELDS[p["name"]] in b and not streams(op):
                        r = send(method, path_a, pattern, "?%s of another tenant" % p["name"],
                                 query={p["name"]: b[ID_FIELDS[p["name"]]]}, **natural)
                        if r.status != 200 or (r.json or {}).get("data") != []:
                            problems.append("%s %s (?%s of another tenant): %r"
                                            % (method, pattern, p["name"], r))
                for what, name, q in query_mutations(qparams):
                    r = send(method, path_a, pattern, what, query=q, **natural)
                    if not 400 <= r.status < 500:
                        problems.append("%s %s (%s): answered %d" % (method, pattern, what, r.status))
                    elif r.status == 422 and not any(e.get("field") == name
                                                     for e in (r.json or {}).get("errors", [])):
                        problems.append("%s %s (%s): the 422 does not name %r: %s"
                                        % (method, pattern, what, name, r.text[:200]))
    finally:
        srv.cleanup()
    print("  %d operations, %d requests (%d invalid bodies), %.1fs"
          % (counts["operations"], counts["requests"], counts["mutations"], time.time() - t0))
    check(counts["operations"] >= 40, counts)
    check(not problems, "%d mismatches with openapi.yaml:\n  %s"
          % (len(problems), "\n  ".join(problems)))


run(globals())
