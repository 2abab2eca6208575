-- 006: capacity shared fairly between tenants.
--
-- Lanes. Every job runs in a lane ("acme", "webhook", "general"), each
-- with its own worker threads, so that slow webhook receivers never hold the
-- workers that run ACME orders. The lane of a kind is decided by the one
-- table in server/workers.c; db_job_enqueue writes it, and the workers
-- re-lane queued jobs at start (db_job_relane), so jobs of older rows get
-- theirs there too.
--
-- Round robin. job_tenants holds, per (lane, tenant), how many of the
-- tenant's jobs are queued and running right now, when the first queued one
-- is due, and when (a per-lane claim sequence number, job_lanes.served) the
-- tenant was last served. The
-- counts are kept by the triggers below, in the statement that changes the
-- job, so they are right after any crash, release or requeue. A claim picks
-- the least recently served tenant that has a due job and fewer running
-- jobs than the cap, then that tenant's earliest due job (db/jobs.c).
--
-- Quotas. tenant_quotas holds the operator's per-tenant overrides (NULL =
-- the configured default, see db/quotas.c); usage is counted from the
-- tables themselves, by tenant, with an index.

ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'general';

-- The queued jobs of one tenant in one lane, oldest due first.
CREATE INDEX jobs_lane_tenant_due ON jobs(lane, ifnull(tenant_id, ''), run_at, id)
    WHERE state = 'queued';
-- Expired leases of a lane.
CREATE INDEX jobs_lane_lease ON jobs(lane, lease_until) WHERE state = 'running';

CREATE TABLE job_lanes (
    lane    TEXT PRIMARY KEY,
    served  INTEGER NOT NULL DEFAULT 0        -- claims made in this lane so far
) WITHOUT ROWID;

CREATE TABLE job_tenants (
    lane         TEXT NOT NULL,
    tenant_id    TEXT NOT NULL,                -- '' for jobs of no tenant
    queued       INTEGER NOT NULL DEFAULT 0,
    running      INTEGER NOT NULL DEFAULT 0,
    next_run_at  INTEGER,                      -- earliest run_at of the queued ones
    last_served  INTEGER NOT NULL DEFAULT 0,   -- job_lanes.served at its last claim
    PRIMARY KEY (lane, tenant_id)
) WITHOUT ROWID;
-- The claim's two ranges (db/jobs.c claim_pick): the least recently served
-- tenants of a lane with queued work, and the tenants of a lane with queued
-- work due by now. Idle tenants are in neither.
CREATE INDEX job_tenants_rr ON job_tenants(lane, last_served) WHERE queued > 0;
CREATE INDEX job_tenants_due ON job_tenants(lane, next_run_at) WHERE queued > 0;

-- Counts of the jobs already there (an upgrade with live jobs).
INSERT INTO job_tenants (lane, tenant_id, queued, running, next_run_at)
    SELECT lane, ifnull(tenant_id, ''), sum(state = 'queued'), sum(state = 'running'),
           min(CASE state WHEN 'queued' THEN run_at END)
    FROM jobs WHERE state IN ('queued', 'running') GROUP BY lane, ifnull(tenant_id, '');

-- Each trigger adjusts the counts, then re-reads next_run_at of the
-- (lane, tenant) whose queued set changed: the first entry of
-- jobs_lane_tenant_due, one index probe.
CREATE TRIGGER jobs_fair_insert AFTER INSERT ON jobs
WHEN NEW.state IN ('queued', 'running')
BEGIN
    INSERT INTO job_tenants (lane, tenant_id, queued, running, next_run_at)
        SELECT NEW.lane, ifnull(NEW.tenant_id, ''), NEW.state = 'queued',
               NEW.state = 'running', CASE NEW.state WHEN 'queued' THEN NEW.run_at END
        WHERE true
    ON CONFLICT (lane, tenant_id) DO UPDATE
        SET queued = queued + excluded.queued, running = running + excluded.running,
            next_run_at = CASE WHEN excluded.next_run_at IS NULL THEN next_run_at
                               ELSE min(ifnull(next_run_at, excluded.next_run_at),
                                        excluded.next_run_at) END;
END;

CREATE TRIGGER jobs_fair_update AFTER UPDATE OF state, lane, tenant_id, run_at ON jobs
WHEN OLD.state IS NOT NEW.state OR OLD.lane IS NOT NEW.lane
     OR OLD.tenant_id IS NOT NEW.tenant_id
     OR (NEW.state = 'queued' AND OLD.run_at IS NOT NEW.run_at)
BEGIN
    UPDATE job_tenants SET queued = queued - (OLD.state = 'queued'),
                           running = running - (OLD.state = 'running')
        WHERE lane = OLD.lane AND tenant_id = ifnull(OLD.tenant_id, '')
          AND OLD.state IN ('queued', 'running');
    INSERT INTO job_tenants (lane, tenant_id, queued, running)
        SELECT NEW.lane, ifnull(NEW.tenant_id, ''), NEW.state = 'queued', NEW.state = 'running'
        WHERE NEW.state IN ('queued', 'running')
    ON CONFLICT (lane, tenant_id) DO UPDATE
        SET queued = queued + excluded.queued, running = running + excluded.running;
    UPDATE job_tenants SET next_run_at = (SELECT min(run_at) FROM jobs
            WHERE state = 'queued' AND lane = OLD.lane
              AND ifnull(tenant_id, '') = ifnull(OLD.tenant_id, ''))
        WHERE lane = OLD.lane AND tenant_id = ifnull(OLD.tenant_id, '')
          AND OLD.state = 'queued';
    UPDATE job_tenants SET next_run_at = (SELECT min(run_at) FROM jobs
            WHERE state = 'queued' AND lane = NEW.lane
              AND ifnull(tenant_id, '') = ifnull(NEW.tenant_id, ''))
        WHERE lane = NEW.lane AND tenant_id = ifnull(NEW.tenant_id, '')
          AND NEW.state = 'queued';
END;

CREATE TRIGGER jobs_fair_delete AFTER DELETE ON jobs
WHEN OLD.state IN ('queued', 'running')
BEGIN
    UPDATE job_tenants SET queued = queued - (OLD.state = 'queued'),
                           running = running - (OLD.state = 'running'),
                           next_run_at = (SELECT min(run_at) FROM jobs
                               WHERE state = 'queued' AND lane = OLD.lane
                                 AND ifnull(tenant_id, '') = ifnull(OLD.tenant_id, ''))
        WHERE lane = OLD.lane AND tenant_id = ifnull(OLD.tenant_id, '');
END;

-- Per-tenant quota overrides; NULL = the configured default.
CREATE TABLE tenant_quotas (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    properties        INTEGER,
    hostnames         INTEGER,
    certificates      INTEGER,
    orders_in_flight  INTEGER,
    webhooks          INTEGER,
    edge_hostnames    INTEGER,
    updated_at        INTEGER NOT NULL
);

-- Usage counts by tenant that had no index yet.
CREATE INDEX property_hostnames_tenant_property ON property_hostnames(tenant_id, property_id);
CREATE INDEX orders_tenant_in_flight ON orders(tenant_id)
    WHERE status IN ('pending', 'validating', 'issuing');
