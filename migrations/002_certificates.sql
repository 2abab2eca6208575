-- 002: certificates and their versions.
-- A certificate is the stable object properties point at; every issuance,
-- upload or renewal adds a row to certificate_versions and moves
-- certificates.version to it. An ACME certificate exists (status 'pending')
-- before its first issuance: then version = 0 and it has no version row, so
-- every fact of the X.509 certificate lives on the version, not here.
-- Private keys are stored only sealed (AES-256-GCM, crypto_seal) with the
-- authenticated data "certificate_versions:<version id>".

CREATE TABLE certificates (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL UNIQUE,
    tenant_id         TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name              TEXT NOT NULL,
    type              TEXT NOT NULL DEFAULT 'server' CHECK (type IN ('server', 'ca')),
    source            TEXT NOT NULL CHECK (source IN ('upload', 'self_signed', 'acme')),
    -- stored status; 'expired' is derived at read time from not_after
    status            TEXT NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'active', 'renewing', 'failed')),
    auto_renew        TEXT NOT NULL DEFAULT 'none',   -- none | letsencrypt | <ca name>
    key_type          TEXT,                           -- requested key type (acme, self_signed)
    hostnames         TEXT NOT NULL DEFAULT '[]',     -- requested names (JSON array)
    challenge         TEXT,                           -- acme: http-01 | dns-01
    ca                TEXT,                           -- acme: CA name
    version           INTEGER NOT NULL DEFAULT 0,     -- current version; 0 = none yet
    metadata          TEXT NOT NULL DEFAULT '{}',     -- the tenant's JSON object
    renew_after       INTEGER,
    next_attempt_at   INTEGER,
    last_attempt_at   INTEGER,
    last_error        TEXT,                           -- human detail of the last failure
    last_error_reason TEXT,                           -- machine reason of the last failure
    failure_count     INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX certificates_tenant ON certificates(tenant_id, seq);
CREATE INDEX certificates_due ON certificates(status, next_attempt_at);

CREATE TABLE certificate_versions (
    seq                INTEGER PRIMARY KEY,
    id                 TEXT NOT NULL UNIQUE,
    certificate_id     TEXT NOT NULL REFERENCES certificates(id) ON DELETE CASCADE,
    tenant_id          TEXT NOT NULL,
    version            INTEGER NOT NULL,
    cert_pem           TEXT NOT NULL,                 -- the leaf
    chain_pem          TEXT NOT NULL DEFAULT '',      -- intermediates, CERTIFICATE blocks only
    private_key        TEXT NOT NULL,                 -- sealed "cpk1:..." text, never PEM
    key_type           TEXT NOT NULL,
    subject_cn         TEXT,
    sans               TEXT NOT NULL DEFAULT '[]',    -- JSON array
    issuer             TEXT NOT NULL,
    serial             TEXT NOT NULL,
    not_before         INTEGER NOT NULL,
    not_after          INTEGER NOT NULL,
    fingerprint_sha256 TEXT NOT NULL,
    order_id           TEXT,                          -- ACME order that issued it
    created_at         INTEGER NOT NULL,
    UNIQUE (certificate_id, version)
);
CREATE INDEX certificate_versions_not_after ON certificate_versions(not_after);
