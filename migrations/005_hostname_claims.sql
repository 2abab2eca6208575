-- 005: hostname claims. A property hostname is no longer "first come, held
-- for ever" (001 made the hostname the primary key): each row of
-- property_hostnames is now one tenant's CLAIM of a hostname, pending until
-- DNS proves it (a CNAME chain reaching one of the tenant's edge hostnames,
-- or TXT _certplane-verify.<hostname> holding the claim's token), then
-- verified. Pending claims of several tenants coexist; at most one claim per
-- hostname is verified, across all tenants; a hostname appears at most once
-- per tenant. The rules that move a claim (verify, take over, release,
-- demote, expire) live in db/hostname_claims.c.
--
-- Migration notes:
--   * property_hostnames is rebuilt (SQLite cannot drop a primary key); its
--     name, its property_id/tenant_id/hostname/position columns and the
--     property_hostnames_property index keep their meaning, so readers that
--     only list a property's hostnames are unchanged.
--   * Every existing hostname becomes a PENDING claim with a fresh random
--     token, claimed at the upgrade and expiring 7 days later (the default
--     hostname_claim_ttl_days; the TTL configured at run time applies to
--     claims made after the upgrade). next_check_at = 0 makes every claim due
--     at once: the first scheduler ticks after the upgrade verify the
--     hostnames already CNAMEd to their tenant's edge. A hostname that is
--     neither CNAMEd nor TXT-verified within the 7 days is released from its
--     property (event property.hostname_released, reason claim_expired).
--   * Downgrade: a 004 binary refuses this database (schema newer).
CREATE TABLE property_hostnames_005 (
    property_id   TEXT NOT NULL REFERENCES properties(id) ON DELETE CASCADE,
    tenant_id     TEXT NOT NULL,
    hostname      TEXT NOT NULL,
    position      INTEGER NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'verified')),
    method        TEXT CHECK (method IN ('cname', 'txt')),    -- how it verified; NULL while pending
    token         TEXT NOT NULL,                               -- TXT value proving the claim
    claimed_at    INTEGER NOT NULL,                            -- made, or demoted back to pending
    expires_at    INTEGER,                                     -- pending: released after; verified: NULL
    checked_at    INTEGER,                                     -- last DNS check (any outcome)
    verified_at   INTEGER,                                     -- first verified (this claim)
    next_check_at INTEGER NOT NULL DEFAULT 0,                  -- background re-check due
    failures      INTEGER NOT NULL DEFAULT 0,                  -- verified: negative re-checks in a row
    detail        TEXT                                         -- last check's sentence
);
INSERT INTO property_hostnames_005 (property_id, tenant_id, hostname, position, token,
                                    claimed_at, expires_at, next_check_at)
    SELECT property_id, tenant_id, hostname, position, lower(hex(randomblob(16))),
           CAST(strftime('%s', 'now') AS INTEGER),
           CAST(strftime('%s', 'now') AS INTEGER) + 7 * 86400, 0
    FROM property_hostnames;
DROP TABLE property_hostnames;
ALTER TABLE property_hostnames_005 RENAME TO property_hostnames;

CREATE INDEX property_hostnames_property ON property_hostnames(property_id, position);
-- A hostname at most once per tenant (over all its properties).
CREATE UNIQUE INDEX property_hostnames_tenant ON property_hostnames(tenant_id, hostname);
-- At most one verified claim per hostname, across tenants.
CREATE UNIQUE INDEX property_hostnames_verified ON property_hostnames(hostname)
    WHERE status = 'verified';
-- Every claim of a hostname (take-over releases the others).
CREATE INDEX property_hostnames_hostname ON property_hostnames(hostname);
-- Background re-checks, and expiry of pending claims.
CREATE INDEX property_hostnames_due ON property_hostnames(next_check_at);
CREATE INDEX property_hostnames_expiry ON property_hostnames(expires_at)
    WHERE status = 'pending';
