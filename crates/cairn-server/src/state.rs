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
use cairn_proto::{ErrorCode, MembershipOp, OpHash, SpaceId};
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
    pub user_buckets: Mutex<HashMap<String, Bucket>>,
}

/// A space's verified membership, cached; `handles` is the fan-out list. Shared (`Arc`)
/// so that a post reads it without copying.
pub struct CachedSpaceInner {
    pub state: SpaceState,
    pub handles: Vec<String>,
}

pub type CachedSpace = Arc<CachedSpaceInner>;

/// Membership of each space, replayed from the stored log on first use. Each space has
/// its own lock so that membership changes to one space are serialized on this node.
#[derive(Default)]
pub struct Spaces {
    map: Mutex<HashMap<SpaceId, Arc<tokio::sync::Mutex<Option<CachedSpace>>>>>,
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
    fn slot(&self, space: &SpaceId) -> Arc<tokio::sync::Mutex<Option<CachedSpace>>> {
        self.map.lock().expect("spaces lock").entry(*space).or_default().clone()
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
                        ServerError::Store(crate::storage::StoreError::Backend(
                            "stored membership op does not decode".into(),
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

    /// A snapshot of a space (cheap: an `Arc`).
    pub async fn get(&self, store: &dyn Store, space: &SpaceId) -> Result<Option<CachedSpace>> {
        Ok(self.lock(store, space).await?.clone())
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
    pub fn user_allowed(&self, handle: &str) -> bool {
        let rate = self.config.rate_per_user;
        let mut buckets = self.user_buckets.lock().expect("bucket lock");
        if buckets.len() > 100_000 {
            buckets.retain(|h, _| self.hub.is_online(h));
        }
        buckets.entry(handle.to_owned()).or_insert_with(|| Bucket::new(rate)).take(rate)
    }
}
