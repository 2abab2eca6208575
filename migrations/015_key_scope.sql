-- 015: API key scope and expiry (issue 12). A "read" key may only make
-- GET and HEAD requests; "admin" (every key made before this migration) may
-- do anything its tenant may. expires_at (unix seconds, NULL = never) is
-- checked on every request, cached or not (server/http.c authenticate).

ALTER TABLE api_keys ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin'
    CHECK (scope IN ('admin', 'read'));
ALTER TABLE api_keys ADD COLUMN expires_at INTEGER;
