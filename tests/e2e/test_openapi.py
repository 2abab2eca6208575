"""test_openapi.py - openapi.yaml is the API's contract; this keeps it honest.

(a) `redocly lint` (pinned in tests/openapi/package.json, installed there with
    `npm ci`) passes with no error and no warning under tests/openapi/redocly.yaml;
(b) the route table (`certplane routes`) and the document's paths and methods
    are the same set (OPTIONS, answered for every path by the server, aside);
(c) contract: every route is called on a running server with real resources
    behind it; each status it answers must be documented for that operation,
    and each JSON body must validate against the documented schema (a small
    JSON-Schema subset validator below: type, required, properties, items,
    enum, const, $ref, allOf/anyOf/oneOf, additionalProperties, nullable
    through type arrays, string/number bounds, uuid and date-time formats).

The document is read through `redocly bundle --ext json`, so this test needs
nothing outside the Python standard library besides the pinned linter.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SRC, CheckFailed, Resp, Server, check, expect, run  # noqa: E402

SPEC_PATH = os.path.join(SRC, "openapi.yaml")
LINT_DIR = os.path.join(SRC, "tests", "openapi")
REDOCLY = os.path.join(LINT_DIR, "node_modules", ".bin", "redocly")
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

spec = None


def redocly(*args):
    if not os.path.exists(REDOCLY):
        raise CheckFailed("the pinned linter is not installed: run `npm ci` in tests/openapi "
                          "(deploy/quickstart.sh test does)")
    return subprocess.run([REDOCLY] + list(args), cwd=LINT_DIR, capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, REDOCLY_TELEMETRY="off",
                                                REDOCLY_SUPPRESS_UPDATE_NOTICE="true",
                                                NO_COLOR="1"))


def load_spec():
    global spec
    if spec is None:
        out = os.path.join(tempfile.mkdtemp(prefix="cp-openapi-"), "openapi.json")
        p = redocly("bundle", SPEC_PATH, "--ext", "json", "-o", out)
        check(p.returncode == 0, "redocly bundle failed:\n%s%s" % (p.stdout, p.stderr))
        with open(out) as f:
            spec = json.load(f)
    return spec


# ------------------------------------------------------------------ (a) lint

def test_lint_clean():
    p = redocly("lint", SPEC_PATH, "--config", os.path.join(LINT_DIR, "redocly.yaml"),
                "--format", "stylish")
    out = p.stdout + p.stderr
    problems = [l for l in out.splitlines() if re.search(r"\b(error|warning)\b", l)
                and not l.startswith("run ")]
    check(p.returncode == 0 and not problems, "redocly lint is not clean:\n" + out)


# ------------------------------------------------- (b) routes == spec paths

def route_table():
    p = subprocess.run([BIN, "routes"], capture_output=True, text=True, timeout=30)
    check(p.returncode == 0, p.stderr)
    routes = set()
    for line in p.stdout.splitlines():
        method, pattern = line.split(" ", 1)
        routes.add((method.upper(), pattern))
    return routes


def spec_routes():
    out = set()
    for path, item in load_spec()["paths"].items():
        for m in item:
            if m in METHODS and m != "options":
                out.add((m.upper(), path))
    return out


def test_route_table_matches_spec():
    routes, documented = route_table(), spec_routes()
    missing = sorted(routes - documented)
    extra = sorted(documented - routes)
    check(not missing and not extra,
          "route table and openapi.yaml differ.\n  served but not documented: %s\n"
          "  documented but not served: %s" % (missing, extra))


def test_served_document_is_this_file():
    srv = Server().start()
    try:
        r = expect(srv.get("/openapi.yaml", auth=False), 200)
        check(r.header("content-type").startswith("application/yaml"), r.headers)
        with open(SPEC_PATH, "rb") as f:
            check(r.body == f.read(), "the binary serves a different openapi.yaml: rebuild")
    finally:
        srv.cleanup()


# ------------------------------------------------- JSON-Schema subset check

DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def resolve(node):
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        check(ref.startswith("#/"), "only local $ref: %s" % ref)
        target = load_spec()
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = dict(target, **extra) if extra else target
        seen += 1
        check(seen < 50, "$ref loop at " + ref)
    return node


def type_ok(value, t):
    if t == "null":
        return value is None
    if t == "boolean":
        return isinstance(value, bool)
    if t == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if t == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t == "string":
        return isinstance(value, str)
    if t == "array":
        return isinstance(value, list)
    if t == "object":
        return isinstance(value, dict)
    raise CheckFailed("unknown schema type %r" % t)


def validate(value, schema, where="$"):
    """Return a list of messages; empty when value matches schema."""
    schema = resolve(schema)
    if schema is True or schema == {}:
        return []
    if schema is False:
        return ["%s: no value is allowed here" % where]
    errs = []
    if "allOf" in schema:
        for sub in schema["allOf"]:
            errs += validate(value, sub, where)
    if "anyOf" in schema:
        if not any(not validate(value, sub, where) for sub in schema["anyOf"]):
            errs.append("%s: matches none of anyOf" % where)
    if "oneOf" in schema:
        n = sum(1 for sub in schema["oneOf"] if not validate(value, sub, where))
        if n != 1:
            errs.append("%s: matches %d of oneOf (must be exactly 1)" % (where, n))
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if schema.get("nullable"):
            types = types + ["null"]
        if not any(type_ok(value, t) for t in types):
            return errs + ["%s: %r is not of type %s" % (where, value, "/".join(types))]
    if "enum" in schema and value not in schema["enum"]:
        errs.append("%s: %r not in enum %s" % (where, value, schema["enum"]))
    if "const" in schema and value != schema["const"]:
        errs.append("%s: %r != const %r" % (where, value, schema["const"]))
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            errs.append("%s: shorter than %d" % (where, schema["minLength"]))
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errs.append("%s: longer than %d" % (where, schema["maxLength"]))
        fmt = schema.get("format")
        if fmt == "date-time" and not DATE_TIME.match(value):
            errs.append("%s: %r is not an RFC 3339 date-time" % (where, value))
        if fmt == "uuid" and not UUID.match(value):
            errs.append("%s: %r is not a lowercase UUID" % (where, value))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errs.append("%s: %r does not match %s" % (where, value, schema["pattern"]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append("%s: %r < minimum %r" % (where, value, schema["minimum"]))
        if "maximum" in schema and value > schema["maximum"]:
            errs.append("%s: %r > maximum %r" % (where, value, schema["maximum"]))
    if isinstance(value, list):
        if "items" in schema:
            for i, item in enumerate(value):
                errs += validate(item, schema["items"], "%s[%d]" % (where, i))
        if "minItems" in schema and len(value) < schema["minItems"]:
            errs.append("%s: fewer than %d items" % (where, schema["minItems"]))
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append("%s: more than %d items" % (where, schema["maxItems"]))
    if isinstance(value, dict):
        props = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errs.append("%s: required property %r missing" % (where, name))
        for name, v in value.items():
            if name in props:
                errs += validate(v, props[name], "%s.%s" % (where, name))
            else:
                ap = schema.get("additionalProperties", True)
                if ap is False:
                    errs.append("%s: property %r is not in the schema" % (where, name))
                elif isinstance(ap, dict):
                    errs += validate(v, ap, "%s.%s" % (where, name))
    return errs


def test_validator_itself():
    s = {"type": "object", "required": ["a"], "additionalProperties": False,
         "properties": {"a": {"type": ["string", "null"], "enum": ["x", None]},
                        "b": {"type": "array", "items": {"type": "integer"}}}}
    check(validate({"a": "x", "b": [1, 2]}, s) == [])
    check(validate({"a": None}, s) == [])
    check(validate({"a": "y"}, s))
    check(validate({"b": [1]}, s))
    check(validate({"a": "x", "c": 1}, s))
    check(validate({"a": "x", "b": [True]}, s))
    check(validate(1.5, {"type": "integer"}))
    check(validate({"status": 1}, {"$ref": "#/components/schemas/Problem"}))


# ------------------------------------------------------ (c) contract tests

def conform(method, pattern, resp, problems):
    """Check one real response against the documented operation."""
    op = (load_spec()["paths"].get(pattern) or {}).get(method.lower())
    if op is None:
        problems.append("%s %s is not documented" % (method, pattern))
        return
    responses = op.get("responses", {})
    code = str(resp.status)
    doc = responses.get(code) or responses.get(code[0] + "XX") or responses.get("default")
    if doc is None:
        problems.append("%s %s answered %d, which is not documented (documented: %s): %s"
                        % (method, pattern, resp.status, sorted(responses), resp.text[:300]))
        return
    doc = resolve(doc)
    content = doc.get("content") or {}
    ctype = (resp.header("content-type") or "").split(";")[0].strip()
    if not resp.body:
        if content and resp.status != 204:
            problems.append("%s %s %d: empty body, documented %s" % (method, pattern, resp.status, sorted(content)))
        return
    if ctype not in content:
        problems.append("%s %s %d: content type %r is not documented (%s)"
                        % (method, pattern, resp.status, ctype, sorted(content)))
        return
    schema = content[ctype].get("schema")
    if schema is None or not ctype.endswith("json"):
        return
    if resp.json is None:
        problems.append("%s %s %d: body is not JSON" % (method, pattern, resp.status))
        return
    errs = validate(resp.json, schema)
    if errs:
        problems.append("%s %s %d: body does not match the schema:\n      %s\n    body: %s"
                        % (method, pattern, resp.status, "\n      ".join(errs[:10]), resp.text[:500]))


# Which resource an {id} after each collection segment names.
COLLECTION_KEYS = {
    "tenants": "tenant", "api-keys": "api_key", "edge-hostnames": "edge_hostname",
    "properties": "property", "certificates": "certificate", "orders": "order",
    "webhooks": "webhook", "deliveries": "delivery", "events": "event",
    "deployments": "deployment", "versions": "version",
    "notification-channels": "notification_channel",
}


def fill(pattern, ids):
    segs, out, prev = pattern.split("/"), [], None
    for s in segs:
        if s.startswith("{") and s.endswith("}"):
            out.append(str(ids.get(COLLECTION_KEYS.get(prev, ""), uuid.uuid4())))
        else:
            out.append(s)
        prev = s
    return "/".join(out)


def bodies(uniq, ids):
    """Request bodies that should succeed, by (METHOD, pattern)."""
    host = "contract-%s.example.com" % uniq
    return {
        ("POST", "/v1/tenants"): {"name": "contract " + uniq},
        ("POST", "/v1/tenants/{id}/api-keys"): {"name": "contract key"},
        ("POST", "/v1/edge-hostnames"): {"label": "c" + uniq},
        ("POST", "/v1/properties"): {"name": "contract", "hostnames": ["www." + host],
                                     "edge_hostname_id": ids.get("edge_hostname"),
                                     "certificate_renew_automation": False},
        ("PATCH", "/v1/properties/{id}"): {"name": "contract renamed"},
        ("POST", "/v1/properties/{id}/deployments"): {"environment": "staging"},
        ("POST", "/v1/certificates"): {"source": "self_signed", "name": "contract",
                                       "hostnames": ["www." + host], "validity_days": 30},
        ("PATCH", "/v1/certificates/{id}"): {"name": "contract renamed"},
        ("POST", "/v1/webhooks"): {"url": "http://127.0.0.1:9/hook", "events": ["*"],
                                   "description": "contract"},
        ("PATCH", "/v1/webhooks/{id}"): {"description": "contract renamed"},
        ("POST", "/v1/notification-channels"): {"type": "slack", "events": ["*"],
                                                "url": "http://127.0.0.1:9/services/contract"},
    }


# Creation order (so later creations can refer to earlier ids), and the
# deletion order (dependants first).
CREATE_ORDER = ["/v1/tenants", "/v1/tenants/{id}/api-keys", "/v1/edge-hostnames",
                "/v1/certificates", "/v1/properties", "/v1/properties/{id}/deployments",
                "/v1/webhooks", "/v1/notification-channels"]
DELETE_ORDER = ["/v1/tenants/{id}/api-keys/{key_id}", "/v1/properties/{id}", "/v1/webhooks/{id}",
                "/v1/certificates/{id}", "/v1/edge-hostnames/{id}", "/v1/tenants/{id}"]
ID_OF = {"/v1/tenants": "tenant", "/v1/tenants/{id}/api-keys": "api_key",
         "/v1/edge-hostnames": "edge_hostname", "/v1/certificates": "certificate",
         "/v1/properties": "property", "/v1/properties/{id}/deployments": "deployment",
         "/v1/webhooks": "webhook", "/v1/notification-channels": "notification_channel"}


def stream_aware(srv):
    """srv.request, except that a GET of an event stream (a 200 never ends)
    reads the status, the headers and the first line of the body only."""
    plain = srv.request

    def request(method, path, body=None, token=None, auth=True, headers=None, raw=None,
                tenant=None, query=None):
        if path.split("?")[0] != "/v1/events/stream":
            return plain(method, path, body=body, token=token, auth=auth, headers=headers,
                         raw=raw, tenant=tenant, query=query)
        h = {"Authorization": "Bearer " + (token or srv.token)} if auth else {}
        if tenant:
            h["X-Tenant-ID"] = tenant
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            h["Content-Type"] = "application/json"
        h.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            got = r.readline() if r.status == 200 else r.read()
            return Resp(r.status, {k.lower(): v for k, v in r.getheaders()}, got)
        finally:
            conn.close()
    srv.request = request
    return srv


def test_contract_every_route():
    srv = stream_aware(Server(env={"CERTPLANE_WEBHOOK_ALLOW_PRIVATE_NETWORKS": "true"}).start())
    problems, called = [], set()
    try:
        routes = route_table()
        uniq = uuid.uuid4().hex[:8]
        tid, key = srv.new_tenant("contract-" + uniq)
        ids = {}

        def call(method, pattern, body=None, token=None, auth=True, tenant_scope=True):
            path = fill(pattern, ids)
            operator = pattern.startswith("/v1/tenants") or pattern in ("/metrics", "/v1/audit-log")
            tok = token or (None if operator else key)
            r = srv.request(method, path, body=body, token=tok, auth=auth)
            conform(method, pattern, r, problems)
            called.add((method, pattern))
            return r

        # 1. creations, in dependency order, each must succeed when it exists
        b = bodies(uniq, ids)
        for pattern in CREATE_ORDER:
            if ("POST", pattern) not in routes:
                continue
            b = bodies(uniq, ids)
            r = call("POST", pattern, b.get(("POST", pattern)))
            check(r.status in (200, 201, 202), "POST %s -> %r" % (pattern, r))
            ids[ID_OF[pattern]] = r.json["id"]
        # the contract tenant's own resources live in tid (the key's tenant)
        # except the tenant created above, which is the operator's test object.
        # 2. every GET (lists with a limit, so next_cursor shows up)
        for method, pattern in sorted(routes):
            if method != "GET":
                continue
            call(method, pattern)
            if pattern.startswith("/v1/") and not pattern.endswith("}"):
                srv_q = fill(pattern, ids) + "?limit=1"
                r = srv.request("GET", srv_q, token=None if pattern.startswith("/v1/tenants")
                                or pattern == "/v1/audit-log" else key)
                conform("GET", pattern, r, problems)
        # 3. the remaining writes (PATCH, POST actions) with a known-good body
        #    or, lacking one, an empty object (a documented 4xx)
        b = bodies(uniq, ids)
        for method, pattern in sorted(routes):
            if method in ("GET", "DELETE") or (method, pattern) in called:
                continue
            call(method, pattern, b.get((method, pattern), {}))
        # 4. error shapes: no key, a foreign/missing id, a bad body, a bad limit
        call("GET", "/v1/tenants", auth=False)
        for method, pattern in sorted(routes):
            if method == "GET" and pattern.endswith("{id}") and pattern.startswith("/v1/"):
                r = srv.request("GET", pattern.replace("{id}", str(uuid.uuid4())),
                                token=None if pattern.startswith("/v1/tenants") else key)
                conform("GET", pattern, r, problems)
        for method, pattern in sorted(routes):
            if method == "POST" and "{" not in pattern:
                r = srv.request("POST", pattern, raw=b"{not json",
                                token=None if pattern.startswith("/v1/tenants") else key)
                conform("POST", pattern, r, problems)
            if method == "GET" and pattern.startswith("/v1/") and not pattern.endswith("}"):
                r = srv.request("GET", fill(pattern, ids) + "?limit=0",
                                token=None if pattern.startswith("/v1/tenants")
                                or pattern == "/v1/audit-log" else key)
                conform("GET", pattern, r, problems)
        # 5. deletions, dependants first, then any other DELETE
        order = [p for p in DELETE_ORDER if ("DELETE", p) in routes]
        order += sorted(p for m, p in routes if m == "DELETE" and p not in order)
        for pattern in order:
            call("DELETE", pattern)
        missed = sorted(routes - called)
        check(not missed, "routes not exercised: %s" % missed)
    finally:
        srv.cleanup()
    check(not problems, "%d responses do not match openapi.yaml:\n  %s"
          % (len(problems), "\n  ".join(problems)))


def test_error_variants_every_route():
    """The statuses every route can answer before its handler runs, each
    documented for that operation with a matching body: the operator without
    X-Tenant-ID (400 where the operation acts within a tenant), a malformed
    and an unknown X-Tenant-ID (404), a body that is not JSON (415), a bad
    Idempotency-Key on a POST (422), no key or a wrong one (401 with
    WWW-Authenticate), a tenant key (403 on the operator's routes), a read
    key (403 on every write) and a tenant key naming another tenant (404)."""
    srv = stream_aware(Server().start())
    problems = []
    try:
        vt, key = srv.new_tenant("variants")
        other, _ = srv.new_tenant("variants-other")
        ro = expect(srv.post("/v1/tenants/%s/api-keys" % vt, {"name": "ro", "scope": "read"}),
                    201).json["key"]
        seen = set()
        for method, pattern in sorted(route_table()):
            path = fill(pattern, {})
            body = {} if method in ("POST", "PUT", "PATCH") else None
            operator = pattern.startswith("/v1/tenants") or pattern in ("/metrics", "/v1/audit-log")
            variants = [
                ("operator, no X-Tenant-ID", dict(body=body)),
                ("operator, malformed X-Tenant-ID", dict(body=body, tenant="not-a-uuid")),
                ("operator, unknown X-Tenant-ID", dict(body=body, tenant=str(uuid.uuid4()))),
                ("text/plain body", dict(token=None if operator else key, raw=b"x",
                                         headers={"Content-Type": "text/plain"})),
                ("no key", dict(auth=False)),
                ("a wrong key", dict(token="cpk_" + "0" * 43)),
                ("a tenant key", dict(token=key, body=body)),
                ("a read key", dict(token=ro, body=body)),
                ("a tenant key, another tenant's X-Tenant-ID",
                 dict(token=key, body=body, tenant=other)),
            ]
            if method == "POST":
                variants.append(("Idempotency-Key too long",
                                 dict(body={}, token=None if operator else key,
                                      headers={"Idempotency-Key": "k" * 300})))
            for what, kw in variants:
                r = srv.request(method, path, **kw)
                seen.add(r.status)
                before = len(problems)
                conform(method, pattern, r, problems)
                if len(problems) > before:
                    problems[-1] = "(%s) %s" % (what, problems[-1])
                if r.status == 401 and r.header("www-authenticate") != 'Bearer realm="certplane"':
                    problems.append("%s %s (%s): 401 without WWW-Authenticate: Bearer"
                                    % (method, pattern, what))
        # the variants really reach the statuses they are about
        check({400, 401, 403, 404, 415, 422} <= seen, "statuses seen: %s" % sorted(seen))
    finally:
        srv.cleanup()
    check(not problems, "%d responses do not match openapi.yaml:\n  %s"
          % (len(problems), "\n  ".join(problems)))


def test_document_serves_generated_clients():
    """What a generated client needs: an example on every path parameter,
    free-form objects typed as such (additionalProperties), Location on every
    201, WWW-Authenticate on every 401, and no stale schema version pinned."""
    doc, problems = load_spec(), []
    for path, item in doc["paths"].items():
        params = list(item.get("parameters", []))
        for m, op in item.items():
            if m not in METHODS:
                continue
            for p in params + op.get("parameters", []):
                p = resolve(p)
                if p.get("in") == "path" and "example" not in p and "examples" not in p:
                    problems.append("%s %s: path parameter %s has no example" % (m, path, p["name"]))
            for code, resp in op.get("responses", {}).items():
                resp = resolve(resp)
                hdrs = {k.lower() for k in resp.get("headers", {})}
                if code == "201" and "location" not in hdrs:
                    problems.append("%s %s: 201 documents no Location" % (m, path))
                if code == "401" and "www-authenticate" not in hdrs:
                    problems.append("%s %s: 401 documents no WWW-Authenticate" % (m, path))

    def walk(node, where):
        if isinstance(node, dict):
            t = node.get("type")
            if (t == "object" or (isinstance(t, list) and "object" in t)) and not any(
                    k in node for k in ("properties", "additionalProperties", "allOf", "oneOf",
                                        "anyOf", "$ref")):
                problems.append("%s: an object with no properties and no additionalProperties "
                                "(a generated client types it Record<string, never>)" % where)
            for k, v in node.items():
                walk(v, "%s/%s" % (where, k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, "%s[%d]" % (where, i))
    walk(doc, "#")
    for name in ("metadata",):
        for schema in ("Certificate", "CertificatePatch", "Order"):
            ap = doc["components"]["schemas"][schema]["properties"][name].get("additionalProperties")
            if ap is not True:
                problems.append("%s.%s is not a free-form object" % (schema, name))
    if doc["components"]["schemas"]["Event"]["properties"]["data"].get("additionalProperties") is not True:
        problems.append("Event.data is not a free-form object")
    ready = doc["paths"]["/readyz"]["get"]["responses"]["200"]["content"]["application/json"]
    migrations = sorted(f for f in os.listdir(os.path.join(SRC, "migrations")) if f.endswith(".sql"))
    newest = int(migrations[-1][:3])
    example = (ready.get("example") or {}).get("schema_version")
    if example is not None and example != newest:
        problems.append("/readyz example pins schema_version %r; the newest migration is %d"
                        % (example, newest))
    check(not problems, "%d gaps:\n  %s" % (len(problems), "\n  ".join(problems)))


# test_contract.py imports the bundler, the validator and conform() from here.
if __name__ == "__main__":
    run(globals())
