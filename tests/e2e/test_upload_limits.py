"""test_upload_limits.py - the upload limits of POST /v1/certificates
(source "upload"), each a 422 naming the field:

- at most 100 subjectAltName entries ("certificate"),
- a chain of at most 10 certificates besides the leaf, whether given in
  "chain" or bundled after the leaf in "certificate" ("chain"),
- no MD5 or SHA-1 signature on the leaf ("certificate") or in the chain
  ("chain"),
- no CA certificate (basicConstraints CA:TRUE) uploaded as type "server",
  the default ("certificate"); the same certificate is fine as type "ca",
- no encrypted private key whose key derivation would pin a thread for
  minutes (PBKDF2 with 2^31 iterations: refused at once, "private_key").

The limits at their edge (100 SANs, 10 chain certificates) are accepted.
While one tenant keeps sending refused uploads, another tenant's reads stay
within 2x their idle latency and its certificates are unchanged.
Every certificate here is made by the `openssl` command in the test.
"""
import base64
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Server, check, expect, field_error, run  # noqa: E402

TMP = tempfile.mkdtemp(prefix="cp-upload-limits-")
S = None
A = {}  # the tenant that uploads
B = {}  # the bystander


def sh(*args):
    p = subprocess.run(list(args), capture_output=True, text=True, cwd=TMP, timeout=60)
    check(p.returncode == 0, "%s failed: %s%s" % (" ".join(args), p.stdout, p.stderr))
    return p.stdout


def read(name):
    with open(os.path.join(TMP, name)) as f:
        return f.read()


def write(name, text):
    with open(os.path.join(TMP, name), "w") as f:
        f.write(text)


def self_signed(name, sans, md="-sha256", key="ec", ext=None):
    """A self-signed certificate name.crt / name.key with the given SANs."""
    newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if key == "ec" else \
        ["-newkey", "rsa:2048"]
    args = ["openssl", "req", "-x509"] + newkey + [
        "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "30", md,
        "-subj", "/CN=%s" % sans[0], "-addext",
        "subjectAltName=" + ",".join("DNS:" + s for s in sans)]
    # `openssl req -x509` makes a CA:TRUE certificate unless told otherwise.
    for e in ext or ["basicConstraints=critical,CA:FALSE"]:
        args += ["-addext", e]
    sh(*args)


def signed_by(name, issuer, ca=False, md="-sha256", san=None):
    """name.crt signed by issuer.crt/issuer.key (a CA when ca)."""
    sh("openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + (san or name))
    write(name + ".ext", ("basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
                          if ca else "basicConstraints=CA:FALSE\nsubjectAltName=DNS:%s\n" % san))
    sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", issuer + ".crt", "-CAkey",
       issuer + ".key", "-CAcreateserial", "-out", name + ".crt", "-days", "30", md,
       "-extfile", name + ".ext")


def make_fixtures():
    self_signed("sans100", ["s%d.example.com" % i for i in range(100)])
    self_signed("sans101", ["s%d.example.com" % i for i in range(101)])
    self_signed("sha1", ["sha1.example.com"], md="-sha1")
    self_signed("md5", ["md5.example.com"], md="-md5", key="rsa")
    self_signed("ca", ["ca.example.com"], ext=["basicConstraints=critical,CA:TRUE",
                                                "keyUsage=critical,keyCertSign"])
    # root -> i1 -> ... -> i11 -> leaf: 11 certificates above the leaf.
    self_signed("i0", ["root.example.com"], ext=["basicConstraints=critical,CA:TRUE",
                                                  "keyUsage=critical,keyCertSign"])
    for i in range(1, 12):
        signed_by("i%d" % i, "i%d" % (i - 1), ca=True)
    signed_by("leaf", "i11", san="leaf.example.com")
    # an intermediate signed with SHA-1 under a SHA-256 leaf
    signed_by("weak-inter", "i0", ca=True, md="-sha1")
    signed_by("weak-leaf", "weak-inter", san="weak.example.com")


def der_tree(b, i=0):
    """Parse DER into [tag, bytes | [children]] (enough for PKCS#8)."""
    t, n = b[i], b[i + 1]
    i += 2
    if n & 0x80:
        k = n & 0x7f
        n = int.from_bytes(b[i:i + k], "big")
        i += k
    v = b[i:i + n]
    if t & 0x20:
        kids, j = [], 0
        while j < len(v):
            kid, j = der_tree(v, j)
            kids.append(kid)
        return [t, kids], i + n
    return [t, v], i + n


