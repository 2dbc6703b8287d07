//! The embedded backend: SQLite in WAL mode with `synchronous=FULL`.
//!
//! All writes go through one writer thread that practises group commit: it takes every
//! write waiting in its queue, runs each inside its own savepoint of one transaction, commits
//! once (one fsync for the whole batch), and only then answers each caller. Reads run on a
//! small pool of read-only connections, which WAL lets proceed beside the writer.

use super::*;
use async_trait::async_trait;
use cairn_proto::EntryItem;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Numbered migrations, applied in order inside one transaction each.
const MIGRATIONS: &[&str] = &[include_str!("../../migrations/sqlite/001_init.sql")];

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;

type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// One write for the writer thread.
struct Job {
    run: Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>,
    /// Run inside a savepoint of its own, so that its failure undoes only its own rows.
    /// A job without one must fail, if it fails, before it changes a row; if it fails
    /// after (the database's own errors: I/O, a full disk), the whole batch is rolled
    /// back and every caller in it told to retry. Posts go without: a savepoint copies
    /// every page a post touches into a sub-journal, about a tenth of the writer's time.
    savepoint: bool,
}

pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::UnboundedSender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

fn open(path: &Path, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Room for every statement the hot paths prepare (the default keeps 16).
    conn.set_prepared_statement_cache_capacity(64);
    conn.execute_batch("PRAGMA foreign_keys = ON;")?;
    if !read_only {
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA cache_size = -65536;",
        )?;
    }
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating when absent) the database at `path` and starts its writer thread.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, Checkpoints::DEFAULT)
    }

    /// [`Self::open`] with its checkpointer's rounds set by `checkpoints` (tests make them
    /// small).
    fn open_with(path: impl AsRef<Path>, checkpoints: Checkpoints) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = open(&path, false)?;
        migrate(&mut conn)?;
        // Checkpoints (copying the WAL back into the database file) run on a thread of
        // their own, not inside the writer's commits, which every post waits for.
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
        let checkpointer = open(&path, false)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (alive, stopped) = std::sync::mpsc::channel::<()>();
        let wal_long = Arc::new(AtomicBool::new(false));
        let writer_sees = wal_long.clone();
        std::thread::Builder::new()
            .name("cairn-sqlite-writer".into())
            .spawn(move || {
                writer_loop(conn, rx, &writer_sees);
                drop(alive);
            })
            .map_err(StoreError::backend)?;
        std::thread::Builder::new()
            .name("cairn-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, stopped, checkpoints, &wal_long))
            .map_err(StoreError::backend)?;
        Ok(SqliteStore { path, writer: tx, readers: Arc::new(Mutex::new(Vec::new())) })
    }

    /// Runs `f` in the writer's transaction, inside a savepoint of its own; resolves once
    /// the transaction is durable.
    async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_job(f, true).await
    }

    /// [`Self::write`] without the savepoint, for a write whose every failure of its own
    /// comes before it changes a row (see [`Job::savepoint`]).
    async fn write_unguarded<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_job(f, false).await
    }

    async fn write_job<T, F>(&self, f: F, savepoint: bool) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let run = Box::new(move |conn: &Connection| {
            let result = f(conn);
            let ok = result.is_ok();
            let reply: Reply = Box::new(move |commit| {
                let _ = tx.send(commit.and(result));
            });
            (ok, reply)
        });
        self.writer
            .send(Job { run, savepoint })
            .map_err(|_| StoreError::backend("writer stopped"))?;
        rx.await.map_err(|_| StoreError::backend("writer dropped a write"))?
    }

    /// Runs `f` on a read-only connection from the pool, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers.lock().expect("reader pool").pop();
            let conn = match conn {
                Some(c) => c,
                None => open(&path, true)?,
            };
            let result = f(&conn);
            let mut pool = readers.lock().expect("reader pool");
            if pool.len() < 8 {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(StoreError::backend)?
    }
}

