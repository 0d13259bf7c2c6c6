-- A collection's switch to another embedding model (see dataplane/src/app/model_switch.rs):
-- its points live in index generation `generation`; while next_probe is set, the points of
-- generation + 1 are being built with the model next_model (probe next_probe), whose vectors
-- have next_dimension dimensions. Each document records the generation its points were last
-- written into, and each chunk's provenance is kept per generation: the two generations of a
-- switch may cut a document into different chunks.
ALTER TABLE collections ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE collections ADD COLUMN next_model TEXT;
ALTER TABLE collections ADD COLUMN next_probe TEXT;
ALTER TABLE collections ADD COLUMN next_dimension INTEGER;
ALTER TABLE documents ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;
CREATE TABLE chunks_by_generation (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    generation  BIGINT NOT NULL DEFAULT 0,
    chunk       BIGINT NOT NULL,
    start_char  BIGINT NOT NULL,
    end_char    BIGINT NOT NULL,
    page        INTEGER,
    headings    TEXT NOT NULL,
    PRIMARY KEY (document_id, generation, chunk)
);
INSERT INTO chunks_by_generation (document_id, chunk, start_char, end_char, page, headings)
    SELECT document_id, chunk, start_char, end_char, page, headings FROM chunks;
DROP TABLE chunks;
ALTER TABLE chunks_by_generation RENAME TO chunks;
