//! The client core: one device's view of its spaces, kept in the local store and brought
//! up to date with the server. Every key operation goes through cairn-crypto. Methods that
//! need the server say so by returning [`ClientError::Offline`] when it is unreachable;
//! everything else works from the cache.

use crate::connection::{Auth, Connection};
use crate::error::ClientError;
use crate::media;
use crate::store::{LocalNote, LocalSpace, LocalStore};
use cairn_crypto::*;
use cairn_proto::membership::SpaceState;
use cairn_proto::*;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Default size of the media cache.
pub const DEFAULT_MEDIA_CACHE_BYTES: u64 = 512 * 1024 * 1024;

/// A note's `error` when its signature does not verify under its sender's key. The note
/// is kept, shown as unverifiable (nothing it says is shown, since nothing shows who wrote
/// it), and the space syncs on.
pub const UNVERIFIABLE: &str = "unverifiable: its signature does not verify under its sender's key";

/// What changed locally, for a UI to redraw.
#[derive(Clone, Debug, PartialEq)]
#[allow(clippy::large_enum_variant)] // notes are nearly every change; boxing buys nothing
pub enum Change {
    /// A note appeared or changed (opened, acknowledged, failed to open).
    Note(LocalNote),
    /// A note was deleted or expired.
    Removed { space: SpaceId, note_id: NoteId },
    /// A space appeared or its membership changed.
    Space(SpaceId),
    /// Something the server served was refused (a key envelope whose key the space's log
    /// does not confirm, say): nothing of it was stored. The message says what and why.
    Refused { space: SpaceId, message: String },
}

/// A note to write. `Draft::text` makes the common case short.
#[derive(Clone, Debug, Default)]
pub struct Draft {
    pub text: String,
    pub pose: Pose,
    pub anchor: Option<SpatialAnchor>,
    pub reply_to: Option<NoteId>,
    pub expires_in: Option<std::time::Duration>,
    /// An image file's bytes (any format `image` decodes); re-encoded before upload.
    pub image: Option<Vec<u8>>,
    /// A voice clip, already encoded as Ogg/Opus.
    pub voice: Option<VoiceClip>,
    /// A video clip, already made canonical ([`VideoClip::from_file`]).
    pub video: Option<VideoClip>,
    /// A reaction (emoji) to `reply_to`.
    pub reaction: Option<String>,
    /// The place the note stands in, with its pose there (`pose` stays the stage pose).
    pub place: Option<PlacePose>,
    /// Makes the note a place (`NoteKind::Place`) with this record; `image`, if any, is a
    /// picture of its reference marks.
    pub place_record: Option<PlaceRecord>,
    /// The note's id, when the caller needs to know it before posting (a fresh random one
    /// otherwise). It must be new: the server answers a second post of an id as a duplicate.
    pub note_id: Option<NoteId>,
}

#[derive(Clone, Debug)]
pub struct VoiceClip {
    pub ogg_opus: Vec<u8>,
    pub waveform: Vec<u8>,
    pub duration_ms: u32,
}

/// A video note's clip: VP9 + Opus in WebM within `cairn_video`'s limits, its poster (a
/// thumbnail JPEG carried inside the note) and its length.
#[derive(Clone, Debug)]
pub struct VideoClip {
    pub webm: Vec<u8>,
    pub poster: Vec<u8>,
    pub duration_ms: u32,
}

impl VideoClip {
    /// Re-encodes any common video file (MP4/H.264, MOV, WebM, Matroska, …) to the canonical
    /// clip on this device (the server only ever sees its ciphertext). Slow: seconds for a
    /// minute of 720p; run it off any frame loop.
    pub fn from_file(path: &std::path::Path) -> Result<Self, ClientError> {
        let clip = cairn_video::transcode(path).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let poster =
            crate::image::thumbnail_of_rgb(clip.poster.width, clip.poster.height, clip.poster.rgb)?;
        Ok(VideoClip { webm: clip.webm, poster, duration_ms: clip.duration_ms })
    }
}

impl Draft {
    pub fn text(text: &str, position: [f32; 3]) -> Self {
        Draft {
            text: text.to_owned(),
            pose: Pose { position, ..Pose::default() },
            ..Draft::default()
        }
    }
}

/// A space as this device sees it.
#[derive(Clone, Debug)]
pub struct SpaceView {
    pub id: SpaceId,
    pub name: String,
    pub role: Option<Role>,
    pub members: Vec<(String, Role)>,
    pub epoch: u64,
}

pub struct Client {
    home: PathBuf,
    store: LocalStore,
    identity: DeviceIdentity,
    handle: String,
    server: String,
    conn: Option<Connection>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    logs: HashMap<SpaceId, MembershipLog>,
    http: reqwest::Client,
    media_cache_bytes: u64,
}

const META_IDENTITY: &str = "identity";
const META_HANDLE: &str = "handle";
const META_SERVER: &str = "server";

fn random_id<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).expect("the operating system's RNG is unavailable");
    b
}

/// A fresh note id, for a caller that must know a note's id before posting it
/// ([`Draft::note_id`]).
pub fn new_note_id() -> NoteId {
    NoteId(random_id())
}

/// A new profile needs a valid handle and a directory without one already.
fn check_new_profile(home: &Path, handle: &str) -> Result<(), ClientError> {
    if store_path(home).exists()
        && LocalStore::open(&store_path(home))?.meta(META_IDENTITY)?.is_some()
    {
        return Err(ClientError::Invalid(format!(
            "{} already holds a profile; use another --home",
            home.display()
        )));
    }
    if !valid_handle(handle) {
        return Err(ClientError::Invalid(
            "a handle has 1 to 32 characters: a-z, 0-9, '_', '-', '.'".into(),
        ));
    }
    Ok(())
}

