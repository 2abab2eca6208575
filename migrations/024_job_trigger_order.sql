-- 024: the job-count triggers of 012 (counts_job_*) become jobs_metric_*,
-- the same bodies under names that sort after jobs_fair_*. SQLite has one
-- writer and no lock order to keep; the names are renamed here so that
-- both engines keep one set of trigger names (pg/024 says why the order
-- matters there).
DROP TRIGGER counts_job_insert;
DROP TRIGGER counts_job_update;
DROP TRIGGER counts_job_delete;

CREATE TRIGGER jobs_metric_insert AFTER INSERT ON jobs
BEGIN
    INSERT INTO metric_counts (family, k1, k2, n) VALUES ('jobs', NEW.kind, NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_metric_update AFTER UPDATE OF kind, state ON jobs
WHEN OLD.state IS NOT NEW.state OR OLD.kind IS NOT NEW.kind
BEGIN
    UPDATE metric_counts SET n = n - 1
    WHERE family = 'jobs' AND k1 = OLD.kind AND k2 = OLD.state;
    INSERT INTO metric_counts (family, k1, k2, n) VALUES ('jobs', NEW.kind, NEW.state, 1)
    ON CONFLICT (family, k1, k2) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER jobs_metric_delete AFTER DELETE ON jobs
BEGIN
    UPDATE metric_counts SET n = n - 1 WHERE family = 'jobs' AND k1 = OLD.kind AND k2 = OLD.state;
END;
