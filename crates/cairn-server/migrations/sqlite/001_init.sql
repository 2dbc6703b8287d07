-- Cairn server schema, version 1 (SQLite). Everything a note says is in `entries.item`
-- as ciphertext; the server stores only what it needs to route, order and authorize.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
CREATE TABLE users (
    handle     TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE devices (
    id        BLOB PRIMARY KEY,          -- Ed25519 public key
    handle    TEXT NOT NULL REFERENCES users(handle),
    agree     BLOB NOT NULL,             -- X25519 public key
    added_by  BLOB,                      -- NULL for the self-signed first device
    signature BLOB NOT NULL,
    revoked   INTEGER NOT NULL DEFAULT 0,
    position  INTEGER NOT NULL           -- order in the user's signed list
);
CREATE INDEX devices_handle ON devices(handle, position);
CREATE TABLE invites (
    token   TEXT PRIMARY KEY,
    used_by TEXT
);
CREATE TABLE spaces (
    id    BLOB PRIMARY KEY,
    head  INTEGER NOT NULL DEFAULT 0,    -- highest entry sequence number
    ops   INTEGER NOT NULL DEFAULT 0,    -- number of membership ops
    epoch INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE ops (
    space     BLOB NOT NULL REFERENCES spaces(id),
    idx       INTEGER NOT NULL,
    body      BLOB NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (space, idx)
);
CREATE TABLE members (
    space  BLOB NOT NULL REFERENCES spaces(id),
    handle TEXT NOT NULL,
    role   TEXT NOT NULL,
    PRIMARY KEY (space, handle)
);
CREATE INDEX members_handle ON members(handle);
CREATE TABLE entries (
    space      BLOB NOT NULL REFERENCES spaces(id),
    seq        INTEGER NOT NULL,
    note_id    BLOB NOT NULL,
    stored_at  INTEGER NOT NULL,
    is_note    INTEGER NOT NULL,          -- 1: a note (or a deleted one), 0: a tombstone entry
    deleted    INTEGER NOT NULL DEFAULT 0,
    sender     BLOB,
    expires_at INTEGER,
    item       BLOB NOT NULL,             -- CBOR EntryItem
    PRIMARY KEY (space, seq)
);
CREATE UNIQUE INDEX entries_note ON entries(space, note_id) WHERE is_note = 1;
CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL AND deleted = 0;
CREATE TABLE note_media (
    space BLOB NOT NULL,
    seq   INTEGER NOT NULL,
    hash  BLOB NOT NULL,
    PRIMARY KEY (space, seq, hash)
);
CREATE INDEX note_media_hash ON note_media(hash);
CREATE TABLE media (
    hash       BLOB PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE media_uploaders (
    hash   BLOB NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY (hash, handle)
);
CREATE TABLE envelopes (
    space     BLOB NOT NULL,
    epoch     INTEGER NOT NULL,
    recipient BLOB NOT NULL,
    envelope  BLOB NOT NULL,              -- CBOR KeyEnvelope, opaque to the server
    PRIMARY KEY (space, epoch, recipient)
);
