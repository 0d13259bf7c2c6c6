-- The web console's sign-ins and its usage figures.
--
-- A session is stored by the hash of its cookie's token. It acts as the key whose hash it holds,
-- so revoking or deleting the key ends it. Its forms carry `csrf_token`.
CREATE TABLE console_sessions (
    token_hash  TEXT PRIMARY KEY,
    key_hash    TEXT NOT NULL REFERENCES api_keys(key_hash) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

-- Queries and LLM tokens per tenant, minute (RFC 3339 UTC, seconds zero), key and collection.
CREATE TABLE usage_minutes (
    tenant_id   TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    minute      TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    collection  TEXT NOT NULL,
    queries     INTEGER NOT NULL,
    llm_tokens  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, minute, key_id, collection)
);
CREATE INDEX usage_minutes_by_minute ON usage_minutes (minute);
