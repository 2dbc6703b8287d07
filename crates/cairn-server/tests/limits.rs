//! What one registered user, or anyone who can open a socket, cannot do to the server: one
//! regression test per finding of the hostile run (docs/SECURITY.md, "Resource limits").

mod common;
use cairn_proto::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// Finding 1: a sync page is bounded in bytes, so every answer fits the frame limit the
/// server announces. Before, 60 notes of 10,000 bytes made one 600 KB answer that every
/// client refused, for good.
#[tokio::test]
async fn a_sync_page_always_fits_in_one_frame() {
    let t = start().await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    for i in 0..60u8 {
        post(&mut a, &note(&alice, space.id, 0, &[i; 10_000])).await.unwrap();
    }
    // Two notes near the note limit: at worst one per page.
    for i in 0..2u8 {
        post(&mut a, &note(&alice, space.id, 0, &vec![i; MAX_NOTE_BYTES])).await.unwrap();
    }
    let mut cursor = 0;
    let mut pages = 0;
    loop {
        let id = a.send(Request::Sync { space: space.id, after: cursor, limit: 500 }).await;
        // Every frame, events of our own posts too, must fit; the answer is the one with
        // our id.
        let (rid, entries, more) = loop {
            let bytes =
                match tokio::time::timeout(Duration::from_secs(10), a.ws.next()).await.unwrap() {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(_)) => continue,
                    other => panic!("{other:?}"),
                };
            assert!(bytes.len() <= MAX_FRAME_BYTES, "a {}-byte frame", bytes.len());
            match decode::<ServerFrame>(&bytes).unwrap() {
                ServerFrame::Event(_) => continue,
                ServerFrame::Response {
                    id,
                    result: Ok(Response::Entries { entries, more, .. }),
                } => break (id, entries, more),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(rid, id);
        assert!(!entries.is_empty());
        cursor = entries.last().unwrap().seq;
        pages += 1;
        if !more {
            break;
        }
    }
    assert_eq!(cursor, 62);
    assert!(pages >= 3, "{pages} pages");
}

/// Finding 5: the data directory (which holds the session-token secret) and the files in it
/// are private to the server's user; a directory with looser modes is tightened.
#[tokio::test]
async fn the_data_directory_and_its_files_are_private() {
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let d = data.clone();
    let t = start_with(move |c| c.data = d).await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    post(&mut a, &note(&alice, space.id, 0, b"x")).await.unwrap();
    let token = a.session.clone().unwrap().token;
    let blob = b"some ciphertext".to_vec();
    let hash = MediaHash::of(&blob).to_hex();
    let put = reqwest::Client::new()
        .put(format!("{}/v1/media/{hash}", t.server.http_url()))
        .bearer_auth(&token)
        .body(blob)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            assert_eq!(mode(&p), 0o700, "{}", p.display());
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        checked += 1;
    }
    assert!(checked >= 5, "{checked}");
}

/// Finding 7: numbers at the edge mean what they say or are refused.
#[tokio::test]
async fn numbers_at_the_edge_are_refused_or_mean_what_they_say() {
    let t = start().await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    post(&mut a, &note(&alice, space.id, 0, b"one")).await.unwrap();
    let forever = note_with(&alice, space.id, 0, NoteId([9; 16]), b"x", Some(u64::MAX), vec![]);
    assert_eq!(post(&mut a, &forever).await.unwrap_err().code, ErrorCode::BadRequest);
    let r = a.request(Request::Sync { space: space.id, after: u64::MAX, limit: 10 }).await;
    assert!(
        matches!(r, Ok(Response::Entries { ref entries, more: false, .. }) if entries.is_empty()),
        "{r:?}"
    );
    let r = a.request(Request::GetMembership { space: space.id, from: u64::MAX }).await;
    assert!(matches!(r, Ok(Response::Membership { ref ops, .. }) if ops.is_empty()), "{r:?}");
    // The note that was posted is still there.
    assert_eq!(sync_all(&mut a, space.id, 0).await.unwrap().len(), 1);
}

/// The server in a process of its own (its memory measured from /proc), logging to files.
struct Process {
    child: std::process::Child,
    dir: tempfile::TempDir,
    url: String,
}

impl Process {
    async fn spawn(args: &[&str], log_level: &str) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cairn-server"))
            .args(["--data", dir.path().join("data").to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("RUST_LOG", log_level)
            .stdout(std::fs::File::create(dir.path().join("server.log")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("server.err")).unwrap())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Process { child, dir, url: format!("ws://127.0.0.1:{port}/v1/ws") }
    }

    /// Resident memory, in bytes.
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }

