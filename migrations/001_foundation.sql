-- 001: tenants, API keys, audit log, idempotency records, edge hostnames,
-- properties, the job queue and the event outbox.
-- Every tenant-owned row carries tenant_id; `seq` is the keyset-pagination
-- order (insertion order, stable under concurrent inserts).

CREATE TABLE tenants (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    seq          INTEGER PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,      -- hex SHA-256 of the key
    prefix       TEXT NOT NULL,             -- first characters, for humans
    created_at   INTEGER NOT NULL
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id, seq);

CREATE TABLE audit_log (
    seq           INTEGER PRIMARY KEY,
    id            TEXT NOT NULL UNIQUE,
    tenant_id     TEXT,                     -- NULL for operator-wide actions
    actor         TEXT NOT NULL,            -- "operator" or an API key id
    action        TEXT NOT NULL,            -- e.g. "property.create"
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    detail        TEXT,                     -- JSON, never secrets
    created_at    INTEGER NOT NULL
);
CREATE INDEX audit_log_tenant ON audit_log(tenant_id, seq);

CREATE TABLE idempotency (
    scope        TEXT NOT NULL,             -- tenant id or "operator"
    key          TEXT NOT NULL,
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    body_hash    TEXT NOT NULL,
    status       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    response     BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_age ON idempotency(created_at);

CREATE TABLE edge_hostnames (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    hostname    TEXT NOT NULL UNIQUE,
    label       TEXT NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX edge_hostnames_tenant ON edge_hostnames(tenant_id, seq);

CREATE TABLE properties (
    seq                           INTEGER PRIMARY KEY,
    id                            TEXT NOT NULL UNIQUE,
    tenant_id                     TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name                          TEXT NOT NULL,
    edge_hostname_id              TEXT NOT NULL REFERENCES edge_hostnames(id),
    certificate_id                TEXT,
    certificate_renew_automation  INTEGER NOT NULL DEFAULT 0,
    version                       INTEGER NOT NULL DEFAULT 1,
    created_at                    INTEGER NOT NULL,
    updated_at                    INTEGER NOT NULL
);
CREATE INDEX properties_tenant ON properties(tenant_id, seq);
CREATE INDEX properties_certificate ON properties(certificate_id);
CREATE INDEX properties_edge ON properties(edge_hostname_id);

-- Hostnames are unique across all tenants: the primary key enforces it.
CREATE TABLE property_hostnames (
    hostname     TEXT PRIMARY KEY,
    property_id  TEXT NOT NULL REFERENCES properties(id) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL,
    position     INTEGER NOT NULL
);
CREATE INDEX property_hostnames_property ON property_hostnames(property_id, position);

-- A deployment freezes a property version (hostnames + certificate) as live.
CREATE TABLE deployments (
    seq            INTEGER PRIMARY KEY,
    id             TEXT NOT NULL UNIQUE,
    tenant_id      TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    property_id    TEXT NOT NULL REFERENCES properties(id) ON DELETE CASCADE,
    environment    TEXT NOT NULL CHECK (environment IN ('staging', 'production')),
    version        INTEGER NOT NULL,
    hostnames      TEXT NOT NULL,           -- JSON array at deploy time
    certificate_id TEXT,
    created_at     INTEGER NOT NULL
);
CREATE INDEX deployments_property ON deployments(property_id, environment, seq);

-- The durable job queue. A worker claims a row by setting lease_owner and
-- lease_until in one write transaction; an expired lease is claimable again.
CREATE TABLE jobs (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    tenant_id    TEXT,
    payload      TEXT NOT NULL DEFAULT '{}',
    dedupe_key   TEXT UNIQUE,               -- at most one live job per key
    state        TEXT NOT NULL DEFAULT 'queued'
                 CHECK (state IN ('queued', 'running', 'done', 'failed')),
    run_at       INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    lease_owner  TEXT,
    lease_until  INTEGER,
    last_error   TEXT,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX jobs_due ON jobs(state, run_at);

-- The event outbox: written in the same transaction as the change.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    tenant_id   TEXT NOT NULL,
    type        TEXT NOT NULL,
    payload     TEXT NOT NULL,              -- {"type","timestamp","data"}
    created_at  INTEGER NOT NULL
);
CREATE INDEX events_tenant ON events(tenant_id, seq);
CREATE INDEX events_tenant_type ON events(tenant_id, type, seq);
