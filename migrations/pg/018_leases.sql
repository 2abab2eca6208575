-- pg/018: migrations/018_leases.sql for PostgreSQL (same tables), and
-- unixepoch(), SQLite's name for the database clock in whole seconds, so
-- that the domain SQL reads the same clock with one spelling. VOLATILE and
-- clock_timestamp(), not now(): a lease renewed late in a long transaction
-- must see the time it is renewed at.
CREATE FUNCTION unixepoch() RETURNS BIGINT LANGUAGE sql VOLATILE AS
  $$ SELECT CAST(floor(extract(epoch FROM clock_timestamp())) AS BIGINT) $$;
CREATE TABLE leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at BIGINT NOT NULL
);
CREATE TABLE instances (
  id TEXT PRIMARY KEY,
  host TEXT NOT NULL,
  pid BIGINT NOT NULL,
  started_at BIGINT NOT NULL,
  heartbeat_at BIGINT NOT NULL
);
CREATE INDEX instances_heartbeat ON instances (heartbeat_at);
