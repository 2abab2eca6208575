-- 023: notification channels beyond webhooks (issue 14, part 5): email
-- addresses (sent through SMTP) and Slack-compatible incoming webhooks.
-- A channel is a row of webhooks with a kind other than 'webhook', so one
-- outbox serves all of them: fan-out, deliveries, attempts, the retry
-- schedule, disabling and pruning are the webhooks' own (db/webhooks.c,
-- server/webhook_delivery.c), only the send function differs per kind.
-- kind: 'webhook' (/v1/webhooks), 'email' (url holds the address, secret
-- the sealed one-time verification token), 'slack' (url the incoming-
-- webhook URL). verified_at: when an email address was verified; only a
-- verified address is fanned out to (the others get nothing but their
-- verification mail). The /v1/webhooks endpoints see kind 'webhook' only.
ALTER TABLE webhooks ADD COLUMN kind TEXT NOT NULL DEFAULT 'webhook'
    CHECK (kind IN ('webhook', 'email', 'slack'));
ALTER TABLE webhooks ADD COLUMN verified_at INTEGER;
CREATE INDEX webhooks_tenant_kind ON webhooks(tenant_id, kind, seq);
