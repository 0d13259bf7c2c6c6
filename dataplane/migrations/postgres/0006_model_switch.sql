-- A collection's switch to another embedding model (see dataplane/src/app/model_switch.rs):
-- its points live in index generation `generation`; while next_probe is set, the points of
-- generation + 1 are being built with the model next_model (probe next_probe), whose vectors
-- have next_dimension dimensions. Each document records the generation its points were last
-- written into, and each chunk's provenance is kept per generation: the two generations of a
-- switch may cut a document into different chunks.
ALTER TABLE collections ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN next_model TEXT;
ALTER TABLE collections ADD COLUMN next_probe TEXT;
ALTER TABLE collections ADD COLUMN next_dimension BIGINT;
ALTER TABLE documents ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chunks ADD COLUMN generation BIGINT NOT NULL DEFAULT 0;
ALTER TABLE chunks DROP CONSTRAINT chunks_pkey;
ALTER TABLE chunks ADD PRIMARY KEY (document_id, generation, chunk);
