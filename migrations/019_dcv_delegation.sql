-- 019: DCV delegation (issue 14, dcv/dcv.h). A tenant points
-- _acme-challenge.<hostname> at <label>.<dcv_zone>; certplane writes the
-- DNS-01 TXT records there by RFC 2136 UPDATE.
-- dcv_delegations: the last check of a tenant's delegation of a hostname
-- (hostname without "*."), shown by GET /v1/properties/{id}/dcv-delegation.
-- dcv_records: every TXT record certplane is about to write or has written
-- and not yet removed, inserted BEFORE the UPDATE and deleted after the
-- removal succeeded, so a crash or a failed removal leaves a row for the
-- cleanup tick (server/order_dcv.c). No foreign key to orders: a record
-- whose order (or tenant) is deleted must still be removed from the zone.
-- It holds only records in flight, so the cleanup's scan of it is small.
CREATE TABLE dcv_delegations (
  tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
  hostname TEXT NOT NULL,
  in_place INTEGER NOT NULL DEFAULT 0 CHECK (in_place IN (0, 1)),
  checked_at INTEGER NOT NULL,
  detail TEXT,
  PRIMARY KEY (tenant_id, hostname)
);
CREATE TABLE dcv_records (
  tenant_id TEXT NOT NULL,
  order_id TEXT NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (order_id, name, value)
);
CREATE INDEX dcv_records_created ON dcv_records (created_at);
-- order_authorizations.delegated: 1 once certplane wrote this DNS-01
-- authorization's TXT record in the delegation zone (instead of announcing
-- it to the tenant: notified stays 0); the API shows it as
-- challenge.delegated.
ALTER TABLE order_authorizations ADD COLUMN delegated INTEGER NOT NULL DEFAULT 0;