/// Commits the jobs sent to it, as many as are waiting in each transaction. When the
/// checkpointer sets `wal_long`, the writer finishes the checkpointer's work between two
/// batches, so that the WAL starts again (see [`checkpoint_loop`]).
fn writer_loop(conn: Connection, mut rx: mpsc::UnboundedReceiver<Job>, wal_long: &AtomicBool) {
    while let Some(first) = rx.blocking_recv() {
        if wal_long.swap(false, Ordering::Relaxed) {
            // No write is open, so this copies every frame the checkpointer has not (those
            // committed since its last pass), and the next transaction starts the WAL again.
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "the writer's checkpoint");
            }
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let mut replies = Vec::with_capacity(batch.len());
        let begin = conn.execute_batch("BEGIN IMMEDIATE");
        if let Err(e) = begin {
            tracing::error!(error = %e, "could not begin a write transaction");
            for job in batch {
                // Run nothing; answer each with the failure.
                drop(job);
            }
            continue;
        }
        // Set when a job without a savepoint failed after changing rows: nothing of the
        // batch may then be kept.
        let mut torn = false;
        for job in batch {
            if !job.savepoint {
                let before = conn.total_changes();
                let (ok, reply) = (job.run)(&conn);
                torn |= !ok && conn.total_changes() != before;
                replies.push(reply);
                continue;
            }
            // Cached statements: parsing these four words per write cost more than the write.
            let sp = run_cached(&conn, "SAVEPOINT job");
            let (ok, reply) = (job.run)(&conn);
            if sp.is_ok() {
                let end = if ok {
                    run_cached(&conn, "RELEASE job")
                } else {
                    run_cached(&conn, "ROLLBACK TO job")
                        .and_then(|_| run_cached(&conn, "RELEASE job"))
                };
                if let Err(e) = end {
                    tracing::error!(error = %e, "savepoint");
                }
            }
            replies.push(reply);
        }
        let commit = if torn {
            tracing::error!("a write failed part-way; rolling back its whole batch");
            Err(StoreError::backend("a write failed part-way; nothing was stored: retry"))
        } else {
            conn.execute_batch("COMMIT").map_err(StoreError::from)
        };
        if commit.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for reply in replies {
            reply(match &commit {
                Ok(()) => Ok(()),
                Err(e) => Err(e.clone()),
            });
        }
    }
}

/// How the checkpointer goes about its rounds (see [`checkpoint_loop`]).
#[derive(Clone, Copy)]
struct Checkpoints {
    /// How often it looks at the WAL.
    every: std::time::Duration,
    /// WAL frames (pages) from which it has the writer start the WAL again.
    restart_from: i64,
}

impl Checkpoints {
    /// Every 100 ms; the WAL started again from 64 Ki frames (256 MiB of 4 KiB pages), on a
    /// busy server about once a second. Each start costs the writer a short checkpoint of
    /// its own between two batches (4–16 ms here, most of it the database file's fsync),
    /// which the posts of the next batch wait for: seldom enough not to show in their p99.
    const DEFAULT: Checkpoints =
        Checkpoints { every: std::time::Duration::from_millis(100), restart_from: 65_536 };
}

/// Frames committed during a checkpointer's pass few enough to leave to the writer (about
/// two commits of a busy server).
const WAL_CATCH_UP: i64 = 512;
/// Most passes the checkpointer makes in a row to bring the frames not yet copied under
/// [`WAL_CATCH_UP`].
const WAL_PASSES: usize = 4;

