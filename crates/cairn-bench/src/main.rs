//! `cairn-bench`: measures, in one run, the Cairn server against this machine's ceilings.
//!
//! * ceilings: batched rusqlite inserts (WAL, synchronous=FULL), a bare
//!   tokio-tungstenite echo server, and strict Ed25519 checks of note signatures on every
//!   core (the server checks each post's, so no post rate can pass that one);
//! * durable posts acknowledged per second with 100 concurrent senders;
//! * 1:1 relay (post -> commit -> delivery to the other member): throughput, p50/p99;
//! * delivery to every member of a 1,000-member space: p50/p99;
//! * scale-out: a batched multi-row INSERT ceiling on PostgreSQL, durable posts on the
//!   PostgreSQL backend against it, and post-to-delivery latency for a member on the same
//!   node and one on another node (two nodes sharing PostgreSQL and NATS);
//! * server RSS per idle, logged-in connection, with 10,000 connections (server in its own
//!   process).
//!
//! `cargo run --release -p cairn-bench` (build `cairn-server` in release first for the RSS
//! part: `./dev bench` does both). Figures go into docs/BENCHMARKS.md.

use anyhow::{Context, Result};
use cairn_client::connection::{Auth, Connection};
use cairn_crypto::*;
use cairn_proto::*;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Parser)]
struct Args {
    /// Concurrent senders for the durable-post figure.
    #[arg(long, default_value_t = 100)]
    senders: usize,
    /// Seconds each throughput phase runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Members of the fan-out space.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Idle connections for the memory figure (0 skips it).
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Path of the cairn-server binary for the memory figure (default: beside this one).
    #[arg(long)]
    server_bin: Option<std::path::PathBuf>,
    /// NATS for the scale-out figures (PostgreSQL: the local server, or
    /// `CAIRN_TEST_DATABASE`; the bench makes and drops a database of its own).
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// Skip the scale-out figures (PostgreSQL and NATS).
    #[arg(long)]
    no_scale_out: bool,
    /// Run only these phases (for profiling one of them); the SQLite ceiling always runs,
    /// since the SQLite figures are ratios to it.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Phase>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Phase {
    Echo,
    Store,
    Posts,
    Relay,
    Voice,
    FanOut,
    ScaleOut,
    Idle,
}

impl Args {
    fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

const NOTE_BYTES: usize = 1024;

fn pct(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds")
}

// ---- ceilings ----

/// Rows per second, and the CPU time the machine spent per row (every process).
fn sqlite_ceiling(rows: usize) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let conn = rusqlite::Connection::open(dir.path().join("ceiling.db"))?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE entries (space BLOB, seq INTEGER, note_id BLOB, item BLOB, PRIMARY KEY (space, seq));",
    )?;
    let payload = vec![7u8; NOTE_BYTES + 300];
    let busy = machine_busy_seconds()?;
    let started = Instant::now();
    let batch = 500;
    for b in 0..rows / batch {
        conn.execute_batch("BEGIN")?;
        {
            let mut stmt = conn.prepare_cached("INSERT INTO entries VALUES (?1, ?2, ?3, ?4)")?;
            for i in 0..batch {
                let seq = (b * batch + i) as i64;
                stmt.execute(rusqlite::params![
                    &[1u8; 16][..],
                    seq,
                    &seq.to_le_bytes()[..],
                    &payload
                ])?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((rate, (machine_busy_seconds()? - busy) / rows as f64))
}

/// Round trips per second over one connection with `window` messages in flight, and
/// unloaded round-trip latency.
async fn echo_ceiling(seconds: u64) -> Result<(f64, Histogram<u64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_binary() && ws.send(m).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}")).await?;
    let (mut tx, mut rx) = ws.split();
    let msg = tokio_tungstenite::tungstenite::Message::Binary(vec![3u8; NOTE_BYTES + 350].into());
    let mut lat = hist();
    for _ in 0..2000 {
        let t = Instant::now();
        tx.send(msg.clone()).await?;
        rx.next().await.context("echo closed")??;
        lat.record(t.elapsed().as_micros() as u64)?;
    }
    let window = 64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut done = 0u64;
    for _ in 0..window {
        tx.send(msg.clone()).await?;
    }
    while Instant::now() < deadline {
        rx.next().await.context("echo closed")??;
        done += 1;
        tx.send(msg.clone()).await?;
    }
    Ok((done as f64 / started.elapsed().as_secs_f64(), lat))
}

/// CPU time the whole machine has spent busy since boot (every process; user, system and
/// interrupts; not idle, I/O wait or time stolen by the hypervisor), in seconds.
fn machine_busy_seconds() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .context("empty /proc/stat")?
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, ..] = ticks[..] else {
        anyhow::bail!("short cpu line in /proc/stat");
    };
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
    Ok((user + nice + system + irq + softirq) as f64 / 100.0)
}

