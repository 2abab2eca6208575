"""test_metrics.py - GET /metrics: who may scrape it, the Prometheus text
format, and that the counters move with the traffic they count."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Server, check, expect, run  # noqa: E402

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*)?\})? (-?[0-9.e+-]+|\+Inf|NaN)$')


def parse(text):
    """Prometheus text -> {(name, frozenset(labels)): value}; checks every line."""
    out, typed = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            check(kind in ("counter", "gauge", "histogram"), line)
            check(name not in typed, "TYPE twice: " + line)
            typed[name] = kind
            continue
        m = SAMPLE.match(line)
        check(m, "not a Prometheus sample line: %r" % line)
        name, labels = m.group(1), m.group(3) or ""
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in typed or base in typed, "sample without TYPE: " + line)
        lab = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', labels))
        check((name, lab) not in out, "duplicate series: " + line)
        out[(name, lab)] = float(m.group(4).replace("+Inf", "inf"))
    return out


def value(samples, name, **labels):
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


srv = None


def setup():
    global srv
    srv = Server().start()


def test_metrics_needs_the_operator_by_default():
    expect(srv.get("/metrics", auth=False), 401)
    tid, key = srv.new_tenant("m")
    expect(srv.get("/metrics", token=key), 403)
    r = expect(srv.get("/metrics"), 200)
    check(r.header("content-type").startswith("text/plain; version=0.0.4"), r.headers)


def test_text_format_and_request_counters():
    before = parse(srv.get("/metrics").text)
    for _ in range(3):
        expect(srv.get("/v1/tenants"), 200)
    expect(srv.get("/no/such/route"), 404)
    expect(srv.request("PUT", "/v1/tenants"), 405)
    s = parse(srv.get("/metrics").text)
    d = (value(s, "certplane_http_requests_total", route="/v1/tenants", method="GET", status="200")
         - value(before, "certplane_http_requests_total", route="/v1/tenants", method="GET", status="200"))
    check(d == 3, "3 GET /v1/tenants counted, got %s" % d)
    check(value(s, "certplane_http_requests_total", route="unmatched", status="404") >= 1)
    check(value(s, "certplane_http_requests_total", route="unmatched", method="PUT", status="405") == 1)
    # histogram: cumulative buckets ending in +Inf == count
    buckets = sorted(((float(dict(lab)["le"].replace("+Inf", "inf")), v) for (n, lab), v in s.items()
                      if n == "certplane_http_request_duration_seconds_bucket"
                      and dict(lab)["route"] == "/v1/tenants" and dict(lab)["method"] == "GET"))
    check(buckets and buckets[-1][0] == float("inf"), buckets)
    check(all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), "buckets are cumulative")
    cnt = value(s, "certplane_http_request_duration_seconds_count", route="/v1/tenants", method="GET")
    check(buckets[-1][1] == cnt and cnt >= 3, (buckets[-1], cnt))
    check(("certplane_schema_version", frozenset()) in s)
    check(value(s, "process_resident_memory_bytes") > 1e6)


def test_db_gauges_follow_the_schema():
    text = srv.get("/metrics").text
    for fam in ("certplane_jobs", "certplane_orders", "certplane_certificates",
                "certplane_webhook_deliveries", "certplane_certificate_soonest_expiry_seconds"):
        check("# TYPE %s gauge" % fam in text, fam)
    # a self-signed certificate (when that capability exists) shows up by
    # status and sets the soonest expiry
    tid, key = srv.new_tenant("certs")
    r = srv.post("/v1/certificates", {"source": "self_signed", "name": "m", "hostnames": ["m.example.com"],
                                      "validity_days": 30}, token=key)
    if r.status == 404 and "no such route" in r.text:
        print("SKIP certificate gauges: POST /v1/certificates does not exist yet")
        return
    expect(r, 201)
    s = parse(srv.get("/metrics").text)
    check(value(s, "certplane_certificates", status="active") >= 1, s)
    soon = value(s, "certplane_certificate_soonest_expiry_seconds")
    check(20 * 86400 < soon <= 30 * 86400 + 60, soon)


def test_metrics_public_needs_no_key():
    pub = Server(env={"CERTPLANE_METRICS_PUBLIC": "true"}).start()
    try:
        r = expect(pub.get("/metrics", auth=False), 200)
        check("certplane_http_requests_total" in r.text)
        # the rest of the API still needs a key
        expect(pub.get("/v1/tenants", auth=False), 401)
    finally:
        pub.cleanup()


def test_concurrent_counting_loses_nothing():
    import threading
    import http.client

    before = value(parse(srv.get("/metrics").text), "certplane_http_requests_total",
                   route="/healthz", status="200")

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        for _ in range(200):
            c.request("GET", "/healthz")
            c.getresponse().read()
        c.close()
    ts = [threading.Thread(target=worker) for _ in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    after = value(parse(srv.get("/metrics").text), "certplane_http_requests_total",
                  route="/healthz", status="200")
    check(after - before == 800, "800 requests counted, got %s" % (after - before))


def test_teardown():
    srv.cleanup()


setup()
run(globals())
