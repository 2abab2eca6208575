-- 020: CA fallback (issue 14). An ordered list of CA names (a JSON array of
-- text) a certificate's orders work through: certificates.cas, else the
-- tenant's default tenants.default_cas, else the certificate's one CA.
-- orders.cas is the list an order took at its first run (NULL until then):
-- it moves along it when its CA is unreachable, rate limiting or forbidden
-- by CAA, and every new order starts again at its head.
ALTER TABLE certificates ADD COLUMN cas TEXT;
ALTER TABLE tenants ADD COLUMN default_cas TEXT;
ALTER TABLE orders ADD COLUMN cas TEXT;
