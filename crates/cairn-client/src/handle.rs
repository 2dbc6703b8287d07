//! A [`Client`] running on its own tokio runtime thread, with commands in and events out,
//! so that a frame loop (the Bevy app) can drain events without blocking. It shows the
//! cache first, then connects, reconnecting with exponential backoff and jitter, syncs every
//! space from its cursor, and keeps the outbox flowing.

use crate::client::{Change, Client, Draft, SpaceView};
use crate::error::ClientError;
use cairn_crypto::MediaRef;
use cairn_proto::{Handle, NoteId, Policy, Role, SpaceId};
use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;
use tokio::sync::mpsc;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Syncing,
    Online,
    /// Unreachable or refused; the next try comes after `retry_in`.
    Offline {
        reason: String,
        retry_in: Duration,
    },
}

// One command per thing a person does: boxing the draft would save nothing worth an
// allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum ClientCommand {
    Post {
        space: SpaceId,
        draft: Draft,
    },
    Delete {
        space: SpaceId,
        note_id: NoteId,
    },
    CreateSpace {
        name: String,
        policy: Policy,
    },
    Invite {
        space: SpaceId,
        handle: Handle,
        role: Role,
    },
    /// Download (or find in the cache) a note's media; answered with `MediaReady`.
    FetchMedia {
        media: MediaRef,
    },
    MarkRead {
        space: SpaceId,
        note_id: NoteId,
    },
    /// The app shows another space: send that space's notes again, from the cache (the
    /// network's news about it keeps coming as changes).
    OpenSpace {
        space: SpaceId,
    },
    Shutdown,
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // as `Change`: notes are nearly every event
pub enum ClientEvent {
    /// Who this device is, and the spaces it knows, sent first.
    Ready {
        handle: Handle,
        spaces: Vec<SpaceView>,
    },
    /// The spaces again, with their members, after one changed (created, joined, a member
    /// added or removed).
    Spaces(Vec<SpaceView>),
    State(ConnectionState),
    Changed(Change),
    Outbox(usize),
    /// A blob's first chunks are open: its plaintext grows at `path` (then moves into the
    /// cache, where `MediaReady` finds it; a reader that opened `path` keeps reading it).
    MediaArriving {
        media: cairn_proto::MediaHash,
        path: PathBuf,
    },
    MediaReady {
        media: cairn_proto::MediaHash,
        path: PathBuf,
    },
    /// A blob could not be had: the download failed, or it did not open or match its
    /// address (nothing of it is kept).
    MediaFailed {
        media: cairn_proto::MediaHash,
        reason: String,
    },
    /// Something the user should see (a refused note, a failed download).
    Error(String),
}

pub struct ClientHandle {
    commands: mpsc::UnboundedSender<ClientCommand>,
    events: std_mpsc::Receiver<ClientEvent>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ClientHandle {
    /// Runs `client` on a new thread with its own runtime.
    pub fn spawn(client: Client) -> ClientHandle {
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (ev_tx, ev_rx) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("cairn-client".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(run(client, cmd_rx, ev_tx));
            })
            .expect("spawning the client thread");
        ClientHandle { commands: cmd_tx, events: ev_rx, thread: Some(thread) }
    }

    pub fn send(&self, command: ClientCommand) {
        let _ = self.commands.send(command);
    }

