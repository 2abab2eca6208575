-- 009: a wildcard in an order covers every name one label below its base, so
-- the issuance scope must find another tenant's verified claims by their
-- parent name: *.a.test may not be ordered while another tenant holds a
-- verified www.a.test. An expression index keeps that lookup a range scan
-- (the same expression, verbatim, is in db/hostname_claims.c).
CREATE INDEX property_hostnames_verified_parent
    ON property_hostnames(substr(hostname, instr(hostname, '.') + 1))
    WHERE status = 'verified';