/// The store's path inside a profile directory.
pub fn store_path(home: &Path) -> PathBuf {
    home.join("cairn.db")
}

fn create_home(home: &Path) -> Result<(), ClientError> {
    std::fs::create_dir_all(home)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

impl Client {
    /// Creates a profile in `home`: a new device identity, registered with the server as
    /// `handle`. Needs the server.
    pub async fn init(
        home: &Path,
        server: &str,
        handle: &str,
        invite: Option<&str>,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        check_new_profile(home, handle)?;
        create_home(home)?;
        let identity = DeviceIdentity::generate();
        let (conn, events) =
            Connection::open(server, &identity, Auth::Register { handle, invite }).await?;
        let mut client = Client::create_profile(home, identity, handle, server, passphrase)?;
        client.conn = Some(conn);
        client.events = Some(events);
        Ok(client)
    }

    /// Creates a profile for another device of an existing user: new keys, nothing sent.
    /// The user's existing device then signs it in (`cairn-cli device add KEYS`), after which
    /// this device logs in normally.
    pub fn init_joining(
        home: &Path,
        server: &str,
        handle: &str,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        check_new_profile(home, handle)?;
        media::http_base(server)?;
        create_home(home)?;
        Client::create_profile(home, DeviceIdentity::generate(), handle, server, passphrase)
    }

    /// Writes a new profile's store: the (optionally sealed) keys, the handle, the server.
    fn create_profile(
        home: &Path,
        identity: DeviceIdentity,
        handle: &str,
        server: &str,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        let store = LocalStore::open(&store_path(home))?;
        store.set_meta(META_IDENTITY, &crate::identity::seal_identity(&identity, passphrase)?)?;
        store.set_meta(META_HANDLE, handle.as_bytes())?;
        store.set_meta(META_SERVER, server.as_bytes())?;
        Client::assemble(home, store, identity, handle.into(), server.into())
    }

    /// Opens an existing profile. Works offline; call [`Client::connect`] to go online.
    pub fn open(home: &Path, passphrase: Option<&str>) -> Result<Client, ClientError> {
        let path = store_path(home);
        if !path.exists() {
            return Err(ClientError::NoProfile(home.display().to_string()));
        }
        let store = LocalStore::open(&path)?;
        let stored = store
            .meta(META_IDENTITY)?
            .ok_or_else(|| ClientError::NoProfile(home.display().to_string()))?;
        let identity = crate::identity::open_identity(&stored, passphrase)?;
        let handle = store.meta_string(META_HANDLE)?.unwrap_or_default();
        let server = store.meta_string(META_SERVER)?.unwrap_or_default();
        Client::assemble(home, store, identity, handle, server)
    }

    fn assemble(
        home: &Path,
        store: LocalStore,
        identity: DeviceIdentity,
        handle: String,
        server: String,
    ) -> Result<Client, ClientError> {
        let mut client = Client {
            home: home.to_path_buf(),
            store,
            identity,
            handle,
            server,
            conn: None,
            events: None,
            logs: HashMap::new(),
            http: crate::tls::extra_roots()
                .into_iter()
                .filter_map(|der| reqwest::Certificate::from_der(&der).ok())
                .fold(reqwest::Client::builder(), |b, ca| b.add_root_certificate(ca))
                .connect_timeout(std::time::Duration::from_secs(10))
                .build()
                .map_err(|e| ClientError::Http(e.to_string()))?,
            media_cache_bytes: DEFAULT_MEDIA_CACHE_BYTES,
        };
        for space in client.store.spaces()? {
            let ops = client.store.ops(&space.id)?;
            if !ops.is_empty() {
                client.logs.insert(space.id, MembershipLog::replay(&ops)?);
            }
        }
        Ok(client)
    }

    pub fn handle(&self) -> &str {
        &self.handle
    }
    pub fn device(&self) -> DeviceId {
        self.identity.id()
    }
    pub fn identity(&self) -> &DeviceIdentity {
        &self.identity
    }
    pub fn server(&self) -> &str {
        &self.server
    }
    /// Points this profile at another server URL (the embedded server's port can change
    /// between runs). Takes effect at the next connect.
    pub fn set_server(&mut self, url: &str) -> Result<(), ClientError> {
        self.store.set_meta(META_SERVER, url.as_bytes())?;
        self.server = url.to_owned();
        self.disconnect();
        Ok(())
    }

    pub fn home(&self) -> &Path {
        &self.home
    }
    pub fn store(&self) -> &LocalStore {
        &self.store
    }
    pub fn is_online(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| !c.is_closed())
    }
    pub fn set_media_cache_bytes(&mut self, bytes: u64) {
        self.media_cache_bytes = bytes;
    }

    /// Logs in to the server. Does not sync; see [`Client::sync`].
    pub async fn connect(&mut self) -> Result<(), ClientError> {
        if self.is_online() {
            return Ok(());
        }
        let (conn, events) = Connection::open(&self.server, &self.identity, Auth::Login).await?;
        self.conn = Some(conn);
        self.events = Some(events);
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.conn = None;
        self.events = None;
    }

    fn conn(&self) -> Result<&Connection, ClientError> {
        self.conn
            .as_ref()
            .filter(|c| !c.is_closed())
            .ok_or_else(|| ClientError::Offline("not connected".into()))
    }

    async fn request(&mut self, request: Request) -> Result<Response, ClientError> {
        let result = self.conn()?.request(request).await;
        if let Err(ClientError::Offline(_)) = &result {
            self.disconnect();
        }
        result
    }

    /// Waits for the next event from the server; `None` when the connection is gone.
    pub async fn next_event(&mut self) -> Option<Event> {
        let events = self.events.as_mut()?;
        let e = events.recv().await;
        if e.is_none() {
            self.disconnect();
        }
        e
    }

    // ---- Spaces ----

    /// All known spaces with this device's view of their membership.
    pub fn spaces(&self) -> Result<Vec<SpaceView>, ClientError> {
        Ok(self
            .store
            .spaces()?
            .into_iter()
            .map(|s: LocalSpace| {
                let state = self.logs.get(&s.id).map(MembershipLog::state);
                SpaceView {
                    id: s.id,
                    name: s.name,
                    role: state.and_then(|st| st.members.get(&self.handle).map(|m| m.role)),
                    members: state
                        .map(|st| st.members.iter().map(|(h, m)| (h.clone(), m.role)).collect())
                        .unwrap_or_default(),
                    epoch: state.map(|st| st.epoch).unwrap_or(0),
                }
            })
            .collect())
    }

    /// A space named by its name or by its id (hex, or an unambiguous prefix).
    pub fn resolve_space(&self, name_or_id: &str) -> Result<SpaceId, ClientError> {
        let spaces = self.store.spaces()?;
        let by_name: Vec<_> = spaces.iter().filter(|s| s.name == name_or_id).collect();
        if by_name.len() == 1 {
            return Ok(by_name[0].id);
        }
        let lower = name_or_id.to_ascii_lowercase();
        let by_id: Vec<_> = spaces
            .iter()
            .filter(|s| lower.len() >= 4 && s.id.to_hex().starts_with(&lower))
            .collect();
        match (by_name.len(), by_id.len()) {
            (0, 1) => Ok(by_id[0].id),
            (n, _) if n > 1 => Err(ClientError::Invalid(format!(
                "several spaces are named {name_or_id:?}; use the id"
            ))),
            _ => Err(ClientError::NoSuchSpace(name_or_id.to_owned())),
        }
    }

    fn state(&self, space: &SpaceId) -> Result<&SpaceState, ClientError> {
        self.logs
            .get(space)
            .map(MembershipLog::state)
            .ok_or_else(|| ClientError::NoSuchSpace(space.to_hex()))
    }

    /// Creates a space owned by this user, with its first epoch key. Needs the server.
    pub async fn create_space(
        &mut self,
        name: &str,
        policy: Policy,
    ) -> Result<SpaceId, ClientError> {
        let space = SpaceId(random_id());
        let devices = self.own_devices().await?;
        let key = EpochKey::generate();
        let op = MembershipOp {
            space,
            index: 0,
            prev: OpHash::default(),
            actor: self.identity.id(),
            at: now_ms(),
            action: Action::Create {
                name: name.to_owned(),
                owner: Member { handle: self.handle.clone(), role: Role::Owner, devices },
                policy,
            },
            key_confirm: Some(key_confirmation(&key, &space, 0)),
        };
        let signed = sign_op(&self.identity, &op);
        let log = MembershipLog::replay(std::slice::from_ref(&signed))?;
        self.request(Request::CreateSpace { op: signed.clone() }).await?;
        self.store.upsert_space(&space, name)?;
        self.store.put_op(&space, 0, &signed)?;
        self.logs.insert(space, log);
        self.hand_out_key(&space, 0, &key, &[]).await?;
        Ok(space)
    }

    /// This user's live devices, from the verified signed device list.
    async fn own_devices(&mut self) -> Result<Vec<DeviceKeys>, ClientError> {
        let handle = self.handle.clone();
        let devices = self.user_devices(&handle).await?;
        if !devices.iter().any(|d| d.sign == self.identity.id()) {
            return Err(ClientError::Protocol(
                "the server's list of our devices lacks this one".into(),
            ));
        }
        Ok(devices)
    }

    /// A user's live devices, verified from their signed list. A list is append-only, and a
    /// revoked device stays revoked: a list that lacks a device this client saw before, or
    /// shows a device as live again, is an old list served again, and is refused.
    pub async fn user_devices(&mut self, handle: &str) -> Result<Vec<DeviceKeys>, ClientError> {
        let Response::Devices { devices, .. } =
            self.request(Request::ListDevices { handle: handle.to_owned() }).await?
        else {
            return Err(ClientError::Protocol("expected devices".into()));
        };
        let live = verify_device_list(handle, &devices)?;
        let meta_key = format!("device-list:{handle}");
        let seen: Vec<(DeviceId, bool)> = match self.store.meta(&meta_key)? {
            Some(bytes) => cairn_proto::decode(&bytes)
                .map_err(|e| ClientError::Protocol(format!("stored device list: {e}")))?,
            None => Vec::new(),
        };
        for (device, revoked) in &seen {
            let now = devices.iter().find(|r| r.keys.sign == *device);
            if now.is_none_or(|r| *revoked && !r.revoked) {
                return Err(ClientError::Protocol(format!(
                    "the server served an old device list of {handle}: device {} {}",
                    &device.to_hex()[..16],
                    if now.is_none() { "is missing" } else { "was revoked and is live again" }
                )));
            }
        }
        let now: Vec<(DeviceId, bool)> = devices.iter().map(|r| (r.keys.sign, r.revoked)).collect();
        if now != seen {
            self.store.set_meta(&meta_key, &cairn_proto::encode(&now))?;
        }
        Ok(live)
    }

    /// Adds a user to a space (new epoch key; the history too when the policy allows).
    pub async fn invite(
        &mut self,
        space: &SpaceId,
        handle: &str,
        role: Role,
    ) -> Result<(), ClientError> {
        let devices = self.user_devices(handle).await?;
        let member = Member { handle: handle.to_owned(), role, devices };
        self.change_membership(space, Action::Add { member }).await
    }

    /// Removes a user: a new epoch key that the removed devices never receive.
    pub async fn remove(&mut self, space: &SpaceId, handle: &str) -> Result<(), ClientError> {
        self.change_membership(space, Action::Remove { handle: handle.to_owned() }).await
    }

    /// Changes a member's role (no new key: the set of readers is the same).
    pub async fn set_role(
        &mut self,
        space: &SpaceId,
        handle: &str,
        role: Role,
    ) -> Result<(), ClientError> {
        self.change_membership(space, Action::SetRole { handle: handle.to_owned(), role }).await
    }

    /// Appends a membership op (fetching the log and retrying when another op came first).
    /// An op that starts an epoch carries the confirmation of a fresh key, which is then
    /// wrapped for every member device (and, for a new member where the policy shares
    /// history, the earlier keys this device holds for the newcomer's devices).
    async fn change_membership(
        &mut self,
        space: &SpaceId,
        action: Action,
    ) -> Result<(), ClientError> {
        for _ in 0..3 {
            self.sync_membership(space).await?;
            let log =
                self.logs.get(space).ok_or_else(|| ClientError::NoSuchSpace(space.to_hex()))?;
            let key = action.starts_epoch().then(EpochKey::generate);
            let op = log.next_op(&self.identity, action.clone(), key.as_ref());
            let signed = sign_op(&self.identity, &op);
            let mut next = log.clone();
            next.append(&signed)?;
            match self.request(Request::ChangeMembership { op: signed.clone() }).await {
                Ok(_) => {
                    self.store.put_op(space, op.index, &signed)?;
                    let history = next.state().policy.history_for_new_members;
                    self.logs.insert(*space, next);
                    if let Some(key) = key {
                        let newcomers = match &action {
                            Action::Add { member } if history => member.devices.clone(),
                            _ => Vec::new(),
                        };
                        self.hand_out_key(space, op.index, &key, &newcomers).await?;
                    }
                    return Ok(());
                }
                Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Invalid("membership kept changing under us; try again".into()))
    }

    /// Keeps the key of the epoch this device just started (its op, which confirms the key,
    /// is in the log), wraps it for every member device, and wraps the past keys this device
    /// holds for `history_for` (new members' devices).
    async fn hand_out_key(
        &mut self,
        space: &SpaceId,
        epoch: u64,
        key: &EpochKey,
        history_for: &[DeviceKeys],
    ) -> Result<(), ClientError> {
        let state = self.state(space)?.clone();
        check_epoch_key(&state, epoch, key)?;
        self.store.put_epoch_key(*space, epoch, key)?;
        let mut envelopes = Vec::new();
        for d in state.current_device_keys() {
            envelopes.push(wrap_epoch_key(&self.identity, *space, epoch, &d.sign, &d.agree, key)?);
        }
        for epoch in state.epochs().filter(|e| *e < epoch) {
            if let Some(old) = self.store.epoch_key(*space, epoch)? {
                for d in history_for {
                    envelopes.push(wrap_epoch_key(
                        &self.identity,
                        *space,
                        epoch,
                        &d.sign,
                        &d.agree,
                        &old,
                    )?);
                }
            }
        }
        self.put_envelopes(envelopes).await
    }

    /// Uploads envelopes in requests the server takes. An envelope the server already holds
    /// for that epoch and recipient is kept there, never replaced: the server answers
    /// `conflict` and stores the rest, which is what a retry or a second device of the same
    /// user racing this one looks like; the recipient checks whichever it gets.
    async fn put_envelopes(&mut self, envelopes: Vec<KeyEnvelope>) -> Result<(), ClientError> {
        for chunk in envelopes.chunks(1000) {
            match self.request(Request::PutEnvelopes { envelopes: chunk.to_vec() }).await {
                Ok(_) => {}
                Err(ClientError::Server(e)) if e.code == ErrorCode::Conflict => {
                    tracing::info!(error = %e, "some envelopes were there already");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- Sync ----

    /// Brings every space up to date: the spaces this user is in, their membership logs,
    /// their keys, their notes from each stored cursor; then sends the outbox.
    pub async fn sync(&mut self) -> Result<Vec<Change>, ClientError> {
        let Response::Spaces { spaces } = self.request(Request::ListSpaces).await? else {
            return Err(ClientError::Protocol("expected spaces".into()));
        };
        let mut changes = Vec::new();
        for s in &spaces {
            changes.extend(self.sync_space(&s.space).await?);
        }
        self.reconcile_devices(spaces.iter().map(|s| s.space)).await;
        changes.extend(self.flush_outbox().await?);
        Ok(changes)
    }

    /// Brings this user's devices in each space in line with the user's signed device
    /// list: a device signed in since the user joined is added to the space and handed the
    /// keys this device holds (so it reads what its user reads); a revoked one is removed,
    /// with a new key it never receives. Only a device that is itself a member device of a
    /// space acts on it. A space that cannot be brought in line now (another device of the
    /// user acting at the same moment, say) is tried again at the next sync.
    async fn reconcile_devices(&mut self, spaces: impl Iterator<Item = SpaceId>) {
        let mine = match self.own_devices().await {
            Ok(mine) => mine,
            Err(e) => {
                tracing::warn!(error = %e, "could not check this user's device list");
                return;
            }
        };
        for space in spaces {
            if let Err(e) = self.reconcile_space_devices(&space, &mine).await {
                tracing::warn!(space = %space, error = %e, "could not bring this user's devices in the space up to date");
            }
        }
    }

    async fn reconcile_space_devices(
        &mut self,
        space: &SpaceId,
        mine: &[DeviceKeys],
    ) -> Result<(), ClientError> {
        let Ok(state) = self.state(space) else { return Ok(()) };
        let Some((handle, me)) = state.member_of_device(&self.identity.id()) else {
            // Not (yet) a member device here: another device of this user adds it.
            return Ok(());
        };
        if handle != self.handle {
            return Err(ClientError::Protocol("this device belongs to another member".into()));
        }
        let missing: Vec<DeviceKeys> =
            mine.iter().filter(|d| !me.devices.iter().any(|m| m.sign == d.sign)).copied().collect();
        let gone: Vec<DeviceId> = me
            .devices
            .iter()
            .filter(|m| !mine.iter().any(|d| d.sign == m.sign))
            .map(|m| m.sign)
            .collect();
        for device in missing {
            let handle = self.handle.clone();
            self.change_membership(space, Action::AddDevice { handle, device }).await?;
            self.share_keys(space, &device).await?;
        }
        for device in gone {
            let handle = self.handle.clone();
            self.change_membership(space, Action::RemoveDevice { handle, device }).await?;
        }
        Ok(())
    }

    /// Wraps every key of `space` this device holds, and its user may read, for `device`.
    async fn share_keys(
        &mut self,
        space: &SpaceId,
        device: &DeviceKeys,
    ) -> Result<(), ClientError> {
        // Only the epochs this user may read now (a user removed and added again to a space
        // without shared history may hold older keys that the server would not take).
        let epochs = self.state(space)?.readable_epochs(&self.handle);
        let mut envelopes = Vec::new();
        for epoch in epochs {
            if let Some(key) = self.store.epoch_key(*space, epoch)? {
                envelopes.push(wrap_epoch_key(
                    &self.identity,
                    *space,
                    epoch,
                    &device.sign,
                    &device.agree,
                    &key,
                )?);
            }
        }
        self.put_envelopes(envelopes).await
    }

    /// One space: membership, keys, then entries after the cursor.
    pub async fn sync_space(&mut self, space: &SpaceId) -> Result<Vec<Change>, ClientError> {
        let mut changes = Vec::new();
        if self.sync_membership(space).await? {
            changes.push(Change::Space(*space));
        }
        changes.extend(self.sync_keys(space).await?);
        loop {
            let cursor = self.store.cursor(space)?.unwrap_or(0);
            let response = self
                .request(Request::Sync { space: *space, after: cursor, limit: MAX_SYNC_PAGE })
                .await;
            let (entries, more) = match response {
                Ok(Response::Entries { entries, more, .. }) => (entries, more),
                Ok(_) => return Err(ClientError::Protocol("expected entries".into())),
                // Removed from the space: keep what we have, stop syncing it.
                Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => break,
                Err(e) => return Err(e),
            };
            for entry in &entries {
                changes.extend(self.apply_entry(space, entry)?);
            }
            if let Some(last) = entries.last() {
                self.store.set_cursor(space, last.seq)?;
            }
            if !more {
                break;
            }
        }
        Ok(changes)
    }

    /// Fetches and verifies membership ops this device has not seen. Returns whether any
    /// were new.
    async fn sync_membership(&mut self, space: &SpaceId) -> Result<bool, ClientError> {
        let have = self.logs.get(space).map(|l| l.state().len).unwrap_or(0);
        let ops = match self.request(Request::GetMembership { space: *space, from: have }).await {
            Ok(Response::Membership { ops, .. }) => ops,
            Ok(_) => return Err(ClientError::Protocol("expected membership".into())),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => return Ok(false),
            Err(e) => return Err(e),
        };
        if ops.is_empty() {
            return Ok(false);
        }
        let mut log = match self.logs.get(space) {
            Some(l) => l.clone(),
            None => MembershipLog::replay(&ops[..1])?,
        };
        let skip = usize::from(have == 0);
        for op in &ops[skip..] {
            log.append(op)?;
        }
        for (i, op) in ops.iter().enumerate() {
            self.store.put_op(space, have + i as u64, op)?;
        }
        self.store.upsert_space(space, &log.state().name)?;
        self.logs.insert(*space, log);
        Ok(true)
    }

    /// Fetches the envelopes wrapped for this device, keeps the keys it lacked, and opens
    /// notes that were waiting for them. A key is kept only if the op that started its epoch
    /// confirms it; any other envelope is refused (and reported) whoever wrote it, so a
    /// good envelope can still be taken later.
    async fn sync_keys(&mut self, space: &SpaceId) -> Result<Vec<Change>, ClientError> {
        let envelopes = match self.request(Request::GetEnvelopes { space: *space }).await {
            Ok(Response::Envelopes { envelopes }) => envelopes,
            Ok(_) => return Err(ClientError::Protocol("expected envelopes".into())),
            Err(ClientError::Server(e)) if e.code == ErrorCode::Forbidden => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let Some(state) = self.logs.get(space).map(|l| l.state().clone()) else {
            return Ok(Vec::new());
        };
        let mut new_keys = false;
        let mut changes = Vec::new();
        for env in envelopes {
            if env.space == *space && self.store.epoch_key(*space, env.epoch)?.is_some() {
                continue;
            }
            match accept_envelope(&self.identity, &state, &env) {
                Ok(key) => {
                    self.store.put_epoch_key(*space, env.epoch, &key)?;
                    new_keys = true;
                }
                Err(e) => {
                    let message = format!(
                        "refused the key envelope for epoch {} from device {}: {e}",
                        env.epoch,
                        &env.creator.to_hex()[..16]
                    );
                    tracing::warn!(space = %space, "{message}");
                    changes.push(Change::Refused { space: *space, message });
                }
            }
        }
        if new_keys {
            for sealed in self.store.unopened(space)? {
                if let Some(note) = self.store.note(space, &sealed.header.note_id)? {
                    changes.push(Change::Note(self.open_and_store(
                        &sealed,
                        note.seq.unwrap_or(0),
                        note.stored_at,
                    )?));
                }
            }
        }
        Ok(changes)
    }

    /// Opens a sealed note if possible and stores it either way.
    fn open_and_store(
        &mut self,
        sealed: &SealedNote,
        seq: u64,
        stored_at: u64,
    ) -> Result<LocalNote, ClientError> {
        let h = &sealed.header;
        let opened = match (self.logs.get(&h.space), self.store.epoch_key(h.space, h.epoch)?) {
            (Some(log), Some(key)) => open_note(log.state(), &key, sealed).map_err(|e| match e {
                // The server does not check a note's signature (a member device could sign
                // anything it posts): readers do, and say plainly what a failure means.
                CryptoError::BadSignature => UNVERIFIABLE.to_owned(),
                e => e.to_string(),
            }),
            (None, _) => Err("the space's membership is unknown".to_owned()),
            (_, None) => Err(format!("no key for epoch {} yet", h.epoch)),
        };
        let (body, error) = match opened {
            Ok(b) => (Some(b), None),
            Err(e) => {
                tracing::warn!(note = %h.note_id, error = %e, "a note could not be opened; kept");
                (None, Some(e))
            }
        };
        let mine = h.sender == self.identity.id();
        let note = LocalNote {
            space: h.space,
            note_id: h.note_id,
            seq: (seq > 0).then_some(seq),
            sender: h.sender,
            body,
            error,
            deleted: false,
            read: mine,
            stored_at,
        };
        self.store.put_note(&note, Some(sealed))?;
        Ok(self.store.note(&h.space, &h.note_id)?.unwrap_or(note))
    }

    fn apply_entry(
        &mut self,
        space: &SpaceId,
        entry: &SpaceEntry,
    ) -> Result<Vec<Change>, ClientError> {
        Ok(match &entry.item {
            EntryItem::Note(sealed) => {
                if sealed.header.space != *space {
                    // A server's forgery (its header names another space): nothing of it is
                    // kept, and the rest of the space syncs on.
                    let message = format!(
                        "refused entry {} of this space: it holds note {} of another space",
                        entry.seq, sealed.header.note_id
                    );
                    tracing::warn!(space = %space, "{message}");
                    return Ok(vec![Change::Refused { space: *space, message }]);
                }
                vec![Change::Note(self.open_and_store(sealed, entry.seq, entry.stored_at)?)]
            }
            EntryItem::Tombstone { note_id, .. } => {
                self.store.outbox_done(space, note_id)?;
                if self.store.delete_note(space, note_id)? {
                    vec![Change::Removed { space: *space, note_id: *note_id }]
                } else {
                    vec![]
                }
            }
        })
    }

    /// Applies a live event. Entries must follow the cursor; after a gap this syncs the
    /// space instead.
    pub async fn handle_event(&mut self, event: Event) -> Result<Vec<Change>, ClientError> {
        match event {
            Event::Entry { space, entry } => {
                let cursor = self.store.cursor(&space)?;
                match cursor {
                    Some(c) if entry.seq == c + 1 => {
                        let changes = self.apply_entry(&space, &entry)?;
                        self.store.set_cursor(&space, entry.seq)?;
                        Ok(changes)
                    }
                    Some(c) if entry.seq <= c => Ok(Vec::new()),
                    _ => self.sync_space(&space).await,
                }
            }
            Event::Membership { space, .. } => {
                let mut changes = self.sync_space(&space).await?;
                changes.push(Change::Space(space));
                Ok(changes)
            }
            Event::Envelopes { space, .. } => self.sync_keys(&space).await,
        }
    }

    // ---- Notes ----

    /// Writes a note: sealed, stored locally and put in the outbox at once (shown as
    /// pending), then sent if online. Media are uploaded first, which needs the server.
    pub async fn post(&mut self, space: &SpaceId, draft: Draft) -> Result<LocalNote, ClientError> {
        let state = self.state(space)?.clone();
        let role = state
            .members
            .get(&self.handle)
            .map(|m| m.role)
            .ok_or_else(|| ClientError::Invalid("you are not a member of this space".into()))?;
        if !role.may_post(&state.policy) {
            return Err(ClientError::Invalid("your role may not post in this space".into()));
        }
        if state.role_of_device(&self.identity.id()).is_none() {
            return Err(ClientError::Invalid(
                "this device has not been added to this space yet: sync one of your other devices (it adds this one), then sync here".into(),
            ));
        }
        let key = self.store.epoch_key(*space, state.epoch)?.ok_or_else(|| {
            ClientError::Invalid(
                "this device has not received the space's current key yet; sync and retry".into(),
            )
        })?;
        // Never encrypt with a key the log does not confirm (one stored before this check
        // existed, or a corrupted store).
        check_epoch_key(&state, state.epoch, &key)?;
        let (kind, mut body) = self.build_body(&draft).await?;
        body.pose = draft.pose;
        let header = NoteHeader {
            space: *space,
            epoch: state.epoch,
            sender: self.identity.id(),
            note_id: draft.note_id.unwrap_or_else(|| NoteId(random_id())),
            kind,
            expires_at: draft.expires_in.map(|d| now_ms() + d.as_millis() as u64),
            media: body.media.iter().map(|m| m.hash).collect(),
        };
        let sealed = seal_note(&self.identity, &key, header, &body);
        if sealed.ciphertext.len() > MAX_NOTE_BYTES {
            return Err(ClientError::Invalid(
                "the note is too large (its thumbnail or text)".into(),
            ));
        }
        let note = LocalNote {
            space: *space,
            note_id: sealed.header.note_id,
            seq: None,
            sender: self.identity.id(),
            body: Some(body),
            error: None,
            deleted: false,
            read: true,
            stored_at: now_ms(),
        };
        let request = Request::PostNote { note: sealed.clone() };
        self.store.transaction(|s| {
            s.put_note(&note, Some(&sealed))?;
            s.outbox_put(space, &note.note_id, &request)
        })?;
        if self.is_online() {
            let _ = self.flush_outbox().await;
        }
        Ok(self.store.note(space, &note.note_id)?.unwrap_or(note))
    }

    async fn build_body(&mut self, draft: &Draft) -> Result<(NoteKind, NoteBody), ClientError> {
        let mut body = NoteBody::text(&self.handle, &draft.text, draft.pose);
        body.anchor = draft.anchor.clone();
        body.reply_to = draft.reply_to;
        body.place = draft.place;
        let kind = if let Some(record) = &draft.place_record {
            record.check().map_err(ClientError::Invalid)?;
            if draft.reaction.is_some() || draft.voice.is_some() || draft.place.is_some() {
                return Err(ClientError::Invalid(
                    "a place is not a reaction, a voice note or in another place".into(),
                ));
            }
            body.place_record = Some(record.clone());
            if let Some(image) = &draft.image {
                let prepared = crate::image::prepare(image)?;
                body.thumbnail = prepared.thumbnail;
                body.media.push(self.upload(&prepared.display, "image/jpeg").await?);
            }
            NoteKind::Place
        } else if let Some(emoji) = &draft.reaction {
            if draft.reply_to.is_none() {
                return Err(ClientError::Invalid("a reaction needs the note it reacts to".into()));
            }
            body.reaction = Some(emoji.clone());
            NoteKind::Reaction
        } else if let Some(image) = &draft.image {
            let prepared = crate::image::prepare(image)?;
            body.thumbnail = prepared.thumbnail;
            body.media.push(self.upload(&prepared.display, "image/jpeg").await?);
            NoteKind::Image
        } else if let Some(video) = &draft.video {
            body.thumbnail = video.poster.clone();
            body.duration_ms = video.duration_ms;
            body.media.push(self.upload(&video.webm, cairn_video::MIME).await?);
            NoteKind::Video
        } else if let Some(voice) = &draft.voice {
            body.waveform = voice.waveform.clone();
            body.duration_ms = voice.duration_ms;
            body.media.push(self.upload(&voice.ogg_opus, "audio/ogg").await?);
            NoteKind::Voice
        } else {
            if draft.text.trim().is_empty() {
                return Err(ClientError::Invalid("a text note needs some text".into()));
            }
            NoteKind::Text
        };
        body.kind = kind;
        Ok((kind, body))
    }

    /// Deletes a note (author or owner): a tombstone for everyone, through the outbox.
    pub async fn delete(&mut self, space: &SpaceId, note_id: &NoteId) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::delete_payload(space, note_id));
        let request = Request::DeleteNote { space: *space, note_id: *note_id, signature };
        let pending_post =
            self.store.outbox()?.into_iter().any(|(s, n, r)| {
                s == *space && n == *note_id && matches!(r, Request::PostNote { .. })
            });
        self.store.transaction(|s| {
            s.delete_note(space, note_id)?;
            if pending_post {
                // Never sent: dropping it from the outbox is the whole deletion.
                s.outbox_done(space, note_id)
            } else {
                s.outbox_put(space, note_id, &request)
            }
        })?;
        if self.is_online() {
            let _ = self.flush_outbox().await;
        }
        Ok(())
    }

    /// Sends what waits in the outbox, each with its original note id, until one fails
    /// for want of a connection. A request the server refuses is dropped from the outbox
    /// and its note marked with the reason.
    pub async fn flush_outbox(&mut self) -> Result<Vec<Change>, ClientError> {
        let mut changes = Vec::new();
        for (space, note_id, request) in self.store.outbox()? {
            match self.request(request).await {
                Ok(Response::Posted { seq, .. }) => {
                    self.store.outbox_done(&space, &note_id)?;
                    if let Some(mut note) = self.store.note(&space, &note_id)?
                        && !note.deleted
                    {
                        note.seq = Some(seq);
                        self.store.put_note(&note, None)?;
                        changes.push(Change::Note(note));
                    }
                }
                Ok(_) => return Err(ClientError::Protocol("expected posted".into())),
                Err(ClientError::Server(e))
                    if e.code != ErrorCode::RateLimited && e.code != ErrorCode::Internal =>
                {
                    tracing::warn!(%note_id, error = %e, "the server refused a note");
                    self.store.outbox_done(&space, &note_id)?;
                    if let Some(mut note) = self.store.note(&space, &note_id)? {
                        note.error = Some(format!("not sent: {}", e.message));
                        self.store.put_note(&note, None)?;
                        changes.push(Change::Note(note));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(changes)
    }

    pub fn notes(&self, space: &SpaceId) -> Result<Vec<LocalNote>, ClientError> {
        self.store.notes(space)
    }

    /// The places of a space, in the order they were made.
    pub fn places(&self, space: &SpaceId) -> Result<Vec<crate::Place>, ClientError> {
        Ok(crate::Place::all_in(&self.store.notes(space)?))
    }

    /// A place of a space by its name (any case) or the start of its id.
    pub fn find_place(&self, space: &SpaceId, name: &str) -> Result<crate::Place, ClientError> {
        let places = self.places(space)?;
        let wanted = name.trim().to_lowercase();
        let mut found: Vec<&crate::Place> =
            places.iter().filter(|p| p.record.name.trim().to_lowercase() == wanted).collect();
        if found.is_empty() && wanted.len() >= 4 {
            found = places.iter().filter(|p| p.id.to_hex().starts_with(&wanted)).collect();
        }
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let names: Vec<&str> = places.iter().map(|p| p.record.name.as_str()).collect();
                Err(ClientError::Invalid(if names.is_empty() {
                    format!("no place named {name:?}: this space has no places yet")
                } else {
                    format!("no place named {name:?} (this space has: {})", names.join(", "))
                }))
            }
            _ => Err(ClientError::Invalid(format!(
                "{} places are named {name:?}: give the start of one's id instead",
                found.len()
            ))),
        }
    }

    pub fn search(&self, words: &str) -> Result<Vec<LocalNote>, ClientError> {
        self.store.search(words)
    }

    pub fn find_note(&self, id: &str) -> Result<LocalNote, ClientError> {
        self.store.find_note(id)?.ok_or_else(|| ClientError::NoSuchNote(id.to_owned()))
    }

    pub fn outbox_len(&self) -> Result<usize, ClientError> {
        self.store.outbox_len()
    }

    // ---- Media ----

    fn http_base(&self) -> Result<String, ClientError> {
        media::http_base(&self.server)
    }

    fn token(&self) -> Result<String, ClientError> {
        Ok(self.conn()?.session.token.clone())
    }

    async fn upload(&mut self, plaintext: &[u8], mime: &str) -> Result<MediaRef, ClientError> {
        let token = self.token()?;
        let media_ref =
            media::upload(&self.http, &self.http_base()?, &token, plaintext, mime).await?;
        // Our own media go straight into the cache.
        media::cache_put(&self.home, &media_ref.hash, plaintext)?;
        self.store.media_touch(&media_ref.hash, plaintext.len() as u64)?;
        Ok(media_ref)
    }

    /// The decrypted bytes of a blob: from the cache, or downloaded (resuming a partial
    /// download), checked against its address, decrypted and cached.
    pub async fn media(&mut self, media_ref: &MediaRef) -> Result<PathBuf, ClientError> {
        self.media_arriving(media_ref, &mut |_| {}).await
    }

    /// [`Client::media`], telling `arriving` where the opened part of the blob grows while
    /// it downloads (not called when the blob is in the cache already).
    pub async fn media_arriving(
        &mut self,
        media_ref: &MediaRef,
        arriving: &mut (dyn FnMut(&Path) + Send),
    ) -> Result<PathBuf, ClientError> {
        let path = media::cache_path(&self.home, &media_ref.hash);
        if !path.exists() {
            let token = self.token()?;
            let base = self.http_base()?;
            media::download(&self.http, &base, &token, &self.home, media_ref, arriving).await?;
        }
        self.store.media_touch(&media_ref.hash, media_ref.size)?;
        for evicted in self.store.media_evict(self.media_cache_bytes)? {
            if evicted != media_ref.hash {
                let _ = std::fs::remove_file(media::cache_path(&self.home, &evicted));
            }
        }
        Ok(path)
    }

    /// The media of a stored note that is readable; a note that failed to open has none.
    pub fn note_body(&self, note: &LocalNote) -> Result<NoteBody, ClientError> {
        note.body.clone().ok_or_else(|| {
            ClientError::Invalid(format!(
                "note {} could not be opened: {}",
                note.note_id,
                note.error.clone().unwrap_or_default()
            ))
        })
    }

    /// Who has which devices, for comparing safety codes out of band.
    pub async fn safety_code(&mut self, handle: &str) -> Result<String, ClientError> {
        let devices = self.user_devices(handle).await?;
        Ok(safety_code(handle, &devices))
    }

    /// The devices of one member of a space, as this device's copy of the log says.
    pub fn member_devices_of(
        &self,
        space: &SpaceId,
        handle: &str,
    ) -> Result<Vec<DeviceId>, ClientError> {
        Ok(self
            .state(space)?
            .members
            .get(handle)
            .map(|m| m.devices.iter().map(|d| d.sign).collect())
            .unwrap_or_default())
    }

    /// Members' device ids at the current epoch (for displaying who can read a space).
    pub fn member_devices(&self, space: &SpaceId) -> Result<BTreeSet<DeviceId>, ClientError> {
        Ok(self.state(space)?.current_devices())
    }

    // ---- Devices ----

    /// Signs another device into this user (its keys come from `cairn-cli device add`),
    /// then adds it to this user's spaces and hands it their keys (see [`Client::sync`]).
    pub async fn add_device(&mut self, keys: DeviceKeys) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::add_device_payload(&self.handle, &keys));
        self.request(Request::AddDevice { device: keys, signature }).await?;
        self.sync().await?;
        Ok(())
    }

    /// Revokes a device of this user: the server stops serving it at once, and it is
    /// removed from this user's spaces, each with a new key it never receives.
    pub async fn revoke_device(&mut self, device: DeviceId) -> Result<(), ClientError> {
        let signature = self.identity.sign(&sign::revoke_device_payload(&self.handle, &device));
        self.request(Request::RevokeDevice { device, signature }).await?;
        self.sync().await?;
        Ok(())
    }

    pub async fn devices(&mut self, handle: &str) -> Result<Vec<DeviceRecord>, ClientError> {
        let Response::Devices { devices, .. } =
            self.request(Request::ListDevices { handle: handle.to_owned() }).await?
        else {
            return Err(ClientError::Protocol("expected devices".into()));
        };
        Ok(devices)
    }
}
