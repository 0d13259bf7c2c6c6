-- The web console's sign-ins and its usage figures (migrations/sqlite/0005_console.sql in
-- PostgreSQL types).
CREATE TABLE console_sessions (
    token_hash  TEXT COLLATE "C" PRIMARY KEY,
    key_hash    TEXT COLLATE "C" NOT NULL REFERENCES api_keys(key_hash) ON DELETE CASCADE,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT COLLATE "C" NOT NULL
);
CREATE INDEX console_sessions_by_expiry ON console_sessions (expires_at);

CREATE TABLE usage_minutes (
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    minute      TEXT COLLATE "C" NOT NULL,
    key_id      TEXT COLLATE "C" NOT NULL,
    collection  TEXT COLLATE "C" NOT NULL,
    queries     BIGINT NOT NULL,
    llm_tokens  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, minute, key_id, collection)
);
CREATE INDEX usage_minutes_by_minute ON usage_minutes (minute);
