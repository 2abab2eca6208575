-- 004: the ACME engine: CA accounts, and orders (durable jobs that record
-- every URL the CA gave them) with their authorizations. Renewal state
-- (failure count, next attempt) lives on certificates (002).

-- One account per configured CA ("letsencrypt" = acme_directory_url, more
-- in cas). key is sealed with aad "acme_accounts:<id>"; account_url is the
-- kid, NULL until registered (or after the CA forgot it).
CREATE TABLE acme_accounts (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    ca             TEXT NOT NULL UNIQUE,
    directory_url  TEXT NOT NULL,
    key            TEXT NOT NULL,
    account_url    TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

-- An order is a state machine run by the "acme_order" job. Every URL is
-- stored before the next step, so a restart resumes the same CA order.
-- key: the certificate key of this order (sealed, aad "orders:<id>"),
-- generated once before the CSR so a resumed order signs with the same key.
CREATE TABLE orders (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    certificate_id  TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('issue', 'renew')),
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'validating', 'issuing', 'valid',
                                      'failed', 'canceled')),
    challenge       TEXT NOT NULL CHECK (challenge IN ('http-01', 'dns-01')),
    identifiers     TEXT NOT NULL,              -- JSON array of hostnames
    ca              TEXT NOT NULL,
    key_type        TEXT NOT NULL,
    metadata        TEXT,                       -- JSON object echoed in events
    account_url     TEXT,                       -- account that owns order_url
    order_url       TEXT,
    finalize_url    TEXT,
    certificate_url TEXT,
    key             TEXT,
    error_reason    TEXT,
    error_detail    TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0, -- transient failures in a row
    next_attempt_at INTEGER,
    dns_deadline    INTEGER,                    -- DNS-01: publish by then
    verify_at       INTEGER,                    -- last POST /verify
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    completed_at    INTEGER
);
CREATE INDEX orders_tenant ON orders(tenant_id, seq);
CREATE INDEX orders_certificate ON orders(certificate_id, seq);
-- At most one order in flight per certificate.
CREATE UNIQUE INDEX orders_in_flight ON orders(certificate_id)
    WHERE status IN ('pending', 'validating', 'issuing');

CREATE TABLE order_authorizations (
    order_id          TEXT NOT NULL REFERENCES orders(id) ON DELETE CASCADE,
    position          INTEGER NOT NULL,
    url               TEXT NOT NULL,
    identifier        TEXT,                     -- as the CA shows it ("*.x" for wildcards)
    status            TEXT NOT NULL DEFAULT 'pending',
    challenge_type    TEXT,
    challenge_url     TEXT,
    token             TEXT,
    key_authorization TEXT,                     -- HTTP-01 body (public by design)
    txt_record_name   TEXT,
    txt_record_value  TEXT,
    expires_at        INTEGER,
    notified          INTEGER NOT NULL DEFAULT 0, -- dns_challenge_required sent
    responded         INTEGER NOT NULL DEFAULT 0, -- challenge POSTed to the CA
    completed         INTEGER NOT NULL DEFAULT 0, -- dns_challenge_completed sent
    PRIMARY KEY (order_id, position)
);
CREATE INDEX order_authorizations_token ON order_authorizations(token);
