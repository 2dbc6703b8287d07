//! The bridge between cairn-client and Bevy: the client runs on its own tokio runtime
//! (`ClientHandle`); each frame its events are drained into Bevy messages, and commands
//! written as [`NetCommand`] messages go back to it.
//!
//! A note this device writes goes out one way, whatever wrote it: as a [`PostNote`] (from
//! compose, audio, places), placed by `places::place_outgoing` (its anchor and its place's
//! frame), then turned into the client's `Post` here, by [`post_notes`] and nothing else.

use crate::CairnSet;
use crate::common::Notice;
use bevy::prelude::*;
use cairn_client::{
    Change, ClientCommand, ClientEvent, ClientHandle, ConnectionState, Draft, LocalNote, SpaceView,
};
use cairn_proto::{MediaHash, NoteId, SpaceId};
use std::path::PathBuf;
use std::sync::Mutex;

/// A note appeared or changed.
#[derive(Message, Debug, Clone)]
pub struct NoteUpdated(pub LocalNote);

/// A note was deleted or expired.
#[derive(Message, Debug, Clone)]
pub struct NoteRemoved {
    pub space: SpaceId,
    pub note_id: NoteId,
}

/// Decrypted media is on disk.
#[derive(Message, Debug, Clone)]
pub struct MediaReady {
    pub hash: MediaHash,
    pub path: PathBuf,
}

/// A blob's first chunks are open and its plaintext grows at `path` (a video starts from it
/// while the rest arrives); `MediaReady` follows when it is whole.
#[derive(Message, Debug, Clone)]
pub struct MediaArriving {
    pub hash: MediaHash,
    pub path: PathBuf,
}

/// A blob could not be had (the reason is also shown as a notice).
#[derive(Message, Debug, Clone)]
pub struct MediaFailed {
    pub hash: MediaHash,
    pub reason: String,
}

/// A command for the client.
#[derive(Message, Debug)]
pub struct NetCommand(pub ClientCommand);

/// A note this device writes, on its way out: written by whatever made it, placed in
/// `CairnSet::Layout` (`places::place_outgoing`), posted in `CairnSet::NetSend`.
#[derive(Message, Debug, Clone)]
pub struct PostNote {
    pub space: SpaceId,
    pub draft: Draft,
}

/// What the status line shows.
#[derive(Resource, Debug, Clone)]
pub struct NetStatus {
    pub handle: String,
    pub state: ConnectionState,
    pub outbox: usize,
    /// Every space this device is in, with its members (as the verified log says).
    pub spaces: Vec<SpaceView>,
    pub last_error: Option<String>,
}

impl Default for NetStatus {
    fn default() -> Self {
        NetStatus {
            handle: String::new(),
            state: ConnectionState::Connecting,
            outbox: 0,
            spaces: Vec::new(),
            last_error: None,
        }
    }
}

/// The status line (the sidebar, the hand display): the handle and connection.
pub fn status_text(status: &NetStatus) -> String {
    use cairn_client::ConnectionState::*;
    let state = match &status.state {
        Connecting => "connecting…".to_owned(),
        Syncing => "syncing…".to_owned(),
        Online => "online".to_owned(),
        Offline { retry_in, .. } => format!("offline · retrying in {}s", retry_in.as_secs().max(1)),
    };
    format!("{} · {state} · {} in outbox", status.handle, status.outbox)
}

/// The space on screen.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CurrentSpace(pub Option<SpaceId>);

/// The messages and resources, without a client: headless tests write the messages
/// themselves.
pub fn messages(app: &mut App) {
    app.add_message::<NoteUpdated>()
        .add_message::<NoteRemoved>()
        .add_message::<MediaReady>()
        .add_message::<MediaArriving>()
        .add_message::<MediaFailed>()
        .add_message::<Notice>()
        .add_message::<NetCommand>()
        .add_message::<PostNote>()
        .init_resource::<NetStatus>()
        .init_resource::<CurrentSpace>()
        .add_systems(Update, post_notes.in_set(CairnSet::NetSend));
}

