-- 012: lists, filters and GET /metrics at a million certificates (issue 10):
-- every list filter is an index range, and the metrics read maintained
-- counters and index ranges instead of grouping whole tables.
--
-- certificates.not_after: the not_after of the current version (NULL while
-- there is none), kept by the triggers below from certificate_versions, so
-- that the derived status (lifecycle.h LIFECYCLE_STATUS_SQL: "expired" is a
-- current version past its not_after, unless failed) and the expiry filter
-- are read from the certificate row and its indexes alone.

ALTER TABLE certificates ADD COLUMN not_after INTEGER;

UPDATE certificates SET not_after =
    (SELECT v.not_after FROM certificate_versions v
     WHERE v.certificate_id = certificates.id AND v.version = certificates.version);

-- The version becomes current by the UPDATE of certificates.version that
-- follows its insert (db_certificate_add_prepared); the insert trigger
-- covers a writer that sets the version first.
CREATE TRIGGER not_after_certificate_version AFTER UPDATE OF version ON certificates
BEGIN
    UPDATE certificates SET not_after =
        (SELECT v.not_after FROM certificate_versions v
         WHERE v.certificate_id = NEW.id AND v.version = NEW.version)
    WHERE id = NEW.id;
END;

CREATE TRIGGER not_after_version_insert AFTER INSERT ON certificate_versions
BEGIN
    UPDATE certificates SET not_after = NEW.not_after
    WHERE id = NEW.certificate_id AND version = NEW.version;
END;

-- Versions are written once; a writer that corrects one's not_after in
-- place (tests, repairs) keeps the copy right too.
CREATE TRIGGER not_after_version_update AFTER UPDATE OF not_after ON certificate_versions
BEGIN
    UPDATE certificates SET not_after = NEW.not_after
    WHERE id = NEW.certificate_id AND version = NEW.version;
END;

-- Lists of one tenant (db_certificate_list), in seq order (the cursor):
--   no filter / expiring walk: certificates_tenant_seq, covering for the
--     expiry condition (it replaces certificates_tenant, same order);
--   expiring_within_days, status=expired: certificates_tenant_expiry range;
--   status=pending|active|renewing|failed: certificates_tenant_status range
--     (rowid order inside one status).
DROP INDEX certificates_tenant;
CREATE INDEX certificates_tenant_seq ON certificates(tenant_id, seq, not_after);
CREATE INDEX certificates_tenant_expiry ON certificates(tenant_id, not_after);
CREATE INDEX certificates_tenant_status ON certificates(tenant_id, status);
-- GET /metrics: expired per stored status, the soonest expiry.
CREATE INDEX certificates_status_expiry ON certificates(status, not_after);

-- The names a certificate answers for, for ?hostname=: the SANs of its
-- current version, or the requested hostnames before the first one
-- (coalesce(v.sans, c.hostnames), as the filter always read them). One
-- b-tree keyed by tenant and name; kept by the triggers below.
CREATE TABLE certificate_names (
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    cert_seq  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, cert_seq)
) WITHOUT ROWID;

INSERT OR IGNORE INTO certificate_names (tenant_id, name, cert_seq)
SELECT c.tenant_id, j.value, c.seq
FROM certificates c
LEFT JOIN certificate_versions v ON v.certificate_id = c.id AND v.version = c.version,
     json_each(coalesce(v.sans, c.hostnames)) j
WHERE j.type = 'text';

CREATE TRIGGER names_certificate_insert AFTER INSERT ON certificates
BEGIN
    INSERT OR IGNORE INTO certificate_names (tenant_id, name, cert_seq)
    SELECT NEW.tenant_id, j.value, NEW.seq FROM json_each(
        coalesce((SELECT v.sans FROM certificate_versions v
                  WHERE v.certificate_id = NEW.id AND v.version = NEW.version),
                 NEW.hostnames)) j
    WHERE j.type = 'text';
END;

-- The old names are deleted by key (the old version's SANs are still
-- stored), then the new ones inserted.
CREATE TRIGGER names_certificate_update AFTER UPDATE OF version, hostnames, tenant_id
ON certificates
BEGIN
    DELETE FROM certificate_names WHERE tenant_id = OLD.tenant_id AND cert_seq = OLD.seq
    AND name IN (SELECT j.value FROM json_each(
        coalesce((SELECT v.sans FROM certificate_versions v
                  WHERE v.certificate_id = OLD.id AND v.version = OLD.version),
                 OLD.hostnames)) j);
    INSERT OR IGNORE INTO certificate_names (tenant_id, name, cert_seq)
    SELECT NEW.tenant_id, j.value, NEW.seq FROM json_each(
        coalesce((SELECT v.sans FROM certificate_versions v
                  WHERE v.certificate_id = NEW.id AND v.version = NEW.version),
                 NEW.hostnames)) j
    WHERE j.type = 'text';
