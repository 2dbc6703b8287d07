-- Version 2: media bytes in the database, so that every node serves every blob. A blob is
-- a row in media_blobs (written last, in the upload's transaction) and its chunks.
CREATE TABLE media_blobs (
    hash  BYTEA PRIMARY KEY,
    size  BIGINT NOT NULL,
    chunk INTEGER NOT NULL               -- bytes per chunk (the last may be shorter)
);
CREATE TABLE media_chunks (
    hash BYTEA NOT NULL REFERENCES media_blobs(hash) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
    idx  INTEGER NOT NULL,
    data BYTEA NOT NULL,
    PRIMARY KEY (hash, idx)
);
ALTER TABLE media_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
