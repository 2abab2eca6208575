-- 008: the scheduler's "next attention" time per certificate, stored and
-- indexed, so that finding due renewals is one index range scan
-- (next_attention_at <= now ORDER BY next_attention_at LIMIT n) whose cost
-- does not grow with the certificates that are not due.
--
-- NULL = nothing for the scheduler to do: not a server certificate, no
-- auto_renew, no current version, an order in flight, not carried by the
-- latest production deployment of a property with renew automation (of the
-- same tenant), or a renewal moment (backoff included) at or after the
-- version's expiry. Otherwise: the later of the stored renew_after (the
-- lifecycle rule or an ARI moment; the version's not_before when a row has
-- none, so the scheduler computes and stores it) and the failure backoff
-- next_attempt_at.
--
-- The rule lives in one place, the view certificate_attention; the triggers
-- below re-evaluate it for the certificates a change touches, inside the
-- statement (so the same transaction) that makes the change: a version
-- added, renew_after / backoff / auto_renew / version changed, an order
-- started or finished, a deployment added or removed (the certificate it
-- carries and the one it replaced), renew automation toggled.
-- The scheduler re-checks each candidate by id before it starts an order,
-- and sets next_attention_at itself only to defer a candidate (db/orders.c).

ALTER TABLE certificates ADD COLUMN next_attention_at INTEGER;

CREATE INDEX certificates_attention ON certificates(next_attention_at)
    WHERE next_attention_at IS NOT NULL;

-- Which certificates a deployment carries (the view and the triggers look
-- deployments up by certificate).
CREATE INDEX deployments_certificate ON deployments(certificate_id)
    WHERE certificate_id IS NOT NULL;

-- Finished jobs are pruned after job_retention_days (server/workers.c).
CREATE INDEX jobs_finished ON jobs(updated_at) WHERE state IN ('done', 'failed');
-- Finished webhook deliveries (and their attempts, by cascade) likewise.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries(updated_at)
    WHERE state IN ('delivered', 'failed');
-- Auto-renewing certificates whose renewal is failing: the scheduler's
-- give-up check (db_renewal_give_up_expired) reads only these.
CREATE INDEX certificates_failing ON certificates(failure_count)
    WHERE failure_count > 0 AND status != 'failed';

CREATE VIEW certificate_attention AS
SELECT c.id AS id,
       CASE WHEN c.type = 'server' AND c.auto_renew != 'none'
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.certificate_id = c.id
                             AND o.status IN ('pending', 'validating', 'issuing'))
             AND EXISTS (SELECT 1 FROM deployments d JOIN properties p ON p.id = d.property_id
                         WHERE d.certificate_id = c.id AND d.environment = 'production'
                         AND p.tenant_id = c.tenant_id AND p.certificate_renew_automation = 1
                         AND d.seq = (SELECT max(d2.seq) FROM deployments d2
                                      WHERE d2.property_id = d.property_id
                                      AND d2.environment = 'production'))
             AND max(coalesce(c.renew_after, v.not_before), coalesce(c.next_attempt_at, 0))
                 < v.not_after
            THEN max(coalesce(c.renew_after, v.not_before), coalesce(c.next_attempt_at, 0))
       END AS at
FROM certificates c
LEFT JOIN certificate_versions v ON v.certificate_id = c.id AND v.version = c.version;

-- Backfill every existing row.
UPDATE certificates SET next_attention_at =
    (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id);

CREATE TRIGGER attention_certificate_insert AFTER INSERT ON certificates
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = NEW.id) WHERE id = NEW.id;
END;

-- next_attention_at is not in the column list: the trigger never re-fires
-- itself (and recursive_triggers is off).
CREATE TRIGGER attention_certificate_update
AFTER UPDATE OF type, auto_renew, version, renew_after, next_attempt_at, tenant_id
ON certificates
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = NEW.id) WHERE id = NEW.id;
END;

CREATE TRIGGER attention_version_insert AFTER INSERT ON certificate_versions
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = NEW.certificate_id)
    WHERE id = NEW.certificate_id;
END;

CREATE TRIGGER attention_order_insert AFTER INSERT ON orders
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = NEW.certificate_id)
    WHERE id = NEW.certificate_id;
END;

CREATE TRIGGER attention_order_status AFTER UPDATE OF status ON orders
WHEN OLD.status IS NOT NEW.status
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = NEW.certificate_id)
    WHERE id = NEW.certificate_id;
END;

CREATE TRIGGER attention_order_delete AFTER DELETE ON orders
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = OLD.certificate_id)
    WHERE id = OLD.certificate_id;
END;

-- A new production deployment carries NEW.certificate_id and stops carrying
-- the certificate of the deployment it replaced (detached).
CREATE TRIGGER attention_deployment_insert AFTER INSERT ON deployments
WHEN NEW.environment = 'production'
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id)
    WHERE id = NEW.certificate_id
       OR id = (SELECT d.certificate_id FROM deployments d
                WHERE d.property_id = NEW.property_id AND d.environment = 'production'
                AND d.seq < NEW.seq ORDER BY d.seq DESC LIMIT 1);
END;

-- A deployment removed (its property deleted): the certificate it carried
-- and the one of the deployment that is latest again.
CREATE TRIGGER attention_deployment_delete AFTER DELETE ON deployments
WHEN OLD.environment = 'production'
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id)
    WHERE id = OLD.certificate_id
       OR id = (SELECT d.certificate_id FROM deployments d
                WHERE d.property_id = OLD.property_id AND d.environment = 'production'
                ORDER BY d.seq DESC LIMIT 1);
END;

CREATE TRIGGER attention_property_automation
AFTER UPDATE OF certificate_renew_automation, tenant_id ON properties
BEGIN
    UPDATE certificates SET next_attention_at =
        (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id)
    WHERE id = (SELECT d.certificate_id FROM deployments d
                WHERE d.property_id = NEW.id AND d.environment = 'production'
                ORDER BY d.seq DESC LIMIT 1);
END;