/// The signature-check ceiling: checks per second with `threads` cores doing nothing else.
struct Checks {
    rate: f64,
    threads: usize,
}

impl Checks {
    /// CPU time one check costs, in seconds of one core.
    fn cpu_each(&self) -> f64 {
        self.threads as f64 / self.rate
    }

    /// The most posts per second a server could acknowledge on this machine if each cost
    /// only its signature check and its row's CPU time (`row_cpu`): every core busy and
    /// nothing else done (no WebSocket, TCP or load generator).
    fn post_bound(&self, row_cpu: f64) -> f64 {
        self.threads as f64 / (self.cpu_each() + row_cpu)
    }

    /// Where a durable post's CPU time (`cpu`) went: its signature check and its row (from
    /// the ceilings), and the rest (WebSocket, TCP, CBOR and tasks, at the server and at the
    /// load generator).
    fn cpu_split(&self, cpu: f64, row_cpu: f64) -> String {
        let check = self.cpu_each();
        format!(
            "         machine CPU per acknowledged post: {:.1} us = signature check {:.1} + row {:.1} + the rest {:.1} (WebSocket, TCP, CBOR, tasks; server and load generator)",
            cpu * 1e6,
            check * 1e6,
            row_cpu * 1e6,
            (cpu - check - row_cpu) * 1e6
        )
    }
}

/// Note signatures the server can check per second with every core doing nothing else:
/// what it does per post (the signed payload built from the header and ciphertext, then a
/// strict Ed25519 check under the caller's decompressed key), on one thread per core. No
/// server that checks each post's signature, as ours must, can acknowledge posts faster
/// than this on this machine; the ratios below are read against it.
fn verify_ceiling(seconds: f64) -> Result<Checks> {
    let sender = DeviceIdentity::generate();
    let key = EpochKey::generate();
    let notes: Vec<SealedNote> =
        (0..64).map(|n| note(&sender, &key, SpaceId([9; 16]), 0, n)).collect();
    let public = cairn_server::auth::device_key(&sender.id())?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let started = Instant::now();
    let checked: u64 = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut n = 0u64;
                    while started.elapsed().as_secs_f64() < seconds {
                        for sealed in &notes {
                            let payload = sign::note_payload(&sealed.header, &sealed.ciphertext);
                            cairn_server::auth::verify_with(&public, &payload, &sealed.signature)
                                .expect("a sealed note verifies");
                            n += 1;
                        }
                    }
                    n
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().expect("verifier thread")).sum()
    });
    Ok(Checks { rate: checked as f64 / started.elapsed().as_secs_f64(), threads })
}

// ---- the server under test ----

struct User {
    id: DeviceIdentity,
    conn: Connection,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn register(url: &str, handle: &str) -> Result<User> {
    let id = DeviceIdentity::generate();
    let (conn, events) =
        Connection::open(url, &id, Auth::Register { handle, invite: None }).await?;
    Ok(User { id, conn, events })
}

/// A space owned by `owner` with `members` added; returns its id and epoch.
async fn space_with(
    owner: &User,
    owner_handle: &str,
    members: &[(String, DeviceKeys)],
) -> Result<(SpaceId, u64)> {
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&owner.id.id().0[..16]);
    sid[0] ^= members.len() as u8;
    let space = SpaceId(sid);
    let genesis = MembershipOp {
        space,
        index: 0,
        prev: OpHash::default(),
        actor: owner.id.id(),
        at: now_ms(),
        action: Action::Create {
            name: "bench".into(),
            owner: Member {
                handle: owner_handle.into(),
                role: Role::Owner,
                devices: vec![owner.id.keys()],
            },
            policy: Policy::default(),
        },
        // The load generator never reads what it posts: any key will do.
        key_confirm: Some(key_confirmation(&EpochKey::generate(), &space, 0)),
    };
    let signed = sign_op(&owner.id, &genesis);
    let mut log = MembershipLog::replay(std::slice::from_ref(&signed))?;
    owner.conn.request(Request::CreateSpace { op: signed }).await?;
    for (handle, keys) in members {
        let op = sign_op(
            &owner.id,
            &log.next_op(
                &owner.id,
                Action::Add {
                    member: Member {
                        handle: handle.clone(),
                        role: Role::Member,
                        devices: vec![*keys],
                    },
                },
                Some(&EpochKey::generate()),
            ),
        );
        log.append(&op)?;
        owner.conn.request(Request::ChangeMembership { op }).await?;
    }
    Ok((space, log.state().epoch))
}

