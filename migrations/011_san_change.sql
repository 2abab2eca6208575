-- 011: SAN changes are orders of their own (issue 10). When the production
-- deployments (latest per property, renew automation on, same tenant) that
-- carry a certificate list a hostname set other than its current version's
-- SAN set - a hostname gained or lost - the certificate needs attention now,
-- not at its next renewal window: next_attention_at becomes 1 (the past, so
-- the scheduler's range scan next_attention_at <= now finds it at once) or
-- the failure backoff next_attempt_at when that is later.
--
-- The same rule as lifecycle_plan (lifecycle/lifecycle.h): set equality of
-- the names, whatever their order or duplicates. Only the view changes: the
-- triggers of migration 008 already re-evaluate it on every change it
-- depends on (a deployment added or removed: new hostnames; a version
-- added: new SANs; automation toggled; an order started or finished). The
-- view is evaluated by certificate id only (triggers, backfill), so the
-- json_each scans are bounded by the names of one certificate.

DROP VIEW certificate_attention;

CREATE VIEW certificate_attention AS
SELECT id, CASE WHEN eligible AND max(base, backoff) < not_after THEN max(base, backoff) END AS at
FROM (
    SELECT c.id AS id,
           (c.type = 'server' AND c.auto_renew != 'none'
            AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.certificate_id = c.id
                            AND o.status IN ('pending', 'validating', 'issuing'))
            AND EXISTS (SELECT 1 FROM deployments d JOIN properties p ON p.id = d.property_id
                        WHERE d.certificate_id = c.id AND d.environment = 'production'
                        AND p.tenant_id = c.tenant_id AND p.certificate_renew_automation = 1
                        AND d.seq = (SELECT max(d2.seq) FROM deployments d2
                                     WHERE d2.property_id = d.property_id
                                     AND d2.environment = 'production'))) AS eligible,
           CASE WHEN
               -- a carried hostname the version does not cover
               EXISTS (SELECT 1 FROM (SELECT h.value FROM deployments d JOIN properties p ON p.id = d.property_id,
                   json_each(d.hostnames) h
               WHERE d.certificate_id = c.id AND d.environment = 'production'
               AND p.tenant_id = c.tenant_id AND p.certificate_renew_automation = 1
               AND d.seq = (SELECT max(d2.seq) FROM deployments d2
                            WHERE d2.property_id = d.property_id
                            AND d2.environment = 'production')) n
                       WHERE n.value NOT IN (SELECT s.value FROM json_each(v.sans) s))
               -- a SAN that no carried hostname needs any more
               OR EXISTS (SELECT 1 FROM json_each(v.sans) s
                          WHERE s.value NOT IN (SELECT h.value FROM deployments d JOIN properties p ON p.id = d.property_id,
                   json_each(d.hostnames) h
               WHERE d.certificate_id = c.id AND d.environment = 'production'
               AND p.tenant_id = c.tenant_id AND p.certificate_renew_automation = 1
               AND d.seq = (SELECT max(d2.seq) FROM deployments d2
                            WHERE d2.property_id = d.property_id
                            AND d2.environment = 'production')))
           THEN 1 ELSE coalesce(c.renew_after, v.not_before) END AS base,
           coalesce(c.next_attempt_at, 0) AS backoff,
           v.not_after AS not_after
    FROM certificates c
    LEFT JOIN certificate_versions v ON v.certificate_id = c.id AND v.version = c.version
);

-- Re-evaluate every row under the new rule.
UPDATE certificates SET next_attention_at =
    (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id);
