-- 014: GET /v1/summary at a million certificates (issue 12): per-tenant
-- counts kept by triggers in the transaction of every change, so the
-- dashboard reads a handful of rows instead of counting a tenant's
-- certificates. metric_counts (012) is the same idea across all tenants.
--
-- tenant_counts (tenant_id, family, k) -> n:
--   'certificates', <stored status>: certificates by stored status (the
--     derived "expired" is time-dependent: db/summary.c subtracts an index
--     range count of the rows past not_after);
--   'failing', '': certificates whose renewal is failing (failure_count > 0);
--   'hostnames', <status>: hostname claims (property_hostnames) by status.
-- A row that drops to 0 stays.
CREATE TABLE tenant_counts (
    tenant_id TEXT NOT NULL,
    family    TEXT NOT NULL,
    k         TEXT NOT NULL DEFAULT '',
    n         INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, family, k)
) WITHOUT ROWID;

INSERT INTO tenant_counts (tenant_id, family, k, n)
SELECT tenant_id, 'certificates', status, count(*) FROM certificates GROUP BY tenant_id, status;
INSERT INTO tenant_counts (tenant_id, family, k, n)
SELECT tenant_id, 'failing', '', count(*) FROM certificates WHERE failure_count > 0
GROUP BY tenant_id;
INSERT INTO tenant_counts (tenant_id, family, k, n)
SELECT tenant_id, 'hostnames', status, count(*) FROM property_hostnames
GROUP BY tenant_id, status;

CREATE TRIGGER tenant_counts_certificate_insert AFTER INSERT ON certificates
BEGIN
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    VALUES (NEW.tenant_id, 'certificates', NEW.status, 1)
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + 1;
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    SELECT NEW.tenant_id, 'failing', '', 1 WHERE NEW.failure_count > 0
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tenant_counts_certificate_status AFTER UPDATE OF status ON certificates
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE tenant_counts SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND family = 'certificates' AND k = OLD.status;
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    VALUES (NEW.tenant_id, 'certificates', NEW.status, 1)
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tenant_counts_certificate_failing AFTER UPDATE OF failure_count ON certificates
WHEN (OLD.failure_count > 0) IS NOT (NEW.failure_count > 0)
BEGIN
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    VALUES (NEW.tenant_id, 'failing', '', CASE WHEN NEW.failure_count > 0 THEN 1 ELSE -1 END)
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + excluded.n;
END;
CREATE TRIGGER tenant_counts_certificate_delete AFTER DELETE ON certificates
BEGIN
    UPDATE tenant_counts SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND family = 'certificates' AND k = OLD.status;
    UPDATE tenant_counts SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND family = 'failing' AND k = '' AND OLD.failure_count > 0;
END;

CREATE TRIGGER tenant_counts_hostname_insert AFTER INSERT ON property_hostnames
BEGIN
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    VALUES (NEW.tenant_id, 'hostnames', NEW.status, 1)
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tenant_counts_hostname_status AFTER UPDATE OF status ON property_hostnames
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE tenant_counts SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND family = 'hostnames' AND k = OLD.status;
    INSERT INTO tenant_counts (tenant_id, family, k, n)
    VALUES (NEW.tenant_id, 'hostnames', NEW.status, 1)
    ON CONFLICT (tenant_id, family, k) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER tenant_counts_hostname_delete AFTER DELETE ON property_hostnames
BEGIN
    UPDATE tenant_counts SET n = n - 1
    WHERE tenant_id = OLD.tenant_id AND family = 'hostnames' AND k = OLD.status;
END;

-- A tenant's counts go with it (ids are never reused).
CREATE TRIGGER tenant_counts_tenant_delete AFTER DELETE ON tenants
BEGIN
    DELETE FROM tenant_counts WHERE tenant_id = OLD.id;
END;

-- The failing renewals of one tenant, latest attempt first (the summary's
-- top 5): a partial index, as small as the failures.
CREATE INDEX certificates_tenant_failing ON certificates(tenant_id, last_attempt_at)
    WHERE failure_count > 0;

-- The time-derived part of the counts: how many of a tenant's certificates
-- of one stored status are past not_after (db/summary.c count_past), an
-- index-only range count, so a fleet with many expired certificates still
-- answers in about a millisecond (certificates_tenant_expiry would read
-- every expired row). The per-tenant twin of certificates_status_expiry.
CREATE INDEX certificates_tenant_status_expiry ON certificates(tenant_id, status, not_after);