fn note(sender: &DeviceIdentity, key: &EpochKey, space: SpaceId, epoch: u64, n: u64) -> SealedNote {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&n.to_le_bytes());
    id[8..].copy_from_slice(&sender.id().0[..8]);
    let mut body = NoteBody::text("bench", &"x".repeat(NOTE_BYTES - 100), Pose::default());
    body.created_at = n;
    let header = NoteHeader {
        space,
        epoch,
        sender: sender.id(),
        note_id: NoteId(id),
        kind: NoteKind::Text,
        expires_at: None,
        media: vec![],
    };
    seal_note(sender, key, header, &body)
}

async fn start_server(dir: &std::path::Path) -> Result<cairn_server::RunningServer> {
    let mut config = cairn_server::Config::for_data_dir(dir);
    // Benchmarks measure capacity, not the abuse limits.
    config.rate_per_connection = 10_000_000;
    config.rate_per_user = 10_000_000;
    cairn_server::start(config).await
}

/// Notes sealed before a throughput phase starts, shared out among its senders, so that the
/// load generator spends the measured seconds sending, not encrypting (it runs on the same
/// cores as the server).
const PRESEALED: usize = 80_000;

/// Durable posts acknowledged per second: `senders` connections, each posting into its own
/// space with a few posts in flight, all acknowledged only after commit. (Fan-out to many
/// members is measured on its own below.) Ends after `seconds` or when the pre-sealed notes
/// run out, whichever is first.
/// Returns the rate, the acknowledgement latencies, and the machine's CPU time per
/// acknowledged post over the measured seconds (server and load generator together).
async fn durable_posts(
    url: &str,
    senders: usize,
    seconds: u64,
) -> Result<(f64, Histogram<u64>, f64)> {
    let mut users = Vec::new();
    let key = EpochKey::generate();
    let per_sender = (PRESEALED / senders).max(50) as u64;
    for i in 0..senders {
        let u = register(url, &format!("s{i}")).await?;
        let (space, epoch) = space_with(&u, &format!("s{i}"), &[]).await?;
        let notes: Vec<SealedNote> =
            (1..=per_sender).map(|n| note(&u.id, &key, space, epoch, n)).collect();
        users.push((u, notes));
    }
    let busy = machine_busy_seconds()?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (u, notes) in users {
        tasks.push(tokio::spawn(async move {
            let u = Arc::new(u);
            let mut lat = hist();
            let mut notes = notes.into_iter();
            let mut inflight = futures_util::stream::FuturesUnordered::new();
            loop {
                while inflight.len() < 4 && Instant::now() < deadline {
                    let Some(sealed) = notes.next() else { break };
                    let u = u.clone();
                    inflight.push(async move {
                        let t = Instant::now();
                        let r = u.conn.request(Request::PostNote { note: sealed }).await;
                        (r, t.elapsed())
                    });
                }
                match inflight.next().await {
                    Some((Ok(_), d)) => lat.record(d.as_micros() as u64).ok(),
                    Some((Err(e), _)) => panic!("post failed: {e}"),
                    None => break,
                };
            }
            (lat, Instant::now())
        }));
    }
    let mut all = hist();
    let mut last = started;
    for t in tasks {
        let (lat, done) = t.await?;
        all.add(lat)?;
        last = last.max(done);
    }
    let cpu = (machine_busy_seconds()? - busy) / all.len() as f64;
    Ok((all.len() as f64 / last.duration_since(started).as_secs_f64(), all, cpu))
}