    /// The next event, if one is waiting. Never blocks.
    pub fn try_recv(&self) -> Option<ClientEvent> {
        self.events.try_recv().ok()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<ClientEvent> {
        self.events.recv_timeout(timeout).ok()
    }
}

impl Drop for ClientHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(ClientCommand::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Exponential backoff from 250 ms to 30 s, with up to 50% random jitter.
fn backoff(attempt: u32) -> Duration {
    let base = 250u64.saturating_mul(1 << attempt.min(7)).min(30_000);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    let jitter = base / 2 * u64::from(u16::from_le_bytes(r)) / u64::from(u16::MAX);
    Duration::from_millis(base / 2 + jitter)
}

async fn run(
    mut client: Client,
    mut commands: mpsc::UnboundedReceiver<ClientCommand>,
    events: std_mpsc::Sender<ClientEvent>,
) {
    let emit = |e: ClientEvent| {
        let _ = events.send(e);
    };
    let emit_changes = |client: &Client, changes: Vec<Change>| {
        let spaces_changed = changes.iter().any(|c| matches!(c, Change::Space(_)));
        for c in changes {
            let _ = events.send(ClientEvent::Changed(c));
        }
        if spaces_changed {
            let _ = events.send(ClientEvent::Spaces(client.spaces().unwrap_or_default()));
        }
    };
    // The cache first: the app shows what it knows before the network answers.
    let spaces = client.spaces().unwrap_or_default();
    emit(ClientEvent::Ready { handle: client.handle().to_owned(), spaces: spaces.clone() });
    for s in &spaces {
        for n in client.notes(&s.id).unwrap_or_default() {
            emit(ClientEvent::Changed(Change::Note(n)));
        }
    }
    emit(ClientEvent::Outbox(client.outbox_len().unwrap_or(0)));
    let mut attempt = 0u32;
    loop {
        if !client.is_online() {
            emit(ClientEvent::State(ConnectionState::Connecting));
            let result = async {
                client.connect().await?;
                emit(ClientEvent::State(ConnectionState::Syncing));
                client.sync().await
            }
            .await;
            match result {
                Ok(changes) => {
                    attempt = 0;
                    emit_changes(&client, changes);
                    emit(ClientEvent::State(ConnectionState::Online));
                    emit(ClientEvent::Outbox(client.outbox_len().unwrap_or(0)));
                }
                Err(e) => {
                    client.disconnect();
                    let wait = backoff(attempt);
                    attempt = attempt.saturating_add(1);
                    emit(ClientEvent::State(ConnectionState::Offline {
                        reason: e.to_string(),
                        retry_in: wait,
                    }));
                    let sleep = tokio::time::sleep(wait);
                    tokio::pin!(sleep);
                    loop {
                        tokio::select! {
                            _ = &mut sleep => break,
                            cmd = commands.recv() => match cmd {
                                None | Some(ClientCommand::Shutdown) => return,
                                Some(cmd) => handle_command(&mut client, cmd, &events).await,
                            },
                        }
                    }
                    continue;
                }
            }
        }
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None | Some(ClientCommand::Shutdown) => return,
                Some(cmd) => handle_command(&mut client, cmd, &events).await,
            },
            event = client.next_event() => match event {
                Some(event) => match client.handle_event(event).await {
                    Ok(changes) => emit_changes(&client, changes),
                    Err(e) => emit(ClientEvent::Error(e.to_string())),
                },
                None => client.disconnect(),
            },
        }
    }
}

async fn handle_command(
    client: &mut Client,
    cmd: ClientCommand,
    events: &std_mpsc::Sender<ClientEvent>,
) {
    let emit = |e: ClientEvent| {
        let _ = events.send(e);
    };
    let result: Result<(), ClientError> = async {
        match cmd {
            ClientCommand::Post { space, draft } => {
                let note = client.post(&space, draft).await?;
                emit(ClientEvent::Changed(Change::Note(note.clone())));
                // It may have been acknowledged already.
                if let Some(n) = client.store().note(&space, &note.note_id)?
                    && n != note
                {
                    emit(ClientEvent::Changed(Change::Note(n)));
                }
            }
            ClientCommand::Delete { space, note_id } => {
                client.delete(&space, &note_id).await?;
                emit(ClientEvent::Changed(Change::Removed { space, note_id }));
            }
            ClientCommand::CreateSpace { name, policy } => {
                let id = client.create_space(&name, policy).await?;
                emit(ClientEvent::Changed(Change::Space(id)));
                emit(ClientEvent::Spaces(client.spaces()?));
            }
            ClientCommand::Invite { space, handle, role } => {
                client.invite(&space, &handle, role).await?;
                emit(ClientEvent::Changed(Change::Space(space)));
                emit(ClientEvent::Spaces(client.spaces()?));
            }
            ClientCommand::OpenSpace { space } => {
                for n in client.notes(&space)? {
                    emit(ClientEvent::Changed(Change::Note(n)));
                }
            }
            ClientCommand::FetchMedia { media } => {
                let hash = media.hash;
                let mut arriving = |path: &Path| {
                    emit(ClientEvent::MediaArriving { media: hash, path: path.into() })
                };
                match client.media_arriving(&media, &mut arriving).await {
                    Ok(path) => emit(ClientEvent::MediaReady { media: hash, path }),
                    Err(e) => emit(ClientEvent::MediaFailed { media: hash, reason: e.to_string() }),
                }
            }
            ClientCommand::MarkRead { space, note_id } => {
                client.store().mark_read(&space, &note_id)?
            }
            ClientCommand::Shutdown => {}
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        emit(ClientEvent::Error(e.to_string()));
    }
    emit(ClientEvent::Outbox(client.outbox_len().unwrap_or(0)));
}
