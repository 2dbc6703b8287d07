//! The device's local store: SQLite in WAL mode, file mode 0600. It holds the device keys
//! (optionally sealed under a passphrase), the spaces with their membership logs and epoch
//! keys, every note (ciphertext, and the decrypted body once opened), a full-text index of
//! decrypted text, the media cache index and the outbox.

use crate::error::ClientError;
use cairn_crypto::{EpochKey, KeyStore, NoteBody};
use cairn_proto::*;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

const MIGRATIONS: &[&str] = &[include_str!("../migrations/001_init.sql")];

pub struct LocalStore {
    conn: Connection,
}

/// A note as this device knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LocalNote {
    pub space: SpaceId,
    pub note_id: NoteId,
    /// `None` while it waits in the outbox.
    pub seq: Option<u64>,
    pub sender: DeviceId,
    pub body: Option<NoteBody>,
    /// Why it could not be opened (kept, shown as a marked placeholder).
    pub error: Option<String>,
    pub deleted: bool,
    pub read: bool,
    pub stored_at: u64,
}

impl LocalNote {
    pub fn pending(&self) -> bool {
        self.seq.is_none()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalSpace {
    pub id: SpaceId,
    pub name: String,
    pub cursor: u64,
}

fn blob<const N: usize>(v: Vec<u8>) -> rusqlite::Result<[u8; N]> {
    v.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, "id".into(), rusqlite::types::Type::Blob)
    })
}

fn row_note(r: &rusqlite::Row<'_>) -> rusqlite::Result<LocalNote> {
    let body: Option<Vec<u8>> = r.get(4)?;
    Ok(LocalNote {
        space: SpaceId(blob(r.get(0)?)?),
        note_id: NoteId(blob(r.get(1)?)?),
        seq: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
        sender: DeviceId(blob(r.get(3)?)?),
        body: body.and_then(|b| cairn_proto::decode_limited(&b, usize::MAX).ok()),
        error: r.get(5)?,
        deleted: r.get::<_, i64>(6)? != 0,
        read: r.get::<_, i64>(7)? != 0,
        stored_at: r.get::<_, i64>(8)? as u64,
    })
}

const NOTE_COLUMNS: &str = "space, note_id, seq, sender, body, error, deleted, read, stored_at";

impl LocalStore {
    /// Opens (creating when absent) the store at `path`, readable by this user only.
    pub fn open(path: &Path) -> Result<Self, ClientError> {
        if !path.exists() {
            create_private(path)?;
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )?;
        let mut store = LocalStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<(), ClientError> {
        let version: i64 = self.conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    pub fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![key, value],
        )?;
        Ok(())
    }

    pub fn meta_string(&self, key: &str) -> Result<Option<String>, ClientError> {
        Ok(self.meta(key)?.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    // Spaces and their membership logs.

    pub fn upsert_space(&self, id: &SpaceId, name: &str) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO spaces (id, name) VALUES (?1, ?2) ON CONFLICT(id) DO UPDATE SET name = ?2",
            params![&id, name],
        )?;
        Ok(())
    }

