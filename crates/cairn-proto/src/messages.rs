//! Every message of the protocol. `docs/PROTOCOL.md` describes each one; keep the two in
//! step. Enums are externally tagged with snake_case names: `{"post_note": {...}}`.

use crate::ids::*;
use serde::{Deserialize, Serialize};

/// One binary WebSocket frame from client to server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client; echoed in the response. Unique among the requests in flight.
    pub id: u64,
    pub request: Request,
}

/// One binary WebSocket frame from server to client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    /// The answer to request `id`.
    Response { id: u64, result: Result<Response, ProtoError> },
    /// Something the client did not ask for: a live note, a membership change, new keys.
    Event(Event),
}

/// Requests. `Hello` must be the first frame; until a `Register`, `Login` or `Resume`
/// succeeds, only those three are accepted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    /// Opens the conversation: the protocol versions the client speaks.
    Hello { versions: Vec<u16>, client: String },
    /// Creates a user with its first device; the signature covers
    /// [`crate::sign::register_payload`].
    /// `self_signature` covers [`crate::sign::add_device_payload`] for the device itself:
    /// it heads the user's signed device list.
    Register {
        handle: Handle,
        device: DeviceKeys,
        invite: Option<String>,
        signature: Signature,
        self_signature: Signature,
    },
    /// Logs a registered device in; the signature covers [`crate::sign::login_payload`].
    Login { device: DeviceId, signature: Signature },
    /// Logs in with a session token from an earlier `Session`.
    Resume { token: String },
    /// A user's devices, with the signatures that added them.
    ListDevices { handle: Handle },
    /// Adds a device to the caller's user; signed by the calling device over
    /// [`crate::sign::add_device_payload`].
    AddDevice { device: DeviceKeys, signature: Signature },
    /// Revokes one of the caller's devices (signed over [`crate::sign::revoke_device_payload`]).
    /// Its sessions end at once.
    RevokeDevice { device: DeviceId, signature: Signature },
    /// Creates a space with its genesis membership operation (action `create`).
    CreateSpace { op: SignedOp },
    /// Appends a membership operation (add, remove, set_role, set_policy).
    ChangeMembership { op: SignedOp },
    /// The membership log of a space from op index `from` on.
    GetMembership { space: SpaceId, from: u64 },
    /// The spaces the caller's user belongs to.
    ListSpaces,
    /// Stores wrapped epoch keys, one per recipient device.
    PutEnvelopes { envelopes: Vec<KeyEnvelope> },
    /// The envelopes wrapped for the calling device in a space.
    GetEnvelopes { space: SpaceId },
    /// Posts an encrypted note.
    PostNote { note: SealedNote },
    /// Deletes a note: leaves a tombstone in the space's sequence.
    /// Signed over [`crate::sign::delete_payload`].
    DeleteNote { space: SpaceId, note_id: NoteId, signature: Signature },
    /// Entries of a space with sequence number greater than `after`, at most `limit`.
    Sync { space: SpaceId, after: u64, limit: u32 },
}

/// Successful answers, one kind per request kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Welcome {
        version: u16,
        server: String,
        challenge: Challenge,
        limits: Limits,
    },
    Session(Session),
    Devices {
        handle: Handle,
        devices: Vec<DeviceRecord>,
    },
    /// For `AddDevice`, `RevokeDevice`, `PutEnvelopes`.
    Done,
    /// For `CreateSpace` and `ChangeMembership`: the op's index and the space's epoch after it.
    OpAccepted {
        index: u64,
        epoch: u64,
    },
    Membership {
        space: SpaceId,
        ops: Vec<SignedOp>,
    },
    Spaces {
        spaces: Vec<SpaceSummary>,
    },
    Envelopes {
        envelopes: Vec<KeyEnvelope>,
    },
    /// For `PostNote` and `DeleteNote`: the entry's sequence number. `duplicate` is true when
    /// the same note id had been stored before; `seq` is then the first one.
    Posted {
        seq: u64,
        duplicate: bool,
    },
    Entries {
        space: SpaceId,
        entries: Vec<SpaceEntry>,
        more: bool,
    },
}

