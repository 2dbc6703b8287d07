//! `cairn-bench`: measures, in one run, the Cairn server against this machine's ceilings,
//! and prints each figure beside its ceiling, its ratio and its target (met or not):
//!
//! * ceilings: batched rusqlite inserts (WAL, synchronous=FULL), a bare tokio-tungstenite
//!   echo server, plain AES-256-GCM over 16 MiB, a PostgreSQL multi-row INSERT;
//! * the SQLite store alone, and durable posts acknowledged per second with 100 concurrent
//!   senders, with the machine's CPU time per post split into its row and the rest;
//! * 1:1 relay (post -> commit -> delivery to the other member): throughput, p50/p99, and
//!   one note at a time;
//! * delivery to every member of a 10,000-member space: p50/p99;
//! * media sealing and opening of 16 MiB against plain AES-256-GCM;
//! * scale-out: the PostgreSQL store alone, durable posts through a node on PostgreSQL, and
//!   post-to-delivery latency for a member on the same node and one on another node (two
//!   nodes sharing PostgreSQL and NATS);
//! * server RSS per idle, logged-in connection, with 50,000 connections where the machine's
//!   open-file limit allows (the server in its own process).
//!
//! The targets are issue 26's, re-based on what a note must cost rather than on an echo.
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
    #[arg(long, default_value_t = 10_000)]
    members: usize,
    /// Idle connections for the memory figure (0 skips it); fewer where the open-file
    /// limit does not allow them (the bench and the server each hold one socket per
    /// connection).
    #[arg(long, default_value_t = 50_000)]
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
    Media,
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

