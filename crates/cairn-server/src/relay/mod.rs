//! Fan-out across nodes. The database is the log; NATS only carries the hint that the log
//! grew. After a commit a node publishes a small wake-up on `cairn.wake.<space>` (core NATS,
//! no persistence); every node that has members of that space connected reads what is new
//! from the database and delivers it, exactly as it delivers its own posts.
//!
//! Nothing depends on a wake-up arriving. Each node remembers, per space it serves, up to
//! which sequence number it has delivered; every few seconds, and at once when its NATS
//! connection comes back, it compares that with the heads in the database and catches up.
//! Clients fill any remaining gap themselves from their cursor (they sync on a sequence gap
//! and on every reconnect), so a lost message, a NATS restart or a killed node delays a
//! note but never loses one.
//!
//! Built without the `nats` feature (the app's embedded server is one node alone), there is
//! nothing to relay: no [`Relay`] can exist, and `--nats` is refused at start-up.

use cairn_proto::Handle;
use serde::{Deserialize, Serialize};

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
pub use nats::{Relay, SUBJECT, Wake, run};

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum WakeKind {
    /// Entries up to `last` are committed.
    Entries { last: u64 },
    /// Membership op `index` is committed.
    Membership { index: u64 },
    /// Key envelopes for `epoch` were stored for devices of these users.
    Envelopes { epoch: u64, handles: Vec<Handle> },
}

/// Without NATS no relay exists: the type has no values, and its methods cannot be called.
#[cfg(not(feature = "nats"))]
pub enum Relay {}

#[cfg(not(feature = "nats"))]
impl Relay {
    pub fn delivered_here(&self, _: &cairn_proto::SpaceId, _: u64) {
        match *self {}
    }

    pub fn ops_here(&self, _: &cairn_proto::SpaceId, _: u64) {
        match *self {}
    }

    pub fn publish(&self, _: &crate::state::AppState, _: cairn_proto::SpaceId, _: WakeKind) {
        match *self {}
    }
}
