-- Where each indexed chunk comes from: character offsets in the document's extracted text, the
-- PDF page it starts on, and the heading path (a JSON array of strings) in force at its start.
CREATE TABLE chunks (
    document_id TEXT NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
    chunk       BIGINT NOT NULL,
    start_char  BIGINT NOT NULL,
    end_char    BIGINT NOT NULL,
    page        INTEGER,
    headings    TEXT NOT NULL,
    PRIMARY KEY (document_id, chunk)
);