/// Unrequested messages.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// A new entry (note or tombstone) in a space the user belongs to.
    Entry { space: SpaceId, entry: SpaceEntry },
    /// A membership operation was appended (the user may have been added or removed).
    Membership { space: SpaceId, index: u64, op: SignedOp },
    /// New key envelopes for this device are waiting.
    Envelopes { space: SpaceId, epoch: u64 },
}

/// Server limits, announced in `Welcome`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_frame_bytes: u32,
    pub max_note_bytes: u32,
    pub max_media_bytes: u64,
    pub sync_page: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub handle: Handle,
    pub device: DeviceId,
    /// Bearer token for `Resume` and for `/v1/media`.
    pub token: String,
    /// Unix milliseconds.
    pub expires_at: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub keys: DeviceKeys,
    /// The device that signed this one in; `None` for the first device, which signs itself.
    pub added_by: Option<DeviceId>,
    /// Signature by `added_by` (or by the device itself, for the first) over
    /// [`crate::sign::add_device_payload`].
    pub signature: Signature,
    pub revoked: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceSummary {
    pub space: SpaceId,
    pub role: Role,
    pub epoch: u64,
    /// Highest sequence number in the space.
    pub head: u64,
    /// Number of membership operations.
    pub ops: u64,
}

/// A membership operation and its signature by `actor`. `body` is the CBOR encoding of a
/// [`MembershipOp`]; the signature covers [`crate::sign::op_payload`] of these exact bytes,
/// so no re-encoding is ever needed to verify it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedOp {
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    pub signature: Signature,
}

/// One change to a space's membership or policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipOp {
    pub space: SpaceId,
    /// Position in the log, from 0 (the `create` op).
    pub index: u64,
    /// Hash of the previous op's body; all zero for index 0.
    pub prev: OpHash,
    /// The signing device.
    pub actor: DeviceId,
    /// Unix milliseconds, as the actor's clock saw it.
    pub at: u64,
    pub action: Action,
    /// For an op that starts an epoch ([`Action::starts_epoch`]): the confirmation value of
    /// the new epoch's key. `None` for every other op. Readers accept an unwrapped epoch key
    /// only if it matches.
    pub key_confirm: Option<KeyConfirm>,
}

