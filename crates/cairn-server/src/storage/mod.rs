//! The system of record. Every backend implements [`Store`] and passes the same
//! conformance suite (`tests/conformance.rs`). A write is acknowledged only after its
//! transaction is durable.

#[cfg(feature = "postgres")]
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use cairn_proto::{
    DeviceId, DeviceRecord, Handle, KeyEnvelope, MediaHash, NoteId, Role, SealedNote, Signature,
    SignedOp, SpaceEntry, SpaceId, SpaceSummary,
};

/// What a backend failure was: the backend's own error (or a sentence), kept as the source
/// for the log. Shared, so that every caller in a failed batch gets the one reason.
pub type BackendError = std::sync::Arc<dyn std::error::Error + Send + Sync>;

/// Storage failures. `Backend` carries details for the log only; clients see a generic
/// internal error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("handle is taken")]
    HandleTaken,
    #[error("a valid invite token is required")]
    InviteRequired,
    #[error("conflict: {0}")]
    Conflict(&'static str),
    #[error("storage backend: {0}")]
    Backend(#[source] BackendError),
}

impl StoreError {
    /// A backend failure: an error of the backend's, or a sentence saying what went wrong.
    pub fn backend(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
        StoreError::Backend(BackendError::from(e.into()))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::backend(e)
    }
}

/// Who owns a device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceOwner {
    pub handle: Handle,
    pub revoked: bool,
}

/// What a post produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Posted {
    pub entry: SpaceEntry,
    /// The note id had been stored before; `entry` is the original.
    pub duplicate: bool,
}

/// What an op changed in a space's membership, written with the op in one transaction:
/// the members it added or gave another role, and those it removed. A change, not the
/// whole list, so that adding the 10,000th member writes one row, not 10,000.
#[derive(Clone, Debug, Default)]
pub struct MembersAfter {
    /// Members added by the op, or whose role it changed (with their role now).
    pub members: Vec<(Handle, Role)>,
    /// Members the op removed.
    pub removed: Vec<Handle>,
    /// The space's epoch after the op.
    pub epoch: u64,
}

/// Where a space's two logs stand: its highest entry sequence number and its number of
/// membership ops. Nodes compare these with what they have delivered to catch up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceHeads {
    pub space: SpaceId,
    pub head: u64,
    pub ops: u64,
}

/// A new tombstone entry made by deletion or expiry.
#[derive(Clone, Debug)]
pub struct Tombstoned {
    pub space: SpaceId,
    pub entry: SpaceEntry,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A value that lives as long as the database: the secret that signs session tokens.
    async fn secret(&self, name: &str) -> Result<[u8; 32], StoreError>;

    /// Creates a user with its first device. With `invite_required`, `invite` must name an
    /// unused token, which this consumes in the same transaction.
    async fn register(
        &self,
        handle: &Handle,
        first: &DeviceRecord,
        invite: Option<&str>,
        invite_required: bool,
        now: u64,
    ) -> Result<(), StoreError>;
    async fn create_invite(&self, token: &str) -> Result<(), StoreError>;
    async fn device_owner(&self, device: &DeviceId) -> Result<Option<DeviceOwner>, StoreError>;
    /// A user's devices in the order they were added.
    async fn devices(&self, handle: &Handle) -> Result<Vec<DeviceRecord>, StoreError>;
    async fn add_device(&self, handle: &Handle, record: &DeviceRecord) -> Result<(), StoreError>;
    async fn revoke_device(&self, handle: &Handle, device: &DeviceId) -> Result<(), StoreError>;

    /// Appends membership op `index` (0 creates the space). `Conflict` if that index is
    /// taken: two owners raced, and one must rebase.
    async fn append_op(
        &self,
        space: &SpaceId,
        index: u64,
        op: &SignedOp,
        after: &MembersAfter,
    ) -> Result<(), StoreError>;
    /// Ops from index `from` on.
    async fn ops(&self, space: &SpaceId, from: u64) -> Result<Vec<SignedOp>, StoreError>;
    async fn spaces_of(&self, handle: &Handle) -> Result<Vec<SpaceSummary>, StoreError>;
    /// The heads of the named spaces that exist, in no particular order.
    async fn heads(&self, spaces: &[SpaceId]) -> Result<Vec<SpaceHeads>, StoreError>;