/// Tells a profiler started with `perf record --control=fifo:FIFO -D -1` to start or stop
/// sampling (`"enable"`, `"disable"`), when `CAIRN_BENCH_PERF_CTL` names that FIFO: a
/// profile of the measured seconds alone, without the set-up (registering, sealing).
fn perf_ctl(command: &str) {
    if let Some(fifo) = std::env::var_os("CAIRN_BENCH_PERF_CTL") {
        use std::io::Write;
        let sent = std::fs::OpenOptions::new()
            .write(true)
            .open(&fifo)
            .and_then(|mut f| f.write_all(format!("{command}\n").as_bytes()));
        if let Err(e) = sent {
            eprintln!("CAIRN_BENCH_PERF_CTL: {e}");
        }
    }
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

/// CPU time process `pid` has spent (user and system), in seconds.
fn process_cpu_seconds(pid: u32) -> Result<f64> {
    process_cpu_seconds_at(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// The user and system CPU seconds in a `stat` file of /proc (a process's or a thread's).
fn process_cpu_seconds_at(path: &std::path::Path) -> Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // After the command name (in parentheses, which may hold anything) come the fields
    // from the third on: utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').context("no command name in /proc/<pid>/stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [utime, stime] = [11, 12].map(|i| fields.get(i).and_then(|f| f.parse::<u64>().ok()));
    let (Some(utime), Some(stime)) = (utime, stime) else {
        anyhow::bail!("short {}", path.display());
    };
    Ok((utime + stime) as f64 / 100.0)
}

/// CPU time (user and system, in seconds) this process's SQLite store threads have spent:
/// the writer and the checkpointer of every store open in it (the in-process server's).
fn store_threads_cpu_seconds() -> Result<f64> {
    let mut total = 0.0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let task = task?.path();
        // A thread that ended since the directory was read is skipped.
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.starts_with("cairn-sqlite-") {
            total += process_cpu_seconds_at(&task.join("stat"))?;
        }
    }
    Ok(total)
}

/// What a figure is held to: `met` or `NOT MET`, printed after it.
fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

/// Where a durable post's CPU time (`run.cpu`, the whole machine: server and load
/// generator) went, against the target of 25 us: the store's threads as measured when the
/// store is SQLite in this process (else the ceiling's CPU per row, `row_cpu`, stands for
/// the row), and the rest (WebSocket, TCP, CBOR and tasks at both ends).
fn cpu_split(run: &PostsRun, row_cpu: f64) -> String {
    let (store, what) = match run.store_cpu {
        Some(store) => (
            store,
            format!(
                "the SQLite writer and checkpointer threads {:.1} (measured; the insert ceiling's row: {:.1})",
                store * 1e6,
                row_cpu * 1e6
            ),
        ),
        None => (row_cpu, format!("row {:.1} (the ceiling's)", row_cpu * 1e6)),
    };
    format!(
        "         machine CPU per acknowledged post: {:.1} us = {what} + the rest {:.1} (WebSocket, TCP, CBOR, tasks; server and load generator); target <= 25 us: {}; the machine was busy {:.0}% of the measured seconds",
        run.cpu * 1e6,
        (run.cpu - store) * 1e6,
        verdict(run.cpu <= 25e-6),
        run.busy * 100.0
    )
}

/// What [`durable_posts`] measured.
struct PostsRun {
    /// Posts acknowledged per second.
    rate: f64,
    /// Their acknowledgement latencies.
    lat: Histogram<u64>,
    /// The machine's CPU seconds per acknowledged post (server and load generator).
    cpu: f64,
    /// Of it, the CPU seconds per post of this process's SQLite store threads (`None` when
    /// the server has none here: a node on PostgreSQL).
    store_cpu: Option<f64>,
    /// How busy the machine was (1.0: every core, all the time).
    busy: f64,
}

/// The machine's cores (for how busy it was).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

// ---- the server under test ----

struct User {
    id: DeviceIdentity,
    conn: Connection,
    events: mpsc::UnboundedReceiver<Event>,
}

async fn register(url: &str, handle: &str) -> Result<User> {
    let id = DeviceIdentity::generate();
    let handle: Handle = handle.parse()?;
    let (conn, events) =
        Connection::open(url, &id, Auth::Register { handle: &handle, invite: None }).await?;
    Ok(User { id, conn, events })
}

/// Logs in again as a device registered before (a copy of its identity for the new
/// connection).
async fn login(url: &str, id: &DeviceIdentity) -> Result<User> {
    let id = DeviceIdentity::from_bytes(&id.to_bytes())?;
    let (conn, events) = Connection::open(url, &id, Auth::Login).await?;
    Ok(User { id, conn, events })
}

/// A space owned by `owner` with `members` added; returns its id and epoch.
async fn space_with(
    owner: &User,
    owner_handle: &str,
    members: &[(Handle, DeviceKeys)],
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
                handle: owner_handle.parse()?,
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
    // Benchmarks measure capacity, not the abuse limits (the fan-out's members all
    // connect from this address).
    config.rate_per_connection = 10_000_000;
    config.rate_per_user = 10_000_000;
    config.max_connections = 1_000_000;
    config.max_connections_per_ip = 1_000_000;
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
/// CPU is counted over the measured seconds only; `sqlite_here` says the server stores in
/// SQLite in this process, whose store threads' share is then counted too.
async fn durable_posts(
    url: &str,
    senders: usize,
    seconds: u64,
    sqlite_here: bool,
) -> Result<PostsRun> {
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
    perf_ctl("enable");
    let busy = machine_busy_seconds()?;
    let store = store_threads_cpu_seconds()?;
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
    let spent = machine_busy_seconds()? - busy;
    let store = store_threads_cpu_seconds()? - store;
    perf_ctl("disable");
    let elapsed = last.duration_since(started).as_secs_f64();
    let posts = all.len() as f64;
    Ok(PostsRun {
        rate: posts / elapsed,
        lat: all,
        cpu: spent / posts,
        store_cpu: sqlite_here.then_some(store / posts),
        busy: spent / (elapsed * cores() as f64),
    })
}

/// 1:1 relay: alice posts (64 in flight), bob receives each as a live event.
async fn relay(url: &str, seconds: u64) -> Result<(f64, Histogram<u64>, Histogram<u64>)> {
    let alice = register(url, "ralice").await?;
    let mut bob = register(url, "rbob").await?;
    let (space, epoch) = space_with(&alice, "ralice", &[("rbob".parse()?, bob.id.keys())]).await?;
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

/// Opens `count` connections (64 handshakes at a time), each by `open(i)`.
async fn open_many<F, Fut>(count: usize, open: F) -> Result<Vec<User>>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<User>>,
{
    let mut users = Vec::with_capacity(count);
    let mut pending = futures_util::stream::FuturesOrdered::new();
    for i in 0..count {
        pending.push_back(open(i));
        if pending.len() >= 64 {
            users.push(pending.next().await.context("connect")??);
        }
    }
    while let Some(u) = pending.next().await {
        users.push(u?);
    }
    Ok(users)
}

/// Delivery to every member of a large space: time from post to each member's receipt.
/// The members register, leave, are added to the space, and log in again: so the space is
/// built without telling thousands of connections about each of thousands of additions.
/// Returns the latencies and the machine's CPU time per delivery (both ends).
/// Delivery latencies, and the CPU per delivery of the whole machine and of the server
/// process (`server`) alone.
async fn fan_out(url: &str, server: u32, members: usize) -> Result<(Histogram<u64>, f64, f64)> {
    let owner = register(url, "fowner").await?;
    let ids: Vec<DeviceIdentity> =
        open_many(members, |i| async move { register(url, &format!("f{i}")).await })
            .await?
            .into_iter()
            .map(|u| u.id)
            .collect();
    let list: Vec<(Handle, DeviceKeys)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| Ok((format!("f{i}").parse()?, id.keys())))
        .collect::<Result<_>>()?;
    let (space, epoch) = space_with(&owner, "fowner", &list).await?;
    let users = open_many(members, |i| login(url, &ids[i])).await?;
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
    let (mut cpu, mut server_cpu) = (0.0, 0.0);
    perf_ctl("enable");
    for n in 0..posts {
        let sealed = note(&owner.id, &key, space, epoch, n);
        let id = sealed.header.note_id;
        let busy = machine_busy_seconds()?;
        let server_busy = process_cpu_seconds(server)?;
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
        cpu += machine_busy_seconds()? - busy;
        server_cpu += process_cpu_seconds(server)? - server_busy;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    perf_ctl("disable");
    let deliveries = posts as f64 * members as f64;
    Ok((lat, cpu / deliveries, server_cpu / deliveries))
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
        let after = MembersAfter {
            members: vec![(Handle::from_static("bench"), Role::Owner)],
            ..Default::default()
        };
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
    let members = [("xnear".parse()?, near.id.keys()), ("xfar".parse()?, far.id.keys())];
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

async fn scale_out(args: &Args) -> Result<()> {
    use cairn_server::storage::postgres::TempDatabase;
    let db = TempDatabase::create().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let (ceiling, row_cpu) = postgres_ceiling(&db.url, 100_000).await?;
    println!(
        "ceiling  PostgreSQL batched multi-row INSERT (500 rows/txn, synchronous_commit=on): {ceiling:.0} rows/s, {:.1} us of CPU per row (PostgreSQL included)",
        row_cpu * 1e6
    );
    let store_db = TempDatabase::create().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let store: Arc<dyn cairn_server::storage::Store> = Arc::new(
        cairn_server::storage::postgres::PgStore::connect(&store_db.url, 8)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let rate = store_posts(store, STORE_INFLIGHT, args.seconds).await?;
    println!(
        "scale    durable posts through the PostgreSQL store alone, {STORE_INFLIGHT} in flight: {rate:.0}/s = {:.2}x the multi-row INSERT",
        rate / ceiling
    );
    let (d1, d2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let node_a = start_node(d1.path(), &db.url, &args.nats).await?;
    let node_b = start_node(d2.path(), &db.url, &args.nats).await?;
    let run = durable_posts(&node_a.ws_url(), args.senders, args.seconds, false).await?;
    let (posts, lat) = (run.rate, &run.lat);
    println!(
        "scale    durable posts through a node on PostgreSQL, {} senders x 4 in flight: {posts:.0} acknowledged/s = {:.2}x the multi-row INSERT; target >= 0.3x: {}; ack p50 {:.2} ms p99 {:.2} ms",
        args.senders,
        posts / ceiling,
        verdict(posts / ceiling >= 0.3),
        pct(lat, 0.5),
        pct(lat, 0.99)
    );
    println!("{}", cpu_split(&run, row_cpu));
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

// ---- media ----

/// Seconds per pass, the fastest of `runs` (after one warm-up): a 16 MiB pass takes some
/// milliseconds, so the fastest pass is the one the machine least disturbed.
fn fastest(runs: usize, mut pass: impl FnMut()) -> f64 {
    pass();
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            pass();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Media of 16 MiB: plain AES-256-GCM in one pass (the ceiling), then a blob sealed in its
/// buffer (64 KiB STREAM chunks and their address tree) and opened (address checked, chunks
/// opened), and SHA-256 alone: the address hashes every byte once, so sealing on n cores
/// cannot beat AES-256-GCM's and SHA-256's one-core times shared among them. Last, sealing
/// again while another thread keeps one core busy, as the app's renderer would.
/// Returns seconds per pass for each (the last the median of its passes).
fn media_speed() -> (f64, f64, f64, f64, f64) {
    use aes_gcm::aead::{AeadInOut, KeyInit};
    let data: Vec<u8> =
        (0..16 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let cipher = aes_gcm::Aes256Gcm::new_from_slice(&[7u8; 32]).expect("32-byte key");
    let mut buf = data.clone();
    let plain = fastest(20, || {
        let tag = cipher
            .encrypt_inout_detached(&[0u8; 12].into(), &[], buf.as_mut_slice().into())
            .expect("16 MiB is within AES-GCM's limits");
        std::hint::black_box(tag);
    });
    let hashing = fastest(20, || {
        std::hint::black_box(sha256(&data));
    });
    let key = MediaKey::generate();
    // As the client seals an upload: the plaintext in a buffer of its own with room for the
    // tags (the client's one copy of what it was given), sealed in place.
    let seal_passes = || -> Vec<f64> {
        let mut times: Vec<f64> = (0..21)
            .map(|_| {
                let blob = cairn_crypto::media::sealing_buffer(&data);
                let t = Instant::now();
                std::hint::black_box(cairn_crypto::seal_blob(&key, blob));
                t.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        times
    };
    let seal = seal_passes()[0];
    let (sealed, hash) = cairn_crypto::media::encrypt_blob_with(&key, &data);
    let open = fastest(20, || {
        std::hint::black_box(decrypt_blob(&key, &sealed, Some(&hash)).expect("opens"));
    });
    let busy = std::sync::atomic::AtomicBool::new(true);
    let seal_busy = std::thread::scope(|scope| {
        scope.spawn(|| {
            while busy.load(std::sync::atomic::Ordering::Relaxed) {
                std::hint::spin_loop();
            }
        });
        let times = seal_passes();
        busy.store(false, std::sync::atomic::Ordering::Relaxed);
        times[times.len() / 2]
    });
    (plain, hashing, seal, open, seal_busy)
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
    let mut alice = cairn_client::Client::init(
        &homes.path().join("a"),
        url,
        &Handle::from_static("valice"),
        None,
        None,
    )
    .await?;
    let mut bob = cairn_client::Client::init(
        &homes.path().join("b"),
        url,
        &Handle::from_static("vbob"),
        None,
        None,
    )
    .await?;
    let space = alice.create_space("voice", Policy::default()).await?;
    alice.invite(&space, &Handle::from_static("vbob"), Role::Member).await?;
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
            .post(
                &space,
                cairn_client::Draft {
                    content: cairn_client::Content::Voice(clip),
                    ..Default::default()
                },
            )
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

/// A cairn-server in its own process (so that it and the bench each hold one socket per
/// connection under their own open-file limit), with room for `connections` from this
/// address and the rate limits raised. Killed when dropped.
struct ServerProcess {
    child: tokio::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    async fn start(server_bin: &std::path::Path, connections: usize) -> Result<ServerProcess> {
        let dir = tempfile::tempdir()?;
        // Private, as the server wants its data directory (it would fix it and warn).
        let private = std::os::unix::fs::PermissionsExt::from_mode(0o700);
        std::fs::set_permissions(dir.path(), private)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let cap = (connections + 1000).to_string();
        let child = tokio::process::Command::new(server_bin)
            .args([
                "--data",
                dir.path().to_str().context("utf-8 path")?,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--max-connections",
                &cap,
                "--max-connections-per-ip",
                &cap,
            ])
            .env("CAIRN_RATE_PER_USER", "100000000")
            .env("CAIRN_RATE_PER_CONNECTION", "100000000")
            .env("CAIRN_IDLE_TIMEOUT", "600")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", server_bin.display()))?;
        let url = format!("ws://127.0.0.1:{port}/v1/ws");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Ok(ServerProcess { child, url, _dir: dir });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server did not come up")
    }

    fn pid(&self) -> Result<u32> {
        self.child.id().context("server pid")
    }
}

/// Server RSS per idle, logged-in connection, the server in its own process.
async fn idle_memory(server_bin: &std::path::Path, count: usize) -> Result<(f64, u64, u64)> {
    let server = ServerProcess::start(server_bin, count).await?;
    let (pid, url) = (server.pid()?, server.url.clone());
    let first = register(&url, "idle").await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(pid)?;
    let conns = open_many(count, |_| login(&url, &first.id)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib(pid)?;
    let per = (after.saturating_sub(before) as f64 * 1024.0) / count as f64;
    drop(conns);
    Ok((per, before, after))
}

/// How many idle connections this machine lets one process hold beside its other files:
/// the bench and the server each need one socket per connection.
fn idle_connections_possible(wanted: usize) -> (usize, u64) {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, _) = rlimit::Resource::NOFILE.get().unwrap_or((1024, 1024));
    (wanted.min(soft.saturating_sub(1000) as usize), soft)
}

/// The cairn-server binary for the phases that run it in its own process.
fn server_bin(args: &Args) -> std::path::PathBuf {
    args.server_bin
        .clone()
        .unwrap_or_else(|| std::env::current_exe().expect("exe").with_file_name("cairn-server"))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    println!(
        "cairn-bench: {} senders, {} s phases, {}-member space, {} idle connections; each figure with its ceiling, ratio and target\n",
        args.senders, args.seconds, args.members, args.idle
    );

    let (ceiling_rows, row_cpu) = sqlite_ceiling(50_000)?;
    println!(
        "ceiling  batched rusqlite inserts (500/txn, WAL, synchronous=FULL): {ceiling_rows:.0} rows/s, {:.1} us of CPU per row",
        row_cpu * 1e6
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
            "server   durable posts through the SQLite store alone, {STORE_INFLIGHT} in flight: {rate:.0}/s = {:.2}x the insert ceiling; target >= 0.5x: {}",
            rate / ceiling_rows,
            verdict(rate / ceiling_rows >= 0.5)
        );
    }

    let dir = tempfile::tempdir()?;
    let server = start_server(dir.path()).await?;
    let url = server.ws_url();
    if args.runs(Phase::Posts) {
        let run = durable_posts(&url, args.senders, args.seconds, true).await?;
        let (posts, post_lat) = (run.rate, &run.lat);
        println!(
            "server   durable posts, {} senders x 4 in flight: {posts:.0} acknowledged/s = {:.2}x the insert ceiling; target >= 0.3x: {}; ack p50 {:.2} ms p99 {:.2} ms",
            args.senders,
            posts / ceiling_rows,
            verdict(posts / ceiling_rows >= 0.3),
            pct(post_lat, 0.5),
            pct(post_lat, 0.99)
        );
        println!("{}", cpu_split(&run, row_cpu));
    }
    if args.runs(Phase::Relay) {
        let (relay_rate, unloaded, loaded) = relay(&url, args.seconds).await?;
        println!(
            "server   1:1 relay, 64 in flight: {relay_rate:.0} notes/s delivered = {:.2}x the echo ceiling; target >= 0.2x: {}; loaded p50 {:.2} ms p99 {:.2} ms",
            relay_rate / echo_rate,
            verdict(relay_rate / echo_rate >= 0.2),
            pct(&loaded, 0.5),
            pct(&loaded, 0.99),
        );
        println!(
            "server   1:1 relay, one note at a time: p50 {:.2} ms p99 {:.2} ms; target p99 < 1 ms: {}",
            pct(&unloaded, 0.5),
            pct(&unloaded, 0.99),
            verdict(pct(&unloaded, 0.99) < 1.0)
        );
    }
    if args.runs(Phase::Media) {
        let (plain, hash, seal, open, seal_busy) = media_speed();
        let gib = |t: f64| 16.0 / 1024.0 / t;
        println!("ceiling  plain AES-256-GCM, 16 MiB in one pass: {:.2} GiB/s", gib(plain));
        println!(
            "hash     SHA-256 of 16 MiB on one core: {:.2} GiB/s = {:.2}x plain AES-256-GCM (the bound of a whole-blob SHA-256 address)",
            gib(hash),
            plain / hash
        );
        // Sealing must encrypt and hash every byte; on n cores it cannot beat both one-core
        // passes shared evenly among them.
        let cores = cairn_crypto::media::sealing_threads(16 << 20);
        let bound = (plain + hash) / cores as f64;
        println!(
            "bound    AES-256-GCM and SHA-256 of 16 MiB shared by {cores} core(s) (sealing cannot be faster): {:.2} GiB/s = {:.2}x plain AES-256-GCM",
            gib(bound),
            plain / bound
        );
        println!(
            "media    sealing 16 MiB in its buffer (64 KiB STREAM chunks + their address tree, {cores} thread(s)): {:.2} GiB/s = {:.2}x plain AES-256-GCM; target >= 0.6x: {}",
            gib(seal),
            plain / seal,
            verdict(plain / seal >= 0.6)
        );
        println!(
            "media    opening 16 MiB (address checked, chunks opened): {:.2} GiB/s, {:.2}x sealing's time; target <= 1.2x: {}",
            gib(open),
            open / seal,
            verdict(open / seal <= 1.2)
        );
        println!(
            "media    sealing 16 MiB while another thread keeps a core busy (median of 21): {:.2} GiB/s = {:.2}x plain AES-256-GCM",
            gib(seal_busy),
            plain / seal_busy
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
        // In its own process: the members' sockets and the server's would not fit under
        // one process's open-file limit together.
        let fan_server = ServerProcess::start(&server_bin(&args), args.members + 10).await?;
        let (fan, cpu, server_cpu) =
            fan_out(&fan_server.url, fan_server.pid()?, args.members).await?;
        println!(
            "server   fan-out to every member of a {}-member space: p50 {:.2} ms p99 {:.2} ms ({} deliveries); target p99 < 100 ms: {}",
            args.members,
            pct(&fan, 0.5),
            pct(&fan, 0.99),
            fan.len(),
            verdict(pct(&fan, 0.99) < 100.0)
        );
        println!(
            "         machine CPU per delivery: {:.1} us (server and the members' clients): the last of {} deliveries needs at least {:.1} ms of this machine's {} cores",
            cpu * 1e6,
            args.members,
            cpu * args.members as f64 / cores() as f64 * 1e3,
            cores()
        );
        println!(
            "         of which the server: {:.1} us per delivery: with the members' clients on other machines, the last of {} would need at least {:.1} ms of these {} cores",
            server_cpu * 1e6,
            args.members,
            server_cpu * args.members as f64 / cores() as f64 * 1e3,
            cores()
        );
    }
    server.shutdown().await?;

    if !args.no_scale_out && args.runs(Phase::ScaleOut) {
        scale_out(&args).await.context("scale-out figures (PostgreSQL and NATS)")?;
    }

    if args.idle > 0 && args.runs(Phase::Idle) {
        let bin = server_bin(&args);
        let (count, limit) = idle_connections_possible(args.idle);
        if count < args.idle {
            println!(
                "server   (idle connections: {} asked for, {count} measured: this machine's open-file limit is {limit} per process)",
                args.idle
            );
        }
        match idle_memory(&bin, count).await {
            Ok((per, before, after)) => println!(
                "server   RSS per idle logged-in connection, {count} connections: {:.1} KB ({before} -> {after} KiB); target < 10 KB: {}",
                per / 1000.0,
                verdict(per < 10_000.0)
            ),
            Err(e) => println!(
                "server   RSS per idle connection: not measured ({e:#}); build cairn-server first"
            ),
        }
    }
    Ok(())
}
