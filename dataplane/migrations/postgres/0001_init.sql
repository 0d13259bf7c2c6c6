-- Tenants, API keys, collections, documents and the job table: the SQLite schema
-- (migrations/sqlite/0001_init.sql) in PostgreSQL types. Timestamps stay RFC 3339 text and ids
-- UUID v7 text, so both backends return identical values; text columns that are compared or
-- sorted use the "C" collation so that order and cursors match SQLite's byte order. Document
-- metadata is JSONB, so that metadata filters are a containment test.

CREATE TABLE tenants (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_hash    TEXT COLLATE "C" NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT NOT NULL,
    admin       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);

CREATE TABLE collections (
    id          TEXT COLLATE "C" PRIMARY KEY,
    tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    dimension   BIGINT NOT NULL,
    version     BIGINT NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    UNIQUE (tenant_id, name)
);

CREATE TABLE documents (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL,
    collection_id TEXT COLLATE "C" NOT NULL REFERENCES collections(id) ON DELETE CASCADE,
    title         TEXT NOT NULL,
    source        TEXT,
    content_type  TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sha256        TEXT NOT NULL,
    metadata      JSONB NOT NULL DEFAULT '{}',
    object_key    TEXT NOT NULL,
    status        TEXT NOT NULL,
    error         TEXT,
    chunk_count   BIGINT NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX documents_by_collection ON documents (collection_id, id);
CREATE INDEX documents_by_status ON documents (status);
CREATE INDEX documents_metadata ON documents USING GIN (metadata jsonb_path_ops);

CREATE TABLE jobs (
    id            TEXT COLLATE "C" PRIMARY KEY,
    tenant_id     TEXT COLLATE "C" NOT NULL,
    queue         TEXT NOT NULL,
    kind          TEXT NOT NULL,
    document_id   TEXT COLLATE "C",
    payload       TEXT NOT NULL,
    status        TEXT NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    run_at        BIGINT NOT NULL,
    lease_until   BIGINT,
    worker        TEXT,
    last_error    TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX jobs_claimable ON jobs (queue, status, run_at);
CREATE INDEX jobs_by_document ON jobs (document_id, status);
