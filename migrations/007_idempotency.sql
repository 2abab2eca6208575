-- 007: idempotency keys reserved before the handler runs.
-- A request with an Idempotency-Key first INSERTs a 'pending' row under the
-- unique key (actor, tenant, method, path, key); a concurrent twin finds it
-- and gets a 409, never a second resource. The response is recorded in the
-- same row ('done'). A pending row whose holder died expires at
-- lease_until and may be taken over. The old table's records (scoped by
-- tenant only) are dropped: they live 24 hours and cannot be re-scoped.
DROP TABLE idempotency;
CREATE TABLE idempotency (
    actor        TEXT NOT NULL,             -- "operator" or the API key id
    tenant_id    TEXT NOT NULL,             -- effective tenant, '' for none
    method       TEXT NOT NULL,
    path         TEXT NOT NULL,
    key          TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'done')),
    owner        TEXT NOT NULL,             -- request id holding the reservation
    lease_until  INTEGER NOT NULL,          -- pending: expiry of the reservation
    body_hash    TEXT NOT NULL,
    status       INTEGER NOT NULL DEFAULT 0,
    content_type TEXT NOT NULL DEFAULT '',
    response     BLOB NOT NULL DEFAULT x'',
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (actor, tenant_id, method, path, key)
);
CREATE INDEX idempotency_age ON idempotency(created_at);
