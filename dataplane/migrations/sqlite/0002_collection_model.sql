-- The embedding model a collection's vectors come from: its name and probe (see
-- dataplane/src/embed/identity.rs). NULL for collections created before this, until first use.
ALTER TABLE collections ADD COLUMN embedding_model TEXT;
ALTER TABLE collections ADD COLUMN embedding_probe TEXT;
