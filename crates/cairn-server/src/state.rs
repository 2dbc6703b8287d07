//! What every connection and HTTP handler shares.

use crate::auth::TokenKey;
use crate::blobs::MediaStore;
use crate::config::Config;
use crate::error::{Result, ServerError};
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::relay::Relay;
use crate::storage::Store;
use cairn_proto::membership::SpaceState;
use cairn_proto::{ErrorCode, Handle, MembershipOp, OpHash, SpaceId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct AppState {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub hub: Hub,
    pub spaces: Spaces,
    pub tokens: TokenKey,
    pub metrics: Metrics,
    /// Where media bytes live (files, or PostgreSQL when nodes share a database).
    pub media: Arc<dyn MediaStore>,
    /// Fan-out to and from other nodes; `None` on a single node.
    pub relay: Option<Arc<Relay>>,
    /// Cancelled when the server shuts down; connections close with 1001.
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Per-user request buckets, shared by all of a user's connections.
    pub user_buckets: Mutex<HashMap<Handle, Bucket>>,
    /// The server's budget of sync pages computed but not yet written (one permit a page
    /// of up to a frame; `--unsent-answers-mb`).
    pub unsent_pages: Arc<tokio::sync::Semaphore>,
    /// TLS on the listening port, when configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
}

/// A space's verified membership, cached; `handles` is the fan-out list. Shared (`Arc`)
/// so that a post reads it without copying.
pub struct CachedSpaceInner {
    pub state: SpaceState,
    pub handles: Vec<Handle>,
}

pub type CachedSpace = Arc<CachedSpaceInner>;

type Slot = Arc<tokio::sync::Mutex<Option<CachedSpace>>>;

/// Membership of each space, replayed from the stored log on first use. Each space has
/// its own lock so that membership changes to one space are serialized on this node.
/// Bounded: at most `cap` spaces (those in use at the moment may exceed it briefly), and a
/// space that does not exist leaves nothing behind, so no request can fill it.
pub struct Spaces {
    map: Mutex<HashMap<SpaceId, Slot>>,
    cap: usize,
}

/// SHA-256 of an op body: the hash chain's link.
pub fn op_hash(body: &[u8]) -> OpHash {
    OpHash(Sha256::digest(body).into())
}

/// Wraps a replayed state for the cache.
pub fn cached(state: SpaceState) -> CachedSpace {
    let handles = state.members.keys().cloned().collect();
    Arc::new(CachedSpaceInner { state, handles })
}

impl Spaces {
    pub fn new(cap: usize) -> Spaces {
        Spaces { map: Mutex::new(HashMap::new()), cap: cap.max(1) }
    }

    /// How many spaces are in memory.
    pub fn len(&self) -> usize {
        self.map.lock().expect("spaces lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, space: &SpaceId) -> Slot {
        let mut map = self.map.lock().expect("spaces lock");
        if let Some(slot) = map.get(space) {
            return slot.clone();
        }
        if map.len() >= self.cap {
            // Drop a tenth of the spaces nobody holds now (a space in use keeps its slot,
            // so its lock still serializes its membership changes).
            let excess = map.len() + 1 - self.cap + self.cap / 10;
            let idle: Vec<SpaceId> = map
                .iter()
                .filter(|(_, slot)| Arc::strong_count(slot) == 1)
                .map(|(id, _)| *id)
                .take(excess)
                .collect();
            for id in idle {
                map.remove(&id);
            }
        }
        map.entry(*space).or_default().clone()
    }

    /// Forgets `space`'s slot if it holds no space and nobody else holds it.
    fn forget_if_absent(&self, space: &SpaceId) {
        let mut map = self.map.lock().expect("spaces lock");
        let absent = map.get(space).is_some_and(|slot| {
            Arc::strong_count(slot) == 1 && slot.try_lock().is_ok_and(|g| g.is_none())
        });
        if absent {
            map.remove(space);
        }
    }

    /// Locks a space's entry, loading it from the store if needed. `None` inside: no such
    /// space.
    pub async fn lock(
        &self,
        store: &dyn Store,
        space: &SpaceId,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<CachedSpace>>> {
        let mut guard = self.slot(space).lock_owned().await;
        if guard.is_none() {
            let ops = store.ops(space, 0).await?;
            if let Some((first, rest)) = ops.split_first() {
                let decode = |body: &[u8]| -> Result<MembershipOp> {
                    cairn_proto::decode(body).map_err(|_| {
                        ServerError::Store(crate::storage::StoreError::backend(
                            "stored membership op does not decode",
                        ))
                    })
                };
                let mut state = SpaceState::genesis(&decode(&first.body)?, op_hash(&first.body))
                    .map_err(|e| ServerError::code(ErrorCode::Internal, e.to_string()))?;
                for op in rest {
                    state
                        .apply(&decode(&op.body)?, op_hash(&op.body))
                        .map_err(|e| ServerError::code(ErrorCode::Internal, e.to_string()))?;
                }
                *guard = Some(cached(state));
            }
        }
        Ok(guard)
    }

    /// A snapshot of a space (cheap: an `Arc`). Asking for a space that does not exist
    /// leaves nothing in memory.
    pub async fn get(&self, store: &dyn Store, space: &SpaceId) -> Result<Option<CachedSpace>> {
        let snapshot = self.lock(store, space).await?.clone();
        if snapshot.is_none() {
            self.forget_if_absent(space);
        }
        Ok(snapshot)
    }

    /// Forgets a space so that the next use reloads it from the store (another node
    /// changed its membership).
    pub fn invalidate(&self, space: &SpaceId) {
        self.map.lock().expect("spaces lock").remove(space);
    }
}

/// A token bucket: `rate` per second, bursts up to `2 * rate`.
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    pub fn new(rate: u32) -> Self {
        Bucket { tokens: f64::from(rate) * 2.0, last: Instant::now() }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let cap = f64::from(rate) * 2.0;
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * f64::from(rate)).min(cap);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl AppState {
    /// Takes a token from the user's shared bucket.
    pub fn user_allowed(&self, handle: &Handle) -> bool {
        let rate = self.config.rate_per_user;
        let mut buckets = self.user_buckets.lock().expect("bucket lock");
        if buckets.len() > 100_000 {
            buckets.retain(|h, _| self.hub.is_online(h));
        }
        // Looked up first: the handle is copied only for a user's first request.
        if let Some(bucket) = buckets.get_mut(handle) {
            return bucket.take(rate);
        }
        buckets.entry(handle.to_owned()).or_insert_with(|| Bucket::new(rate)).take(rate)
    }
}
