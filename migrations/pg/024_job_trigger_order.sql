-- pg/024: one lock order for every transaction that writes jobs. A job's
-- triggers lock two rows: its tenant's job_tenants row (jobs_fair_*) and
-- the shared metric_counts row of its (kind, state) (counts_job_*).
-- PostgreSQL fires the AFTER triggers of one event in name order, so an
-- insert took metric_counts first and job_tenants second, while a claim
-- takes job_tenants first (db/jobs.c, the cap check FOR UPDATE) and then
-- updates the job. A claim and an enqueue of the same tenant then waited
-- on each other: "deadlock detected" every few hundred webhook test
-- sends while deliveries ran, and one POST /v1/webhooks/{id}/test lost
-- all four of its attempts (503) under ASan in CI.
-- Renamed to sort after jobs_fair_*, every writer takes the tenant's row
-- first and the shared counter last. The rule for any later trigger on
-- jobs: per-tenant rows before shared ones.
ALTER TRIGGER counts_job_insert ON jobs RENAME TO jobs_metric_insert;
ALTER TRIGGER counts_job_update ON jobs RENAME TO jobs_metric_update;
ALTER TRIGGER counts_job_delete ON jobs RENAME TO jobs_metric_delete;
ALTER FUNCTION counts_job_insert() RENAME TO jobs_metric_insert;
ALTER FUNCTION counts_job_update() RENAME TO jobs_metric_update;
ALTER FUNCTION counts_job_delete() RENAME TO jobs_metric_delete;