    /// Stops it and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut text = std::fs::read(self.dir.path().join("server.log")).unwrap();
        text.extend(std::fs::read(self.dir.path().join("server.err")).unwrap());
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// Finding 2: a user who asks for answers and does not read them cannot take the server's
/// memory. Before, 16 unread syncs on one connection took the server from 57 MB to 760 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_does_not_read_cannot_take_the_servers_memory() {
    let server =
        Process::spawn(&["--rate-per-connection", "100000", "--rate-per-user", "100000"], "warn")
            .await;
    let alice = Device::new();
    let mut a = Client::register(&server.url, "alice", &alice).await;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    for i in 0..100u8 {
        post(&mut a, &note(&alice, space.id, 0, &vec![i; 300_000])).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss();
    let mut hogs = Vec::new();
    for _ in 0..8 {
        let mut c = Client::login(&server.url, &alice).await.unwrap();
        for _ in 0..64 {
            c.send(Request::Sync { space: space.id, after: 0, limit: 500 }).await;
        }
        hogs.push(c);
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let grown = server.rss().saturating_sub(before);
    eprintln!("8 connections x 64 unread syncs: the server grew by {} KiB", grown >> 10);
    assert!(grown < 64 << 20, "the server grew by {} MiB", grown >> 20);
    // Everyone else is still served.
    let bob = Device::new();
    let mut b = Client::register(&server.url, "bob", &bob).await;
    let mine = TestSpace::create(&mut b, &bob, Policy::default()).await;
    post(&mut b, &note(&bob, mine.id, 0, b"still here")).await.unwrap();
    assert_eq!(sync_all(&mut b, mine.id, 0).await.unwrap().len(), 1);
    drop(hogs);
    server.stop();
}

/// Finding 6: at `RUST_LOG=trace` the server's log holds no token and no payload.
#[tokio::test]
async fn no_level_of_logging_writes_a_token_or_a_payload() {
    let server = Process::spawn(&[], "trace").await;
    let url = server.url.clone();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    let token = a.session.clone().unwrap().token;
    let space = TestSpace::create(&mut a, &alice, Policy::default()).await;
    let marker = b"PAYLOAD-MARKER-6d61726b6572";
    post(&mut a, &note(&alice, space.id, 0, marker)).await.unwrap();
    let mut resumed = Client::connect(&url).await;
    resumed.request(Request::Resume { token: token.clone() }).await.unwrap();
    let text = server.stop();
    assert!(text.contains("registered"), "the log is written: {text}");
    let (head, _) = token.split_at(token.len() / 2);
    assert!(!text.contains(head), "the token is in the log");
    assert!(!text.contains("PAYLOAD-MARKER"), "a payload is in the log");
    assert!(!text.contains(&hex::encode(&marker[..12])), "a payload is in the log, in hex");
    assert!(!text.contains("80, 65, 89, 76"), "a payload is in the log, as bytes");
}

async fn metric(t: &TestServer, name: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", t.server.http_url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics"))
}

/// Finding 4: the per-space cache is bounded, and never filled by ids the caller cannot
/// see. Before, every request naming a space id, existing or not, added a permanent entry.
#[tokio::test]
async fn the_space_cache_is_bounded_and_unknown_ids_leave_nothing() {
    let t = start_with(|c| {
        c.space_cache = 20;
        c.rate_per_connection = 1_000_000;
        c.rate_per_user = 1_000_000;
    })
    .await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let mut a = Client::register(&url, "alice", &alice).await;
    for i in 0..3_000u32 {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&i.to_be_bytes());
        id[15] = 0xee;
        let r = a.request(Request::Sync { space: SpaceId(id), after: 0, limit: 1 }).await;
        assert_eq!(r.unwrap_err().code, ErrorCode::NotFound);
    }
    assert_eq!(metric(&t, "cairn_spaces_cached").await, 0.0);
    // Real spaces: at most the cap stays in memory, and each still works when evicted.
    let mut spaces = Vec::new();
    for _ in 0..50 {
        let s = TestSpace::create(&mut a, &alice, Policy::default()).await;
        post(&mut a, &note(&alice, s.id, 0, b"kept")).await.unwrap();
        spaces.push(s.id);
    }
    assert!(metric(&t, "cairn_spaces_cached").await <= 21.0);
    for id in &spaces {
        assert_eq!(sync_all(&mut a, *id, 0).await.unwrap().len(), 1);
    }
    assert!(metric(&t, "cairn_spaces_cached").await <= 21.0);
}