/// Copies committed WAL frames into the database file beside the writer (a passive
/// checkpoint never waits for it), until the writer stops; then once more, in full.
///
/// SQLite starts the WAL again from its beginning only when a write transaction begins
/// with every frame copied back, which under steady writes never happens: a pass takes
/// longer than the writer's next commit. The WAL then grows for as long as the writes go
/// on (450 MB in 80,000 posts in cairn-bench), and the file keeps its largest size. So once
/// a pass finds `restart_from` frames, the checkpointer passes again at once until one
/// finds few frames new since the one before ([`WAL_CATCH_UP`]) and sets `wal_long`; the
/// writer, between two batches, copies those last few frames itself, and its next
/// transaction writes the WAL from its start again, over file pages the kernel has cached.
/// (Not while a reader's snapshot holds the passes back: the WAL cannot start again under
/// it, and the writer would pay for a checkpoint for nothing.)
fn checkpoint_loop(
    conn: Connection,
    stopped: std::sync::mpsc::Receiver<()>,
    rounds: Checkpoints,
    wal_long: &AtomicBool,
) {
    use std::sync::mpsc::RecvTimeoutError::Timeout;
    // The frames in the WAL when the pass began, and whether it copied them all (it stops
    // at the oldest snapshot a reader still uses).
    let pass = || {
        let counts = |r: &rusqlite::Row| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?));
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], counts) {
            Ok((frames, copied)) => Some((frames, copied == frames)),
            Err(e) => {
                tracing::warn!(error = %e, "checkpoint");
                None
            }
        }
    };
    while let Err(Timeout) = stopped.recv_timeout(rounds.every) {
        let Some((mut frames, mut all)) = pass() else { continue };
        if frames < rounds.restart_from {
            continue;
        }
        let mut restarted = false;
        for _ in 1..WAL_PASSES {
            let Some((now, copied_all)) = pass() else { break };
            // Fewer: the WAL started again meanwhile (the writes paused).
            restarted = now < frames;
            let new = now - frames;
            (frames, all) = (now, copied_all);
            if restarted || new < WAL_CATCH_UP {
                break;
            }
        }
        // Where a reader held the pass back, the writer could not start the WAL again
        // either: it is not asked, and pays no checkpoint of its own this round.
        if all && !restarted {
            wal_long.store(true, Ordering::Relaxed);
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
}

/// Runs a statement without parameters from the connection's statement cache.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute([])
}

fn blob<const N: usize>(v: Vec<u8>) -> Result<[u8; N], StoreError> {
    id_bytes(&v)
}

/// Appends an entry's row (its item already encoded) at the space's next sequence number;
/// returns that number, or `None` (and the number given back) when it is a note whose id
/// the space holds already: the unique index finds that as it inserts, so a post needs no
/// lookup of its own beforehand.
#[allow(clippy::too_many_arguments)] // one per column of the row it writes
fn append_row(
    conn: &Connection,
    space: &SpaceId,
    note_id: &NoteId,
    is_note: bool,
    sender: Option<&DeviceId>,
    expires_at: Option<u64>,
    item: &[u8],
    now: u64,
) -> Result<Option<u64>, StoreError> {
    let seq: i64 = conn
        .prepare_cached("UPDATE spaces SET head = head + 1 WHERE id = ?1 RETURNING head")?
        .query_row(params![&space], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound)?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO entries (space, seq, note_id, stored_at, is_note, sender, expires_at, item)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (space, note_id) WHERE is_note = 1 DO NOTHING",
        )?
    .execute(params![
        &space,
        seq,
        &note_id,
        now as i64,
        is_note as i64,
        sender,
        expires_at.map(|e| e as i64),
        item,
    ])?;
    if inserted == 0 {
        conn.prepare_cached("UPDATE spaces SET head = head - 1 WHERE id = ?1")?
            .execute(params![&space])?;
        return Ok(None);
    }
    Ok(Some(seq as u64))
}

/// Replaces a note's entry with a tombstone and appends a tombstone entry.
fn tombstone(
    conn: &Connection,
    space: &SpaceId,
    seq: i64,
    note_id: &NoteId,
    by: Option<&DeviceId>,
    signature: Option<&Signature>,
    now: u64,
) -> Result<Tombstoned, StoreError> {
    let item =
        EntryItem::Tombstone { note_id: *note_id, by: by.copied(), signature: signature.copied() };
    let encoded = cairn_proto::encode(&item);
    conn.execute(
        "UPDATE entries SET deleted = 1, item = ?3 WHERE space = ?1 AND seq = ?2",
        params![&space, seq, &encoded],
    )?;
    conn.execute("DELETE FROM note_media WHERE space = ?1 AND seq = ?2", params![&space, seq])?;
    let seq = append_row(conn, space, note_id, false, by, None, &encoded, now)?
        .ok_or_else(|| StoreError::backend("a tombstone entry was refused as a duplicate note"))?;
    Ok(Tombstoned { space: *space, entry: SpaceEntry { seq, stored_at: now, item } })
}

