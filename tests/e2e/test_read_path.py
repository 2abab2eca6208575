"""test_read_path.py - GET /v1/certificates/{id} and GET /v1/properties/{id}
are rendered straight from the row (db/certificates.c, db/properties.c)
while creates, updates and lists still dump a JSON tree: the bytes must be
the same either way, for names and metadata that need every kind of JSON
escape (quotes, backslashes, control characters, non-ASCII), for nulls,
empty arrays, deployments and property ids.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, run  # noqa: E402

S = Server().start()
_, KEY = S.new_tenant("reads")
TRICKY = "q\"b\\s/\x01\x1f\x7f\t\n é ✓ 🔒"


def same_bytes(get_path, other_body):
    """GET get_path and check its body equals other_body byte for byte."""
    r = expect(S.get(get_path, token=KEY), 200)
    check(r.header("content-type") == "application/json", r.headers)
    check(r.body == other_body, "GET %s:\n%r\nvs\n%r" % (get_path, r.body, other_body))
    return r


def in_list(path, list_path):
    """GET path and the list list_path (dumped by jansson from the parsed
    rows) with no change in between (a background hostname check may change
    a property: then try again); the list holds the GET body verbatim."""
    for _ in range(10):
        a = expect(S.get(path, token=KEY), 200).body
        listed = expect(S.get(list_path, token=KEY), 200).body
        b = expect(S.get(path, token=KEY), 200).body
        if a == b:
            check(a in listed, "%s lacks %r" % (list_path, a[:200]))
            return json.loads(a)
    check(False, "%s kept changing" % path)


def checked_certificate():
    """Create a certificate with tricky text; check its GET bytes; its id."""
    c = expect(S.post("/v1/certificates", {
        "source": "self_signed", "name": TRICKY, "hostnames": ["a.reads.example.com", "*.reads.example.com"],
        "metadata": {"k": TRICKY, "n": [1, 2.5, True, None], "nested": {"e": []}}}, token=KEY), 201)
    path = "/v1/certificates/" + c.json["id"]
    got = same_bytes(path, c.body)
    check(got.json["name"] == TRICKY and got.json["metadata"]["k"] == TRICKY, got.json)
    check(got.json["property_ids"] == [] and got.json["renewal"]["next_attempt_at"] is None, got.json)
    in_list(path, "/v1/certificates?limit=500")
    # After an update (PATCH answers the tree's dump).
    u = expect(S.patch(path, {"name": TRICKY + "2", "metadata": {"x": "\u2028"}}, token=KEY), 200)
    same_bytes(path, u.body)
    return c.json["id"]


def test_certificate_bytes():
    checked_certificate()


def test_property_bytes():
    cert = checked_certificate()
    e = expect(S.post("/v1/edge-hostnames", {"label": "reads"}, token=KEY), 201).json
    p = expect(S.post("/v1/properties", {
        "name": TRICKY, "hostnames": ["www.reads.example.com", "*.w.reads.example.com"],
        "edge_hostname_id": e["id"], "certificate_id": cert}, token=KEY), 201)
    path = "/v1/properties/" + p.json["id"]
    got = in_list(path, "/v1/properties?limit=500")
    # The create's answer is the same object, but for what the hostname
    # check (a background job started by the create) has changed since.
    drop = lambda o: {k: v for k, v in o.items() if k != "hostname_verification"}  # noqa: E731
    check(drop(got) == drop(p.json) and got["name"] == TRICKY, (got, p.json))
    check(got["staging"] is None and got["production"] is None, got)
    v = got["hostname_verification"]
    check([x["txt_record_name"] for x in v] ==
          ["_certplane-verify.www.reads.example.com", "_certplane-verify.w.reads.example.com"], v)
    for env in ["staging", "production", "production"]:
        expect(S.post(path + "/deployments", {"environment": env}, token=KEY), 201)
    expect(S.patch(path, {"name": "p2", "hostnames": ["www.reads.example.com"]}, token=KEY), 200)
    got = in_list(path, "/v1/properties?limit=500")
    check(got["production"]["version"] == 1 and got["staging"]["version"] == 1, got)
    check(got["hostnames"] == ["www.reads.example.com"] and got["version"] == 2, got)
    # The certificate lists the property that uses it.
    c = expect(S.get("/v1/certificates/" + cert, token=KEY), 200).json
    check(c["property_ids"] == [p.json["id"]], c)
    # Not found, and not the tenant's: 404 problem, as before.
    expect(S.get("/v1/properties/00000000-0000-4000-8000-000000000000", token=KEY), 404)
    _, other = S.new_tenant("other")
    expect(S.get(path, token=other), 404)
    expect(S.get("/v1/certificates/" + cert, token=other), 404)


if __name__ == "__main__":
    try:
        run(globals())
    finally:
        S.cleanup()