    /// Stores a note with the space's next sequence number; idempotent on the note id.
    async fn post_note(&self, note: &SealedNote, now: u64) -> Result<Posted, StoreError>;
    /// The sender of a live (not deleted) note.
    async fn note_sender(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
    ) -> Result<Option<DeviceId>, StoreError>;
    /// Replaces the note's ciphertext with a tombstone and appends a tombstone entry.
    async fn delete_note(
        &self,
        space: &SpaceId,
        note_id: &NoteId,
        by: &DeviceId,
        signature: &Signature,
        now: u64,
    ) -> Result<Tombstoned, StoreError>;
    /// Entries with `seq > after`, at most `limit`; expired notes read as tombstones.
    /// Returns whether more follow.
    async fn entries(
        &self,
        space: &SpaceId,
        after: u64,
        limit: u32,
        now: u64,
    ) -> Result<(Vec<SpaceEntry>, bool), StoreError>;
    /// Turns every note expired by `now` into a tombstone; returns the new tombstone entries.
    async fn purge_expired(&self, now: u64) -> Result<Vec<Tombstoned>, StoreError>;

    /// Stores each envelope unless one for the same (space, epoch, recipient) is stored
    /// already: an envelope is never replaced. Returns how many were not stored because a
    /// *different* envelope was there (an identical one is a harmless retry).
    async fn put_envelopes(&self, envelopes: &[KeyEnvelope]) -> Result<usize, StoreError>;
    async fn envelopes(
        &self,
        space: &SpaceId,
        recipient: &DeviceId,
    ) -> Result<Vec<KeyEnvelope>, StoreError>;

    /// Records that `handle` uploaded the blob (after its bytes are durable).
    async fn record_media(
        &self,
        hash: &MediaHash,
        handle: &Handle,
        size: u64,
        now: u64,
    ) -> Result<(), StoreError>;
    /// The uploader, or a member of a space with a live note that references the blob.
    async fn media_readable_by(
        &self,
        hash: &MediaHash,
        handle: &Handle,
    ) -> Result<bool, StoreError>;
    /// Forgets blobs older than `before` that no live note references; returns them so the
    /// media store can delete their bytes.
    async fn collect_media(&self, before: u64) -> Result<Vec<MediaHash>, StoreError>;
}

// Helpers both backends share: the row shapes are the same in SQLite and PostgreSQL.

/// Fills one sync page: at most `limit` entries and [`cairn_proto::MAX_PAGE_BYTES`] on the
/// wire, and at least one entry, so that every page fits in a frame.
pub(crate) struct Page {
    limit: usize,
    taken: usize,
    bytes: usize,
}

impl Page {
    pub(crate) fn new(limit: u32) -> Page {
        Page { limit: limit as usize, taken: 0, bytes: 0 }
    }

    /// Whether the next entry, whose stored item has `item_len` bytes, goes in this page.
    pub(crate) fn admit(&mut self, item_len: usize) -> bool {
        let bytes = self.bytes + item_len + cairn_proto::ENTRY_OVERHEAD_BYTES;
        if self.taken == self.limit || (self.taken > 0 && bytes > cairn_proto::MAX_PAGE_BYTES) {
            return false;
        }
        self.taken += 1;
        self.bytes = bytes;
        true
    }
}

/// A stored role: an unknown one is a broken row, not a reader.
pub(crate) fn role_from(s: &str) -> Result<Role, StoreError> {
    s.parse().map_err(StoreError::backend)
}

/// A stored id of a fixed length.
pub(crate) fn id_bytes<const N: usize>(v: &[u8]) -> Result<[u8; N], StoreError> {
    v.try_into().map_err(|_| StoreError::backend("stored id has the wrong length"))
}

/// An entry row as the server hands it out; an expired note reads as a tombstone.
pub(crate) fn row_entry(
    seq: i64,
    stored_at: i64,
    item: &[u8],
    expired: bool,
    note_id: &[u8],
) -> Result<SpaceEntry, StoreError> {
    let item = if expired {
        cairn_proto::EntryItem::Tombstone {
            note_id: NoteId(id_bytes(note_id)?),
            by: None,
            signature: None,
        }
    } else {
        cairn_proto::decode_limited(item, usize::MAX)
            .map_err(|e| StoreError::backend(format!("stored entry: {e}")))?
    };
    Ok(SpaceEntry { seq: seq as u64, stored_at: stored_at as u64, item })
}
