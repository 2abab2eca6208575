-- 022: revocation, and no certificate outliving its owner's claim (issue 14,
-- part 4: BygoneSSL). A version asked to be revoked keeps the RFC 5280
-- reason name and the moment it was asked (revocation_requested_at); the
-- CA's answer sets revoked_at. The revokeCert itself is a durable job whose
-- payload carries what the CA needs (the leaf, the CA), so a tenant deleted
-- meanwhile loses nothing.
-- certificate_names_name: the certificates of every tenant naming a
-- hostname (the takeover: another tenant's claim verified), an index range.
-- (name, cert_seq), not (name, tenant_id): a tenant's own name lookups keep
-- the primary key (tenant_id, name, cert_seq), which that index would tie.
ALTER TABLE certificate_versions ADD COLUMN revocation_reason TEXT;
ALTER TABLE certificate_versions ADD COLUMN revocation_requested_at INTEGER;
ALTER TABLE certificate_versions ADD COLUMN revoked_at INTEGER;
CREATE INDEX certificate_names_name ON certificate_names (name, cert_seq);
