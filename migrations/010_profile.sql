-- 010: the ACME profile a certificate is ordered with (draft-ietf-acme-
-- profiles: newOrder "profile", offered in the CA directory's
-- meta.profiles). NULL: the CA's default. Kept by every renewal.
ALTER TABLE certificates ADD COLUMN profile TEXT
    CHECK (profile IS NULL OR (length(profile) BETWEEN 1 AND 64));