/// 1:1 relay: alice posts (64 in flight), bob receives each as a live event.
async fn relay(url: &str, seconds: u64) -> Result<(f64, Histogram<u64>, Histogram<u64>)> {
    let alice = register(url, "ralice").await?;
    let mut bob = register(url, "rbob").await?;
    let (space, epoch) = space_with(&alice, "ralice", &[("rbob".into(), bob.id.keys())]).await?;
    while let Ok(Some(_)) =
        tokio::time::timeout(Duration::from_millis(200), bob.events.recv()).await
    {}
    let key = EpochKey::generate();
    // Unloaded latency: one note at a time, post to delivery.
    let mut unloaded = hist();
    for n in 0..500u64 {
        let sealed = note(&alice.id, &key, space, epoch, n);
        let t = Instant::now();
        alice.conn.request(Request::PostNote { note: sealed }).await?;
        loop {
            if let Some(Event::Entry { .. }) = bob.events.recv().await {
                break;
            }
        }
        unloaded.record(t.elapsed().as_micros() as u64)?;
    }
    // Throughput under load, with per-note latency from send to delivery. The notes are
    // sealed first (as for durable posts), so the measured seconds are the server's.
    let presealed: Vec<SealedNote> = (1..=PRESEALED as u64)
        .map(|n| note(&alice.id, &key, space, epoch, 1_000_000 + n))
        .collect();
    let alice = Arc::new(alice);
    let sent_at: Arc<std::sync::Mutex<std::collections::HashMap<NoteId, Instant>>> =
        Default::default();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let sender = {
        let (alice, sent_at) = (alice.clone(), sent_at.clone());
        tokio::spawn(async move {
            let mut inflight = futures_util::stream::FuturesUnordered::new();
            let mut notes = presealed.into_iter();
            loop {
                while inflight.len() < 64 && Instant::now() < deadline {
                    let Some(sealed) = notes.next() else { break };
                    sent_at.lock().expect("lock").insert(sealed.header.note_id, Instant::now());
                    let alice = alice.clone();
                    inflight.push(async move {
                        alice.conn.request(Request::PostNote { note: sealed }).await
                    });
                }
                if inflight.next().await.is_none() {
                    break;
                }
            }
        })
    };
    let started = Instant::now();
    let mut last = started;
    let mut loaded = hist();
    let mut got = 0u64;
    loop {
        match tokio::time::timeout(Duration::from_secs(2), bob.events.recv()).await {
            Ok(Some(Event::Entry { entry, .. })) => {
                if let EntryItem::Note(n) = entry.item
                    && let Some(t) = sent_at.lock().expect("lock").remove(&n.header.note_id)
                {
                    loaded.record(t.elapsed().as_micros() as u64)?;
                    got += 1;
                    last = Instant::now();
                }
            }
            Ok(Some(_)) => {}
            _ => break,
        }
        // Done when the sender has stopped (deadline, or the sealed notes ran out) and
        // every note it sent has arrived.
        if sender.is_finished() && sent_at.lock().expect("lock").is_empty() {
            break;
        }
    }
    let elapsed = last.duration_since(started);
    sender.await?;
    Ok((got as f64 / elapsed.as_secs_f64(), unloaded, loaded))
}

