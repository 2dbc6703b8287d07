//! Three `cairn-server` processes share PostgreSQL (a database of this run's own) and NATS
//! (a `nats-server` process of this test's own, so that it can be stopped and started).
//! Real encrypted clients (`cairn-client`) reach the nodes through small failover proxies
//! standing in for a load balancer: each prefers its own node and falls back to the others.
//!
//! Checked: notes posted at one node reach members on the other two, media uploaded at one
//! node is served by another, a node killed with SIGKILL mid-stream loses nothing (its
//! clients reconnect elsewhere and catch up), and NATS stopped for a few seconds and started
//! again delays notes but loses none. Every receiver ends with every note once, in order.

use cairn_client::{Change, Client, ClientCommand, ClientEvent, ClientHandle, Content, Draft};
use cairn_proto::{MediaHash, Policy, Role, SpaceId};
use cairn_server::storage::postgres::TempDatabase;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} did not start listening on {port}:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `nats-server`, found on PATH or where Debian puts it. Missing is a failure, not a skip.
fn nats_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/bin"])
    {
        let p = Path::new(dir).join("nats-server");
        if p.exists() {
            return p;
        }
    }
    panic!("nats-server is required for this test and was not found; `./dev test` installs it");
}

struct Nats {
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

impl Nats {
    fn start(port: u16, log: PathBuf) -> Nats {
        let mut n = Nats { port, child: None, log };
        n.restart();
        n
    }
    fn restart(&mut self) {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(nats_binary())
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("starting nats-server");
        self.child = Some(child);
        wait_for_port(self.port, "nats-server", &self.log);
    }
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Node {
    port: u16,
    child: Child,
}

impl Node {
    fn start(dir: &Path, i: usize, database: &str, nats: &str) -> Node {
        let port = free_port();
        let log = dir.join(format!("node{i}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-server"))
            .args(["--database", database, "--nats", nats, "--catch-up-ms", "500"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data")
            .arg(dir.join(format!("node{i}")))
            .env("RUST_LOG", "info,cairn_server=debug")
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("starting cairn-server");
        wait_for_port(port, "cairn-server", &log);
        Node { port, child }
    }

    /// SIGKILL: no graceful shutdown, sockets just drop.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn metric(&self, rt: &tokio::runtime::Runtime, name: &str) -> f64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        let text = rt.block_on(async { reqwest::get(&url).await?.text().await }).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0.0)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A load balancer in miniature: each connection goes to the first backend that accepts it,
/// in this proxy's order of preference.
async fn failover_proxy(backends: Vec<u16>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut down, _)) = listener.accept().await else { continue };
            let backends = backends.clone();
            tokio::spawn(async move {
                for b in backends {
                    if let Ok(mut up) = TcpStream::connect(("127.0.0.1", b)).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                        return;
                    }
                }
            });
        }
    });
    port
}

