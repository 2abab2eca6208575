-- pg/023: migrations/023_notification_channels.sql for PostgreSQL (same
-- columns, constraint and index): notification channels are rows of
-- webhooks with a kind other than 'webhook'.
ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook'
    CHECK (kind IN ('webhook', 'email', 'slack'));
ALTER TABLE webhooks ADD COLUMN verified_at BIGINT;
CREATE INDEX webhooks_tenant_kind ON webhooks(tenant_id, kind, seq);
