//! The shared backend: PostgreSQL, for several server nodes over one database.
//!
//! Pooled connections (deadpool) run every request in its own transaction, except posts:
//! those go through a writer task that practises group commit, as the SQLite backend does.
//! It takes every post waiting, and in one transaction locks the spaces they go to (in a
//! fixed order, so writers on different nodes never deadlock), looks up which note ids are
//! already stored, numbers the new notes from each space's head, and writes them with one
//! multi-row `INSERT`. The row lock on `spaces` is what keeps sequence numbers gap-free and
//! unique across nodes: every writer of a space's entries (post, delete, expiry) takes it
//! first, and the duplicate check runs after it is held, so a client note id stays
//! idempotent however many nodes it is retried on. A post is answered after `COMMIT`
//! returns, which with the default `synchronous_commit = on` means the WAL is flushed.

use super::*;
use async_trait::async_trait;
use cairn_proto::EntryItem;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

/// Numbered migrations: each runs once, in order, in one transaction with its record in
/// `schema_migrations`.
pub const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/postgres/001_init.sql"),
    include_str!("../../migrations/postgres/002_media_blobs.sql"),
];

/// Advisory lock held while migrating, so nodes starting together migrate once.
const MIGRATION_LOCK: i64 = 0x6361_6972_6e5f_6d69; // "cairn_mi"

/// Most posts committed in one transaction.
const MAX_BATCH: usize = 512;

/// Post writers per node. While one batch waits for its commit's WAL flush, the next is
/// being read and prepared; PostgreSQL flushes concurrent commits together.
const WRITERS: usize = 2;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::backend(e)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::backend(format!("database pool: {e}"))
    }
}

/// Whether `e` is a unique violation of the named constraint.
fn unique_violation(e: &tokio_postgres::Error, constraint: &str) -> bool {
    e.as_db_error().is_some_and(|d| {
        *d.code() == SqlState::UNIQUE_VIOLATION && d.constraint() == Some(constraint)
    })
}

/// A post for the writer: its header and its entry's CBOR, encoded by the caller (the
/// writer, which every post waits for, only writes).
struct PostJob {
    header: cairn_proto::NoteHeader,
    item: Vec<u8>,
    now: u64,
    reply: oneshot::Sender<Result<Written, StoreError>>,
}

/// What the writer did with a post: stored it at `seq` (`again`: earlier in the same
/// batch, under the same note id), or found it stored already.
// One per post in a batch, moved once: boxing the entry would add an allocation per post.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
enum Written {
    At { seq: u64, stored_at: u64, again: bool },
    Stored(SpaceEntry),
}

pub struct PgStore {
    pool: Pool,
    posts: mpsc::UnboundedSender<PostJob>,
}

/// Builds a pool for `url` (a `postgres://` URL or key=value string).
pub fn pool(url: &str, size: usize) -> Result<Pool, StoreError> {
    let config: tokio_postgres::Config =
        url.parse().map_err(|e| StoreError::backend(format!("database URL: {e}")))?;
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|e| StoreError::backend(format!("database pool: {e}")))
}

/// Applies the migrations this database has not seen yet.
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let done: i32 =
        tx.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[]).await?.get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(done as usize) {
        let version = i as i32 + 1;
        tx.batch_execute(sql)
            .await
            .map_err(|e| StoreError::backend(format!("migration {version}: {e}")))?;
        tx.execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&version]).await?;
        tracing::info!(version, "applied database migration");
    }
    tx.commit().await?;
    Ok(())
}

impl PgStore {
    /// Connects to `url` with a pool of `pool_size` connections, migrates, and starts the
    /// post writer. Fails at once when the database cannot be reached.
    pub async fn connect(url: &str, pool_size: usize) -> Result<Self, StoreError> {
        let pool = pool(url, pool_size.max(2))?;
        migrate(&pool).await?;
        Ok(Self::over(pool))
    }

