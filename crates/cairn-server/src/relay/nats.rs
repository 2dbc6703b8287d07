//! The relay over NATS (the `nats` feature).

use super::WakeKind;
use crate::handlers::deliver;
use crate::state::AppState;
use cairn_proto::{Event, Handle, SpaceId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Subject prefix; a wake-up for a space goes to `cairn.wake.<space hex>`.
pub const SUBJECT: &str = "cairn.wake";

/// Entries read per page when catching up.
const PAGE: u32 = 500;

/// What another node should look at. CBOR on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Wake {
    /// The publishing node, which ignores its own wake-ups.
    pub node: u64,
    pub space: SpaceId,
    pub what: WakeKind,
}

/// What this node has delivered in one space.
#[derive(Default)]
struct Delivered {
    /// Every entry up to here has been delivered (or predates this node's interest).
    upto: Option<u64>,
    /// Entries above `upto` already delivered (this node's own posts, which go out at once).
    above: BTreeSet<u64>,
    /// Membership ops delivered (the log's length).
    ops: Option<u64>,
}

impl Delivered {
    /// Records `seq` as delivered; false if it already was.
    fn mark(&mut self, seq: u64) -> bool {
        let upto = *self.upto.get_or_insert(seq - 1);
        if seq <= upto || !self.above.insert(seq) {
            return false;
        }
        let mut upto = upto;
        while self.above.remove(&(upto + 1)) {
            upto += 1;
        }
        self.upto = Some(upto);
        true
    }
}

#[derive(Default)]
struct SpaceRelay {
    delivered: Mutex<Delivered>,
    /// Serializes catch-up reads for the space, so entries go out in order once.
    reading: tokio::sync::Mutex<()>,
}

pub struct Relay {
    client: async_nats::Client,
    pub node: u64,
    spaces: Mutex<HashMap<SpaceId, Arc<SpaceRelay>>>,
    /// Woken to catch up at once (NATS came back).
    catch_up: Arc<Notify>,
}

impl Relay {
    /// Connects to NATS at `url`. The client reconnects by itself, forever; while it is
    /// away, the periodic catch-up carries the load.
    pub async fn connect(url: &str) -> anyhow::Result<Arc<Relay>> {
        let catch_up = Arc::new(Notify::new());
        let wake = catch_up.clone();
        let client = async_nats::ConnectOptions::new()
            .name("cairn-server")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |event| {
                let wake = wake.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("NATS connected; catching up from the database");
                            wake.notify_one();
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("NATS disconnected; delivering from periodic catch-up")
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await?;
        Ok(Arc::new(Relay {
            client,
            node: u64::from_le_bytes(crate::auth::random32()[..8].try_into().expect("8 bytes")),
            spaces: Mutex::new(HashMap::new()),
            catch_up,
        }))
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn space(&self, space: &SpaceId) -> Arc<SpaceRelay> {
        self.spaces.lock().expect("relay lock").entry(*space).or_default().clone()
    }

    /// This node delivered entry `seq` itself.
    pub fn delivered_here(&self, space: &SpaceId, seq: u64) {
        self.space(space).delivered.lock().expect("relay lock").mark(seq);
    }

    /// This node delivered membership ops up to `len` itself.
    pub fn ops_here(&self, space: &SpaceId, len: u64) {
        let s = self.space(space);
        let mut d = s.delivered.lock().expect("relay lock");
        d.ops = Some(d.ops.map_or(len, |n| n.max(len)));
    }

    /// Tells the other nodes. Never waits on NATS: a wake-up that cannot go out now is
    /// covered by their periodic catch-up.
    pub fn publish(&self, state: &AppState, space: SpaceId, what: WakeKind) {
        let wake = Wake { node: self.node, space, what };
        let subject = format!("{SUBJECT}.{}", space.to_hex());
        let payload = cairn_proto::encode(&wake);
        let client = self.client.clone();
        state.metrics.wakes_sent.inc();
        tokio::spawn(async move {
            if let Err(e) = client.publish(subject, payload.into()).await {
                tracing::debug!(error = %e, "wake-up not published");
            }
        });
    }
}

/// Whether any member of the space is connected here.
fn has_local_members(state: &AppState, handles: &[Handle]) -> bool {
    handles.iter().any(|h| state.hub.is_online(h))
}

/// Delivers the space's entries this node has not delivered, from the database, in order.
async fn catch_up_entries(state: &AppState, relay: &Relay, space: SpaceId, last: u64) {
    let cached = match state.spaces.get(state.store.as_ref(), &space).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => return tracing::warn!(error = %e, "relay: space lookup"),
    };
    if !has_local_members(state, &cached.handles) {
        return;
    }
    let s = relay.space(&space);
    let _reading = s.reading.lock().await;
    let mut after = {
        let mut d = s.delivered.lock().expect("relay lock");
        // First interest in this space: start from the entry that woke us; clients that
        // were behind before that sync from their own cursors.
        *d.upto.get_or_insert(last.saturating_sub(1))
    };
    loop {
        let (entries, more) =
            match state.store.entries(&space, after, PAGE, cairn_proto::now_ms()).await {
                Ok(page) => page,
                Err(e) => return tracing::warn!(error = %e, "relay: reading entries"),
            };
        for entry in entries {
            after = entry.seq;
            if s.delivered.lock().expect("relay lock").mark(entry.seq) {
                state.metrics.relayed_entries.inc();
                deliver(state, &cached.handles, None, Event::Entry { space, entry });
            }
        }
        if !more {
            break;
        }
    }
}

/// Another node changed the space's membership: reload it and pass the new ops on.
async fn catch_up_membership(state: &AppState, relay: &Relay, space: SpaceId) {
    let before = state.spaces.get(state.store.as_ref(), &space).await.ok().flatten();
    state.spaces.invalidate(&space);
    let after = match state.spaces.get(state.store.as_ref(), &space).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => return tracing::warn!(error = %e, "relay: reloading membership"),
    };
    let audience: BTreeSet<&Handle> = before
        .iter()
        .flat_map(|b| b.handles.iter())
        .chain(after.handles.iter())
        .filter(|h| state.hub.is_online(h))
        .collect();
    if audience.is_empty() {
        return;
    }
    let s = relay.space(&space);
    let _reading = s.reading.lock().await;
    let from = {
        let d = s.delivered.lock().expect("relay lock");
        d.ops.unwrap_or(
            before.as_ref().map_or(after.state.len, |b| b.state.len).min(after.state.len),
        )
    };
    let ops = match state.store.ops(&space, from).await {
        Ok(ops) => ops,
        Err(e) => return tracing::warn!(error = %e, "relay: reading membership ops"),
    };
    for (i, op) in ops.into_iter().enumerate() {
        let index = from + i as u64;
        deliver(state, audience.iter().copied(), None, Event::Membership { space, index, op });
    }
    relay.ops_here(&space, after.state.len);
}

