-- 016: list filters as index ranges (issue 12). GET /v1/orders?hostname=
-- walks order_names (tenant, name, seq), the order's identifiers kept by
-- triggers the way certificate_names (012) keeps a certificate's; GET
-- /v1/properties?certificate_id= walks properties (tenant, certificate, seq).
-- Both in seq order either way (?order=asc|desc).

CREATE TABLE order_names (
    tenant_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    order_seq INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, order_seq)
) WITHOUT ROWID;

INSERT OR IGNORE INTO order_names (tenant_id, name, order_seq)
SELECT o.tenant_id, j.value, o.seq FROM orders o, json_each(o.identifiers) j
WHERE j.type = 'text';

CREATE TRIGGER names_order_insert AFTER INSERT ON orders
BEGIN
    INSERT OR IGNORE INTO order_names (tenant_id, name, order_seq)
    SELECT NEW.tenant_id, j.value, NEW.seq FROM json_each(NEW.identifiers) j
    WHERE j.type = 'text';
END;

-- Identifiers are written once, at insert; an update of them (none today)
-- would still keep the names right.
CREATE TRIGGER names_order_identifiers AFTER UPDATE OF identifiers ON orders
BEGIN
    DELETE FROM order_names WHERE tenant_id = OLD.tenant_id AND order_seq = OLD.seq
    AND name IN (SELECT j.value FROM json_each(OLD.identifiers) j);
    INSERT OR IGNORE INTO order_names (tenant_id, name, order_seq)
    SELECT NEW.tenant_id, j.value, NEW.seq FROM json_each(NEW.identifiers) j
    WHERE j.type = 'text';
END;

CREATE TRIGGER names_order_delete AFTER DELETE ON orders
BEGIN
    DELETE FROM order_names WHERE tenant_id = OLD.tenant_id AND order_seq = OLD.seq
    AND name IN (SELECT j.value FROM json_each(OLD.identifiers) j);
END;

CREATE INDEX properties_tenant_certificate ON properties(tenant_id, certificate_id, seq);