    /// Over an existing, migrated pool (shared with the media store).
    pub fn over(pool: Pool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(post_writer(pool.clone(), rx.clone()));
        }
        PgStore { pool, posts: tx }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

async fn post_writer(
    pool: Pool,
    rx: std::sync::Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<PostJob>>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Take what is waiting (holding the queue only while taking), then write it.
    while rx.lock().await.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut results = post_batch(&pool, &batch).await;
        if let Err(e) = &results {
            // A lost connection or a failover: one retry on a fresh connection, then give up.
            tracing::warn!(error = %e, posts = batch.len(), "post batch failed; retrying once");
            results = post_batch(&pool, &batch).await;
        }
        match results {
            Ok(results) => {
                for (job, result) in batch.drain(..).zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, posts = batch.len(), "post batch failed");
                // Every post of the batch failed for the batch's reason.
                let e = match e {
                    StoreError::Backend(_) => e,
                    other => StoreError::backend(other.to_string()),
                };
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Column arrays of a multi-row insert into `entries`, borrowing the jobs' bytes.
#[derive(Default)]
struct EntryRows<'a> {
    space: Vec<&'a [u8]>,
    seq: Vec<i64>,
    note_id: Vec<&'a [u8]>,
    stored_at: Vec<i64>,
    sender: Vec<&'a [u8]>,
    expires_at: Vec<Option<i64>>,
    item: Vec<&'a [u8]>,
    media_space: Vec<&'a [u8]>,
    media_seq: Vec<i64>,
    media_hash: Vec<&'a [u8]>,
}

/// One transaction for a batch of posts; one result per job, in order.
async fn post_batch(
    pool: &Pool,
    jobs: &[PostJob],
) -> Result<Vec<Result<Written, StoreError>>, StoreError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let mut space_ids: Vec<Vec<u8>> = jobs.iter().map(|j| j.header.space.0.to_vec()).collect();
    space_ids.sort();
    space_ids.dedup();
    let lock = tx
        .prepare_cached("SELECT id, head FROM spaces WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .await?;
    let mut heads: HashMap<SpaceId, i64> = HashMap::new();
    for row in tx.query(&lock, &[&space_ids]).await? {
        heads.insert(row.try_get::<_, SpaceId>(0)?, row.get(1));
    }
    // Referenced blobs, share-locked so that the media sweep cannot take them away under
    // this batch; a blob it took already fails only the posts that reference it.
    let hashes: Vec<&[u8]> =
        jobs.iter().flat_map(|j| j.header.media.iter().map(|m| &m.0[..])).collect();
    let mut present: std::collections::HashSet<MediaHash> = std::collections::HashSet::new();
    if !hashes.is_empty() {
        let share = tx
            .prepare_cached(
                "SELECT hash FROM media WHERE hash = ANY($1) ORDER BY hash FOR KEY SHARE",
            )
            .await?;
        for row in tx.query(&share, &[&hashes]).await? {
            present.insert(row.try_get::<_, MediaHash>(0)?);
        }
    }
    // Already stored (a retry, perhaps through another node): answer with the original.
    let keys_space: Vec<&[u8]> = jobs.iter().map(|j| &j.header.space.0[..]).collect();
    let keys_note: Vec<&[u8]> = jobs.iter().map(|j| &j.header.note_id.0[..]).collect();
    let dup = tx
        .prepare_cached(
            "SELECT e.space, e.note_id, e.seq, e.stored_at, e.item
             FROM unnest($1::bytea[], $2::bytea[]) AS k(space, note_id)
             JOIN entries e ON e.space = k.space AND e.note_id = k.note_id AND e.is_note",
        )
        .await?;
    let mut stored: HashMap<(SpaceId, NoteId), Written> = HashMap::new();
    for row in tx.query(&dup, &[&keys_space, &keys_note]).await? {
        let key = (row.try_get::<_, SpaceId>(0)?, row.try_get::<_, NoteId>(1)?);
        let entry = row_entry(row.get(2), row.get(3), row.get(4), false, row.get(1))?;
        stored.insert(key, Written::Stored(entry));
    }
    let mut rows = EntryRows::default();
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let h = &job.header;
        if let Some(written) = stored.get(&(h.space, h.note_id)) {
            // Stored before, or earlier in this batch (answered with that one's number).
            results.push(Ok(match written.clone() {
                Written::At { seq, stored_at, .. } => Written::At { seq, stored_at, again: true },
                stored => stored,
            }));
            continue;
        }
        let Some(head) = heads.get_mut(&h.space) else {
            results.push(Err(StoreError::NotFound));
            continue;
        };
        if !h.media.iter().all(|m| present.contains(m)) {
            results.push(Err(StoreError::Conflict("a referenced blob is gone; upload it again")));
            continue;
        }
        *head += 1;
        rows.space.push(&h.space.0);
        rows.seq.push(*head);
        rows.note_id.push(&h.note_id.0);
        rows.stored_at.push(job.now as i64);
        rows.sender.push(&h.sender.0);
        rows.expires_at.push(h.expires_at.map(|e| e as i64));
        rows.item.push(&job.item);
        for m in &h.media {
            rows.media_space.push(&h.space.0);
            rows.media_seq.push(*head);
            rows.media_hash.push(&m.0);
        }
        let written = Written::At { seq: *head as u64, stored_at: job.now, again: false };
        stored.insert((h.space, h.note_id), written.clone());
        results.push(Ok(written));
    }
    if !rows.seq.is_empty() {
        let (ids, new_heads): (Vec<Vec<u8>>, Vec<i64>) =
            heads.iter().map(|(s, h)| (s.0.to_vec(), *h)).unzip();
        let bump = tx
            .prepare_cached(
                "UPDATE spaces SET head = v.head
                 FROM unnest($1::bytea[], $2::int8[]) AS v(id, head)
                 WHERE spaces.id = v.id AND spaces.head < v.head",
            )
            .await?;
        tx.execute(&bump, &[&ids, &new_heads]).await?;
        let insert = tx
            .prepare_cached(
                "INSERT INTO entries (space, seq, note_id, stored_at, is_note, sender, expires_at, item)
                 SELECT s, q, n, t, TRUE, d, x, i
                 FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::int8[], $5::bytea[], $6::int8[], $7::bytea[])
                      AS r(s, q, n, t, d, x, i)",
            )
            .await?;
        tx.execute(
            &insert,
            &[
                &rows.space,
                &rows.seq,
                &rows.note_id,
                &rows.stored_at,
                &rows.sender,
                &rows.expires_at,
                &rows.item,
            ],
        )
        .await?;
        if !rows.media_seq.is_empty() {
            let media = tx
                .prepare_cached(
                    "INSERT INTO note_media (space, seq, hash)
                     SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[])
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(&media, &[&rows.media_space, &rows.media_seq, &rows.media_hash]).await?;
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// Appends a tombstone entry at the space's next sequence number (taking its row lock).
async fn append_tombstone(
    tx: &deadpool_postgres::Transaction<'_>,
    space: &SpaceId,
    note_id: &NoteId,
    item: &EntryItem,
    by: Option<&DeviceId>,
    now: u64,
) -> Result<SpaceEntry, StoreError> {
    let seq: i64 = tx
        .query_opt("UPDATE spaces SET head = head + 1 WHERE id = $1 RETURNING head", &[&space])
        .await?
        .ok_or(StoreError::NotFound)?
        .get(0);
    tx.execute(
        "INSERT INTO entries (space, seq, note_id, stored_at, is_note, sender, expires_at, item)
         VALUES ($1, $2, $3, $4, FALSE, $5, NULL, $6)",
        &[
            &space,
            &seq,
            &note_id,
            &(now as i64),
            &by.map(|d| d.0.to_vec()),
            &cairn_proto::encode(item),
        ],
    )
    .await?;
    Ok(SpaceEntry { seq: seq as u64, stored_at: now, item: item.clone() })
}

/// Turns the live note at `seq` into a tombstone and appends a tombstone entry; `None` if
/// it was deleted meanwhile.
async fn tombstone(
    tx: &deadpool_postgres::Transaction<'_>,
    space: &SpaceId,
    note_id: &NoteId,
    by: Option<&DeviceId>,
    signature: Option<&Signature>,
    now: u64,
) -> Result<Option<Tombstoned>, StoreError> {
    let item =
        EntryItem::Tombstone { note_id: *note_id, by: by.copied(), signature: signature.copied() };
    let Some(row) = tx
        .query_opt(
            "UPDATE entries SET deleted = TRUE, item = $3
             WHERE space = $1 AND note_id = $2 AND is_note AND NOT deleted RETURNING seq",
            &[&space, &note_id, &cairn_proto::encode(&item)],
        )
        .await?
    else {
        return Ok(None);
    };
    let seq: i64 = row.get(0);
    tx.execute("DELETE FROM note_media WHERE space = $1 AND seq = $2", &[&space, &seq]).await?;
    let entry = append_tombstone(tx, space, note_id, &item, by, now).await?;
    Ok(Some(Tombstoned { space: *space, entry }))
}

#[async_trait]
impl Store for PgStore {
    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError> {
        let key = format!("secret:{name}");
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(StoreError::backend)?;
        let client = self.pool.get().await?;
        // The first node to ask creates it; every other node reads the same value.
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &&fresh[..]],
            )
            .await?;
        let row = client.query_one("SELECT value FROM meta WHERE key = $1", &[&key]).await?;
        id_bytes(row.get(0))
    }

    async fn register(
        &self,
        handle: &Handle,
        first: &DeviceRecord,
        invite: Option<&str>,
        invite_required: bool,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if tx.query_opt("SELECT 1 FROM users WHERE handle = $1", &[&handle]).await?.is_some() {
            return Err(StoreError::HandleTaken);
        }
        if tx.query_opt("SELECT 1 FROM devices WHERE id = $1", &[&first.keys.sign]).await?.is_some()
        {
            return Err(StoreError::Conflict("device is already registered"));
        }
        if invite_required {
            let used = tx
                .execute(
                    "UPDATE invites SET used_by = $2 WHERE token = $1 AND used_by IS NULL",
                    &[&invite.unwrap_or(""), &handle],
                )
                .await?;
            if used != 1 {
                return Err(StoreError::InviteRequired);
            }
        }
        let result = async {
            tx.execute(
                "INSERT INTO users (handle, created_at) VALUES ($1, $2)",
                &[&handle, &(now as i64)],
            )
            .await?;
            tx.execute(
                "INSERT INTO devices (id, handle, agree, added_by, signature, position)
                 VALUES ($1, $2, $3, NULL, $4, 0)",
                &[&first.keys.sign, &handle, &first.keys.agree, &first.signature],
            )
            .await?;
            tx.commit().await
        }
        .await;
        // Two nodes registering the same handle or device at once: one wins.
        match result {
            Err(e) if unique_violation(&e, "users_pkey") => Err(StoreError::HandleTaken),
            Err(e) if unique_violation(&e, "devices_pkey") => {
                Err(StoreError::Conflict("device is already registered"))
            }
            other => Ok(other?),
        }
    }

    async fn create_invite(&self, token: &str) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client.execute("INSERT INTO invites (token) VALUES ($1)", &[&token]).await?;
        Ok(())
    }

