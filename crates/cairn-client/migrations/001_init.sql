-- Cairn client store, version 1. Holds this device's keys and everything it has seen.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE spaces (
    id     BLOB PRIMARY KEY,
    name   TEXT NOT NULL,
    cursor INTEGER NOT NULL DEFAULT 0     -- highest entry seq applied
);
CREATE TABLE ops (
    space     BLOB NOT NULL,
    idx       INTEGER NOT NULL,
    body      BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (space, idx)
);
CREATE TABLE epoch_keys (
    space BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    key   BLOB NOT NULL,
    PRIMARY KEY (space, epoch)
);
CREATE TABLE notes (
    space     BLOB NOT NULL,
    note_id   BLOB NOT NULL,
    seq       INTEGER,                      -- NULL while pending
    sender    BLOB NOT NULL,
    sealed    BLOB,                         -- CBOR SealedNote (ciphertext), NULL once deleted
    body      BLOB,                         -- CBOR NoteBody once opened
    error     TEXT,                         -- why it could not be opened, if so
    deleted   INTEGER NOT NULL DEFAULT 0,
    read      INTEGER NOT NULL DEFAULT 0,
    stored_at INTEGER NOT NULL,
    PRIMARY KEY (space, note_id)
);
CREATE INDEX notes_seq ON notes(space, seq);
CREATE VIRTUAL TABLE notes_fts USING fts5(space UNINDEXED, note_id UNINDEXED, author, text);
CREATE TABLE media (
    hash      BLOB PRIMARY KEY,
    size      INTEGER NOT NULL,
    last_used INTEGER NOT NULL
);
CREATE TABLE outbox (
    space      BLOB NOT NULL,
    note_id    BLOB NOT NULL,
    request    BLOB NOT NULL,               -- CBOR Request (PostNote or DeleteNote), sent as is
    created_at INTEGER NOT NULL,
    PRIMARY KEY (space, note_id)
);