async fn on_wake(state: Arc<AppState>, relay: Arc<Relay>, wake: Wake) {
    match wake.what {
        WakeKind::Entries { last } => catch_up_entries(&state, &relay, wake.space, last).await,
        WakeKind::Membership { .. } => catch_up_membership(&state, &relay, wake.space).await,
        WakeKind::Envelopes { epoch, handles } => {
            deliver(&state, &handles, None, Event::Envelopes { space: wake.space, epoch })
        }
    }
}

/// Compares every space this node serves with the database's heads and catches up.
async fn sweep(state: &Arc<AppState>, relay: &Arc<Relay>) {
    let spaces: Vec<(SpaceId, Arc<SpaceRelay>)> =
        relay.spaces.lock().expect("relay lock").iter().map(|(k, v)| (*k, v.clone())).collect();
    if spaces.is_empty() {
        return;
    }
    let ids: Vec<SpaceId> = spaces.iter().map(|(id, _)| *id).collect();
    let heads = match state.store.heads(&ids).await {
        Ok(h) => h,
        Err(e) => return tracing::warn!(error = %e, "relay: reading heads"),
    };
    for h in heads {
        let Some((_, s)) = spaces.iter().find(|(id, _)| *id == h.space) else { continue };
        let (upto, ops) = {
            let d = s.delivered.lock().expect("relay lock");
            (d.upto, d.ops)
        };
        let cached = state.spaces.get(state.store.as_ref(), &h.space).await.ok().flatten();
        let cached_len = cached.as_ref().map(|c| c.state.len);
        if cached_len.is_some_and(|len| h.ops > len) || ops.is_some_and(|n| h.ops > n) {
            catch_up_membership(state, relay, h.space).await;
        }
        if upto.is_some_and(|u| h.head > u) {
            catch_up_entries(state, relay, h.space, h.head).await;
        }
        if cached.is_some_and(|c| !has_local_members(state, &c.handles)) {
            // Nobody here to deliver to: stop following the space until someone is.
            relay.spaces.lock().expect("relay lock").remove(&h.space);
        }
    }
}

/// Runs until shutdown: receives wake-ups and catches up every `interval`.
pub async fn run(state: Arc<AppState>, relay: Arc<Relay>, interval: Duration) {
    let mut wakes = loop {
        match relay.client.subscribe(format!("{SUBJECT}.>")).await {
            Ok(sub) => break sub,
            Err(e) => {
                tracing::warn!(error = %e, "NATS subscribe failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = state.shutdown.cancelled() => return,
                }
            }
        }
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        state.metrics.nats_connected.set(i64::from(relay.connected()));
        tokio::select! {
            msg = wakes.next() => {
                let Some(msg) = msg else { break };
                let Ok(wake) = cairn_proto::decode::<Wake>(&msg.payload) else {
                    tracing::warn!(subject = %msg.subject, "ignoring a malformed wake-up");
                    continue;
                };
                if wake.node == relay.node {
                    continue;
                }
                state.metrics.wakes_received.inc();
                tokio::spawn(on_wake(state.clone(), relay.clone(), wake));
            }
            _ = tick.tick() => sweep(&state, &relay).await,
            _ = relay.catch_up.notified() => {
                // Membership may have changed unseen while NATS was away.
                for space in relay.spaces.lock().expect("relay lock").keys() {
                    state.spaces.invalidate(space);
                }
                sweep(&state, &relay).await;
            }
            _ = state.shutdown.cancelled() => break,
        }
    }
}