    async fn device_owner(&self, device: &DeviceId) -> Result<Option<DeviceOwner>, StoreError> {
        let client = self.pool.get().await?;
        let stmt =
            client.prepare_cached("SELECT handle, revoked FROM devices WHERE id = $1").await?;
        Ok(client
            .query_opt(&stmt, &[&device])
            .await?
            .map(|r| DeviceOwner { handle: r.get(0), revoked: r.get(1) }))
    }

    async fn devices(&self, handle: &Handle) -> Result<Vec<DeviceRecord>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, agree, added_by, signature, revoked FROM devices
                 WHERE handle = $1 ORDER BY position",
                &[&handle],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DeviceRecord {
                    keys: cairn_proto::DeviceKeys {
                        sign: r.try_get::<_, DeviceId>(0)?,
                        agree: r.try_get::<_, cairn_proto::AgreeKey>(1)?,
                    },
                    added_by: r.try_get::<_, Option<DeviceId>>(2)?,
                    signature: r.try_get::<_, Signature>(3)?,
                    revoked: r.get(4),
                })
            })
            .collect()
    }

    async fn add_device(&self, handle: &Handle, record: &DeviceRecord) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // The user's row lock orders concurrent additions, so positions stay distinct.
        tx.query_opt("SELECT 1 FROM users WHERE handle = $1 FOR UPDATE", &[&handle])
            .await?
            .ok_or(StoreError::NotFound)?;
        let result = async {
            tx.execute(
                "INSERT INTO devices (id, handle, agree, added_by, signature, position)
                 VALUES ($1, $2, $3, $4, $5,
                         (SELECT COALESCE(MAX(position), -1) + 1 FROM devices WHERE handle = $2))",
                &[
                    &record.keys.sign,
                    &handle,
                    &record.keys.agree,
                    &record.added_by.map(|d| d.0.to_vec()),
                    &record.signature,
                ],
            )
            .await?;
            tx.commit().await
        }
        .await;
        match result {
            Err(e) if unique_violation(&e, "devices_pkey") => {
                Err(StoreError::Conflict("device is already registered"))
            }
            other => Ok(other?),
        }
    }

    async fn revoke_device(&self, handle: &Handle, device: &DeviceId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE devices SET revoked = TRUE WHERE id = $1 AND handle = $2",
                &[&device, &handle],
            )
            .await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn append_op(
        &self,
        space: &SpaceId,
        index: u64,
        op: &SignedOp,
        after: &MembersAfter,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id = &space;
        if index == 0 {
            let n = tx
                .execute("INSERT INTO spaces (id) VALUES ($1) ON CONFLICT DO NOTHING", &[&id])
                .await?;
            if n == 0 {
                return Err(StoreError::Conflict("space exists"));
            }
        }
        let ops: i64 = tx
            .query_opt("SELECT ops FROM spaces WHERE id = $1 FOR UPDATE", &[&id])
            .await?
            .ok_or(StoreError::NotFound)?
            .get(0);
        if ops as u64 != index {
            return Err(StoreError::Conflict("membership changed; fetch the log and retry"));
        }
        tx.execute(
            "INSERT INTO ops (space, idx, body, signature) VALUES ($1, $2, $3, $4)",
            &[&id, &(index as i64), &op.body, &op.signature],
        )
        .await?;
        tx.execute(
            "UPDATE spaces SET ops = ops + 1, epoch = $2 WHERE id = $1",
            &[&id, &(after.epoch as i64)],
        )
        .await?;
        let (handles, roles): (Vec<&str>, Vec<&str>) =
            after.members.iter().map(|(h, r)| (h.as_str(), r.as_str())).unzip();
        tx.execute(
            "INSERT INTO members (space, handle, role)
             SELECT $1, h, r FROM unnest($2::text[], $3::text[]) AS m(h, r)
             ON CONFLICT (space, handle) DO UPDATE SET role = excluded.role",
            &[&id, &handles, &roles],
        )
        .await?;
        tx.execute(
            "DELETE FROM members WHERE space = $1 AND handle = ANY($2::text[])",
            &[&id, &after.removed],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn ops(&self, space: &SpaceId, from: u64) -> Result<Vec<SignedOp>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT body, signature FROM ops WHERE space = $1 AND idx >= $2 ORDER BY idx",
                &[&space, &(from as i64)],
            )
            .await?;
        rows.iter()
            .map(|r| Ok(SignedOp { body: r.get(0), signature: r.try_get::<_, Signature>(1)? }))
            .collect()
    }

    async fn spaces_of(&self, handle: &Handle) -> Result<Vec<SpaceSummary>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT s.id, m.role, s.epoch, s.head, s.ops FROM members m JOIN spaces s ON s.id = m.space
                 WHERE m.handle = $1 ORDER BY s.id",
                &[&handle],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(SpaceSummary {
                    space: r.try_get::<_, SpaceId>(0)?,
                    role: role_from(r.get(1))?,
                    epoch: r.get::<_, i64>(2) as u64,
                    head: r.get::<_, i64>(3) as u64,
                    ops: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }

    async fn heads(&self, spaces: &[SpaceId]) -> Result<Vec<SpaceHeads>, StoreError> {
        let ids: Vec<&[u8]> = spaces.iter().map(|s| &s.0[..]).collect();
        let client = self.pool.get().await?;
        let stmt =
            client.prepare_cached("SELECT id, head, ops FROM spaces WHERE id = ANY($1)").await?;
        client
            .query(&stmt, &[&ids])
            .await?
            .iter()
            .map(|r| {
                Ok(SpaceHeads {
                    space: r.try_get::<_, SpaceId>(0)?,
                    head: r.get::<_, i64>(1) as u64,
                    ops: r.get::<_, i64>(2) as u64,
                })
            })
            .collect()
    }

    async fn post_note(&self, note: &SealedNote, now: u64) -> Result<Posted, StoreError> {
        let (reply, rx) = oneshot::channel();
        let item = EntryItem::encode_note(note);
        self.posts
            .send(PostJob { header: note.header.clone(), item, now, reply })
            .map_err(|_| StoreError::backend("post writer stopped"))?;
        let written = rx.await.map_err(|_| StoreError::backend("post writer dropped a post"))??;
        Ok(match written {
            Written::At { seq, stored_at, again } => Posted {
                entry: SpaceEntry { seq, stored_at, item: EntryItem::Note(note.clone()) },
                duplicate: again,
            },
            Written::Stored(entry) => Posted { entry, duplicate: true },
        })
    }

    async fn note_sender(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
    ) -> Result<Option<DeviceId>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT sender FROM entries WHERE space = $1 AND note_id = $2 AND is_note AND NOT deleted",
                &[&space, &note_id],
            )
            .await?;
        match row {
            Some(r) => Ok(r.try_get::<_, Option<DeviceId>>(0)?),
            None => Ok(None),
        }
    }

    async fn delete_note(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
        by: &DeviceId,
        signature: &Signature,
        now: u64,
    ) -> Result<Tombstoned, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let t = tombstone(&tx, space, note_id, Some(by), Some(signature), now)
            .await?
            .ok_or(StoreError::NotFound)?;
        tx.commit().await?;
        Ok(t)
    }

    async fn entries(
        &self,
        space: &SpaceId,
        after: u64,
        limit: u32,
        now: u64,
    ) -> Result<(Vec<SpaceEntry>, bool), StoreError> {
        let client = self.pool.get().await?;
        // The sizes first (a few bytes a row), so that only one page of items is fetched.
        let sizes = client
            .query(
                "SELECT octet_length(item) FROM entries WHERE space = $1 AND seq > $2
                 ORDER BY seq LIMIT $3",
                &[&space, &(after as i64), &(i64::from(limit) + 1)],
            )
            .await?;
        let mut page = super::Page::new(limit);
        let fit = sizes.iter().take_while(|r| page.admit(r.get::<_, i32>(0) as usize)).count();
        let more = sizes.len() > fit;
        let stmt = client
            .prepare_cached(
                "SELECT seq, stored_at, item, note_id,
                        (expires_at IS NOT NULL AND expires_at <= $4 AND NOT deleted)
                 FROM entries WHERE space = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .await?;
        let rows =
            client.query(&stmt, &[&space, &(after as i64), &(fit as i64), &(now as i64)]).await?;
        let out = rows
            .iter()
            .map(|r| row_entry(r.get(0), r.get(1), r.get(2), r.get(4), r.get(3)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((out, more))
    }

    async fn purge_expired(&self, now: u64) -> Result<Vec<Tombstoned>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Every node sweeps; SKIP LOCKED gives each expired note to exactly one of them.
        let rows = tx
            .query(
                "SELECT space, note_id FROM entries
                 WHERE expires_at IS NOT NULL AND expires_at <= $1 AND NOT deleted AND is_note
                 ORDER BY space, seq LIMIT 1000 FOR UPDATE SKIP LOCKED",
                &[&(now as i64)],
            )
            .await?;
        let mut out = Vec::new();
        for r in &rows {
            let (space, note_id) = (r.try_get::<_, SpaceId>(0)?, r.try_get::<_, NoteId>(1)?);
            out.extend(tombstone(&tx, &space, &note_id, None, None, now).await?);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn put_envelopes(&self, envelopes: &[KeyEnvelope]) -> Result<usize, StoreError> {
        let mut space = Vec::with_capacity(envelopes.len());
        let mut epoch = Vec::with_capacity(envelopes.len());
        let mut recipient = Vec::with_capacity(envelopes.len());
        let mut body = Vec::with_capacity(envelopes.len());
        for e in envelopes {
            space.push(e.space.0.to_vec());
            epoch.push(e.epoch as i64);
            recipient.push(e.recipient.0.to_vec());
            body.push(cairn_proto::encode(e));
        }
        let client = self.pool.get().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 4] =
            [&space, &epoch, &recipient, &body];
        client
            .execute(
                "INSERT INTO envelopes (space, epoch, recipient, envelope)
                 SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[])
                 ON CONFLICT (space, epoch, recipient) DO NOTHING",
                &params,
            )
            .await?;
        // What is stored now differs from what was sent exactly where an envelope was kept.
        let row = client
            .query_one(
                "SELECT count(*) FROM envelopes e
                 JOIN unnest($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[])
                   AS n(space, epoch, recipient, envelope)
                   ON e.space = n.space AND e.epoch = n.epoch AND e.recipient = n.recipient
                 WHERE e.envelope <> n.envelope",
                &params,
            )
            .await?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    async fn envelopes(
        &self,
        space: &SpaceId,
        recipient: &DeviceId,
    ) -> Result<Vec<KeyEnvelope>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT envelope FROM envelopes WHERE space = $1 AND recipient = $2 ORDER BY epoch",
                &[&space, &recipient],
            )
            .await?;
        rows.iter()
            .map(|r| {
                cairn_proto::decode_limited(r.get::<_, &[u8]>(0), usize::MAX)
                    .map_err(StoreError::backend)
            })
            .collect()
    }

    async fn record_media(
        &self,
        hash: &MediaHash,
        handle: &Handle,
        size: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO media (hash, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            &[&hash, &(size as i64), &(now as i64)],
        )
        .await?;
        tx.execute(
            "INSERT INTO media_uploaders (hash, handle) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&hash, &handle],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn media_readable_by(
        &self,
        hash: &MediaHash,
        handle: &Handle,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM media_uploaders WHERE hash = $1 AND handle = $2)
                     OR EXISTS(SELECT 1 FROM note_media n JOIN members m ON m.space = n.space
                               WHERE n.hash = $1 AND m.handle = $2)",
            )
            .await?;
        Ok(client.query_one(&stmt, &[&hash, &handle]).await?.get(0))
    }

    async fn collect_media(&self, before: u64) -> Result<Vec<MediaHash>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT hash FROM media m WHERE created_at < $1
                 AND NOT EXISTS (SELECT 1 FROM note_media n WHERE n.hash = m.hash)
                 LIMIT 1000 FOR UPDATE SKIP LOCKED",
                &[&(before as i64)],
            )
            .await?;
        let hashes: Vec<&[u8]> = rows.iter().map(|r| r.get(0)).collect();
        tx.execute("DELETE FROM media_uploaders WHERE hash = ANY($1)", &[&hashes]).await?;
        // A note that started referencing one of these meanwhile holds a key-share lock on
        // its row: the delete waits, then fails on the foreign key, and nothing is lost.
        tx.execute("DELETE FROM media WHERE hash = ANY($1)", &[&hashes]).await?;
        let out = hashes
            .iter()
            .map(|h| Ok(MediaHash(id_bytes(h)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        tx.commit().await?;
        Ok(out)
    }
}

/// A database of its own for one test or benchmark run: created on a server (by default
/// the local one, `CAIRN_TEST_DATABASE` to change it) and dropped again when this is
/// dropped, so that runs never see each other's rows.
pub struct TempDatabase {
    admin_url: String,
    pub name: String,
    pub url: String,
}

impl TempDatabase {
    /// The server the tests use: `CAIRN_TEST_DATABASE`, or the local one.
    pub fn admin_url() -> String {
        std::env::var("CAIRN_TEST_DATABASE")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    /// Creates `cairn_test_<random>`. Fails with a clear message when the server is not
    /// reachable; callers must not skip on that.
    pub async fn create() -> Result<Self, StoreError> {
        let admin_url = Self::admin_url();
        let name = format!("cairn_test_{}", hex::encode(&crate::auth::random32()[..6]));
        let (client, conn) = tokio_postgres::connect(&admin_url, NoTls).await.map_err(|e| {
            StoreError::backend(format!(
                "PostgreSQL is not reachable at {admin_url} ({e}); `./dev test` installs and starts it"
            ))
        })?;
        let conn = tokio::spawn(conn);
        client.batch_execute(&format!("CREATE DATABASE {name}")).await?;
        drop(client);
        let _ = conn.await;
        let url = with_dbname(&admin_url, &name);
        Ok(TempDatabase { admin_url, name, url })
    }
}

/// `admin_url` (a `postgres://` URL) with its database name replaced by `name`.
fn with_dbname(admin_url: &str, name: &str) -> String {
    let authority = admin_url.find("://").map_or(0, |i| i + 3);
    let query = admin_url[authority..].find('?').map_or(admin_url.len(), |q| authority + q);
    let path = admin_url[authority..query].find('/').map_or(query, |p| authority + p);
    format!("{}/{name}{}", &admin_url[..path], &admin_url[query..])
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop runs inside or outside a runtime; a thread of its own works in both.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin_url, NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_urls_get_their_name_replaced() {
        use super::with_dbname;
        assert_eq!(with_dbname("postgres://u@h:5432/postgres", "x"), "postgres://u@h:5432/x");
        assert_eq!(with_dbname("postgres://u@h", "x"), "postgres://u@h/x");
        assert_eq!(
            with_dbname("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
    }
}
