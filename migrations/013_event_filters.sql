-- 013: events filtered by certificate or property (issue 12): GET /v1/events
-- and its stream take ?certificate_id= and ?property_id=. Both ids were only
-- inside the JSON payload; they become plain columns, filled at insert by
-- db_event_add from the event's data, each with a partial index so a filter
-- is one index range scan in seq order (events without the id, most of
-- them for the other column, take no index space).

ALTER TABLE events ADD COLUMN certificate_id TEXT;
ALTER TABLE events ADD COLUMN property_id TEXT;

UPDATE events SET
    certificate_id = json_extract(payload, '$.data.certificate_id'),
    property_id = json_extract(payload, '$.data.property_id')
WHERE json_valid(payload);

CREATE INDEX events_tenant_certificate ON events(tenant_id, certificate_id, seq)
    WHERE certificate_id IS NOT NULL;
CREATE INDEX events_tenant_property ON events(tenant_id, property_id, seq)
    WHERE property_id IS NOT NULL;
