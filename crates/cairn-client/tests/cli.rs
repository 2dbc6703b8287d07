//! `cairn-cli` as a user runs it: separate processes, one profile directory each.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;
use tokio::process::Command;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_server(dir: &Path, port: u16) -> cairn_server::RunningServer {
    let mut config = cairn_server::Config::for_data_dir(dir);
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    cairn_server::start(config).await.unwrap()
}

fn cli(home: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn-cli"));
    c.arg("--home").arg(home).env_remove("CAIRN_HOME").kill_on_drop(true);
    c
}

async fn run(home: &Path, args: &[&str]) -> Output {
    cli(home).args(args).output().await.unwrap()
}

async fn ok(home: &Path, args: &[&str]) -> String {
    let out = run(home, args).await;
    assert!(
        out.status.success(),
        "cairn-cli {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn json(home: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    serde_json::from_str(&ok(home, &a).await).unwrap()
}

struct Homes {
    _dir: tempfile::TempDir,
    alice: PathBuf,
    bob: PathBuf,
}

async fn setup(url: &str) -> Homes {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    ok(&alice, &["init", "--server", url, "--handle", "alice"]).await;
    ok(&bob, &["init", "--server", url, "--handle", "bob"]).await;
    ok(&alice, &["space", "create", "kitchen"]).await;
    ok(&alice, &["space", "invite", "kitchen", "bob"]).await;
    Homes { _dir: dir, alice, bob }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_list_get_search_and_errors() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;

    let posted =
        json(&h.alice, &["note", "post", "kitchen", "--text", "buy basil", "--at", "1,0,2.5"])
            .await;
    assert_eq!(posted["pending"], false);
    let id = posted["id"].as_str().unwrap().to_owned();
    ok(&h.alice, &["note", "post", "kitchen", "--text", "agreed", "--reply-to", &id[..8]]).await;

    let notes = json(&h.bob, &["notes", "kitchen"]).await;
    assert_eq!(notes.as_array().unwrap().len(), 2);
    assert_eq!(notes[0]["text"], "buy basil");
    assert_eq!(notes[0]["author"], "alice");
    assert_eq!(notes[0]["at"], serde_json::json!([1.0, 0.0, 2.5]));
    assert_eq!(notes[1]["reply_to"], id.as_str());
    let human = ok(&h.bob, &["notes", "kitchen"]).await;
    assert!(human.contains("buy basil") && human.contains("alice"), "{human}");

    let members = json(&h.bob, &["space", "members", "kitchen"]).await;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let out = tempfile::tempdir().unwrap();
    ok(&h.bob, &["note", "get", &id[..10], "--out", out.path().to_str().unwrap()]).await;
    assert_eq!(
        std::fs::read_to_string(out.path().join(format!("{}.txt", &id[..8]))).unwrap(),
        "buy basil"
    );

    let found = json(&h.bob, &["search", "basil"]).await;
    assert_eq!(found.as_array().unwrap().len(), 1);
    let code = ok(&h.bob, &["safety-code", "alice"]).await;
    assert_eq!(code, ok(&h.alice, &["safety-code", "alice"]).await, "both see the same devices");

    // Clear errors, non-zero exit.
    for (args, says) in [
        (vec!["notes", "nowhere"], "no space named"),
        (vec!["note", "post", "kitchen", "--text", "x", "--at", "1,2"], "X,Y,Z"),
        (
            vec!["note", "post", "kitchen", "--image", "/nonexistent.png"],
            "reading /nonexistent.png",
        ),
        (vec!["note", "get", "zz", "--out", "/tmp"], "hex"),
    ] {
        let o = run(&h.bob, &args).await;
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let o = run(Path::new("/nonexistent/profile"), &["notes", "kitchen"]).await;
    assert!(String::from_utf8_lossy(&o.stderr).contains("cairn-cli init"));
    // A garbage image is refused with a reason.
    let junk = out.path().join("junk.png");
    std::fs::write(&junk, b"\x89PNG\r\n\x1a\nnot really").unwrap();
    let o = run(&h.alice, &["note", "post", "kitchen", "--image", junk.to_str().unwrap()]).await;
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("unreadable image"));
    server.shutdown().await.unwrap();
}

/// Every command speaks JSON with `--json` (scripts parse each line), and a position with
/// negative numbers is taken as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_json_and_negative_positions_work_as_written() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (dir.path().join("alice"), dir.path().join("bob"));
    assert_eq!(
        json(&alice, &["init", "--server", &url, "--handle", "alice"]).await["handle"],
        "alice"
    );
    // As a person might type it: the host alone means the server's /v1/ws.
    let bare = format!("ws://127.0.0.1:{port}");
    json(&bob, &["init", "--server", &bare, "--handle", "bob"]).await;
    let created = json(&alice, &["space", "create", "roof"]).await;
    let invited = json(&alice, &["space", "invite", "roof", "bob", "--role", "reader"]).await;
    assert_eq!(
        (&invited["space"], &invited["invited"], &invited["role"]),
        (&created["space"], &serde_json::json!("bob"), &serde_json::json!("reader"))
    );
    let posted =
        json(&alice, &["note", "post", "roof", "--text", "mind the step", "--at", "-1.2,1.3,-2"])
            .await;
    assert_eq!(posted["at"], serde_json::json!([-1.2, 1.3, -2.0]));
    let synced = json(&bob, &["sync"]).await;
    assert_eq!(
        (&synced["synced"], &synced["outbox"]),
        (&serde_json::json!(true), &serde_json::json!(0))
    );
    let keys = json(&bob, &["device", "keys"]).await;
    assert!(keys["keys"].as_str().unwrap().starts_with(keys["device"].as_str().unwrap()));
    let id = posted["id"].as_str().unwrap();
    let deleted = json(&alice, &["note", "delete", &id[..8]]).await;
    assert_eq!(deleted["deleted"], id);
    let removed = json(&alice, &["space", "remove", "roof", "bob"]).await;
    assert_eq!(removed["removed"], "bob");
    let code = json(&alice, &["safety-code", "bob"]).await;
    assert!(code["safety_code"].is_string());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_server_stopped_notes_and_search_work_from_the_cache() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;
    ok(&h.alice, &["note", "post", "kitchen", "--text", "the heron comes at dawn"]).await;
    ok(&h.bob, &["notes", "kitchen"]).await;
    server.shutdown().await.unwrap();

    let out = run(&h.bob, &["notes", "kitchen"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("the heron comes at dawn"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("offline"));
    let found = json(&h.bob, &["search", "heron", "dawn"]).await;
    assert_eq!(found[0]["text"], "the heron comes at dawn");
    assert!(json(&h.bob, &["search", "owl"]).await.as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_killed_with_notes_in_its_outbox_delivers_each_exactly_once() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;
    ok(&h.bob, &["notes", "kitchen"]).await;
    server.shutdown().await.unwrap();

    // Offline: the notes wait in the outbox.
    for i in 0..5 {
        let out =
            ok(&h.alice, &["note", "post", "kitchen", "--text", &format!("offline {i}")]).await;
        assert!(out.contains("outbox"), "{out}");
    }
    let server = start_server(server_dir.path(), port).await;
    // A sync killed with SIGKILL part-way, three times at different moments.
    for delay_ms in [5u64, 40, 120] {
        let mut child = cli(&h.alice).arg("sync").spawn().unwrap();
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        child.start_kill().unwrap();
        let _ = child.wait().await;
    }
    ok(&h.alice, &["sync"]).await;
    let notes = json(&h.bob, &["notes", "kitchen"]).await;
    let texts: Vec<&str> =
        notes.as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap()).collect();
    assert_eq!(texts, (0..5).map(|i| format!("offline {i}")).collect::<Vec<_>>());
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_note_from_a_wav_file_arrives_as_ogg_opus() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;
    // One second of a 440 Hz tone at 22,050 Hz, as a WAV file.
    let samples: Vec<i16> = (0..22_050)
        .map(|i| ((i as f32 / 22_050.0 * 440.0 * std::f32::consts::TAU).sin() * 9000.0) as i16)
        .collect();
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + samples.len() as u32 * 2).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0\x01\0");
    wav.extend_from_slice(&22_050u32.to_le_bytes());
    wav.extend_from_slice(&44_100u32.to_le_bytes());
    wav.extend_from_slice(b"\x02\0\x10\0data");
    wav.extend_from_slice(&(samples.len() as u32 * 2).to_le_bytes());
    samples.iter().for_each(|s| wav.extend_from_slice(&s.to_le_bytes()));
    let file = h.alice.join("tone.wav");
    std::fs::write(&file, &wav).unwrap();
    let posted =
        json(&h.alice, &["note", "post", "kitchen", "--voice", file.to_str().unwrap()]).await;
    assert_eq!(posted["kind"], "voice");
    let out = tempfile::tempdir().unwrap();
    ok(
        &h.bob,
        &["note", "get", posted["id"].as_str().unwrap(), "--out", out.path().to_str().unwrap()],
    )
    .await;
    let ogg =
        std::fs::read(out.path().join(format!("{}.ogg", &posted["id"].as_str().unwrap()[..8])))
            .unwrap();
    let pcm = cairn_voice::decode_ogg_opus(&ogg).unwrap();
    assert!(pcm.len().abs_diff(48_000) < 1000, "{} samples", pcm.len());
    // A file that is not audio is refused with a reason.
    std::fs::write(h.alice.join("junk.wav"), b"RIFF junk").unwrap();
    let o = run(
        &h.alice,
        &["note", "post", "kitchen", "--voice", h.alice.join("junk.wav").to_str().unwrap()],
    )
    .await;
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("voice note"));
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_video_note_from_a_phone_clip_arrives_as_a_bounded_webm_that_plays_the_same() {
    use cairn_video::synthetic::{self, Spec, bar_colour};
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;
    // A 1080p H.264 + AAC MP4 with a phone's tags, made by FFmpeg now.
    let file = h.alice.join("clip.mov");
    let tags = [("location", "+48.8584+002.2945/"), ("title", "TestPhone")];
    let spec =
        Spec { container: "mov", width: 1920, height: 1080, metadata: &tags, ..Spec::default() };
    synthetic::make(&file, &spec).unwrap();
    let source = std::fs::read(&file).unwrap();
    assert!(source.windows(9).any(|w| w == b"TestPhone"), "the source carries its tags");
    let posted = json(
        &h.alice,
        &["note", "post", "kitchen", "--video", file.to_str().unwrap(), "--at", "1,1.5,-2"],
    )
    .await;
    assert_eq!(posted["kind"], "video");
    assert_eq!(posted["media"][0]["mime"], "video/webm");
    let id = posted["id"].as_str().unwrap();
    let listed = ok(&h.bob, &["notes", "kitchen"]).await;
    assert!(listed.contains("[video 3.0s]"), "{listed}");

    let out = tempfile::tempdir().unwrap();
    ok(&h.bob, &["note", "get", id, "--out", out.path().to_str().unwrap()]).await;
    let webm = std::fs::read(out.path().join(format!("{}.webm", &id[..8]))).unwrap();
    let mut d = cairn_video::Decoder::new(&webm).unwrap();
    assert_eq!(d.size(), (1280, 720));
    assert!((d.duration_ms() as i64 - 3000).abs() <= 34, "{} ms", d.duration_ms());
    let mut frames = Vec::new();
    while let Some(f) = d.next_frame().unwrap() {
        frames.push(f);
    }
    assert!((89..=91).contains(&frames.len()), "{} frames", frames.len());
    for at in [300u32, 1300, 2700] {
        let f = frames.iter().find(|f| f.ms >= at).unwrap();
        for bar in 0..synthetic::BARS {
            let x = (2 * bar + 1) * f.width / (2 * synthetic::BARS);
            let i = ((f.height / 2 * f.width + x) * 4) as usize;
            let want = bar_colour(bar, at / 1000);
            for (c, w) in want.iter().enumerate() {
                assert!(f.rgba[i + c].abs_diff(*w) <= 40, "bar {bar} at {at} ms");
            }
        }
    }
    let pcm = cairn_video::decode_audio(&webm).unwrap().unwrap();
    let s = &pcm.samples[24_000..120_000];
    let ups: Vec<f64> = (1..s.len())
        .filter(|&i| s[i - 1] < 0.0 && s[i] >= 0.0)
        .map(|i| i as f64 - 1.0 + f64::from(-s[i - 1] / (s[i] - s[i - 1])))
        .collect();
    let hz = (ups.len() - 1) as f64 * 48_000.0 / (ups[ups.len() - 1] - ups[0]);
    assert!((hz - 440.0).abs() < 2.0, "{hz} Hz");
    for (_, v) in tags {
        assert!(!webm.windows(v.len()).any(|w| w == v.as_bytes()), "{v} survived");
    }
    // The server holds ciphertext: neither the clip's tags nor its WebM header in the clear.
    let stored = all_bytes(server_dir.path());
    assert!(!stored.windows(9).any(|w| w == b"TestPhone"));
    assert!(!stored.windows(7).any(|w| w == b"\x42\x82\x84webm"), "a WebM header in the clear");

    // A file that is not a video is refused before anything is sent.
    let mut junk = std::fs::read(&file).unwrap();
    junk.truncate(junk.len() * 2 / 3);
    std::fs::write(h.alice.join("junk.mp4"), &junk).unwrap(); // a MOV cut short
    let before = json(&h.alice, &["notes", "kitchen"]).await;
    let o = run(
        &h.alice,
        &["note", "post", "kitchen", "--video", h.alice.join("junk.mp4").to_str().unwrap()],
    )
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("video note"), "{err}");
    let after = json(&h.alice, &["notes", "kitchen"]).await;
    assert_eq!(before, after, "nothing was posted");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_joins_its_user_reads_its_spaces_and_can_be_revoked() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let dir = tempfile::tempdir().unwrap();
    let (phone, laptop, bob) =
        (dir.path().join("phone"), dir.path().join("laptop"), dir.path().join("bob"));
    ok(&phone, &["init", "--server", &url, "--handle", "alice"]).await;
    ok(&bob, &["init", "--server", &url, "--handle", "bob"]).await;
    // A space alice is in before the laptop exists, with a note in it.
    ok(&phone, &["space", "create", "kitchen"]).await;
    ok(&phone, &["space", "invite", "kitchen", "bob"]).await;
    ok(&phone, &["note", "post", "kitchen", "--text", "before the laptop"]).await;
    let text_of = |notes: &serde_json::Value| -> Vec<String> {
        notes.as_array().unwrap().iter().map(|n| n["text"].as_str().unwrap_or("").into()).collect()
    };
    let alice_devices = |members: serde_json::Value| {
        members.as_array().unwrap().iter().find(|m| m["handle"] == "alice").unwrap()["devices"]
            .as_array()
            .unwrap()
            .len()
    };

    let joined = json(&laptop, &["init", "--server", &url, "--handle", "alice", "--join"]).await;
    let keys = joined["keys"].as_str().unwrap().to_owned();
    let laptop_id = joined["device"].as_str().unwrap().to_owned();
    // Not signed in yet: the server does not know this device.
    let o = run(&laptop, &["sync"]).await;
    assert!(
        !o.status.success()
            && String::from_utf8_lossy(&o.stderr).contains("unknown or revoked device")
    );
    ok(&phone, &["device", "add", &keys]).await;
    ok(&laptop, &["sync"]).await;
    let devices = json(&laptop, &["device", "list"]).await;
    assert_eq!(devices.as_array().unwrap().len(), 2);
    // Both devices see the same safety code for alice.
    assert_eq!(
        ok(&phone, &["safety-code", "alice"]).await,
        ok(&laptop, &["safety-code", "alice"]).await
    );
    // The phone added the laptop to the space and handed it the keys: it reads what alice
    // wrote before it existed, and what it writes opens for bob, signed as alice's.
    assert_eq!(alice_devices(json(&bob, &["space", "members", "kitchen"]).await), 2);
    assert_eq!(text_of(&json(&laptop, &["notes", "kitchen"]).await), ["before the laptop"]);
    ok(&laptop, &["note", "post", "kitchen", "--text", "from the laptop"]).await;
    let seen_by_bob = json(&bob, &["notes", "kitchen"]).await;
    assert_eq!(text_of(&seen_by_bob), ["before the laptop", "from the laptop"]);
    assert_eq!(seen_by_bob[1]["author"], "alice");

    // Revoked: it can no longer log in, it leaves the space, and the space has a new key,
    // which bob's next note is sealed with and the phone opens.
    let epoch = |v: serde_json::Value| {
        v.as_array().unwrap().iter().find(|s| s["name"] == "kitchen").unwrap()["epoch"]
            .as_u64()
            .unwrap()
    };
    let before = epoch(json(&bob, &["space", "list"]).await);
    ok(&phone, &["device", "revoke", &laptop_id]).await;
    let o = run(&laptop, &["sync"]).await;
    assert!(!o.status.success(), "a revoked device can no longer log in");
    assert_eq!(alice_devices(json(&bob, &["space", "members", "kitchen"]).await), 1);
    assert!(epoch(json(&bob, &["space", "list"]).await) > before, "a new key without the laptop");
    ok(&bob, &["note", "post", "kitchen", "--text", "after the laptop"]).await;
    assert_eq!(
        text_of(&json(&phone, &["notes", "kitchen"]).await),
        ["before the laptop", "from the laptop", "after the laptop"]
    );
    server.shutdown().await.unwrap();
}

