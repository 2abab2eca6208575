-- pg/019: migrations/019_dcv_delegation.sql for PostgreSQL (same tables;
-- BIGINT for unix seconds, in_place an INTEGER 0/1 flag as in 017).
CREATE TABLE dcv_delegations (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  hostname TEXT NOT NULL,
  in_place INTEGER NOT NULL DEFAULT 0 CHECK (in_place IN (0, 1)),
  checked_at BIGINT NOT NULL,
  detail TEXT,
  PRIMARY KEY (tenant_id, hostname)
);
CREATE TABLE dcv_records (
  tenant_id TEXT NOT NULL,
  order_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  created_at BIGINT NOT NULL,
  PRIMARY KEY (order_id, name, value)
);
CREATE INDEX dcv_records_created ON dcv_records (created_at);
-- order_authorizations.delegated: 1 once certplane wrote this DNS-01
-- authorization's TXT record in the delegation zone (instead of announcing
-- it to the tenant: notified stays 0); the API shows it as
-- challenge.delegated.
ALTER TABLE order_authorizations ADD COLUMN delegated INTEGER NOT NULL DEFAULT 0;
