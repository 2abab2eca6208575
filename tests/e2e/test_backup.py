"""test_backup.py - `certplane backup FILE` (VACUUM INTO) while the server
writes, and the restore procedure documented in README.md: stop the server,
replace data_dir/certplane.db with the backup, remove certplane.db-wal and
certplane.db-shm, start. The master key ring (data_dir/master.keys) is kept,
or sealed private keys could not be read.

SQLite only: the backup is SQLite's VACUUM INTO and the restore replaces the
database file; on PostgreSQL `certplane backup` refuses (pg_dump's job)."""
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, Server, check, check_backend, expect, run  # noqa: E402

SQLITE_ONLY = "VACUUM INTO backups and the file-replacing restore are SQLite's (PostgreSQL: pg_dump)"
srv = None
work = tempfile.mkdtemp(prefix="certplane-backup-")


def setup():
    global srv
    srv = Server().start()


def integrity(path):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()


def count(path, table):
    con = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        return con.execute("SELECT count(*) FROM %s" % table).fetchone()[0]
    finally:
        con.close()


state = {}


def test_backup_while_writing():
    t, key = srv.new_tenant("before-backup")
    state["tenant"], state["key"] = t, key
    r = srv.post("/v1/certificates", {"source": "self_signed", "name": "kept",
                                      "hostnames": ["kept.example.com"]}, token=key)
    if r.status != 404:
        state["cert"] = expect(r, 201).json["id"]
    acked, stop = [], threading.Event()

    def writer():
        w = Server.__new__(Server)  # a second connection to the same server
        w.__dict__.update(srv.__dict__)
        w._conn = None
        i = 0
        while not stop.is_set():
            r = w.post("/v1/tenants", {"name": "w%d" % i})
            if r.status == 201:
                acked.append((time.time(), r.json["id"]))
            i += 1
        w._close()
    th = threading.Thread(target=writer)
    th.start()
    try:
        time.sleep(0.3)
        started = time.time()
        dest = os.path.join(work, "certplane-backup.db")
        p = srv.run("backup", dest)
        check("backup written" in p.stdout, p.stdout)
        time.sleep(0.2)
    finally:
        stop.set()
        th.join()
    check(len(acked) > 20, "writes kept going during the backup: %d" % len(acked))
    check(integrity(dest) == [("ok",)], integrity(dest))
    # the copy holds every sealed secret: 0600 whatever the caller's umask
    check(stat.S_IMODE(os.stat(dest).st_mode) == 0o600, "backup is 0600: %o" % os.stat(dest).st_mode)
    loose = os.path.join(work, "loose-umask.db")
    p = subprocess.run([BIN, "backup", loose], env=srv.env, cwd=srv.data_dir, capture_output=True,
                       text=True, timeout=120, umask=0)
    check(p.returncode == 0, p)
    check(stat.S_IMODE(os.stat(loose).st_mode) == 0o600, "backup under umask 0 is 0600: %o"
          % os.stat(loose).st_mode)
    # a symlink at the destination is never followed (nor replaced)
    target = os.path.join(work, "not-a-backup")
    with open(target, "w") as f:
        f.write("keep")
    link = os.path.join(work, "link.db")
    os.symlink(target, link)
    p = srv.run("backup", link, check_rc=False)
    check(p.returncode != 0 and "exists" in p.stderr, p)
    with open(target) as f:
        check(f.read() == "keep")
    con = sqlite3.connect("file:%s?mode=ro" % dest, uri=True)
    ids = {row[0] for row in con.execute("SELECT id FROM tenants")}
    con.close()
    # everything acknowledged before the backup started is in it
    before = [i for ts, i in acked if ts < started]
    check(before and all(i in ids for i in before), "acknowledged writes missing from the backup")
    check(state["tenant"] in ids)
    state["backup"], state["backup_tenants"] = dest, ids
    # the destination must not exist: no overwriting an older backup
    p = srv.run("backup", dest, check_rc=False)
    check(p.returncode != 0 and "exists" in p.stderr, p)


def test_restore_procedure():
    after = expect(srv.post("/v1/tenants", {"name": "after-backup"}), 201).json["id"]
    srv.stop()
    db = os.path.join(srv.data_dir, "certplane.db")
    shutil.copyfile(state["backup"], db + ".restore")
    os.replace(db + ".restore", db)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(db + suffix):
            os.remove(db + suffix)
    srv.start()
    expect(srv.get("/readyz", auth=False), 200)
    expect(srv.get("/v1/tenants/" + state["tenant"]), 200)
    expect(srv.get("/v1/tenants/" + after), 404)  # written after the backup
    listed = {t["id"] for t in srv.list_all("/v1/tenants", limit=500)}
    check(listed == state["backup_tenants"], "restored tenants == tenants in the backup")
    # the tenant's key still works, and a sealed private key still opens
    expect(srv.get("/v1/audit-log", token=state["key"]), 200)
    if "cert" in state:
        r = expect(srv.get("/v1/certificates/%s/private-key" % state["cert"], token=state["key"]), 200)
        check("PRIVATE KEY" in r.text, r)
    # and the server writes on
    expect(srv.post("/v1/tenants", {"name": "after-restore"}), 201)
    srv.stop()
    srv.check_db_sound()


def test_teardown():
    srv.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    check_backend(globals())
    setup()
    run(globals())