/// Every byte under `dir` (the database, its write-ahead log, the media).
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    out
}

/// A place made from the terminal, a note posted into it, both read by another member with
/// the place-relative pose; bad marks and unknown places are refused with the reason; and
/// the server's data holds no place name, mark name or coordinate in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn places_are_made_listed_and_posted_into_and_the_server_learns_no_geometry() {
    let server_dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = start_server(server_dir.path(), port).await;
    let url = format!("ws://127.0.0.1:{port}/v1/ws");
    let h = setup(&url).await;

    let made = json(
        &h.alice,
        &[
            "place",
            "create",
            "kitchen",
            "Larder Nook",
            "--mark",
            "quince hinge=1.25,2.125,-3.5",
            "--mark",
            "saffron latch=2.25,2.125,-3.5",
            "--mark",
            "marjoram tap=2.75,0.875,-1.5",
            "--description",
            "the larder door's two top corners, then the tap",
        ],
    )
    .await;
    let place_id = made["id"].as_str().unwrap().to_owned();
    // The frame: origin on the floor below the first mark, x toward the second.
    assert_eq!(made["marks"][0]["at"], serde_json::json!([0.0, 2.125, 0.0]));
    assert_eq!(made["marks"][1]["at"], serde_json::json!([1.0, 2.125, 0.0]));
    assert_eq!(made["marks"][2]["at"], serde_json::json!([1.5, 0.875, 2.0]));

    let posted = json(
        &h.alice,
        &[
            "note",
            "post",
            "kitchen",
            "--text",
            "figs inside",
            "--place",
            "larder nook",
            "--at",
            "0.625,1.375,0.4375",
        ],
    )
    .await;
    assert_eq!(posted["place"]["id"], place_id.as_str());

    let places = json(&h.bob, &["place", "list", "kitchen"]).await;
    assert_eq!(places.as_array().unwrap().len(), 1);
    assert_eq!(places[0]["name"], "Larder Nook");
    assert_eq!(places[0]["author"], "alice");
    assert_eq!(places[0]["marks"][2]["name"], "marjoram tap");
    let human = ok(&h.bob, &["place", "list", "kitchen"]).await;
    assert!(human.contains("quince hinge, then saffron latch, then marjoram tap"), "{human}");
    let notes = json(&h.bob, &["notes", "kitchen"]).await;
    let note = notes.as_array().unwrap().iter().find(|n| n["text"] == "figs inside").unwrap();
    assert_eq!(note["place"]["id"], place_id.as_str());
    assert_eq!(note["place"]["name"], "Larder Nook");
    assert_eq!(note["place"]["at"], serde_json::json!([0.625, 1.375, 0.4375]));
    let human = ok(&h.bob, &["notes", "kitchen"]).await;
    assert!(human.contains("in Larder Nook") && human.contains("[place Larder Nook"), "{human}");

    for (args, says) in [
        (
            vec!["note", "post", "kitchen", "--text", "x", "--place", "attic"],
            "no place named \"attic\" (this space has: Larder Nook)",
        ),
        (vec!["place", "create", "kitchen", "Shelf", "--mark", "a=0,1,0"], "at least two"),
        (
            vec![
                "place",
                "create",
                "kitchen",
                "Shelf",
                "--mark",
                "a=0,1,0",
                "--mark",
                "b=0.01,1,0",
            ],
            "marked twice",
        ),
        (
            vec!["place", "create", "kitchen", "Shelf", "--mark", "a=0,1,0", "--mark", "b=0.1,1,0"],
            "too close together",
        ),
        (vec!["place", "create", "kitchen", "Shelf", "--mark", "0,1,0"], "NAME=X,Y,Z"),
    ] {
        let o = run(&h.alice, &args).await;
        assert!(!o.status.success(), "{args:?} should fail");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(json(&h.bob, &["place", "list", "kitchen"]).await.as_array().unwrap().len(), 1);

    server.shutdown().await.unwrap();
    let stored = all_bytes(server_dir.path());
    assert!(stored.len() > 10_000, "the server's data is there to search");
    let contains = |needle: &[u8]| stored.windows(needle.len()).any(|w| w == needle);
    for word in ["Larder", "quince", "saffron", "marjoram", "figs inside", "larder door"] {
        assert!(!contains(word.as_bytes()), "{word:?} is in the server's data in clear");
    }
    // The coordinates as CBOR writes them (each position whole, in the shortest float that
    // holds it exactly, as ciborium does), and each value as a 4- or 8-byte float.
    let positions: [[f32; 3]; 4] =
        [[0.0, 2.125, 0.0], [1.0, 2.125, 0.0], [1.5, 0.875, 2.0], [0.625, 1.375, 0.4375]];
    for p in positions {
        let cbor = cairn_proto::encode(&p);
        assert!(cbor.len() >= 7 && !contains(&cbor), "{p:?} is in the server's data");
    }
    for v in [2.125f32, 0.875, 0.625, 1.375, 0.4375] {
        assert!(!contains(&v.to_be_bytes()), "{v} (f32) is in the server's data");
        assert!(!contains(&f64::from(v).to_be_bytes()), "{v} (f64) is in the server's data");
    }
}
