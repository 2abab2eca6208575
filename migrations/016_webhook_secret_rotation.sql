-- 016: webhook secret rotation with an overlap (issue 12). Rotating moves
-- the current secret to previous_secret (sealed like secret, aad
-- "webhooks:<id>") until previous_secret_until; while that is in the future
-- every delivery is signed with both (Standard Webhooks allows several
-- space-separated signatures), after it with the new secret only.

ALTER TABLE webhooks ADD COLUMN previous_secret TEXT;
ALTER TABLE webhooks ADD COLUMN previous_secret_until INTEGER;