/// Delivery to every member of a large space: time from post to each member's receipt.
async fn fan_out(url: &str, members: usize) -> Result<Histogram<u64>> {
    let owner = register(url, "fowner").await?;
    let mut users = Vec::new();
    for i in 0..members {
        users.push(register(url, &format!("f{i}")).await?);
    }
    let list: Vec<(String, DeviceKeys)> =
        users.iter().enumerate().map(|(i, u)| (format!("f{i}"), u.id.keys())).collect();
    let (space, epoch) = space_with(&owner, "fowner", &list).await?;
    // Drain the membership events.
    for u in users.iter_mut() {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(1), u.events.recv()).await
        {}
    }
    let key = EpochKey::generate();
    let (tx, mut rx) = mpsc::unbounded_channel::<(NoteId, Instant)>();
    for mut u in users {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(e) = u.events.recv().await {
                if let Event::Entry { entry: SpaceEntry { item: EntryItem::Note(n), .. }, .. } = e {
                    let _ = tx.send((n.header.note_id, Instant::now()));
                }
            }
            drop(u.conn);
        });
    }
    drop(tx);
    let mut lat = hist();
    let posts = 30u64;
    for n in 0..posts {
        let sealed = note(&owner.id, &key, space, epoch, n);
        let id = sealed.header.note_id;
        let t = Instant::now();
        owner.conn.request(Request::PostNote { note: sealed }).await?;
        let mut received = 0;
        while received < members {
            let (got, at) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await?
                .context("receivers gone")?;
            if got == id {
                lat.record(at.duration_since(t).as_micros() as u64)?;
                received += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(lat)
}

// ---- scale-out ----

/// Rows per second for `INSERT ... SELECT FROM unnest(...)` of 500 note-sized rows per
/// transaction, each transaction committed durably: the most a PostgreSQL backend can do.
async fn postgres_ceiling(url: &str, rows: usize) -> Result<(f64, f64)> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE ceiling (space BYTEA, seq BIGINT, note_id BYTEA, item BYTEA,
                                   PRIMARY KEY (space, seq));
             ALTER TABLE ceiling ALTER COLUMN item SET STORAGE EXTERNAL;",
        )
        .await?;
    let item = vec![0x5au8; NOTE_BYTES + 200];
    let busy = machine_busy_seconds()?;
    let started = Instant::now();
    for batch in 0..rows / 500 {
        let space: Vec<Vec<u8>> = (0..500).map(|i| vec![(i % 100) as u8; 16]).collect();
        let seq: Vec<i64> = (0..500).map(|i| (batch * 500 + i) as i64).collect();
        let ids: Vec<Vec<u8>> = seq.iter().map(|s| s.to_le_bytes().repeat(2)).collect();
        let items: Vec<&[u8]> = (0..500).map(|_| &item[..]).collect();
        client
            .execute(
                "INSERT INTO ceiling SELECT * FROM unnest($1::bytea[], $2::int8[], $3::bytea[], $4::bytea[])",
                &[&space, &seq, &ids, &items],
            )
            .await?;
    }
    let rows = rows / 500 * 500;
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    Ok((rate, (machine_busy_seconds()? - busy) / rows as f64))
}

/// Posts in flight for the storage-layer figures: many clients posting at once.
const STORE_INFLIGHT: usize = 2000;