def der_bytes(node):
    t, v = node
    body = b"".join(der_bytes(k) for k in v) if isinstance(v, list) else v
    n = len(body)
    if n < 128:
        head = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        head = bytes([0x80 | len(nb)]) + nb
    return bytes([t]) + head + body


def set_integer(node, old, new):
    """Replace the first INTEGER equal to old with new; True if found."""
    t, v = node
    if t == 2 and int.from_bytes(v, "big") == old:
        node[1] = new.to_bytes(4, "big")
        return True
    return isinstance(v, list) and any(set_integer(k, old, new) for k in v)


def costly_encrypted_key(keyfile, iterations):
    """keyfile as encrypted PKCS#8 (passphrase "pw") claiming `iterations`
    PBKDF2 iterations: made with 2048 by openssl, then the count rewritten."""
    sh("openssl", "pkcs8", "-topk8", "-in", keyfile, "-v2", "aes-256-cbc", "-iter", "2048",
       "-passout", "pass:pw", "-outform", "DER", "-out", "costly.der")
    with open(os.path.join(TMP, "costly.der"), "rb") as f:
        tree, _ = der_tree(f.read())
    check(set_integer(tree, 2048, iterations), "PBKDF2 iteration count found")
    der = der_bytes(tree)
    with open(os.path.join(TMP, "costly-patched.der"), "wb") as f:
        f.write(der)
    b64 = base64.b64encode(der).decode()
    return ("-----BEGIN ENCRYPTED PRIVATE KEY-----\n" +
            "\n".join(b64[i:i + 64] for i in range(0, len(b64), 64)) +
            "\n-----END ENCRYPTED PRIVATE KEY-----\n")


def upload(token, name, cert, key, status, **extra):
    body = {"source": "upload", "name": name, "certificate": cert, "private_key": key}
    body.update(extra)
    return expect(S.post("/v1/certificates", body, token=token), status, name)


def chain_of(n):
    """i11, i10, ... : the n certificates nearest the leaf, leaf-side first."""
    return "".join(read("i%d.crt" % i) for i in range(11, 11 - n, -1))


def setup():
    global S
    make_fixtures()
    S = Server()
    S.start()
    A["id"], A["key"] = S.new_tenant("uploader")
    B["id"], B["key"] = S.new_tenant("bystander")


def test_sans_limit():
    ka = A["key"]
    c = upload(ka, "sans100", read("sans100.crt"), read("sans100.key"), 201).json
    check(len(c["sans"]) == 100, c.get("sans"))
    r = upload(ka, "sans101", read("sans101.crt"), read("sans101.key"), 422)
    check(field_error(r, "certificate") and "100 subjectAltName" in r.text, r)


def test_chain_limit():
    ka = A["key"]
    upload(ka, "chain10", read("leaf.crt"), read("leaf.key"), 201, chain=chain_of(10))
    r = upload(ka, "chain11", read("leaf.crt"), read("leaf.key"), 422, chain=chain_of(11))
    check(field_error(r, "chain") and "more than 10" in r.text, r)
    # The same eleven bundled after the leaf in "certificate".
    r = upload(ka, "bundle11", read("leaf.crt") + chain_of(11), read("leaf.key"), 422)
    check(field_error(r, "chain") and "more than 10" in r.text, r)
    # Split between both fields: 6 bundled + 5 in chain is still 11.
    r = upload(ka, "split11", read("leaf.crt") + chain_of(6), read("leaf.key"), 422,
               chain="".join(read("i%d.crt" % i) for i in range(5, 0, -1)))
    check(field_error(r, "chain"), r)


def test_weak_signatures():
    ka = A["key"]
    for name in ("sha1", "md5"):
        text = sh("openssl", "x509", "-noout", "-text", "-in", name + ".crt")
        check(("sha1With" in text or "ecdsa-with-SHA1" in text) if name == "sha1"
              else "md5WithRSAEncryption" in text, "fixture really is %s-signed" % name)
        r = upload(ka, name, read(name + ".crt"), read(name + ".key"), 422)
        check(field_error(r, "certificate") and "MD5 or SHA-1" in r.text, r)
    r = upload(ka, "weak-chain", read("weak-leaf.crt"), read("weak-leaf.key"), 422,
               chain=read("weak-inter.crt"))
    check(field_error(r, "chain") and "MD5 or SHA-1" in r.text, r)


def test_ca_as_server():
    ka = A["key"]
    r = upload(ka, "ca-default", read("ca.crt"), read("ca.key"), 422)
    check(field_error(r, "certificate") and "CA certificate" in r.text, r)
    r = upload(ka, "ca-server", read("ca.crt"), read("ca.key"), 422, type="server")
    check(field_error(r, "certificate") and 'with type "ca"' in r.json["errors"][0]["message"], r)
    c = upload(ka, "ca-as-ca", read("ca.crt"), read("ca.key"), 201, type="ca").json
    check(c["type"] == "ca", c)