#[async_trait]
impl Store for SqliteStore {
    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let key = format!("secret:{name}");
        self.write(move |c| {
            let existing: Option<Vec<u8>> = c
                .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| r.get(0))
                .optional()?;
            if let Some(v) = existing {
                return blob(v);
            }
            let mut s = [0u8; 32];
            getrandom::fill(&mut s).map_err(StoreError::backend)?;
            c.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, &s[..]])?;
            Ok(s)
        })
        .await
    }

    async fn register(
        &self,
        handle: &Handle,
        first: &DeviceRecord,
        invite: Option<&str>,
        invite_required: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let (handle, first, invite) = (handle.to_owned(), first.clone(), invite.map(str::to_owned));
        self.write(move |c| {
            let taken: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE handle = ?1)",
                [&handle],
                |r| r.get(0),
            )?;
            if taken {
                return Err(StoreError::HandleTaken);
            }
            let known: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1)",
                [&first.keys.sign],
                |r| r.get(0),
            )?;
            if known {
                return Err(StoreError::Conflict("device is already registered"));
            }
            if invite_required {
                let used = c.execute(
                    "UPDATE invites SET used_by = ?2 WHERE token = ?1 AND used_by IS NULL",
                    params![invite.as_deref().unwrap_or(""), &handle],
                )?;
                if used != 1 {
                    return Err(StoreError::InviteRequired);
                }
            }
            c.execute("INSERT INTO users (handle, created_at) VALUES (?1, ?2)", params![&handle, now as i64])?;
            c.execute(
                "INSERT INTO devices (id, handle, agree, added_by, signature, position) VALUES (?1, ?2, ?3, NULL, ?4, 0)",
                params![&first.keys.sign, &handle, &first.keys.agree, &first.signature],
            )?;
            Ok(())
        })
        .await
    }

    async fn create_invite(&self, token: &str) -> Result<(), StoreError> {
        let token = token.to_owned();
        self.write(move |c| {
            c.execute("INSERT INTO invites (token) VALUES (?1)", [&token])?;
            Ok(())
        })
        .await
    }

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<DeviceOwner>, StoreError> {
        let id = *device;
        self.read(move |c| {
            Ok(c.query_row("SELECT handle, revoked FROM devices WHERE id = ?1", [&id], |r| {
                Ok(DeviceOwner { handle: r.get(0)?, revoked: r.get::<_, i64>(1)? != 0 })
            })
            .optional()?)
        })
        .await
    }

    async fn devices(&self, handle: &Handle) -> Result<Vec<DeviceRecord>, StoreError> {
        let handle = handle.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, agree, added_by, signature, revoked FROM devices WHERE handle = ?1 ORDER BY position",
            )?;
            let rows = stmt.query_map([&handle], |r| {
                Ok(DeviceRecord {
                    keys: cairn_proto::DeviceKeys { sign: r.get(0)?, agree: r.get(1)? },
                    added_by: r.get(2)?,
                    signature: r.get(3)?,
                    revoked: r.get::<_, i64>(4)? != 0,
                })
            })?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        })
        .await
    }

    async fn add_device(&self, handle: &Handle, record: &DeviceRecord) -> Result<(), StoreError> {
        let (handle, record) = (handle.to_owned(), record.clone());
        self.write(move |c| {
            let known: bool = c.query_row(
                "SELECT EXISTS(SELECT 1 FROM devices WHERE id = ?1)",
                [&record.keys.sign],
                |r| r.get(0),
            )?;
            if known {
                return Err(StoreError::Conflict("device is already registered"));
            }
            c.execute(
                "INSERT INTO devices (id, handle, agree, added_by, signature, position)
                 VALUES (?1, ?2, ?3, ?4, ?5, (SELECT COALESCE(MAX(position), -1) + 1 FROM devices WHERE handle = ?2))",
                params![
                    &record.keys.sign,
                    &handle,
                    &record.keys.agree,
                    record.added_by.map(|d| d.0.to_vec()),
                    &record.signature
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoke_device(&self, handle: &Handle, device: &DeviceId) -> Result<(), StoreError> {
        let (handle, device) = (handle.to_owned(), *device);
        self.write(move |c| {
            let n = c.execute(
                "UPDATE devices SET revoked = 1 WHERE id = ?1 AND handle = ?2",
                params![&device, &handle],
            )?;
            if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
        .await
    }

    async fn append_op(
        &self,
        space: &SpaceId,
        index: u64,
        op: &SignedOp,
        after: &MembersAfter,
    ) -> Result<(), StoreError> {
        let (space, op, after) = (*space, op.clone(), after.clone());
        self.write(move |c| {
            if index == 0 {
                let n = c.execute("INSERT OR IGNORE INTO spaces (id) VALUES (?1)", [&space])?;
                if n == 0 {
                    return Err(StoreError::Conflict("space exists"));
                }
            }
            let ops: i64 = c
                .query_row("SELECT ops FROM spaces WHERE id = ?1", [&space], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound)?;
            if ops as u64 != index {
                return Err(StoreError::Conflict("membership changed; fetch the log and retry"));
            }
            c.execute(
                "INSERT INTO ops (space, idx, body, signature) VALUES (?1, ?2, ?3, ?4)",
                params![&space, index as i64, &op.body, &op.signature],
            )?;
            c.execute(
                "UPDATE spaces SET ops = ops + 1, epoch = ?2 WHERE id = ?1",
                params![&space, after.epoch as i64],
            )?;
            let mut set = c.prepare_cached(
                "INSERT INTO members (space, handle, role) VALUES (?1, ?2, ?3)
                 ON CONFLICT (space, handle) DO UPDATE SET role = excluded.role",
            )?;
            for (handle, role) in &after.members {
                set.execute(params![&space, handle, role.as_str()])?;
            }
            let mut remove =
                c.prepare_cached("DELETE FROM members WHERE space = ?1 AND handle = ?2")?;
            for handle in &after.removed {
                remove.execute(params![&space, handle])?;
            }
            Ok(())
        })
        .await
    }

    async fn ops(&self, space: &SpaceId, from: u64) -> Result<Vec<SignedOp>, StoreError> {
        let space = *space;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT body, signature FROM ops WHERE space = ?1 AND idx >= ?2 ORDER BY idx",
            )?;
            let rows = stmt.query_map(params![&space, from as i64], |r| {
                Ok(SignedOp { body: r.get(0)?, signature: r.get(1)? })
            })?;
            rows.map(|row| Ok(row?)).collect()
        })
        .await
    }

    async fn spaces_of(&self, handle: &Handle) -> Result<Vec<SpaceSummary>, StoreError> {
        let handle = handle.to_owned();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT s.id, m.role, s.epoch, s.head, s.ops FROM members m JOIN spaces s ON s.id = m.space
                 WHERE m.handle = ?1 ORDER BY s.id",
            )?;
            let rows = stmt.query_map([&handle], |r| {
                Ok((r.get::<_, SpaceId>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?))
            })?;
            rows.map(|row| {
                let (id, role, epoch, head, ops) = row?;
                Ok(SpaceSummary { space: id, role: role_from(&role)?, epoch: epoch as u64, head: head as u64, ops: ops as u64 })
            })
            .collect()
        })
        .await
    }

    async fn heads(&self, spaces: &[SpaceId]) -> Result<Vec<SpaceHeads>, StoreError> {
        let spaces = spaces.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached("SELECT head, ops FROM spaces WHERE id = ?1")?;
            let mut out = Vec::new();
            for space in spaces {
                let row = stmt
                    .query_row([&space], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                    .optional()?;
                if let Some((head, ops)) = row {
                    out.push(SpaceHeads { space, head: head as u64, ops: ops as u64 });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn post_note(&self, note: &SealedNote, now: u64) -> Result<Posted, StoreError> {
        // Everything but the rows is done here, on the caller's thread: the encoding, and
        // (below) the copy of the note for the answer. The one writer thread, which every
        // post waits for, only writes.
        let item = EntryItem::encode_note(note);
        let h = note.header.clone();
        // Without a savepoint: its one failure of its own (no such space) comes before it
        // writes, and a duplicate is not a failure (its number is given back).
        let written = self
            .write_unguarded(move |c| {
                let Some(seq) = append_row(c, &h.space, &h.note_id, true, Some(&h.sender), h.expires_at, &item, now)? else {
                    // Stored before (a retry): answer with the original.
                    let found = c
                        .prepare_cached(
                            "SELECT seq, stored_at, item FROM entries WHERE space = ?1 AND note_id = ?2 AND is_note = 1",
                        )?
                        .query_row(params![&h.space, &h.note_id], |r| {
                            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?))
                        })?;
                    return Ok(Err(found));
                };
                let mut ins = c.prepare_cached("INSERT OR IGNORE INTO note_media (space, seq, hash) VALUES (?1, ?2, ?3)")?;
                for m in &h.media {
                    ins.execute(params![&h.space, seq as i64, &m])?;
                }
                // The encoded item goes back to be freed off the writer too.
                Ok(Ok((seq, item)))
            })
            .await?;
        Ok(match written {
            Ok((seq, _item)) => Posted {
                entry: SpaceEntry { seq, stored_at: now, item: EntryItem::Note(note.clone()) },
                duplicate: false,
            },
            Err((seq, stored_at, item)) => Posted {
                entry: row_entry(seq, stored_at, &item, false, &note.header.note_id.0)?,
                duplicate: true,
            },
        })
    }

    async fn note_sender(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
    ) -> Result<Option<DeviceId>, StoreError> {
        let (space, note_id) = (*space, *note_id);
        self.read(move |c| {
            let sender: Option<Option<Vec<u8>>> = c
                .query_row(
                    "SELECT sender FROM entries WHERE space = ?1 AND note_id = ?2 AND is_note = 1 AND deleted = 0",
                    params![&space, &note_id],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(sender.flatten().map(blob).transpose()?.map(DeviceId))
        })
        .await
    }

    async fn delete_note(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
        by: &DeviceId,
        signature: &Signature,
        now: u64,
    ) -> Result<Tombstoned, StoreError> {
        let (space, note_id, by, signature) = (*space, *note_id, *by, *signature);
        self.write(move |c| {
            let seq: i64 = c
                .query_row(
                    "SELECT seq FROM entries WHERE space = ?1 AND note_id = ?2 AND is_note = 1 AND deleted = 0",
                    params![&space, &note_id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(StoreError::NotFound)?;
            tombstone(c, &space, seq, &note_id, Some(&by), Some(&signature), now)
        })
        .await
    }

    async fn entries(
        &self,
        space: &SpaceId,
        after: u64,
        limit: u32,
        now: u64,
    ) -> Result<(Vec<SpaceEntry>, bool), StoreError> {
        let space = *space;
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT seq, stored_at, item, note_id, (expires_at IS NOT NULL AND expires_at <= ?4 AND deleted = 0)
                 FROM entries WHERE space = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![&space, after as i64, i64::from(limit) + 1, now as i64],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, Vec<u8>>(2)?, r.get::<_, Vec<u8>>(3)?, r.get::<_, bool>(4)?)),
            )?;
            // Rows are read one at a time, and reading stops once a page is full in bytes.
            let mut out = Vec::new();
            let mut page = super::Page::new(limit);
            for row in rows {
                let (seq, stored_at, item, note_id, expired) = row?;
                if !page.admit(item.len()) {
                    return Ok((out, true));
                }
                out.push(row_entry(seq, stored_at, &item, expired, &note_id)?);
            }
            Ok((out, false))
        })
        .await
    }

    async fn purge_expired(&self, now: u64) -> Result<Vec<Tombstoned>, StoreError> {
        self.write(move |c| {
            let expired: Vec<(SpaceId, i64, NoteId)> = {
                let mut stmt = c.prepare_cached(
                    "SELECT space, seq, note_id FROM entries
                     WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND deleted = 0 LIMIT 1000",
                )?;
                stmt.query_map([now as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for (space, seq, note_id) in expired {
                out.push(tombstone(c, &space, seq, &note_id, None, None, now)?);
            }
            Ok(out)
        })
        .await
    }

    async fn put_envelopes(&self, envelopes: &[KeyEnvelope]) -> Result<usize, StoreError> {
        let envelopes = envelopes.to_vec();
        self.write(move |c| {
            let mut ins = c.prepare_cached(
                "INSERT OR IGNORE INTO envelopes (space, epoch, recipient, envelope) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut existing = c.prepare_cached(
                "SELECT envelope FROM envelopes WHERE space = ?1 AND epoch = ?2 AND recipient = ?3",
            )?;
            let mut kept = 0;
            for e in &envelopes {
                let key = (&e.space, e.epoch as i64, &e.recipient);
                let body = cairn_proto::encode(e);
                if ins.execute(params![key.0, key.1, key.2, &body])? == 0 {
                    let stored: Vec<u8> =
                        existing.query_row(params![key.0, key.1, key.2], |r| r.get(0))?;
                    kept += usize::from(stored != body);
                }
            }
            Ok(kept)
        })
        .await
    }

    async fn envelopes(
        &self,
        space: &SpaceId,
        recipient: &DeviceId,
    ) -> Result<Vec<KeyEnvelope>, StoreError> {
        let (space, recipient) = (*space, *recipient);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT envelope FROM envelopes WHERE space = ?1 AND recipient = ?2 ORDER BY epoch",
            )?;
            let rows = stmt.query_map(params![&space, &recipient], |r| r.get::<_, Vec<u8>>(0))?;
            rows.map(|row| {
                cairn_proto::decode_limited(&row?, usize::MAX).map_err(StoreError::backend)
            })
            .collect()
        })
        .await
    }

    async fn record_media(
        &self,
        hash: &MediaHash,
        handle: &Handle,
        size: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let (hash, handle) = (*hash, handle.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO media (hash, size, created_at) VALUES (?1, ?2, ?3)",
                params![&hash, size as i64, now as i64],
            )?;
            c.execute(
                "INSERT OR IGNORE INTO media_uploaders (hash, handle) VALUES (?1, ?2)",
                params![&hash, &handle],
            )?;
            Ok(())
        })
        .await
    }

    async fn media_readable_by(
        &self,
        hash: &MediaHash,
        handle: &Handle,
    ) -> Result<bool, StoreError> {
        let (hash, handle) = (*hash, handle.to_owned());
        self.read(move |c| {
            Ok(c.query_row(
                "SELECT EXISTS(SELECT 1 FROM media_uploaders WHERE hash = ?1 AND handle = ?2)
                     OR EXISTS(SELECT 1 FROM note_media n JOIN members m ON m.space = n.space
                               WHERE n.hash = ?1 AND m.handle = ?2)",
                params![&hash, &handle],
                |r| r.get::<_, bool>(0),
            )?)
        })
        .await
    }

    async fn collect_media(&self, before: u64) -> Result<Vec<MediaHash>, StoreError> {
        self.write(move |c| {
            let hashes: Vec<MediaHash> = {
                let mut stmt = c.prepare_cached(
                    "SELECT hash FROM media WHERE created_at < ?1
                     AND NOT EXISTS (SELECT 1 FROM note_media n WHERE n.hash = media.hash) LIMIT 1000",
                )?;
                stmt.query_map([before as i64], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            let mut out = Vec::new();
            for h in hashes {
                c.execute("DELETE FROM media WHERE hash = ?1", [&h])?;
                c.execute("DELETE FROM media_uploaders WHERE hash = ?1", [&h])?;
                out.push(h);
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write without a savepoint that fails after changing a row takes its whole batch
    /// down: nothing of it is kept, and every caller in it is told so; the store goes on.
    #[tokio::test]
    async fn an_unguarded_write_that_fails_part_way_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let insert = |c: &Connection, id: u8| {
            c.execute("INSERT INTO spaces (id) VALUES (?1)", [&[id; 16][..]]).map(|_| ())
        };
        let torn = store
            .write_unguarded(move |c| {
                insert(c, 1)?;
                Err::<(), _>(StoreError::backend("failed after a write"))
            })
            .await
            .unwrap_err();
        assert!(torn.to_string().contains("nothing was stored: retry"), "{torn}");
        // A failure before any change is the caller's alone; a good write still commits.
        let clean =
            store.write_unguarded(|_| Err::<(), _>(StoreError::NotFound)).await.unwrap_err();
        assert!(matches!(clean, StoreError::NotFound), "{clean}");
        store.write_unguarded(move |c| Ok(insert(c, 2)?)).await.unwrap();
        let kept: Vec<u8> = store
            .read(|c| {
                let mut rows = c.prepare("SELECT id FROM spaces")?;
                let ids = rows.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
                Ok(ids.map(|id| id.map(|id| id[0])).collect::<Result<_, _>>()?)
            })
            .await
            .unwrap();
        assert_eq!(kept, vec![2]);
    }

    /// Under writes that never pause, the WAL still starts again from its beginning, so its
    /// file stays small: 4–7 MB here, with the checkpointer's rounds made small. Without
    /// the writer's share of the checkpoint it grew by every page written: 83–84 MB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn under_writes_that_never_pause_the_wal_starts_again() {
        use cairn_proto::{NoteHeader, NoteKind};
        const SPACES: u8 = 100;
        const NOTES: usize = 16_000;
        const IN_FLIGHT: usize = 400;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let rounds = Checkpoints { every: std::time::Duration::from_millis(5), restart_from: 256 };
        let store = Arc::new(SqliteStore::open_with(&path, rounds).unwrap());
        let owner = MembersAfter {
            members: vec![(Handle::from_static("ann"), Role::Owner)],
            ..Default::default()
        };
        for i in 0..SPACES {
            let op = SignedOp { body: vec![1; 100], signature: Signature([0; 64]) };
            store.append_op(&SpaceId([i; 16]), 0, &op, &owner).await.unwrap();
        }
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let posters: Vec<_> = (0..IN_FLIGHT)
            .map(|_| {
                let (store, next) = (store.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= NOTES {
                            return;
                        }
                        let mut id = [0; 16];
                        id[..8].copy_from_slice(&n.to_le_bytes());
                        let note = SealedNote {
                            header: NoteHeader {
                                space: SpaceId([(n % SPACES as usize) as u8; 16]),
                                epoch: 0,
                                sender: DeviceId([7; 32]),
                                note_id: NoteId(id),
                                kind: NoteKind::Text,
                                expires_at: None,
                                media: vec![],
                            },
                            ciphertext: vec![0x5a; 1124],
                            signature: Signature([1; 64]),
                        };
                        store.post_note(&note, 1).await.unwrap();
                    }
                })
            })
            .collect();
        for p in posters {
            p.await.unwrap();
        }
        // (The file keeps its largest size.)
        let wal = std::fs::metadata(dir.path().join("s.db-wal")).unwrap().len();
        assert!(wal < 20 << 20, "the WAL file grew to {wal} bytes");
        // And everything is there.
        let heads = store.heads(&[SpaceId([0; 16]), SpaceId([SPACES - 1; 16])]).await.unwrap();
        assert_eq!(heads.iter().map(|h| h.head).sum::<u64>(), 2 * (NOTES / SPACES as usize) as u64);
    }
}
