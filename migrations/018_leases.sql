-- 018: named leases and the instance table (issue 11: many instances).
-- A lease is a row a task's leader holds until expires_at, renewed while it
-- lives, taken over by another instance once it lapses: housekeeping
-- (reminders, pruning, claim expiry) runs on one instance at a time without
-- advisory locks (CockroachDB has none). Times are the database's own clock
-- (unixepoch()), never an instance's, so skewed machines agree on expiry.
-- instances: each running process beats here; what others see of it.
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL
);
CREATE INDEX instances_heartbeat ON instances (heartbeat_at);
