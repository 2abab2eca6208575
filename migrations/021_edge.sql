-- 021: certificates to the edge (issue 14, part 3).
-- edge_keys: the operator's keys of role "edge" (not a tenant's: the edge
--   serves every tenant). Only the SHA-256 of a key is stored. An edge key
--   may call GET /v1/edge/deployments and nothing else (server/http.c).
-- edge_feed: the change feed of what production serves, one row per
--   hostname and change, read by range scan on seq from a cursor. A row
--   names the certificate version the hostname serves from now on, or
--   (version_id NULL) that the hostname is no longer served. Written by
--   db/edge.c when a production deployment is made, a deployed certificate
--   gets a new version, a claim is verified, released or demoted, or a
--   deployed property or its tenant is deleted. Only verified hostnames are
--   served; a removal is written only by the property the edge serves the
--   hostname for (its last row: edge_feed_hostname), so no tenant takes
--   another's hostname off the edge.
-- edge_served: what the edge was last seen serving for a production
--   hostname of a property (the served check, server/edge_check.c).
CREATE TABLE edge_keys (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL,
  key_hash TEXT NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL
);
CREATE TABLE edge_feed (
  seq INTEGER PRIMARY KEY,
  tenant_id TEXT NOT NULL,
  property_id TEXT NOT NULL,
  hostname TEXT NOT NULL,
  certificate_id TEXT,
  version_id TEXT,
  created_at INTEGER NOT NULL
);
CREATE INDEX edge_feed_hostname ON edge_feed (hostname, seq);
CREATE TABLE edge_served (
  property_id TEXT NOT NULL REFERENCES properties(id) ON DELETE CASCADE,
  hostname TEXT NOT NULL,
  tenant_id TEXT NOT NULL,
  fingerprint TEXT,
  matches INTEGER NOT NULL CHECK (matches IN (0, 1)),
  checked_at INTEGER NOT NULL,
  PRIMARY KEY (property_id, hostname)
);
