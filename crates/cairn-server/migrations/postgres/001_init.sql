-- Cairn server schema, version 1 (PostgreSQL). The same tables as the SQLite schema:
-- everything a note says is in `entries.item` as ciphertext; the server stores only what it
-- needs to route, order and authorize.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
CREATE TABLE users (
    handle     TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE devices (
    id        BYTEA PRIMARY KEY,          -- Ed25519 public key
    handle    TEXT NOT NULL REFERENCES users(handle),
    agree     BYTEA NOT NULL,             -- X25519 public key
    added_by  BYTEA,                      -- NULL for the self-signed first device
    signature BYTEA NOT NULL,
    revoked   BOOLEAN NOT NULL DEFAULT FALSE,
    position  INTEGER NOT NULL,           -- order in the user's signed list
    UNIQUE (handle, position)
);
CREATE TABLE invites (
    token   TEXT PRIMARY KEY,
    used_by TEXT
);
CREATE TABLE spaces (
    id    BYTEA PRIMARY KEY,
    head  BIGINT NOT NULL DEFAULT 0,      -- highest entry sequence number; its row lock orders writers
    ops   BIGINT NOT NULL DEFAULT 0,      -- number of membership ops
    epoch BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE ops (
    space     BYTEA NOT NULL REFERENCES spaces(id),
    idx       BIGINT NOT NULL,
    body      BYTEA NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (space, idx)
);
CREATE TABLE members (
    space  BYTEA NOT NULL REFERENCES spaces(id),
    handle TEXT NOT NULL,
    role   TEXT NOT NULL,
    PRIMARY KEY (space, handle)
);
CREATE INDEX members_handle ON members(handle);
CREATE TABLE entries (
    space      BYTEA NOT NULL REFERENCES spaces(id),
    seq        BIGINT NOT NULL,
    note_id    BYTEA NOT NULL,
    stored_at  BIGINT NOT NULL,
    is_note    BOOLEAN NOT NULL,          -- a note (or a deleted one); false: a tombstone entry
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    sender     BYTEA,
    expires_at BIGINT,
    item       BYTEA NOT NULL,            -- CBOR EntryItem
    PRIMARY KEY (space, seq)
);
-- Ciphertext does not compress; do not try.
ALTER TABLE entries ALTER COLUMN item SET STORAGE EXTERNAL;
CREATE UNIQUE INDEX entries_note ON entries(space, note_id) WHERE is_note;
CREATE INDEX entries_expiry ON entries(expires_at) WHERE expires_at IS NOT NULL AND NOT deleted;
CREATE TABLE media (
    hash       BYTEA PRIMARY KEY,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE note_media (
    space BYTEA NOT NULL,
    seq   BIGINT NOT NULL,
    -- A blob cannot be collected while a note references it, even when the two race.
    hash  BYTEA NOT NULL REFERENCES media(hash),
    PRIMARY KEY (space, seq, hash)
);
CREATE INDEX note_media_hash ON note_media(hash);
CREATE TABLE media_uploaders (
    hash   BYTEA NOT NULL,
    handle TEXT NOT NULL,
    PRIMARY KEY (hash, handle)
);
CREATE TABLE envelopes (
    space     BYTEA NOT NULL,
    epoch     BIGINT NOT NULL,
    recipient BYTEA NOT NULL,
    envelope  BYTEA NOT NULL,             -- CBOR KeyEnvelope, opaque to the server
    PRIMARY KEY (space, epoch, recipient)
);