/// Finding 8: before login a connection has a small budget of frames; indefinite-length
/// CBOR is refused as the protocol says; a malformed frame's error is written for people.
#[tokio::test]
async fn before_login_the_budget_is_small_and_malformed_frames_are_explained() {
    let t = start().await;
    let url = t.server.ws_url();
    let mut c = Client::connect(&url).await;
    let mut answered = 0;
    for _ in 0..200 {
        match c.try_request(Request::ListSpaces).await {
            Some(Err(e)) if e.code == ErrorCode::Unauthenticated => answered += 1,
            Some(Err(e)) => {
                assert_eq!(e.code, ErrorCode::RateLimited, "{e}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(answered < 20, "{answered} frames answered before login");
    assert_eq!(Client::expect_close(&mut c.ws).await, Some(CloseCode::Policy));

    // `{"id": 1, "request": "list_spaces"}` with an indefinite-length map.
    let mut frame = vec![0xbf];
    frame.extend(encode(&"id"));
    frame.extend(encode(&1u64));
    frame.extend(encode(&"request"));
    frame.extend(encode(&"list_spaces"));
    frame.push(0xff);
    // A definite-length "hello" with a wrong type, for the error's wording.
    let wrong_type = encode(&(1u64, "hello"));
    // A register naming a handle that breaks the rules: checked where it is decoded.
    let device = Device::new();
    let register = encode(&ClientFrame {
        id: 1,
        request: Request::Register {
            handle: Handle::from_static("zzzzzzzzzz"),
            device: device.keys(),
            invite: None,
            signature: Signature([0; 64]),
            self_signature: Signature([0; 64]),
        },
    });
    let at = register.windows(10).position(|w| w == b"zzzzzzzzzz").unwrap();
    let mut bad_handle = register.clone();
    bad_handle[at..at + 10].copy_from_slice(b"Not Valid!");
    for (bytes, says) in [
        (frame, "indefinite-length"),
        (wrong_type, "invalid type"),
        (bad_handle, "a handle has 1 to 32 characters"),
    ] {
        let mut ws = raw_connect(&url).await;
        ws.send(Message::Binary(bytes.into())).await.unwrap();
        let reply = loop {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => break decode::<ServerFrame>(&b).unwrap(),
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        };
        let ServerFrame::Response { result: Err(e), .. } = reply else { panic!("{reply:?}") };
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains(says), "{}", e.message);
        assert!(
            !e.message.contains("Semantic(") && !e.message.contains("Syntax("),
            "{}",
            e.message
        );
    }
}

/// Finding 3: connections that never finish their headers are closed after the header
/// deadline, and one address cannot take every connection: others are still served, and the
/// refusals are counted in /metrics.
#[tokio::test]
async fn slow_headers_are_cut_off_and_one_address_cannot_take_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start_with(|c| {
        c.max_connections_per_ip = 30;
        c.header_timeout_s = 1;
    })
    .await;
    let addr = t.server.addr;
    let mut hogs = Vec::new();
    for _ in 0..40 {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: cairn\r\nX-Slow: ").await;
        hogs.push(s);
    }
    // Another address (still loopback) is served all the while.
    let other = reqwest::Client::builder()
        .local_address(Some("127.0.0.2".parse().unwrap()))
        .build()
        .unwrap();
    let health = other.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = other.get(format!("http://{addr}/metrics")).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    let refused: f64 = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("cairn_connections_refused_per_address_total")?.trim().parse().ok()
        })
        .unwrap();
    assert!(refused >= 10.0, "{refused}");
    // After the header deadline every one of them has been closed by the server.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for mut s in hogs {
        let mut buf = [0u8; 512];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        assert!(matches!(n, Ok(Ok(_)) | Ok(Err(_))), "a slow connection is still open");
    }
    // And the address may connect again.
    let again = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(again.status(), 200);
}

/// Finding 3: an upload that trickles (a byte every two seconds) is cut off, and leaves no
/// temporary file behind.
#[tokio::test]
async fn a_trickling_upload_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start().await;
    let url = t.server.ws_url();
    let alice = Device::new();
    let a = Client::register(&url, "alice", &alice).await;
    let token = a.session.clone().unwrap().token;
    let mut s = tokio::net::TcpStream::connect(t.server.addr).await.unwrap();
    let head = format!(
        "PUT /v1/media/{} HTTP/1.1\r\nHost: cairn\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n",
        "ab".repeat(32)
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    loop {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the trickle was never cut off");
    }
    assert!(started.elapsed() < Duration::from_secs(25));
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 4"), "{answer}");
    let tmp = t.dir.path().join("media").join("tmp");
    assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
}

/// The server raises its soft open-file limit to the hard one at start-up.
#[tokio::test]
async fn the_server_raises_its_open_file_limit() {
    let server = Process::spawn(&[], "warn").await;
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.child.id())).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3], fields[4], "soft and hard limits: {line}");
    server.stop();
}
