-- 003: callback-URL endpoints (webhooks), their deliveries and every
-- delivery attempt, and the record of expiry reminders already sent.
--
-- A delivery is one event for one endpoint; it is created in the same
-- transaction as the event (outbox) together with a durable
-- "webhook_delivery" job that sends it. Its state is pending until a 2xx
-- answer (delivered) or until the retry schedule is exhausted (failed).

CREATE TABLE webhooks (
    seq                  INTEGER PRIMARY KEY,
    id                   TEXT NOT NULL UNIQUE,
    tenant_id            TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    url                  TEXT NOT NULL,
    events               TEXT NOT NULL DEFAULT '["*"]',  -- JSON array of types or ["*"]
    description          TEXT NOT NULL DEFAULT '',
    enabled              INTEGER NOT NULL DEFAULT 1,
    disabled_reason      TEXT,                            -- why it was disabled (shown to the tenant)
    secret               TEXT NOT NULL,                   -- sealed, aad "webhooks:<id>"
    failed_deliveries    INTEGER NOT NULL DEFAULT 0,      -- consecutive failed deliveries
    failing_since        INTEGER,                         -- first failed attempt since the last success
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant_id, seq);

CREATE TABLE webhook_deliveries (
    seq              INTEGER PRIMARY KEY,
    id               TEXT NOT NULL UNIQUE,
    tenant_id        TEXT NOT NULL,
    webhook_id       TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event_id         TEXT NOT NULL,                       -- also the webhook-id header
    event_type       TEXT NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER,                             -- pending: when the next attempt runs
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries(webhook_id, seq);

CREATE TABLE webhook_attempts (
    seq          INTEGER PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES webhook_deliveries(id) ON DELETE CASCADE,
    attempt      INTEGER NOT NULL,                        -- 1-based
    status_code  INTEGER,                                 -- NULL: no HTTP answer
    latency_ms   INTEGER NOT NULL,
    error        TEXT,                                    -- NULL on success
    created_at   INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, seq);

-- Expiry reminders sent: one row per certificate version and threshold
-- (days = 30, 14, 7, 1 for certificate.expiring; 0 for certificate.expired),
-- so each is sent at most once even across restarts.
CREATE TABLE certificate_reminders (
    certificate_id  TEXT NOT NULL,
    version         INTEGER NOT NULL,
    days            INTEGER NOT NULL,
    tenant_id       TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (certificate_id, version, days)
);