impl Action {
    /// Whether an op with this action starts a new epoch (changes who may read the space):
    /// `create`, `add`, `remove` and `remove_device`.
    pub fn starts_epoch(&self) -> bool {
        matches!(
            self,
            Action::Create { .. }
                | Action::Add { .. }
                | Action::Remove { .. }
                | Action::RemoveDevice { .. }
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Genesis: the actor's user becomes the owner. `name` is the space's display name,
    /// visible to the server.
    Create {
        name: String,
        owner: Member,
        policy: Policy,
    },
    /// Adds a user with the devices the actor saw in the user's signed device list.
    Add {
        member: Member,
    },
    Remove {
        handle: Handle,
    },
    SetRole {
        handle: Handle,
        role: Role,
    },
    SetPolicy {
        policy: Policy,
    },
    /// Adds another device of an existing member (one its user signed in since joining).
    /// Done by that member's own device, or by an owner. Same epoch: the device's user
    /// already reads the space, so the acting device wraps the keys it holds for it.
    AddDevice {
        handle: Handle,
        device: DeviceKeys,
    },
    /// Takes one device away from a member (revoked, lost); the member keeps the others.
    /// Done by that member's own device, or by an owner. A new epoch, whose key the device
    /// never receives.
    RemoveDevice {
        handle: Handle,
        device: DeviceId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub handle: Handle,
    pub role: Role,
    pub devices: Vec<DeviceKeys>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads; never posts.
    Reader,
    /// Reads; posts where the policy lets members post.
    Member,
    /// Everything, including membership and policy changes.
    Owner,
}

impl Role {
    /// Its one text form, as the CLI takes it, the stores keep it and people read it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Member => "member",
            Role::Owner => "owner",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that names no role.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no role is called {0:?}: owner, member or reader")]
pub struct UnknownRole(pub String);

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Role, UnknownRole> {
        [Role::Reader, Role::Member, Role::Owner]
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Who may post notes.
    pub post: PostPolicy,
    /// Whether members who join later receive the keys of earlier epochs.
    pub history_for_new_members: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { post: PostPolicy::Members, history_for_new_members: true }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostPolicy {
    /// Owners and members.
    Members,
    /// Owners only (an announcement board).
    Owners,
}

impl Role {
    /// Whether this role may post under `policy`.
    pub fn may_post(self, policy: &Policy) -> bool {
        match self {
            Role::Owner => true,
            Role::Member => policy.post == PostPolicy::Members,
            Role::Reader => false,
        }
    }
}

/// A space epoch key wrapped for one device. Opaque to the server except for the routing
/// fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEnvelope {
    pub space: SpaceId,
    pub epoch: u64,
    pub recipient: DeviceId,
    pub creator: DeviceId,
    /// HPKE encapsulated key followed by the sealed epoch key (see docs/SECURITY.md).
    #[serde(with = "serde_bytes")]
    pub wrapped: Vec<u8>,
    /// By `creator` over [`crate::sign::envelope_payload`].
    pub signature: Signature,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Text,
    Voice,
    Image,
    /// A reaction to another note (the emoji and target are inside the ciphertext).
    Reaction,
    /// A short video clip (its poster and duration are inside the ciphertext; the clip is a
    /// media blob, VP9 + Opus in WebM).
    Video,
    /// A place: a physical frame of reference that notes can stand in (its name, reference
    /// marks and geometry are inside the ciphertext; the note's id is the place's id).
    Place,
}

/// The clear part of a note: what the server needs to store, route and expire it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteHeader {
    pub space: SpaceId,
    pub epoch: u64,
    pub sender: DeviceId,
    pub note_id: NoteId,
    pub kind: NoteKind,
    /// Unix milliseconds after which the server purges it.
    pub expires_at: Option<u64>,
    /// Media blobs the note refers to; members may fetch them.
    pub media: Vec<MediaHash>,
}

/// A note as posted: header, AES-256-GCM ciphertext of the body, sender's signature over
/// [`crate::sign::note_payload`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedNote {
    pub header: NoteHeader,
    #[serde(with = "serde_bytes")]
    pub ciphertext: Vec<u8>,
    pub signature: Signature,
}

/// One position in a space's sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpaceEntry {
    pub seq: u64,
    /// Server time of the commit, unix milliseconds.
    pub stored_at: u64,
    pub item: EntryItem,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryItem {
    Note(SealedNote),
    /// The note was deleted (its own entry no longer carries a ciphertext) or it expired.
    Tombstone {
        note_id: NoteId,
        by: Option<DeviceId>,
        signature: Option<Signature>,
    },
}

/// [`EntryItem::Note`] by reference: the same CBOR, without copying the note to build one.
#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum EntryItemRef<'a> {
    Note(&'a SealedNote),
}

impl EntryItem {
    /// The CBOR of `EntryItem::Note(note)`, without copying `note` (what a store keeps per
    /// note; encoded before the store's single writer takes it).
    pub fn encode_note(note: &SealedNote) -> Vec<u8> {
        crate::encode_sized(&EntryItemRef::Note(note), note.ciphertext.len() + 256)
    }
}

/// Typed error codes; `message` is for people (it is what the error displays as) and never
/// carries server internals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ProtoError {
    pub code: ErrorCode,
    pub message: String,
}

impl ProtoError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ProtoError { code, message: message.into() }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame decoded but the request is not valid (bad field, wrong state).
    BadRequest,
    /// The frame is not CBOR or not a known message.
    Malformed,
    /// No protocol version in common.
    UnsupportedVersion,
    /// Not logged in, or the session expired.
    Unauthenticated,
    /// Logged in, but not allowed: not a member, wrong role, not the author.
    Forbidden,
    NotFound,
    /// A signature does not verify.
    BadSignature,
    /// The handle is taken.
    HandleTaken,
    /// Registration needs a valid invite token.
    InviteRequired,
    /// A membership op does not follow the current head (index or prev hash).
    Conflict,
    /// The note's epoch is ahead of the space's.
    BadEpoch,
    TooLarge,
    RateLimited,
    /// Something went wrong inside the server; details are in its log.
    Internal,
}