END;

-- BEFORE: the versions (deleted by cascade) still hold the SANs.
CREATE TRIGGER names_certificate_delete BEFORE DELETE ON certificates
BEGIN
    DELETE FROM certificate_names WHERE tenant_id = OLD.tenant_id AND cert_seq = OLD.seq
    AND name IN (SELECT j.value FROM json_each(
        coalesce((SELECT v.sans FROM certificate_versions v
                  WHERE v.certificate_id = OLD.id AND v.version = OLD.version),
                 OLD.hostnames)) j);
END;

-- Counts behind GET /metrics, kept by triggers in the transaction of every
-- change: certificates by stored status, orders by status, webhook
-- deliveries by state, jobs by kind and state. (family, k1, k2) -> n; a
-- row that drops to 0 stays (a gauge at 0).
CREATE TABLE metric_counts (
    family TEXT NOT NULL,
    k1     TEXT NOT NULL,
    k2     TEXT NOT NULL DEFAULT '',
    n      INTEGER NOT NULL,
    PRIMARY KEY (family, k1, k2)
) WITHOUT ROWID;

INSERT INTO metric_counts (family, k1, n)
SELECT 'certificates', status, count(*) FROM certificates GROUP BY status;
INSERT INTO metric_counts (family, k1, n)
SELECT 'orders', status, count(*) FROM orders GROUP BY status;
INSERT INTO metric_counts (family, k1, n)
SELECT 'webhook_deliveries', state, count(*) FROM webhook_deliveries GROUP BY state;
INSERT INTO metric_counts (family, k1, k2, n)
SELECT 'jobs', kind, state, count(*) FROM jobs GROUP BY kind, state;

CREATE TRIGGER counts_certificate_insert AFTER INSERT ON certificates
BEGIN
    INSERT INTO metric_counts (family, k1, n) VALUES ('certificates', NEW.status, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_certificate_update AFTER UPDATE OF status ON certificates
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'certificates' AND k1 = OLD.status AND k2 = '';
    INSERT INTO metric_counts (family, k1, n) VALUES ('certificates', NEW.status, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_certificate_delete AFTER DELETE ON certificates
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'certificates' AND k1 = OLD.status AND k2 = '';
END;

CREATE TRIGGER counts_order_insert AFTER INSERT ON orders
BEGIN
    INSERT INTO metric_counts (family, k1, n) VALUES ('orders', NEW.status, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_order_update AFTER UPDATE OF status ON orders
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'orders' AND k1 = OLD.status AND k2 = '';
    INSERT INTO metric_counts (family, k1, n) VALUES ('orders', NEW.status, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_order_delete AFTER DELETE ON orders
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'orders' AND k1 = OLD.status AND k2 = '';
END;

CREATE TRIGGER counts_delivery_insert AFTER INSERT ON webhook_deliveries
BEGIN
    INSERT INTO metric_counts (family, k1, n) VALUES ('webhook_deliveries', NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_delivery_update AFTER UPDATE OF state ON webhook_deliveries
WHEN OLD.state IS NOT NEW.state
BEGIN
    UPDATE metric_counts SET n = n - 1
    WHERE family = 'webhook_deliveries' AND k1 = OLD.state AND k2 = '';
    INSERT INTO metric_counts (family, k1, n) VALUES ('webhook_deliveries', NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_delivery_delete AFTER DELETE ON webhook_deliveries
BEGIN
    UPDATE metric_counts SET n = n - 1
    WHERE family = 'webhook_deliveries' AND k1 = OLD.state AND k2 = '';
END;

CREATE TRIGGER counts_job_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO metric_counts (family, k1, k2, n) VALUES ('jobs', NEW.kind, NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_job_update AFTER UPDATE OF kind, state ON jobs
WHEN OLD.state IS NOT NEW.state OR OLD.kind IS NOT NEW.kind
BEGIN
    UPDATE metric_counts SET n = n - 1
    WHERE family = 'jobs' AND k1 = OLD.kind AND k2 = OLD.state;
    INSERT INTO metric_counts (family, k1, k2, n) VALUES ('jobs', NEW.kind, NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER counts_job_delete AFTER DELETE ON jobs
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'jobs' AND k1 = OLD.kind AND k2 = OLD.state;
END;