def test_costly_encrypted_key():
    ka = A["key"]
    key = costly_encrypted_key("sans100.key", 2**31 - 1)
    text = sh("openssl", "asn1parse", "-in", "costly-patched.der", "-inform", "DER")
    check("7FFFFFFF" in text, "the fixture really claims 2^31-1 iterations")
    t0 = time.monotonic()
    r = upload(ka, "costly", read("sans100.crt"), key, 422, passphrase="pw")
    took = time.monotonic() - t0
    check(field_error(r, "private_key") and "too costly" in r.text, r)
    check(took < 2, "refused in %.1f s, not after deriving the key" % took)
    # The same key with its real 2048 iterations is accepted.
    sh("openssl", "pkcs8", "-topk8", "-in", "sans100.key", "-v2", "aes-256-cbc", "-iter", "2048",
       "-passout", "pass:pw", "-out", "cheap.pem")
    upload(ka, "cheap", read("sans100.crt"), read("cheap.pem"), 201, passphrase="pw")


def test_nothing_stored_for_refusals():
    names = sorted(c["name"] for c in S.list_all("/v1/certificates", token=A["key"]))
    check(names == ["ca-as-ca", "chain10", "cheap", "sans100"], names)


def latencies(token, n=40):
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        expect(S.get("/v1/certificates", token=token), 200)
        out.append(time.monotonic() - t0)
    return out


def attack(port, token, bodies, ready, stop, report):
    """The attacker, in its own process: a Python thread beside the
    bystander's would make the bystander wait for the GIL (5 ms switch
    interval), which measures the test, not the server. Bodies come
    encoded, so the loop is the server's work."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    sent, bad = 0, []
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    ready.set()
    while not stop.is_set():
        for body in bodies:
            c.request("POST", "/v1/certificates", body, headers)
            r = c.getresponse()
            r.read()
            if r.status != 422:
                bad.append(r.status)
            sent += 1
    c.close()
    report.put((sent, bad[:3]))


def test_bystander_unaffected():
    kb = B["key"]
    mine = upload(kb, "mine", read("sans100.crt"), read("sans100.key"), 201).json
    before = expect(S.get("/v1/certificates/" + mine["id"], token=kb), 200).json
    bodies = [json.dumps({"source": "upload", "name": "x", "certificate": cert,
                          "private_key": key}).encode()
              for cert, key in ((read("sans101.crt"), read("sans101.key")),
                                (read("leaf.crt") + chain_of(11), read("leaf.key")),
                                (read("md5.crt"), read("md5.key")),
                                (read("ca.crt"), read("ca.key")))]
    latencies(kb, 5)  # warm up
    idle = latencies(kb)
    ctx = multiprocessing.get_context("fork")
    ready, stop, report = ctx.Event(), ctx.Event(), ctx.Queue()
    p = ctx.Process(target=attack, args=(S.port, A["key"], bodies, ready, stop, report),
                    daemon=True)
    p.start()
    try:
        check(ready.wait(30), "the attacker did not start")
        time.sleep(0.3)
        during = latencies(kb)
    finally:
        stop.set()
        sent, bad = report.get(timeout=30)
        p.join(30)
    idle += latencies(kb)  # idle brackets the attack: before and after, same machine
    idle_p50, p50 = statistics.median(idle), statistics.median(during)
    print("  bystander p50 %.2f ms idle, %.2f ms while %d refused uploads went by"
          % (idle_p50 * 1e3, p50 * 1e3, sent))
    check(sent > 10, "the attacker got through only %d uploads" % sent)
    check(bad == [], "attacker uploads not refused with 422: %r" % bad)
    # 2x idle, with a 2 ms floor: the attacker's client and the server's
    # upload thread share the machine's 2 cores with the bystander.
    check(p50 <= 2 * idle_p50 + 0.002, "bystander median %.2f ms under attack, %.2f ms idle"
          % (p50 * 1e3, idle_p50 * 1e3))
    after = expect(S.get("/v1/certificates/" + mine["id"], token=kb), 200).json
    check(after == before, "bystander's certificate changed")
    names = [c["name"] for c in S.list_all("/v1/certificates", token=kb)]
    check(names == ["mine"], names)


def teardown():
    if S:
        S.cleanup()


if __name__ == "__main__":
    try:
        setup()
        run(globals())
    finally:
        teardown()