/// Placed notes become the client's posts: the one place where a note turns into a command.
/// The last to see them (after the placing and the XR glue, in earlier sets), it takes them
/// rather than copying a draft that may hold a whole clip.
pub fn post_notes(mut notes: ResMut<Messages<PostNote>>, mut net: MessageWriter<NetCommand>) {
    for PostNote { space, draft } in notes.drain() {
        net.write(NetCommand(ClientCommand::Post { space, draft }));
    }
}

#[derive(Resource)]
struct Client(Mutex<ClientHandle>);

/// The networking plugin: owns the client handle.
pub fn plugin(handle: ClientHandle, space: Option<SpaceId>) -> impl Plugin {
    let client = Mutex::new(Some(handle));
    move |app: &mut App| {
        let handle =
            client.lock().expect("plugin lock").take().expect("the net plugin is added once");
        app.insert_resource(Client(Mutex::new(handle)))
            .insert_resource(CurrentSpace(space))
            .add_systems(Update, drain_client.in_set(CairnSet::NetReceive))
            .add_systems(Update, send_commands.in_set(CairnSet::NetSend).after(post_notes));
    }
}

/// Most client events handled in one frame; the rest wait for the next, so a big sync
/// never stalls a frame.
const EVENTS_PER_FRAME: usize = 2000;

/// What the client says about media, passed on.
#[derive(bevy::ecs::system::SystemParam)]
struct MediaNews<'w> {
    ready: MessageWriter<'w, MediaReady>,
    arriving: MessageWriter<'w, MediaArriving>,
    failed: MessageWriter<'w, MediaFailed>,
}

fn drain_client(
    client: Res<Client>,
    mut status: ResMut<NetStatus>,
    mut current: ResMut<CurrentSpace>,
    mut updated: MessageWriter<NoteUpdated>,
    mut removed: MessageWriter<NoteRemoved>,
    mut media: MediaNews,
    mut notices: MessageWriter<Notice>,
) {
    let handle = client.0.lock().expect("client lock");
    for _ in 0..EVENTS_PER_FRAME {
        let Some(event) = handle.try_recv() else { break };
        match event {
            ClientEvent::Ready { handle, spaces } => {
                status.handle = handle.to_string();
                if current.0.is_none() {
                    current.0 = spaces.first().map(|s| s.id);
                }
                status.spaces = spaces;
            }
            ClientEvent::Spaces(spaces) => status.spaces = spaces,
            ClientEvent::State(state) => {
                if let ConnectionState::Offline { reason, .. } = &state {
                    status.last_error = Some(reason.clone());
                }
                status.state = state;
            }
            ClientEvent::Changed(Change::Note(n)) => {
                updated.write(NoteUpdated(n));
            }
            ClientEvent::Changed(Change::Removed { space, note_id }) => {
                removed.write(NoteRemoved { space, note_id });
            }
            ClientEvent::Changed(Change::Space(id)) => {
                if current.0.is_none() {
                    current.0 = Some(id);
                }
            }
            ClientEvent::Changed(Change::Refused { message, .. }) => {
                notices.write(Notice::problem(message));
            }
            ClientEvent::Outbox(n) => status.outbox = n,
            ClientEvent::MediaArriving { media: hash, path } => {
                media.arriving.write(MediaArriving { hash, path });
            }
            ClientEvent::MediaReady { media: hash, path } => {
                media.ready.write(MediaReady { hash, path });
            }
            ClientEvent::MediaFailed { media: hash, reason } => {
                notices.write(Notice::problem(format!("a download failed: {reason}")));
                media.failed.write(MediaFailed { hash, reason });
            }
            ClientEvent::Error(e) => {
                status.last_error = Some(e.clone());
                notices.write(Notice::problem(e));
            }
        }
    }
}

fn send_commands(client: Res<Client>, mut commands: ResMut<Messages<NetCommand>>) {
    let handle = client.0.lock().expect("client lock");
    for NetCommand(c) in commands.drain() {
        handle.send(c);
    }
}