fn png(rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(64, 48, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// What one receiving client has seen.
struct Receiver {
    name: &'static str,
    home: PathBuf,
    handle: ClientHandle,
    texts: BTreeSet<String>,
    media: HashMap<MediaHash, PathBuf>,
}

impl Receiver {
    fn drain(&mut self, until: Instant) {
        while let Some(ev) = self.handle.recv_timeout(
            until.saturating_duration_since(Instant::now()).min(Duration::from_millis(50)),
        ) {
            match ev {
                ClientEvent::Changed(Change::Note(n)) => {
                    if let Some(body) = n.body {
                        for m in &body.media {
                            self.handle.send(ClientCommand::FetchMedia { media: m.clone() });
                        }
                        self.texts.insert(body.text);
                    }
                }
                ClientEvent::MediaReady { media, path } => {
                    self.media.insert(media, path);
                }
                _ => {}
            }
        }
    }
}

/// Waits until every receiver has seen all of `want`.
fn await_all(
    receivers: &mut [Receiver],
    want: &BTreeSet<String>,
    within: Duration,
    what: &str,
) -> Duration {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        for r in receivers.iter_mut() {
            r.drain(Instant::now() + Duration::from_millis(20));
        }
        if receivers.iter().all(|r| want.is_subset(&r.texts)) {
            return start.elapsed();
        }
        if Instant::now() > deadline {
            for r in receivers.iter() {
                let missing: Vec<_> = want.difference(&r.texts).collect();
                eprintln!("{}: missing {} of {}: {missing:?}", r.name, missing.len(), want.len());
            }
            panic!("{what}: not every note arrived within {within:?}");
        }
    }
}

fn post(alice: &ClientHandle, space: SpaceId, text: &str, want: &mut BTreeSet<String>) {
    alice.send(ClientCommand::Post { space, draft: Draft::text(text, [0.0; 3]) });
    want.insert(text.to_owned());
}

#[test]
fn three_nodes_share_postgres_and_nats_and_lose_nothing_to_a_sigkill_or_a_nats_restart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TempDatabase::create()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let mut nats = Nats::start(free_port(), dir.path().join("nats.log"));
    // The first node migrates the fresh database; the others start together after it.
    let mut nodes = vec![Node::start(dir.path(), 0, &db.url, &nats.url())];
    nodes.push(Node::start(dir.path(), 1, &db.url, &nats.url()));
    nodes.push(Node::start(dir.path(), 2, &db.url, &nats.url()));
    let ports: Vec<u16> = nodes.iter().map(|n| n.port).collect();
    // alice prefers node 0, bob node 1, carol node 2; each falls back to the next.
    let proxies: Vec<u16> = rt.block_on(async {
        let mut out = Vec::new();
        for i in 0..3 {
            out.push(failover_proxy((0..3).map(|k| ports[(i + k) % 3]).collect()).await);
        }
        out
    });
    let url = |i: usize| format!("ws://127.0.0.1:{}/v1/ws", proxies[i]);
    let home = |who: &str| dir.path().join("homes").join(who);

    let space = rt.block_on(async {
        let mut alice = Client::init(
            &home("alice"),
            &url(0),
            &cairn_proto::Handle::from_static("alice"),
            None,
            None,
        )
        .await
        .unwrap();
        let mut bob = Client::init(
            &home("bob"),
            &url(1),
            &cairn_proto::Handle::from_static("bob"),
            None,
            None,
        )
        .await
        .unwrap();
        let mut carol = Client::init(
            &home("carol"),
            &url(2),
            &cairn_proto::Handle::from_static("carol"),
            None,
            None,
        )
        .await
        .unwrap();
        let space = alice.create_space("city square", Policy::default()).await.unwrap();
        alice.invite(&space, &cairn_proto::Handle::from_static("bob"), Role::Member).await.unwrap();
        alice
            .invite(&space, &cairn_proto::Handle::from_static("carol"), Role::Member)
            .await
            .unwrap();
        bob.sync().await.unwrap();
        carol.sync().await.unwrap();
        space
    });
    let alice = ClientHandle::spawn(Client::open(&home("alice"), None).unwrap());
    let mut receivers: Vec<Receiver> = [("bob", "bob"), ("carol", "carol")]
        .into_iter()
        .map(|(name, who)| Receiver {
            name,
            home: home(who),
            handle: ClientHandle::spawn(Client::open(&home(who), None).unwrap()),
            texts: BTreeSet::new(),
            media: HashMap::new(),
        })
        .collect();
    let mut want = BTreeSet::new();

    // 1. Posted at node 0, delivered live by nodes 1 and 2; the picture is uploaded to node 0
    // and downloaded from the others.
    std::thread::sleep(Duration::from_millis(500));
    for i in 0..20 {
        post(&alice, space, &format!("steady {i:02}"), &mut want);
    }
    let picture = png([200, 40, 40]);
    alice.send(ClientCommand::Post {
        space,
        draft: Draft {
            text: "a picture".into(),
            content: Content::Image(picture),
            ..Draft::default()
        },
    });
    want.insert("a picture".into());
    let took = await_all(&mut receivers, &want, Duration::from_secs(15), "cross-node delivery");
    eprintln!("21 notes reached members on two other nodes in {took:?}");
    for r in &mut receivers {
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.media.is_empty() && Instant::now() < deadline {
            r.drain(Instant::now() + Duration::from_millis(100));
        }
        assert_eq!(r.media.len(), 1, "{} got the picture from another node", r.name);
    }
    for (i, node) in nodes.iter().enumerate().skip(1) {
        assert!(
            node.metric(&rt, "cairn_relayed_entries_total") >= 21.0,
            "node {i} relayed from the database"
        );
    }

    // 2. SIGKILL bob's node mid-stream; bob's client reconnects through its proxy to node 2.
    for i in 0..30 {
        post(&alice, space, &format!("during kill {i:02}"), &mut want);
        if i == 10 {
            nodes[1].kill();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = await_all(&mut receivers, &want, Duration::from_secs(30), "after SIGKILL");
    eprintln!("after the SIGKILL, everything arrived {took:?} after the last post");

    // 3. NATS away for three seconds: notes keep arriving through the nodes' catch-up, and
    // none is lost when it comes back.
    nats.stop();
    for i in 0..15 {
        post(&alice, space, &format!("nats down {i:02}"), &mut want);
        std::thread::sleep(Duration::from_millis(200));
    }
    nats.restart();
    for i in 0..15 {
        post(&alice, space, &format!("nats back {i:02}"), &mut want);
    }
    let took = await_all(&mut receivers, &want, Duration::from_secs(30), "after the NATS restart");
    eprintln!("after the NATS restart, everything arrived in {took:?}");

    // Every receiver's cache: each note once, sequence numbers 1..=n without a gap.
    drop(alice);
    for r in receivers {
        let (name, home) = (r.name, r.home.clone());
        drop(r);
        let client = Client::open(&home, None).unwrap();
        let notes = client.notes(&space).unwrap();
        let mut seqs: Vec<u64> = notes.iter().filter_map(|n| n.seq).collect();
        seqs.sort();
        let texts: BTreeSet<String> =
            notes.iter().filter_map(|n| n.body.as_ref().map(|b| b.text.clone())).collect();
        assert_eq!(texts, want, "{name}'s notes");
        assert_eq!(notes.len(), want.len(), "{name} holds each note once");
        assert_eq!(seqs, (1..=want.len() as u64).collect::<Vec<_>>(), "{name}: gap-free");
    }
    drop(nodes);
    let _ = nodes_logs_hint(dir.path());
}

/// Keeps the logs when asked (`CAIRN_KEEP_LOGS=1`), for looking into a failure.
fn nodes_logs_hint(dir: &Path) -> Option<()> {
    if std::env::var_os("CAIRN_KEEP_LOGS").is_some() {
        let keep = std::env::temp_dir().join("cairn-multinode-logs");
        std::fs::create_dir_all(&keep).ok()?;
        for e in std::fs::read_dir(dir).ok()? {
            let p = e.ok()?.path();
            if p.extension().is_some_and(|x| x == "log") {
                std::fs::copy(&p, keep.join(p.file_name()?)).ok()?;
            }
        }
    }
    Some(())
}
