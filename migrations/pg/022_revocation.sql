-- pg/022: migrations/022_revocation.sql for PostgreSQL (same columns and
-- indexes; BIGINT for the unix seconds).
ALTER TABLE certificate_versions ADD COLUMN revocation_reason TEXT;
ALTER TABLE certificate_versions ADD COLUMN revocation_requested_at BIGINT;
ALTER TABLE certificate_versions ADD COLUMN revoked_at BIGINT;
CREATE INDEX certificate_names_name ON certificate_names (name, cert_seq);