/// Durable posts per second through the storage layer alone (`Store::post_note`, as the
/// server calls it after its checks), `inflight` at once over 100 spaces: what the group
/// commit makes of the database, without the WebSocket, CBOR and signature work in front.
async fn store_posts(
    store: Arc<dyn cairn_server::storage::Store>,
    inflight: usize,
    seconds: u64,
) -> Result<f64> {
    use cairn_server::storage::MembersAfter;
    let spaces: Vec<SpaceId> = (0..100u8).map(|i| SpaceId([i; 16])).collect();
    for s in &spaces {
        let op = SignedOp { body: vec![1; 100], signature: Signature([0; 64]) };
        let after = MembersAfter { members: vec![("bench".into(), Role::Owner)], epoch: 0 };
        store.append_op(s, 0, &op, &after).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..inflight {
        let (store, space) = (store.clone(), spaces[t % spaces.len()]);
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&n.to_le_bytes());
                id[8..].copy_from_slice(&(t as u64).to_le_bytes());
                let note = SealedNote {
                    header: NoteHeader {
                        space,
                        epoch: 0,
                        sender: DeviceId([7; 32]),
                        note_id: NoteId(id),
                        kind: NoteKind::Text,
                        expires_at: None,
                        media: vec![],
                    },
                    ciphertext: vec![0x5a; NOTE_BYTES + 100],
                    signature: Signature([1; 64]),
                };
                store.post_note(&note, now_ms()).await.expect("post");
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await?;
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

async fn start_node(
    dir: &std::path::Path,
    database: &str,
    nats: &str,
) -> Result<cairn_server::RunningServer> {
    let mut config = cairn_server::Config::for_data_dir(dir);
    config.rate_per_connection = 10_000_000;
    config.rate_per_user = 10_000_000;
    config.database = Some(database.to_owned());
    config.nats = Some(nats.to_owned());
    cairn_server::start(config).await
}

/// Post-to-delivery latency, one note at a time, for a member on the poster's node and a
/// member on another node.
async fn cross_node(a: &str, b: &str, posts: u64) -> Result<(Histogram<u64>, Histogram<u64>)> {
    let alice = register(a, "xalice").await?;
    let mut near = register(a, "xnear").await?;
    let mut far = register(b, "xfar").await?;
    let members = [("xnear".to_string(), near.id.keys()), ("xfar".to_string(), far.id.keys())];
    let (space, epoch) = space_with(&alice, "xalice", &members).await?;
    for u in [&mut near, &mut far] {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(300), u.events.recv()).await
        {}
    }
    let key = EpochKey::generate();
    let (mut same, mut other) = (hist(), hist());
    async fn arrival(u: &mut User, id: NoteId, t: Instant) -> Result<u64> {
        loop {
            let e = tokio::time::timeout(Duration::from_secs(10), u.events.recv())
                .await?
                .context("closed")?;
            if let Event::Entry { entry: SpaceEntry { item: EntryItem::Note(n), .. }, .. } = e
                && n.header.note_id == id
            {
                return Ok(t.elapsed().as_micros() as u64);
            }
        }
    }
    for n in 0..posts {
        let sealed = note(&alice.id, &key, space, epoch, n);
        let id = sealed.header.note_id;
        let t = Instant::now();
        let (post, s, o) = tokio::join!(
            alice.conn.request(Request::PostNote { note: sealed }),
            arrival(&mut near, id, t),
            arrival(&mut far, id, t)
        );
        post?;
        same.record(s?)?;
        other.record(o?)?;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok((same, other))
}

async fn scale_out(args: &Args, checks: &Checks) -> Result<()> {
    use cairn_server::storage::postgres::TempDatabase;
    let db = TempDatabase::create().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (ceiling, row_cpu) = postgres_ceiling(&db.url, 100_000).await?;
    println!(
        "ceiling  PostgreSQL batched multi-row INSERT (500 rows/txn, synchronous_commit=on): {ceiling:.0} rows/s, {:.1} us of CPU per row (PostgreSQL included)",
        row_cpu * 1e6
    );
    let bound = checks.post_bound(row_cpu);
    println!(
        "bound    a node that did nothing but check each post's signature and insert its row: at most {bound:.0} posts/s = {:.2}x the multi-row INSERT",
        bound / ceiling
    );
    let store_db = TempDatabase::create().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let store: Arc<dyn cairn_server::storage::Store> = Arc::new(
        cairn_server::storage::postgres::PgStore::connect(&store_db.url, 8)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let rate = store_posts(store, STORE_INFLIGHT, args.seconds).await?;
    println!(
        "scale    durable posts through the PostgreSQL store alone, {STORE_INFLIGHT} in flight: {rate:.0}/s ({:.2}x the multi-row INSERT)",
        rate / ceiling
    );
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let node_a = start_node(d1.path(), &db.url, &args.nats).await?;
    let node_b = start_node(d2.path(), &db.url, &args.nats).await?;
    let (posts, lat, cpu) = durable_posts(&node_a.ws_url(), args.senders, args.seconds).await?;
    println!(
        "scale    durable posts on PostgreSQL, {} senders x 4 in flight: {posts:.0} acknowledged/s ({:.2}x the multi-row INSERT; signature checks alone cap it at {:.2}x); ack p50 {:.2} ms p99 {:.2} ms",
        args.senders,
        posts / ceiling,
        checks.rate / ceiling,
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );
    println!("{}", checks.cpu_split(cpu, row_cpu));
    let (same, other) = cross_node(&node_a.ws_url(), &node_b.ws_url(), 1000).await?;
    println!(
        "scale    post -> delivery, member on the same node: p50 {:.2} ms p99 {:.2} ms; on another node (via NATS + PostgreSQL): p50 {:.2} ms p99 {:.2} ms; p99 difference {:+.2} ms",
        pct(&same, 0.5),
        pct(&same, 0.99),
        pct(&other, 0.5),
        pct(&other, 0.99),
        pct(&other, 0.99) - pct(&same, 0.99)
    );
    node_a.shutdown().await?;
    node_b.shutdown().await?;
    Ok(())
}

/// A voice-like test signal: a few harmonics with a syllable-rate envelope.
fn voice_like(seconds: f32) -> Vec<f32> {
    let rate = cairn_voice::SAMPLE_RATE as f32;
    (0..(seconds * rate) as usize)
        .map(|i| {
            let t = i as f32 / rate;
            let f0 = 140.0 + 30.0 * (t * 0.7).sin();
            let env = (0.5 + 0.5 * (t * 4.0 * std::f32::consts::TAU).sin()).powi(2);
            let s: f32 =
                (1..6).map(|h| (t * f0 * h as f32 * std::f32::consts::TAU).sin() / h as f32).sum();
            0.25 * env * s
        })
        .collect()
}

/// Opus encoding speed, as a multiple of real time, on one core.
fn voice_encode_speed() -> Result<f64> {
    let pcm = voice_like(60.0);
    let started = Instant::now();
    let note = cairn_voice::encode_pcm(&pcm)?;
    let elapsed = started.elapsed().as_secs_f64();
    anyhow::ensure!(note.duration_ms == 60_000, "unexpected duration");
    Ok(60.0 / elapsed)
}

/// From the end of a 5 s recording to playable PCM at another member's client: encode,
/// encrypt and upload, post, live delivery, download, check, decrypt, decode.
async fn voice_to_playable(url: &str, runs: usize) -> Result<Histogram<u64>> {
    let homes = tempfile::tempdir()?;
    let mut alice =
        cairn_client::Client::init(&homes.path().join("a"), url, "valice", None, None).await?;
    let mut bob =
        cairn_client::Client::init(&homes.path().join("b"), url, "vbob", None, None).await?;
    let space = alice.create_space("voice", Policy::default()).await?;
    alice.invite(&space, "vbob", Role::Member).await?;
    bob.sync().await?;
    let pcm = voice_like(5.0);
    let mut lat = hist();
    for _ in 0..runs {
        let t0 = Instant::now();
        let note = cairn_voice::encode_pcm(&pcm)?;
        let clip = cairn_client::VoiceClip {
            ogg_opus: note.ogg_opus,
            waveform: note.waveform,
            duration_ms: note.duration_ms,
        };
        let posted = alice
            .post(&space, cairn_client::Draft { voice: Some(clip), ..Default::default() })
            .await?;
        let media = loop {
            let event = tokio::time::timeout(Duration::from_secs(10), bob.next_event())
                .await?
                .context("bob's connection closed")?;
            let found = bob.handle_event(event).await?.into_iter().find_map(|c| match c {
                cairn_client::Change::Note(n) if n.note_id == posted.note_id => {
                    n.body.and_then(|b| b.media.first().cloned())
                }
                _ => None,
            });
            if let Some(m) = found {
                break m;
            }
        };
        let path = bob.media(&media).await?;
        let played = cairn_voice::decode_ogg_opus(&std::fs::read(path)?)?;
        anyhow::ensure!(played.len().abs_diff(pcm.len()) <= cairn_voice::FRAME, "decoded length");
        lat.record(t0.elapsed().as_micros() as u64)?;
    }
    Ok(lat)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    Ok(line.split_whitespace().nth(1).context("VmRSS value")?.parse()?)
}

/// Server RSS per idle, logged-in connection, the server in its own process.
async fn idle_memory(server_bin: &std::path::Path, count: usize) -> Result<(f64, u64, u64)> {
    let dir = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = tokio::process::Command::new(server_bin)
        .args([
            "--data",
            dir.path().to_str().context("utf-8 path")?,
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("CAIRN_RATE_PER_USER", "100000000")
        .env("CAIRN_IDLE_TIMEOUT", "600")
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", server_bin.display()))?;
    let pid = child.id().context("server pid")?;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let mut first = None;
    for _ in 0..100 {
        if let Ok(u) = register(&url, "idle").await {
            first = Some(u);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = first.context("the server did not come up")?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let mut conns = Vec::with_capacity(count);
    let mut pending = futures_util::stream::FuturesUnordered::new();
    for _ in 0..count {
        pending.push(Connection::open(&url, &first.id, Auth::Login));
        if pending.len() >= 64 {
            conns.push(pending.next().await.context("connect")??);
        }
    }
    while let Some(c) = pending.next().await {
        conns.push(c?);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before) as f64 * 1024.0) / count as f64;
    drop(conns);
    let _ = child.kill().await;
    Ok((per, before, after))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    println!(
        "cairn-bench: {} senders, {} s phases, {}-member space, {} idle connections\n",
        args.senders, args.seconds, args.members, args.idle
    );

    let (ceiling_rows, row_cpu) = sqlite_ceiling(50_000)?;
    println!(
        "ceiling  batched rusqlite inserts (500/txn, WAL, synchronous=FULL): {ceiling_rows:.0} rows/s, {:.1} us of CPU per row",
        row_cpu * 1e6
    );
    let checks = verify_ceiling(2.0)?;
    println!(
        "ceiling  strict Ed25519 checks of a note's signature, {} threads and nothing else: {:.0}/s = {:.2}x the insert ceiling",
        checks.threads,
        checks.rate,
        checks.rate / ceiling_rows
    );
    let bound = checks.post_bound(row_cpu);
    println!(
        "bound    a server that did nothing but check each post's signature and insert its row: at most {bound:.0} posts/s = {:.2}x the insert ceiling",
        bound / ceiling_rows
    );
    let mut echo_rate = f64::NAN;
    if args.runs(Phase::Echo) || args.runs(Phase::Relay) {
        let (rate, echo_lat) = echo_ceiling(args.seconds).await?;
        echo_rate = rate;
        println!(
            "ceiling  bare tokio-tungstenite echo, 64 in flight: {rate:.0} round trips/s; unloaded p50 {:.3} ms p99 {:.3} ms",
            pct(&echo_lat, 0.5),
            pct(&echo_lat, 0.99)
        );
    }

    if args.runs(Phase::Store) {
        let sdir = tempfile::tempdir()?;
        let store: Arc<dyn cairn_server::storage::Store> =
            Arc::new(cairn_server::storage::sqlite::SqliteStore::open(sdir.path().join("s.db"))?);
        let rate = store_posts(store, STORE_INFLIGHT, args.seconds).await?;
        println!(
            "server   durable posts through the SQLite store alone, {STORE_INFLIGHT} in flight: {rate:.0}/s ({:.2}x the insert ceiling)",
            rate / ceiling_rows
        );
    }

    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path()).await?;
    let url = server.ws_url();
    if args.runs(Phase::Posts) {
        let (posts, post_lat, cpu) = durable_posts(&url, args.senders, args.seconds).await?;
        println!(
            "server   durable posts, {} senders x 4 in flight: {posts:.0} acknowledged/s ({:.2}x the insert ceiling; signature checks alone cap it at {:.2}x); ack p50 {:.2} ms p99 {:.2} ms",
            args.senders,
            posts / ceiling_rows,
            checks.rate / ceiling_rows,
            pct(&post_lat, 0.5),
            pct(&post_lat, 0.99)
        );
        println!("{}", checks.cpu_split(cpu, row_cpu));
    }
    if args.runs(Phase::Relay) {
        let (relay_rate, unloaded, loaded) = relay(&url, args.seconds).await?;
        println!(
            "server   1:1 relay, 64 in flight: {relay_rate:.0} notes/s delivered ({:.2}x the echo ceiling; signature checks alone cap it at {:.2}x); loaded p50 {:.2} ms p99 {:.2} ms; unloaded p50 {:.2} ms p99 {:.2} ms",
            relay_rate / echo_rate,
            checks.rate / echo_rate,
            pct(&loaded, 0.5),
            pct(&loaded, 0.99),
            pct(&unloaded, 0.5),
            pct(&unloaded, 0.99)
        );
    }
    if args.runs(Phase::Voice) {
        let speed = voice_encode_speed()?;
        println!(
            "voice    Opus encoding (VoIP, 24 kbit/s, 20 ms frames), one core: {speed:.0}x real time"
        );
        let voice = voice_to_playable(&url, 20).await?;
        println!(
            "voice    end of a 5 s recording -> playable at another member, loopback: p50 {:.1} ms p99 {:.1} ms ({} runs)",
            pct(&voice, 0.5),
            pct(&voice, 0.99),
            voice.len()
        );
    }
    if args.runs(Phase::FanOut) {
        let fan = fan_out(&url, args.members).await?;
        println!(
            "server   fan-out to every member of a {}-member space: p50 {:.2} ms p99 {:.2} ms ({} deliveries)",
            args.members,
            pct(&fan, 0.5),
            pct(&fan, 0.99),
            fan.len()
        );
    }
    server.shutdown().await?;

    if !args.no_scale_out && args.runs(Phase::ScaleOut) {
        scale_out(&args, &checks).await.context("scale-out figures (PostgreSQL and NATS)")?;
    }

    if args.idle > 0 && args.runs(Phase::Idle) {
        let bin = args.server_bin.clone().unwrap_or_else(|| {
            std::env::current_exe().expect("exe").with_file_name("cairn-server")
        });
        match idle_memory(&bin, args.idle).await {
            Ok((per, before, after)) => println!(
                "server   RSS per idle logged-in connection, {} connections: {:.1} KB ({} -> {} KiB)",
                args.idle,
                per / 1000.0,
                before,
                after
            ),
            Err(e) => println!(
                "server   RSS per idle connection: not measured ({e:#}); build cairn-server first"
            ),
        }
    }
    Ok(())
}