    pub fn spaces(&self) -> Result<Vec<LocalSpace>, ClientError> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, name, cursor FROM spaces ORDER BY name, id")?;
        let rows = stmt.query_map([], |r| {
            Ok(LocalSpace {
                id: SpaceId(blob(r.get(0)?)?),
                name: r.get(1)?,
                cursor: r.get::<_, i64>(2)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The highest entry applied in a space (`None` for a space not stored yet).
    pub fn cursor(&self, space: &SpaceId) -> Result<Option<u64>, ClientError> {
        Ok(self
            .conn
            .query_row("SELECT cursor FROM spaces WHERE id = ?1", [&space], |r| r.get::<_, i64>(0))
            .optional()?
            .map(|c| c as u64))
    }

    pub fn set_cursor(&self, space: &SpaceId, cursor: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE spaces SET cursor = MAX(cursor, ?2) WHERE id = ?1",
            params![&space, cursor as i64],
        )?;
        Ok(())
    }

    pub fn put_op(&self, space: &SpaceId, index: u64, op: &SignedOp) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO ops (space, idx, body, signature) VALUES (?1, ?2, ?3, ?4)",
            params![&space, index as i64, &op.body, &op.signature],
        )?;
        Ok(())
    }

    pub fn ops(&self, space: &SpaceId) -> Result<Vec<SignedOp>, ClientError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT body, signature FROM ops WHERE space = ?1 ORDER BY idx")?;
        let rows = stmt.query_map([&space], |r| {
            Ok(SignedOp { body: r.get(0)?, signature: Signature(blob(r.get(1)?)?) })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    // Notes.

    /// Inserts or updates a note. A deleted note stays deleted.
    pub fn put_note(
        &self,
        note: &LocalNote,
        sealed: Option<&SealedNote>,
    ) -> Result<(), ClientError> {
        let body = note.body.as_ref().map(cairn_proto::encode);
        self.conn.execute(
            "INSERT INTO notes (space, note_id, seq, sender, sealed, body, error, deleted, read, stored_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT(space, note_id) DO UPDATE SET
               seq = COALESCE(excluded.seq, seq),
               sealed = CASE WHEN deleted = 1 THEN NULL ELSE COALESCE(excluded.sealed, sealed) END,
               body = CASE WHEN deleted = 1 THEN NULL ELSE COALESCE(excluded.body, body) END,
               error = excluded.error,
               stored_at = excluded.stored_at",
            params![
                &note.space,
                &note.note_id,
                note.seq.map(|s| s as i64),
                &note.sender,
                sealed.map(cairn_proto::encode),
                body,
                note.error,
                note.deleted as i64,
                note.read as i64,
                note.stored_at as i64,
            ],
        )?;
        if let (Some(b), false) = (&note.body, note.deleted) {
            self.conn.execute(
                "DELETE FROM notes_fts WHERE space = ?1 AND note_id = ?2",
                params![&note.space, &note.note_id],
            )?;
            if !b.text.is_empty() {
                self.conn.execute(
                    "INSERT INTO notes_fts (space, note_id, author, text) VALUES (?1, ?2, ?3, ?4)",
                    params![&note.space, &note.note_id, b.author, b.text],
                )?;
            }
        }
        Ok(())
    }

    /// Marks a note deleted and forgets its content.
    pub fn delete_note(&self, space: &SpaceId, note_id: &NoteId) -> Result<bool, ClientError> {
        let n = self.conn.execute(
            "UPDATE notes SET deleted = 1, sealed = NULL, body = NULL, error = NULL WHERE space = ?1 AND note_id = ?2 AND deleted = 0",
            params![&space, &note_id],
        )?;
        self.conn.execute(
            "DELETE FROM notes_fts WHERE space = ?1 AND note_id = ?2",
            params![&space, &note_id],
        )?;
        Ok(n > 0)
    }

    pub fn note(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
    ) -> Result<Option<LocalNote>, ClientError> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {NOTE_COLUMNS} FROM notes WHERE space = ?1 AND note_id = ?2"),
                params![&space, &note_id],
                row_note,
            )
            .optional()?)
    }

