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

mod blobs;
mod devices;
mod notes;
mod spaces;
mod sync;

pub use notes::{Content, Draft, VideoClip, VoiceClip};

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

/// A space as this device sees it.
#[derive(Clone, Debug)]
pub struct SpaceView {
    pub id: SpaceId,
    pub name: String,
    pub role: Option<Role>,
    pub members: Vec<(Handle, Role)>,
    pub epoch: u64,
}

pub struct Client {
    home: PathBuf,
    store: LocalStore,
    identity: DeviceIdentity,
    handle: Handle,
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

/// A new profile needs a directory without one already.
fn check_new_profile(home: &Path) -> Result<(), ClientError> {
    if store_path(home).exists()
        && LocalStore::open(&store_path(home))?.meta(META_IDENTITY)?.is_some()
    {
        return Err(ClientError::ProfileExists(home.to_owned()));
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
        handle: &Handle,
        invite: Option<&str>,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        check_new_profile(home)?;
        let server = &media::ws_endpoint(server)?;
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
        handle: &Handle,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        check_new_profile(home)?;
        let server = &media::ws_endpoint(server)?;
        create_home(home)?;
        Client::create_profile(home, DeviceIdentity::generate(), handle, server, passphrase)
    }

    /// Writes a new profile's store: the (optionally sealed) keys, the handle, the server.
    fn create_profile(
        home: &Path,
        identity: DeviceIdentity,
        handle: &Handle,
        server: &str,
        passphrase: Option<&str>,
    ) -> Result<Client, ClientError> {
        let store = LocalStore::open(&store_path(home))?;
        store.set_meta(META_IDENTITY, &crate::identity::seal_identity(&identity, passphrase)?)?;
        store.set_meta(META_HANDLE, handle.as_bytes())?;
        store.set_meta(META_SERVER, server.as_bytes())?;
        Client::assemble(home, store, identity, handle.clone(), server.into())
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
        let handle = Handle::new(handle).map_err(|_| ClientError::DamagedHandle)?;
        let server = store.meta_string(META_SERVER)?.unwrap_or_default();
        Client::assemble(home, store, identity, handle, server)
    }

    fn assemble(
        home: &Path,
        store: LocalStore,
        identity: DeviceIdentity,
        handle: Handle,
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

    pub fn handle(&self) -> &Handle {
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
}
