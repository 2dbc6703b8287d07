//! Crash safety: clients post while the server process is killed with SIGKILL at random
//! moments and restarted. Every acknowledged note must be present exactly once, at the
//! sequence number it was acknowledged with, and no space's sequence may have a gap.

mod common;
use cairn_proto::*;
use common::*;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct ServerProcess {
    child: Child,
}

impl ServerProcess {
    fn spawn(data: &std::path::Path, port: u16) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-server"))
            .args(["--data", data.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
            // The senders post as fast as acks come back, one user on four connections:
            // that meets the default rate limits, which are not what this test is about.
            .args(["--rate-per-connection", "100000", "--rate-per-user", "100000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cairn-server starts");
        ServerProcess { child }
    }

    fn kill9(&mut self) {
        // std's kill() sends SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not come up");
}

fn pseudo_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_notes_survive_sigkill_exactly_once_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let mut server = ServerProcess::spawn(dir.path(), port);
    wait_healthy(port).await;

    let owner = Device::new();
    let mut admin = Client::register(&url, "owner", &owner).await;
    let mut spaces = Vec::new();
    for _ in 0..2 {
        spaces.push(TestSpace::create(&mut admin, &owner, Policy::default()).await.id);
    }
    drop(admin);
    let owner = Arc::new(owner);

    // Acknowledged (space, note id) -> seq, as each sender saw it.
    let acked: Arc<Mutex<HashMap<(SpaceId, NoteId), u64>>> = Default::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for s in 0..4u64 {
        let (url, owner, acked, stop) = (url.clone(), owner.clone(), acked.clone(), stop.clone());
        let space = spaces[s as usize % spaces.len()];
        senders.push(tokio::spawn(async move {
            let mut rng = 0x1234_5678 + s;
            let mut client: Option<Client> = None;
            // A note is retried with the same id until acknowledged.
            let mut pending: Option<SealedNote> = None;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || pending.is_some() {
                let c = match client.as_mut() {
                    Some(c) => c,
                    None => match Client::try_login(&url, &owner).await {
                        Some(c) => client.insert(c),
                        None => {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            continue;
                        }
                    },
                };
                let n = pending.get_or_insert_with(|| {
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&pseudo_random(&mut rng).to_le_bytes());
                    id[8..].copy_from_slice(&s.to_le_bytes());
                    note_with(&owner, space, 0, NoteId(id), &id, None, vec![])
                });
                match c.try_request(Request::PostNote { note: n.clone() }).await {
                    Some(Ok(Response::Posted { seq, .. })) => {
                        let key = (space, n.header.note_id);
                        let mut acked = acked.lock().unwrap();
                        if let Some(prev) = acked.insert(key, seq) {
                            assert_eq!(prev, seq, "a retry was acknowledged with another seq");
                        }
                        pending = None;
                    }
                    Some(Ok(other)) => panic!("{other:?}"),
                    Some(Err(e)) => panic!("post refused: {e}"),
                    None => client = None,
                }
            }
        }));
    }

    let mut rng = 0xdead_beef_u64;
    for round in 0..5 {
        tokio::time::sleep(Duration::from_millis(300 + pseudo_random(&mut rng) % 700)).await;
        let before = acked.lock().unwrap().len();
        server.kill9();
        eprintln!("round {round}: killed with {before} notes acknowledged");
        tokio::time::sleep(Duration::from_millis(pseudo_random(&mut rng) % 200)).await;
        server = ServerProcess::spawn(dir.path(), port);
        wait_healthy(port).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for s in senders {
        tokio::time::timeout(Duration::from_secs(60), s).await.expect("senders finish").unwrap();
    }

    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() > 50, "too few posts to mean anything: {}", acked.len());
    let mut reader = Client::try_login(&url, &owner).await.unwrap();
    for space in spaces {
        let entries = sync_all(&mut reader, space, 0).await.unwrap();
        // No gap: 1, 2, 3, ...
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.seq, i as u64 + 1, "gap in the sequence");
        }
        let mut seen: HashMap<NoteId, u64> = HashMap::new();
        for e in &entries {
            let EntryItem::Note(n) = &e.item else { panic!("unexpected tombstone") };
            assert!(seen.insert(n.header.note_id, e.seq).is_none(), "a note is stored twice");
        }
        for ((s, id), seq) in acked.iter().filter(|((s, _), _)| *s == space) {
            assert_eq!(seen.get(id), Some(seq), "acknowledged note {id:?} in {s:?} lost or moved");
        }
    }
    eprintln!("{} acknowledged notes all present exactly once", acked.len());
}