    /// Finds a note by id (hex, or an unambiguous hex prefix of at least 4 digits) in any space.
    pub fn find_note(&self, id_prefix: &str) -> Result<Option<LocalNote>, ClientError> {
        let prefix = id_prefix.trim().to_ascii_lowercase();
        if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ClientError::ShortNoteId);
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {NOTE_COLUMNS} FROM notes WHERE hex(note_id) LIKE ?1 || '%' LIMIT 2"
        ))?;
        let found: Vec<LocalNote> =
            stmt.query_map([prefix.to_ascii_uppercase()], row_note)?.collect::<Result<_, _>>()?;
        match found.len() {
            0 => Ok(None),
            1 => Ok(found.into_iter().next()),
            _ => Err(ClientError::AmbiguousNote(prefix.to_owned())),
        }
    }

    /// The notes of a space in sequence order (pending ones last), deleted ones left out.
    pub fn notes(&self, space: &SpaceId) -> Result<Vec<LocalNote>, ClientError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {NOTE_COLUMNS} FROM notes WHERE space = ?1 AND deleted = 0 ORDER BY seq IS NULL, seq, stored_at"
        ))?;
        Ok(stmt.query_map([&space], row_note)?.collect::<Result<_, _>>()?)
    }

    /// Notes that could not be opened yet (for example, their key had not arrived).
    pub fn unopened(&self, space: &SpaceId) -> Result<Vec<SealedNote>, ClientError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT sealed FROM notes WHERE space = ?1 AND body IS NULL AND sealed IS NOT NULL AND deleted = 0",
        )?;
        let rows = stmt.query_map([&space], |r| r.get::<_, Vec<u8>>(0))?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(n) = cairn_proto::decode_limited(&r?, usize::MAX) {
                out.push(n);
            }
        }
        Ok(out)
    }

    pub fn mark_read(&self, space: &SpaceId, note_id: &NoteId) -> Result<(), ClientError> {
        self.conn.execute(
            "UPDATE notes SET read = 1 WHERE space = ?1 AND note_id = ?2",
            params![&space, &note_id],
        )?;
        Ok(())
    }

    /// Full-text search over decrypted notes (FTS5 query syntax, words are ANDed).
    pub fn search(&self, words: &str) -> Result<Vec<LocalNote>, ClientError> {
        // Quote every word so that user input is never parsed as FTS5 syntax.
        let query: Vec<String> =
            words.split_whitespace().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {} FROM notes_fts f JOIN notes n ON n.space = f.space AND n.note_id = f.note_id
             WHERE notes_fts MATCH ?1 AND n.deleted = 0 ORDER BY rank LIMIT 100",
            NOTE_COLUMNS.split(", ").map(|c| format!("n.{c}")).collect::<Vec<_>>().join(", ")
        ))?;
        Ok(stmt.query_map([query.join(" ")], row_note)?.collect::<Result<_, _>>()?)
    }

    // The outbox.

    pub fn outbox_put(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
        request: &Request,
    ) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO outbox (space, note_id, request, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![&space, &note_id, cairn_proto::encode(request), now_ms() as i64],
        )?;
        Ok(())
    }

    pub fn outbox(&self) -> Result<Vec<(SpaceId, NoteId, Request)>, ClientError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT space, note_id, request FROM outbox ORDER BY created_at")?;
        let rows = stmt.query_map([], |r| {
            Ok((SpaceId(blob(r.get(0)?)?), NoteId(blob(r.get(1)?)?), r.get::<_, Vec<u8>>(2)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (s, n, req) = row?;
            match cairn_proto::decode_limited(&req, usize::MAX) {
                Ok(req) => out.push((s, n, req)),
                Err(e) => {
                    tracing::error!(error = %e, "unreadable outbox entry kept for inspection")
                }
            }
        }
        Ok(out)
    }

    pub fn outbox_len(&self) -> Result<usize, ClientError> {
        Ok(self.conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get::<_, i64>(0))? as usize)
    }

    pub fn outbox_done(&self, space: &SpaceId, note_id: &NoteId) -> Result<(), ClientError> {
        self.conn.execute(
            "DELETE FROM outbox WHERE space = ?1 AND note_id = ?2",
            params![&space, &note_id],
        )?;
        Ok(())
    }

    // The media cache index (the bytes live in files named by hash).

    pub fn media_touch(&self, hash: &MediaHash, size: u64) -> Result<(), ClientError> {
        self.conn.execute(
            "INSERT INTO media (hash, size, last_used) VALUES (?1, ?2, ?3)
             ON CONFLICT(hash) DO UPDATE SET last_used = ?3",
            params![&hash, size as i64, now_ms() as i64],
        )?;
        Ok(())
    }

    /// Least recently used blobs to evict so the cache fits in `limit` bytes.
    pub fn media_evict(&self, limit: u64) -> Result<Vec<MediaHash>, ClientError> {
        let mut total: i64 =
            self.conn.query_row("SELECT COALESCE(SUM(size), 0) FROM media", [], |r| r.get(0))?;
        let mut out = Vec::new();
        if total as u64 <= limit {
            return Ok(out);
        }
        let rows: Vec<(Vec<u8>, i64)> = {
            let mut stmt =
                self.conn.prepare_cached("SELECT hash, size FROM media ORDER BY last_used")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        for (hash, size) in rows {
            if total as u64 <= limit {
                break;
            }
            self.conn.execute("DELETE FROM media WHERE hash = ?1", [&hash])?;
            total -= size;
            out.push(MediaHash(blob(hash)?));
        }
        Ok(out)
    }

    /// Runs `f` in one transaction.
    pub fn transaction<T>(
        &mut self,
        f: impl FnOnce(&LocalStore) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        self.conn.execute_batch("BEGIN")?;
        match f(self) {
            Ok(v) => {
                self.conn.execute_batch("COMMIT")?;
                Ok(v)
            }
            Err(e) => {
                let _ = self.conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

impl KeyStore for LocalStore {
    type Error = rusqlite::Error;
    fn put_epoch_key(
        &mut self,
        space: SpaceId,
        epoch: u64,
        key: &EpochKey,
    ) -> Result<(), Self::Error> {
        self.conn.execute(
            "INSERT OR REPLACE INTO epoch_keys (space, epoch, key) VALUES (?1, ?2, ?3)",
            params![&space, epoch as i64, &key.as_bytes()[..]],
        )?;
        Ok(())
    }
    fn epoch_key(&self, space: SpaceId, epoch: u64) -> Result<Option<EpochKey>, Self::Error> {
        let key: Option<Vec<u8>> = self
            .conn
            .query_row(
                "SELECT key FROM epoch_keys WHERE space = ?1 AND epoch = ?2",
                params![&space, epoch as i64],
                |r| r.get(0),
            )
            .optional()?;
        key.map(|k| Ok(EpochKey::from_bytes(blob(k)?))).transpose()
    }
    fn latest_epoch(&self, space: SpaceId) -> Result<Option<u64>, Self::Error> {
        Ok(self
            .conn
            .query_row("SELECT MAX(epoch) FROM epoch_keys WHERE space = ?1", [&space], |r| {
                r.get::<_, Option<i64>>(0)
            })?
            .map(|e| e as u64))
    }
}

/// Creates an empty file readable and writable by this user only; SQLite gives its `-wal`
/// and `-shm` files the same mode.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}
