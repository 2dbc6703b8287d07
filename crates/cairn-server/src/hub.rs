//! Fan-out on this node: which connections belong to which user, and handing each of them
//! the frames for the spaces its user belongs to. A connection that cannot keep up is
//! closed (1013, try again later) rather than buffered without bound; it reconnects and
//! catches up from its cursor.

use axum::body::Bytes;
use cairn_proto::{DeviceId, Handle};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Frames queued per connection before it counts as too slow.
pub const QUEUE: usize = 1024;

/// One encoded frame, with the instant it became deliverable (for the delivery histogram).
/// Queued as [`Queued`]: one allocation shared by every recipient, and a pointer per slot
/// of each connection's queue (whose first block every connection holds from the start).
pub struct Outgoing {
    pub bytes: Bytes,
    pub since: Instant,
}

/// What a connection's queue holds.
pub type Queued = std::sync::Arc<Outgoing>;

struct Conn {
    id: u64,
    device: DeviceId,
    tx: mpsc::Sender<Queued>,
    /// Cancelled to close the connection (slow consumer, revoked device).
    kill: CancellationToken,
}

#[derive(Default)]
pub struct Hub {
    next: AtomicU64,
    users: RwLock<HashMap<Handle, Vec<Conn>>>,
}

/// Keeps a connection registered until dropped.
pub struct Registration<'a> {
    hub: &'a Hub,
    handle: Handle,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut users = self.hub.users.write().expect("hub lock");
        if let Some(conns) = users.get_mut(&self.handle) {
            conns.retain(|c| c.id != self.id);
            if conns.is_empty() {
                users.remove(&self.handle);
            }
        }
    }
}

impl Hub {
    /// A number for a new connection, unique on this node (see [`Hub::deliver`]'s `except`).
    pub fn connection_id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers connection `id` (from [`Hub::connection_id`]) of `handle`'s `device`.
    pub fn register(
        &self,
        handle: &Handle,
        device: DeviceId,
        id: u64,
        tx: mpsc::Sender<Queued>,
        kill: CancellationToken,
    ) -> Registration<'_> {
        self.users.write().expect("hub lock").entry(handle.clone()).or_default().push(Conn {
            id,
            device,
            tx,
            kill,
        });
        Registration { hub: self, handle: handle.clone(), id }
    }

    /// Queues a frame for every connection of every user in `handles` but connection
    /// `except` (the one whose request made it: its answer says what it needs). The frame is
    /// made by `frame` once, and only if some connection is to have it.
    pub fn deliver<'h>(
        &self,
        handles: impl IntoIterator<Item = &'h Handle>,
        except: Option<u64>,
        frame: impl FnOnce() -> Queued,
    ) -> usize {
        let users = self.users.read().expect("hub lock");
        let (mut frame, mut made) = (Some(frame), None::<Queued>);
        let mut queued = 0;
        for handle in handles {
            for conn in users.get(handle).into_iter().flatten() {
                if Some(conn.id) == except {
                    continue;
                }
                let out = made.get_or_insert_with(|| frame.take().expect("made once")());
                match conn.tx.try_send(out.clone()) {
                    Ok(()) => queued += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        tracing::warn!(conn = conn.id, "slow consumer; closing");
                        conn.kill.cancel();
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        queued
    }

    /// Closes every connection of one device (after it is revoked).
    pub fn disconnect_device(&self, handle: &Handle, device: &DeviceId) {
        let users = self.users.read().expect("hub lock");
        for conn in users.get(handle).into_iter().flatten().filter(|c| c.device == *device) {
            conn.kill.cancel();
        }
    }

    /// Whether any connection of `handle` is here.
    pub fn is_online(&self, handle: &Handle) -> bool {
        self.users.read().expect("hub lock").contains_key(handle)
    }
}
