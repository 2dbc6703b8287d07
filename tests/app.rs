//! The app's tests: the logic headless (`MinimalPlugins`, injected pointer rays and
//! messages), and the real app as a process under Xvfb against a seeded server.

use bevy::prelude::*;
use cairn::CairnLogicPlugin;
use cairn::compose::{Compose, ComposeInput, NOTE_HEIGHT};
use cairn::interact::{NoteActivated, Pointer, PointerPress, PointerRay, PointerSource};
use cairn::net::{CurrentSpace, NetCommand, NoteRemoved, NoteUpdated};
use cairn::notes::{Focused, Note, NoteIndex, ReplyLink};
use cairn_client::{ClientCommand, Content, LocalNote};
use cairn_crypto::{NoteBody, Pose};
use cairn_proto::{NoteId, SpaceId};

mod common;

use common::SPACE;

fn app() -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, CairnLogicPlugin));
    app.insert_resource(CurrentSpace(Some(SPACE)));
    app.update();
    app
}

fn local(id: u8, text: &str, at: [f32; 3], reply_to: Option<u8>) -> LocalNote {
    let mut body = NoteBody::text("alice", text, Pose { position: at, ..Pose::default() });
    body.reply_to = reply_to.map(|r| NoteId([r; 16]));
    common::local_note(id, body, false)
}

fn receive(app: &mut App, n: LocalNote) {
    app.world_mut().write_message(NoteUpdated(n));
    app.update();
    app.update();
}

fn entity_of(app: &App, id: u8) -> Option<Entity> {
    app.world().resource::<NoteIndex>().0.get(&NoteId([id; 16])).copied()
}

fn net_commands(app: &mut App) -> Vec<ClientCommand> {
    app.world_mut().resource_mut::<Messages<NetCommand>>().drain().map(|c| c.0).collect()
}

fn point(app: &mut App, from: Vec3, to: Vec3) {
    let ray = Ray3d::new(from, Dir3::new(to - from).unwrap());
    app.world_mut().write_message(PointerRay { source: PointerSource::Mouse, ray });
    app.update();
}

fn press(app: &mut App) {
    app.world_mut().write_message(PointerPress { source: PointerSource::Mouse });
    app.update();
}

#[test]
fn a_received_note_spawns_one_entity_at_its_pose_and_a_tombstone_removes_it() {
    let mut app = app();
    receive(&mut app, local(1, "hello", [1.0, 1.5, -2.0], None));
    receive(&mut app, local(1, "hello", [1.0, 1.5, -2.0], None)); // the same note again
    let mut q = app.world_mut().query::<(&Note, &Transform)>();
    let notes: Vec<_> = q.iter(app.world()).collect();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].1.translation, Vec3::new(1.0, 1.5, -2.0));
    assert_eq!(notes[0].0.body.as_ref().unwrap().text, "hello");
    assert!(notes[0].0.unread);
    // A note of another space is not shown.
    let mut other = local(2, "elsewhere", [0.0; 3], None);
    other.space = SpaceId([2; 16]);
    receive(&mut app, other);
    assert_eq!(app.world_mut().query::<&Note>().iter(app.world()).count(), 1);
    // Deleted.
    app.world_mut().write_message(NoteRemoved { space: SPACE, note_id: NoteId([1; 16]) });
    app.update();
    app.update();
    assert_eq!(app.world_mut().query::<&Note>().iter(app.world()).count(), 0);
    assert!(entity_of(&app, 1).is_none());
}

#[test]
fn a_pending_note_becomes_acknowledged_in_place() {
    let mut app = app();
    let mut n = local(1, "mine", [0.0, 1.4, -1.0], None);
    n.seq = None;
    receive(&mut app, n.clone());
    let e = entity_of(&app, 1).unwrap();
    assert!(app.world().get::<Note>(e).unwrap().pending());
    n.seq = Some(7);
    receive(&mut app, n);
    assert_eq!(entity_of(&app, 1), Some(e), "the same entity");
    assert_eq!(app.world().get::<Note>(e).unwrap().seq, Some(7));
}

#[test]
fn replies_link_to_their_parents_whatever_the_arrival_order() {
    let mut app = app();
    receive(&mut app, local(2, "reply", [0.5, 1.2, -1.0], Some(1)));
    assert!(
        app.world().get::<ReplyLink>(entity_of(&app, 2).unwrap()).is_none(),
        "parent not here yet"
    );
    receive(&mut app, local(1, "parent", [0.0, 1.4, -1.0], None));
    let link = app
        .world()
        .get::<ReplyLink>(entity_of(&app, 2).unwrap())
        .expect("linked once the parent arrived");
    assert_eq!(link.0, entity_of(&app, 1).unwrap());
}

#[test]
fn the_pointer_ray_selects_the_note_it_points_at() {
    let mut app = app();
    receive(&mut app, local(1, "left", [-1.0, 1.5, -2.0], None));
    receive(&mut app, local(2, "right", [1.0, 1.5, -2.0], None));
    receive(&mut app, local(3, "behind right", [1.0, 1.5, -4.0], None));
    let eye = Vec3::new(0.0, 1.6, 2.0);
    point(&mut app, eye, Vec3::new(1.0, 1.5, -2.0));
    assert_eq!(
        app.world().resource::<Pointer>().hovered,
        entity_of(&app, 2),
        "the nearest along the ray"
    );
    point(&mut app, eye, Vec3::new(-1.0, 1.5, -2.0));
    assert_eq!(app.world().resource::<Pointer>().hovered, entity_of(&app, 1));
    press(&mut app);
    assert_eq!(app.world().resource::<Focused>().0, entity_of(&app, 1));
    let activated: Vec<Entity> = app
        .world_mut()
        .resource_mut::<Messages<NoteActivated>>()
        .drain()
        .map(|a| a.entity)
        .collect();
    assert_eq!(activated, vec![entity_of(&app, 1).unwrap()]);
    // Activation reads the note.
    assert!(!app.world().get::<Note>(entity_of(&app, 1).unwrap()).unwrap().unread);
    assert!(net_commands(&mut app).iter().any(|c| matches!(c, ClientCommand::MarkRead { .. })));
    // Pointing at the sky hovers nothing.
    point(&mut app, eye, Vec3::new(0.0, 10.0, -2.0));
    assert_eq!(app.world().resource::<Pointer>().hovered, None);
}

#[test]
fn place_mode_drops_the_note_where_the_ray_meets_the_floor_and_posts_the_text() {
    let mut app = app();
    app.world_mut().write_message(ComposeInput::StartPlacing);
    app.update();
    assert_eq!(*app.world().resource::<Compose>(), Compose::Placing);
    // From eye height, aiming down at the floor 3 m ahead.
    point(&mut app, Vec3::new(0.0, 1.6, 0.0), Vec3::new(0.0, 0.0, -3.0));
    let floor = app.world().resource::<Pointer>().floor.unwrap();
    assert!(floor.distance(Vec3::new(0.0, 0.0, -3.0)) < 1e-4, "{floor}");
    press(&mut app);
    app.update();
    let Compose::Writing { at, reply_to: None, .. } = app.world().resource::<Compose>().clone()
    else {
        panic!("not writing")
    };
    assert!(at.distance(Vec3::new(0.0, NOTE_HEIGHT, -3.0)) < 1e-4);
    for input in [
        ComposeInput::Type("hi there".into()),
        ComposeInput::Backspace,
        ComposeInput::Type("e".into()),
        ComposeInput::Submit,
    ] {
        app.world_mut().write_message(input);
    }
    app.update();
    let posted: Vec<_> = net_commands(&mut app)
        .into_iter()
        .filter_map(|c| match c {
            ClientCommand::Post { space, draft } => Some((space, draft)),
            _ => None,
        })
        .collect();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, SPACE);
    assert_eq!(posted[0].1.text, "hi there");
    assert_eq!(posted[0].1.pose.position, [0.0, NOTE_HEIGHT, -3.0]);
    assert_eq!(*app.world().resource::<Compose>(), Compose::Idle);
}

#[test]
fn reply_react_and_delete_act_on_the_focused_note() {
    let mut app = app();
    receive(&mut app, local(1, "parent", [0.0, 1.4, -1.0], None));
    app.world_mut().resource_mut::<Focused>().0 = entity_of(&app, 1);
    app.world_mut().resource_mut::<cairn::net::NetStatus>().handle = "alice".into();
    app.world_mut().write_message(ComposeInput::Reply);
    app.update();
    let Compose::Writing { at, reply_to, .. } = app.world().resource::<Compose>().clone() else {
        panic!()
    };
    assert_eq!(reply_to, Some(NoteId([1; 16])));
    assert!(at.distance(Vec3::new(0.0, 1.4, -1.0)) < 1.0, "a reply stands near its parent");
    app.world_mut().write_message(ComposeInput::Cancel);
    app.world_mut().write_message(ComposeInput::React(1));
    app.world_mut().write_message(ComposeInput::Delete);
    app.update();
    let cmds = net_commands(&mut app);
    assert!(cmds.iter().any(|c| matches!(c, ClientCommand::Post { draft, .. } if matches!(&draft.content, Content::Reaction(r) if r == "★") && draft.reply_to == Some(NoteId([1; 16])))));
    assert!(cmds.iter().any(
        |c| matches!(c, ClientCommand::Delete { note_id, .. } if *note_id == NoteId([1; 16]))
    ));
    // Someone else's note cannot be deleted from here.
    app.world_mut().resource_mut::<cairn::net::NetStatus>().handle = "bob".into();
    app.world_mut().write_message(ComposeInput::Delete);
    app.update();
    assert!(!net_commands(&mut app).iter().any(|c| matches!(c, ClientCommand::Delete { .. })));
}

#[test]
fn a_note_that_could_not_be_opened_is_shown_as_a_placeholder() {
    let mut app = app();
    let mut n = local(1, "", [0.0; 3], None);
    n.body = None;
    n.error = Some("no key for epoch 3 yet".into());
    receive(&mut app, n);
    let e = entity_of(&app, 1).unwrap();
    let note = app.world().get::<Note>(e).unwrap();
    assert!(note.body.is_none() && note.error.is_some());
}

#[test]
fn panel_text_lays_out_and_wraps() {
    let fonts = cairn::render::text::Fonts::load();
    let lines = cairn::render::text::wrap(
        &fonts.regular,
        30.0,
        "a few words that will certainly need more than one line at this width",
        300.0,
    );
    assert!(lines.len() > 2, "{lines:?}");
    let long = cairn::render::text::wrap(&fonts.regular, 30.0, &"x".repeat(200), 300.0);
    assert!(long.len() > 3, "an unbroken word is split");
    let raster = cairn::render::text::render_panel(
        &fonts,
        "alice · just now",
        "hello",
        &cairn::render::text::PanelStyle::NOTE,
    );
    assert_eq!(raster.rgba.len(), (raster.width * raster.height * 4) as usize);
    let ink = raster.rgba.chunks(4).filter(|p| p[0] < 100).count();
    assert!(ink > 50, "some text was drawn");
}

mod process {
    //! The real app, as a process, in a real window under Xvfb (Mesa's software Vulkan).

    use cairn_client::{Client, Content, Draft, VoiceClip};
    use cairn_proto::{Policy, Role};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};

    pub use crate::common::Xvfb;

    pub struct Seeded {
        pub rt: tokio::runtime::Runtime,
        pub server: Option<cairn_server::RunningServer>,
        pub dir: tempfile::TempDir,
        pub url: String,
        pub alice: Client,
        pub viewer_home: PathBuf,
    }

    impl Drop for Seeded {
        fn drop(&mut self) {
            if let Some(s) = self.server.take() {
                let _ = self.rt.block_on(s.shutdown());
            }
        }
    }

    pub fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A server with a space holding a text, a voice and an image note, and a profile for the
    /// app that is a member.
    pub fn seed() -> Seeded {
        let mut seeded = seed_empty();
        seeded.post(Draft::text("A text note, left for whoever comes next.", [-1.1, 1.5, -0.4]));
        let voice = VoiceClip {
            ogg_opus: super::ogg_opus(2000),
            waveform: (0..64).map(|i| (40 + (i * 37) % 200) as u8).collect(),
            duration_ms: 2000,
        };
        let at = |position| cairn_crypto::Pose { position, ..Default::default() };
        seeded.post(Draft {
            content: Content::Voice(voice),
            pose: at([0.0, 1.3, -0.4]),
            ..Draft::default()
        });
        seeded.post(Draft {
            content: Content::Image(png(400, 300, [220, 40, 200])),
            pose: at([1.1, 1.5, -0.4]),
            ..Draft::default()
        });
        let mut viewer = Client::open(&seeded.viewer_home, None).unwrap();
        seeded.rt.block_on(async {
            viewer.connect().await.unwrap();
            viewer.sync().await.unwrap();
        });
        seeded
    }

    /// A server with an empty space "Gallery" of alice's, and the viewer a member.
    pub fn seed_empty() -> Seeded {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = cairn_server::Config::for_data_dir(dir.path().join("server"));
        config.listen = "127.0.0.1:0".parse().unwrap();
        let server = rt.block_on(cairn_server::start(config)).unwrap();
        let url = server.ws_url();
        let viewer_home = dir.path().join("viewer");
        let alice = rt.block_on(async {
            Client::init(
                &viewer_home,
                &url,
                &cairn_proto::Handle::from_static("viewer"),
                None,
                None,
            )
            .await
            .unwrap();
            let mut alice = Client::init(
                &dir.path().join("alice"),
                &url,
                &cairn_proto::Handle::from_static("alice"),
                None,
                None,
            )
            .await
            .unwrap();
            let space = alice.create_space("Gallery", Policy::default()).await.unwrap();
            alice
                .invite(&space, &cairn_proto::Handle::from_static("viewer"), Role::Member)
                .await
                .unwrap();
            alice
        });
        Seeded { rt, server: Some(server), dir, url, alice, viewer_home }
    }

    impl Seeded {
        /// Alice posts into the Gallery.
        pub fn post(&mut self, draft: Draft) {
            let alice = &mut self.alice;
            self.rt.block_on(async {
                let space = alice.spaces().unwrap().first().expect("the Gallery").id;
                alice.post(&space, draft).await.unwrap();
            });
        }
    }

    pub fn run_app(x: &Xvfb, seeded: &Seeded, extra: &[&str]) -> Child {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args([
                "--home",
                seeded.viewer_home.to_str().unwrap(),
                "--server",
                &seeded.url,
                "--space",
                "Gallery",
            ])
            .args(extra)
            .env("DISPLAY", &x.display)
            .env("RUST_LOG", "warn,cairn=info")
            .env_remove("WAYLAND_DISPLAY")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the app starts")
    }

    pub fn report_lines(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

/// A real Ogg/Opus voice clip of `ms` milliseconds (a 220 Hz tone).
fn ogg_opus(ms: u32) -> Vec<u8> {
    let pcm: Vec<f32> = (0..ms as usize * 48)
        .map(|i| (i as f32 / 48_000.0 * 220.0 * std::f32::consts::TAU).sin() * 0.3)
        .collect();
    cairn_voice::encode_pcm(&pcm).unwrap().ogg_opus
}

#[test]
fn the_app_renders_seeded_notes_in_a_real_window() {
    let x = process::Xvfb::start();
    let seeded = process::seed();
    let out = seeded.dir.path().join("shot.png");
    let report = seeded.dir.path().join("report.jsonl");
    let mut child = process::run_app(
        &x,
        &seeded,
        &["--screenshot", out.to_str().unwrap(), "--report", report.to_str().unwrap()],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the app did not finish its screenshot in time"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "the app exited with {status}");
    let shown =
        process::report_lines(&report).iter().filter(|l| l["event"] == "note_shown").count();
    assert_eq!(shown, 3, "the report lists the three seeded notes");
    // No OpenXR runtime here: the desktop fallback, saying so and why.
    let modes: Vec<serde_json::Value> =
        process::report_lines(&report).into_iter().filter(|l| l["event"] == "mode").collect();
    assert_eq!(modes.len(), 1, "{modes:?}");
    assert_eq!(modes[0]["xr"], false);
    let notice = modes[0]["notice"].as_str().unwrap();
    assert!(notice.starts_with("Desktop mode: ") && notice.contains("OpenXR"), "{notice}");

    // Keep a copy for people to look at (and for a failing run to be understood).
    let _ = std::fs::create_dir_all(concat!(env!("CARGO_TARGET_TMPDIR"), "/screens"));
    let _ = std::fs::copy(&out, concat!(env!("CARGO_TARGET_TMPDIR"), "/screens/seeded.png"));
    let img = image::open(&out).expect("a PNG was saved").to_rgb8();
    assert!(img.width() >= 1000 && img.height() >= 600);
    let px: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    // Not blank: many distinct colours.
    let mut distinct: Vec<[u8; 3]> =
        px.iter().map(|p| [p[0] & 0xf0, p[1] & 0xf0, p[2] & 0xf0]).collect();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() > 40, "the picture looks blank ({} colours)", distinct.len());
    let count = |f: &dyn Fn(&[u8; 3]) -> bool| px.iter().filter(|p| f(p)).count();
    // The image note carries the seeded image's dominant colour.
    let magenta = count(&|p| p[0] > 170 && p[1] < 90 && p[2] > 150);
    assert!(magenta > 800, "the seeded image's colour is missing ({magenta} px)");
    // The text panel's paper differs from sky and floor.
    let paper = count(&|p| p[0] > 232 && p[1] > 228 && p[2] > 215);
    assert!(paper > 3000, "no text panel ({paper} px)");
    // The voice orb's teal.
    let teal = count(&|p| {
        i32::from(p[1]) > i32::from(p[0]) + 40 && i32::from(p[2]) > i32::from(p[0]) + 40
    });
    assert!(teal > 300, "no voice orb ({teal} px)");
}

#[test]
fn a_note_posted_with_cairn_cli_appears_in_the_running_app_within_a_second() {
    let cli = cairn_cli_path();
    let x = process::Xvfb::start();
    let mut seeded = process::seed();
    let report = seeded.dir.path().join("report.jsonl");
    let mut child = process::run_app(&x, &seeded, &["--report", report.to_str().unwrap()]);
    let wait_for = |pred: &dyn Fn(&[serde_json::Value]) -> bool, secs: u64| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if pred(&process::report_lines(&report)) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    };
    assert!(
        wait_for(
            &|l| l.iter().filter(|v| v["event"] == "note_shown").count() >= 3
                && l.iter().any(|v| v["state"] == "Online"),
            180
        ),
        "the app did not show the seeded notes"
    );
    // Alice posts from a terminal.
    seeded.alice.disconnect();
    let alice_home = seeded.dir.path().join("alice");
    let out = std::process::Command::new(&cli)
        .args([
            "--home",
            alice_home.to_str().unwrap(),
            "--json",
            "note",
            "post",
            "Gallery",
            "--text",
            "posted from a terminal",
            "--at",
            "0,1.9,-0.2",
        ])
        .output()
        .unwrap();
    let acked = cairn_proto::now_ms();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        wait_for(&|l| l.iter().any(|v| v["id"] == id.as_str()), 10),
        "the app never showed the note"
    );
    let shown =
        process::report_lines(&report).iter().find(|v| v["id"] == id.as_str()).unwrap()["t_ms"]
            .as_u64()
            .unwrap();
    let latency = shown.saturating_sub(acked);
    eprintln!("cairn-cli post acknowledged -> shown by the app: {latency} ms");
    assert!(latency < 1000, "took {latency} ms");
    let _ = child.kill();
    let _ = child.wait();
}

/// `cairn-cli`, built by the workspace's tests (or built here if it is missing).
fn cairn_cli_path() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let cli = target.join("cairn-cli");
    if !cli.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .args(["build", "-p", "cairn-client", "--bin", "cairn-cli"])
            .status()
            .unwrap();
        assert!(status.success(), "building cairn-cli");
    }
    assert!(cli.exists(), "cairn-cli not found at {}", cli.display());
    cli
}

#[test]
fn clicking_across_a_voice_orb_seeks_from_start_to_end() {
    use cairn::audio::face_fraction;
    let center = Vec3::new(0.0, 1.3, -2.0);
    let right = Vec3::X;
    // Facing the viewer at +Z: the left edge is the start, the middle is half way, the
    // right edge is the end, as the orb's shader draws the waveform.
    assert!(face_fraction(center - Vec3::X * 0.18, center, right) < 0.01);
    assert!((face_fraction(center + Vec3::Z * 0.18, center, right) - 0.5).abs() < 1e-5);
    assert!(face_fraction(center + Vec3::X * 0.18, center, right) > 0.99);
    let quarter = face_fraction(center + Vec3::new(-0.707, 0.0, 0.707) * 0.18, center, right);
    assert!((quarter - 0.25).abs() < 0.01, "{quarter}");
}

#[test]
fn the_welcome_voice_note_is_a_valid_voice_clip() {
    let clip = cairn::audio::welcome_voice().expect("encodes");
    assert!(clip.duration_ms > 1500 && clip.duration_ms < 3000);
    let pcm = cairn_voice::decode_ogg_opus(&clip.ogg_opus).unwrap();
    assert!(pcm.iter().any(|s| s.abs() > 0.1), "audible");
    assert_eq!(clip.waveform.len(), 64);
}

#[test]
fn xr_demanded_without_a_runtime_exits_with_the_reason_and_flat_is_accepted() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--home", home.path().to_str().unwrap(), "--xr"])
        .env_remove("XR_RUNTIME_JSON")
        .env("DISPLAY", ":none")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--xr:") && err.contains("OpenXR"), "{err}");
    // Nothing was created for a run that never started.
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
    let both = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--flat", "--xr"])
        .output()
        .unwrap();
    assert!(!both.status.success(), "--flat and --xr contradict each other");
}

#[test]
fn the_desktop_mode_without_a_display_says_so_instead_of_panicking() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--home", home.path().to_str().unwrap(), "--flat"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no display to open a window on"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Nothing was created for a run that never started.
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
}

#[test]
fn near_notes_are_turned_every_frame_and_far_ones_where_the_far_field_draws_them() {
    use cairn::notes::{Near, Viewer};
    let mut app = app_with_visuals();
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.0, 1.6, 0.0);
    receive(&mut app, local(1, "near", [0.0, 1.5, -3.0], None));
    // 13 m: just beyond the detail distance.
    receive(&mut app, local(2, "far", [0.0, 1.5, -13.0], None));
    let (near, far) = (entity_of(&app, 1).unwrap(), entity_of(&app, 2).unwrap());
    app.update();
    assert!(app.world().get::<Near>(near).is_some());
    assert!(app.world().get::<Near>(far).is_none(), "13 m is beyond the detail distance");
    let rotation = |app: &App, e| app.world().get::<Transform>(e).unwrap().rotation;
    let faces = |rotation: Quat, from: Vec3, to: Vec3| {
        let mut want = to - from;
        want.y = 0.0;
        (rotation * Vec3::Z).angle_between(want) < 0.02
    };
    let near_before = rotation(&app, near);
    // A far note has no transform of its own to turn (nor to propagate each frame).
    assert!(app.world().get::<Transform>(far).is_none());
    assert!(app.world().get::<GlobalTransform>(far).is_none());
    // A step of 24 cm turns the near panel.
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.24, 1.6, 0.0);
    app.update();
    assert_ne!(rotation(&app, near), near_before);
    assert!(faces(rotation(&app, near), Vec3::new(0.0, 1.5, -3.0), Vec3::new(0.24, 1.6, 0.0)));
    // The far field draws the far note facing the viewer, turned afresh on the distance pass
    // past 25 cm.
    let viewer = Vec3::new(1.5, 1.6, 0.0);
    app.world_mut().resource_mut::<Viewer>().0 = viewer;
    app.update();
    assert!(app.world().get::<Transform>(far).is_none());
    let (points, _, _) = far_field(&mut app);
    assert_eq!(points.len(), 8, "the far note's plate and card");
    // The card (the second quad): its face points at the viewer.
    let [a, b, _, d] = [points[4], points[5], points[6], points[7]];
    let normal = (b - a).cross(d - a);
    let card = Quat::from_rotation_arc(Vec3::Z, normal.normalize());
    assert!(faces(card, Vec3::new(0.0, 1.5, -13.0), viewer), "card normal {normal}");
    // Walking up to it makes it near, turned toward the viewer the same frame.
    let viewer = Vec3::new(0.0, 1.6, -20.0);
    app.world_mut().resource_mut::<Viewer>().0 = viewer;
    app.update();
    assert!(app.world().get::<Near>(far).is_some());
    assert!(faces(rotation(&app, far), Vec3::new(0.0, 1.5, -13.0), viewer));
    let t = app.world().get::<Transform>(far).unwrap();
    assert_eq!(t.translation, Vec3::new(0.0, 1.5, -13.0), "it stands at its place");
    // Its parts hang from it where it stands.
    app.update();
    let global = app.world().get::<GlobalTransform>(far).unwrap();
    assert!(global.translation().distance(Vec3::new(0.0, 1.5, -13.0)) < 1e-5);
    assert!(app.world().get::<Near>(near).is_none());
    // The note it left, gone far, has lost its transform and visibility with its detail.
    assert!(app.world().get::<Transform>(near).is_none());
    assert!(app.world().get::<Visibility>(near).is_none());
    let at = app.world().get::<cairn::notes::NoteAt>(near).unwrap().0;
    assert_eq!(at, Vec3::new(0.0, 1.5, -3.0));
}

#[test]
fn only_the_nearest_notes_up_to_the_detail_budget_are_shown_in_detail() {
    use cairn::notes::{DETAIL_BUDGET, DETAIL_HYSTERESIS, Near, NoteAt, Viewer};
    let mut app = app();
    let mut viewer = Vec3::new(0.0, 1.6, 0.0);
    app.world_mut().resource_mut::<Viewer>().0 = viewer;
    // A crowd of 400 notes within 10 m, arriving in one frame, the nearest last.
    let id = |i: u16| {
        let mut id = [7u8; 16];
        id[..2].copy_from_slice(&i.to_le_bytes());
        NoteId(id)
    };
    for i in 0..400u16 {
        let (r, a) = (10.0 - f32::from(i) * 0.02, f32::from(i) * 2.4);
        let pose = Pose { position: [r * a.cos(), 1.6, r * a.sin()], ..Pose::default() };
        let mut n = common::local_note(0, NoteBody::text("alice", "crowd", pose), false);
        n.note_id = id(i);
        app.world_mut().write_message(NoteUpdated(n));
    }
    app.update();
    // (distance, detailed) of every note.
    let notes = |app: &mut App, viewer: Vec3| -> Vec<(f32, bool)> {
        let mut q = app.world_mut().query_filtered::<(&NoteAt, Has<Near>), With<Note>>();
        q.iter(app.world()).map(|(at, near)| (at.0.distance(viewer), near)).collect()
    };
    let check = |notes: &[(f32, bool)], slack: f32| {
        let near: Vec<f32> = notes.iter().filter(|n| n.1).map(|n| n.0).collect();
        assert_eq!(near.len(), DETAIL_BUDGET, "the budget, in a crowd");
        // The nearest: no note left out is nearer than a detailed one (give or take the
        // hysteresis a detailed note keeps).
        let farthest_near = near.iter().copied().fold(0.0, f32::max);
        let nearest_out = notes.iter().filter(|n| !n.1).map(|n| n.0).fold(f32::INFINITY, f32::min);
        assert!(nearest_out + slack >= farthest_near, "{nearest_out} left out, {farthest_near} in");
    };
    assert_eq!(notes(&mut app, viewer).len(), 400);
    check(&notes(&mut app, viewer), 0.0);
    // Walking 3 m into the crowd changes who is in detail, still within the budget.
    viewer = Vec3::new(3.0, 1.6, 0.0);
    app.world_mut().resource_mut::<Viewer>().0 = viewer;
    app.update();
    check(&notes(&mut app, viewer), DETAIL_HYSTERESIS);
    // The farthest note (13 m away), clicked, is shown in detail, within the budget; the
    // focus taken off it, it goes back.
    let (left_out, d) = app
        .world_mut()
        .query_filtered::<(Entity, &NoteAt), With<Note>>()
        .iter(app.world())
        .map(|(e, at)| (e, at.0.distance(viewer)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    assert!(d > 12.5, "{d}");
    app.world_mut().resource_mut::<Focused>().0 = Some(left_out);
    app.update();
    assert!(app.world().get::<Near>(left_out).is_some(), "the focused note is detailed");
    let detailed = notes(&mut app, viewer).iter().filter(|n| n.1).count();
    assert_eq!(detailed, DETAIL_BUDGET, "the focused note takes a place in the budget");
    app.world_mut().resource_mut::<Focused>().0 = None;
    app.update();
    assert!(app.world().get::<Near>(left_out).is_none());
    // Thinned to its outer 150 notes (4 to 13 m away), every one within the detail distance
    // is detailed at once.
    for i in 150..400u16 {
        app.world_mut().write_message(NoteRemoved { space: SPACE, note_id: id(i) });
    }
    app.update();
    let left = notes(&mut app, viewer);
    assert_eq!(left.len(), 150);
    assert!(left.iter().all(|(d, near)| *near == (*d < 12.0)), "{left:?}");
}

#[test]
fn a_ray_ends_at_the_floor_so_a_note_beneath_it_cannot_be_pointed_at() {
    let mut app = app();
    receive(&mut app, local(1, "beneath the floor", [0.0, -0.5, -4.0], None));
    receive(&mut app, local(2, "on a low shelf", [2.0, 0.5, -4.0], None));
    let eye = Vec3::new(0.0, 1.6, 0.0);
    // Aimed at the sunken note: the ray meets the floor first (about 3 m out).
    point(&mut app, eye, Vec3::new(0.0, -0.5, -4.0));
    let p = app.world().resource::<Pointer>();
    assert_eq!(p.hovered, None);
    assert!(p.floor.is_some_and(|f| f.z > -3.2 && f.z < -2.9), "{:?}", p.floor);
    // The one above the floor is hit.
    point(&mut app, eye, Vec3::new(2.0, 0.5, -4.0));
    assert_eq!(app.world().resource::<Pointer>().hovered, entity_of(&app, 2));
}

/// The app with its note visuals built on the CPU (no GPU), as the frame benchmark runs it.
fn app_with_visuals() -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, AssetPlugin::default(), CairnLogicPlugin));
    app.add_plugins(cairn::render::without_gpu);
    app.insert_resource(CurrentSpace(Some(SPACE)));
    app.update();
    app
}

/// The far field's mesh once it is rebuilt (on a worker thread): its vertices and their
/// colours.
fn far_field(app: &mut App) -> (Vec<Vec3>, Vec<[f32; 4]>, Visibility) {
    use bevy::mesh::VertexAttributeValues;
    use cairn::render::far::{FarField, FarFieldMesh};
    for _ in 0..500 {
        if app.world().resource::<FarField>().settled() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
        app.update();
    }
    assert!(app.world().resource::<FarField>().settled(), "the far field was never rebuilt");
    let mut q = app.world_mut().query_filtered::<(&Mesh3d, &Visibility), With<FarFieldMesh>>();
    let (mesh, vis) = q.single(app.world()).unwrap();
    let mesh = app.world().resource::<Assets<Mesh>>().get(&mesh.0).unwrap();
    let Some(VertexAttributeValues::Float32x3(p)) = mesh.attribute(Mesh::ATTRIBUTE_POSITION) else {
        panic!("positions")
    };
    let Some(VertexAttributeValues::Float32x4(c)) = mesh.attribute(Mesh::ATTRIBUTE_COLOR) else {
        panic!("colours")
    };
    (p.iter().map(|v| Vec3::from_array(*v)).collect(), c.clone(), *vis)
}

#[test]
fn far_notes_are_drawn_together_and_get_parts_of_their_own_when_near() {
    use cairn::notes::Viewer;
    use cairn::render::NoteVisual;
    use cairn::render::far::FarField;
    let mut app = app_with_visuals();
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.0, 1.6, 0.0);
    receive(&mut app, local(1, "near", [0.0, 1.5, -3.0], None));
    receive(&mut app, local(2, "far", [5.0, 1.5, -20.0], None));
    receive(&mut app, local(3, "beyond the fade", [0.0, 1.5, -45.0], None));
    let (near, far) = (entity_of(&app, 1).unwrap(), entity_of(&app, 2).unwrap());
    let parts = |app: &App, e: Entity| {
        let v = app.world().get::<NoteVisual>(e).unwrap();
        let children = app.world().get::<Children>(e).map_or(0, |c| c.len());
        (v.card.is_some() && v.plate.is_some(), children)
    };
    assert_eq!(parts(&app, near), (true, 3), "card, plate and panel");
    assert_eq!(parts(&app, far), (false, 0), "a far note has no entities of its own");
    // The far field draws the one far note that has not faded out: plate and card, where it
    // stands, in the unread colour.
    let (points, colours, vis) = far_field(&mut app);
    assert_eq!(app.world().resource::<FarField>().notes, 1);
    assert_eq!(points.len(), 8);
    assert_ne!(vis, Visibility::Hidden);
    assert!(points.iter().all(|p| p.distance(Vec3::new(5.0, 1.5, -20.0)) < 0.45), "{points:?}");
    let unread = Color::srgba(1.0, 0.7, 0.25, 0.9).to_linear();
    assert!(
        (colours[0][0] - unread.red).abs() < 1e-6 && (colours[0][1] - unread.green).abs() < 1e-6
    );
    // Hovered from afar, it shows the hover colour.
    point(&mut app, Vec3::new(0.0, 1.5, 0.0), Vec3::new(5.0, 1.5, -20.0));
    app.update();
    assert_eq!(app.world().resource::<Pointer>().hovered, Some(far));
    let (_, colours, _) = far_field(&mut app);
    assert_eq!(&colours[0][..3], &[1.0, 1.0, 1.0], "the hover colour");
    // Walking up to the far note gives it parts; the note left 14 m behind gives up its own and
    // joins the far field, as does the one beyond the fade, now 28 m away.
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.0, 1.6, -17.0);
    for _ in 0..4 {
        app.update();
    }
    assert_eq!(parts(&app, far), (true, 3));
    assert_eq!(parts(&app, near), (false, 0));
    let (points, _, _) = far_field(&mut app);
    assert_eq!(app.world().resource::<FarField>().notes, 2);
    assert_eq!(points.len(), 16);
    // Drawn farthest first (the 45 m note's plate leads), so blended cards overlap right.
    assert!(points[0].z < -40.0, "{}", points[0]);
    // A note taken down leaves the field; with none left far, the field is hidden.
    for id in [1u8, 3] {
        app.world_mut().write_message(NoteRemoved { space: SPACE, note_id: NoteId([id; 16]) });
    }
    app.update();
    app.update();
    assert_eq!(far_field(&mut app).2, Visibility::Hidden);
    assert_eq!(app.world().resource::<FarField>().notes, 0);
}

/// Updates until every note near the viewer has its detail and every panel is drawn.
fn settle_details(app: &mut App) {
    use cairn::render::RenderProgress;
    app.world_mut().init_resource::<cairn::render::TrackProgress>();
    for _ in 0..1000 {
        app.update();
        if app.world().resource::<RenderProgress>().waiting_detail == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    panic!("details never settled: {:?}", app.world().resource::<RenderProgress>());
}

/// How many of a note's parts show a texture that is drawn (a panel whose pixels are ready).
fn drawn_panels(app: &App, note: Entity) -> usize {
    let materials = app.world().resource::<Assets<StandardMaterial>>();
    let images = app.world().resource::<Assets<Image>>();
    let children = app.world().get::<Children>(note).map_or(&[][..], |c| &c[..]);
    children
        .iter()
        .filter_map(|&c| app.world().get::<MeshMaterial3d<StandardMaterial>>(c))
        .filter_map(|m| materials.get(&m.0)?.base_color_texture.as_ref())
        .filter(|t| images.get(*t).is_some())
        .count()
}

#[test]
fn a_text_panel_is_laid_out_off_the_frame_and_its_note_takes_its_size() {
    use cairn::notes::NoteBounds;
    use cairn::render::{NoteVisual, PANEL_WIDTH};
    let mut app = app_with_visuals();
    let long = "A long note that wraps over many lines. ".repeat(12);
    receive(&mut app, local(1, "short", [0.0, 1.5, -2.0], None));
    receive(&mut app, local(2, &long, [1.0, 1.5, -2.0], None));
    settle_details(&mut app);
    // (panel's scale, card's scale, plate's scale, the note's pointing half-extents)
    let sizes = |app: &App, e: Entity| {
        let v = app.world().get::<NoteVisual>(e).unwrap();
        let scale =
            |part: Option<Entity>| app.world().get::<Transform>(part.unwrap()).unwrap().scale;
        (
            scale(v.detail),
            scale(v.card),
            scale(v.plate),
            app.world().get::<NoteBounds>(e).unwrap().0,
        )
    };
    let (short, long_note) = (entity_of(&app, 1).unwrap(), entity_of(&app, 2).unwrap());
    let (panel, card, plate, bounds) = sizes(&app, short);
    assert_eq!(panel.x, PANEL_WIDTH);
    assert!(panel.y > 0.05 && panel.y < 0.3, "one line and a header: {panel}");
    assert_eq!(card.truncate(), panel.truncate(), "the card takes the panel's size");
    assert!((plate.y - panel.y - 0.04).abs() < 1e-5, "the plate rims it");
    assert!((bounds.y - (panel.y / 2.0 + 0.02)).abs() < 1e-5, "pointing follows the panel");
    let (long_panel, long_card, _, long_bounds) = sizes(&app, long_note);
    assert!(long_panel.y > 2.5 * panel.y, "seven lines: {long_panel} against {panel}");
    assert_eq!(long_card.y, long_panel.y);
    assert!(long_bounds.y > bounds.y);

    // Expanded, the long note's panel is laid out again; until the new one is drawn the old
    // one stays (the note never shows no text), and then only the new one does.
    app.world_mut()
        .write_message(NoteActivated { entity: long_note, source: PointerSource::Mouse });
    let mut frames = 0;
    loop {
        app.update();
        frames += 1;
        let children = app.world().get::<Children>(long_note).map_or(0, |c| c.len());
        assert!(drawn_panels(&app, long_note) >= 1, "no frame shows the note without its text");
        let done = app.world().resource::<cairn::render::RenderProgress>().waiting_detail == 0;
        if done && children == 3 {
            break;
        }
        assert!(frames < 1000, "the expanded panel was never drawn");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let (expanded, expanded_card, _, _) = sizes(&app, long_note);
    assert!(
        expanded.y > 1.4 * long_panel.y,
        "all twelve sentences: {expanded} against {long_panel}"
    );
    assert_eq!(expanded_card.y, expanded.y);
}

/// A PNG of one colour.
fn png(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(w, h, image::Rgb(rgb));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A picture note (an 8 × 6 red thumbnail, its full image behind media hash `[id; 32]`).
fn picture_note(id: u8, position: [f32; 3]) -> LocalNote {
    use cairn_crypto::MediaRef;
    use cairn_proto::{MediaHash, NoteKind};
    let mut body = NoteBody::text("alice", "a cairn at dusk", Pose { position, ..Pose::default() });
    body.kind = NoteKind::Image;
    body.thumbnail = png(8, 6, [200, 30, 30]);
    body.media = vec![MediaRef {
        hash: MediaHash([id; 32]),
        key: cairn_crypto::MediaKey::generate(),
        size: 100,
        mime: "image/png".into(),
    }];
    common::local_note(id, body, false)
}

/// The media hashes the app asked the client for.
fn fetched(app: &mut App) -> Vec<u8> {
    net_commands(app)
        .iter()
        .filter_map(|c| match c {
            ClientCommand::FetchMedia { media } => Some(media.hash.0[0]),
            _ => None,
        })
        .collect()
}

#[test]
fn a_picture_within_three_metres_shows_its_full_image_unasked() {
    use cairn::notes::Viewer;
    let mut app = app_with_visuals();
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.0, 1.6, 0.0);
    receive(&mut app, picture_note(1, [0.0, 1.5, -2.0]));
    receive(&mut app, picture_note(2, [0.0, 1.5, -8.0]));
    settle_details(&mut app);
    app.update();
    assert_eq!(fetched(&mut app), vec![1], "only the picture 2 m away");
    app.update();
    assert!(fetched(&mut app).is_empty(), "asked once");
    // Walking up to the other one fetches it too.
    app.world_mut().resource_mut::<Viewer>().0 = Vec3::new(0.0, 1.6, -6.0);
    app.update();
    app.update();
    assert_eq!(fetched(&mut app), vec![2]);
}

#[test]
fn a_focused_picture_is_fetched_decoded_off_the_frame_and_replaces_its_thumbnail() {
    use cairn::net::MediaReady;
    use cairn::render::NoteVisual;
    use cairn_proto::MediaHash;
    let dir = tempfile::tempdir().unwrap();
    let mut app = app_with_visuals();
    receive(&mut app, picture_note(1, [0.0, 1.5, -2.0]));
    receive(&mut app, picture_note(2, [1.0, 1.5, -2.0]));
    settle_details(&mut app);
    let texture_width = |app: &App, e: Entity| {
        let v = app.world().get::<NoteVisual>(e).unwrap();
        let m = app.world().resource::<Assets<StandardMaterial>>();
        let m = m.get(v.detail_material.as_ref().unwrap()).unwrap();
        let images = app.world().resource::<Assets<Image>>();
        images.get(m.base_color_texture.as_ref().unwrap()).unwrap().width()
    };
    let (good, broken) = (entity_of(&app, 1).unwrap(), entity_of(&app, 2).unwrap());
    assert_eq!(texture_width(&app, good), 8, "the thumbnail first");
    // The caption stands under the picture at a panel's width (the picture's part is scaled
    // to the picture, and the caption hangs from it).
    let picture = app.world().get::<NoteVisual>(good).unwrap().detail.unwrap();
    let caption = app.world().get::<Children>(picture).expect("a caption")[0];
    let world = |e: Entity| app.world().get::<GlobalTransform>(e).unwrap().compute_transform();
    let (p, c) = (world(picture), world(caption));
    assert!((p.scale.y / p.scale.x - 0.75).abs() < 1e-4, "the thumbnail's shape: {p:?}");
    assert!((c.scale.x - cairn::render::PANEL_WIDTH).abs() < 1e-4, "{c:?}");
    assert!(
        c.translation.y + c.scale.y / 2.0 < p.translation.y - p.scale.y / 2.0,
        "{c:?} under {p:?}"
    );
    assert!(
        c.translation.y - c.scale.y / 2.0 > p.translation.y - p.scale.y / 2.0 - 0.5,
        "just under"
    );

    // Focused, each asks for its full picture; one arrives whole, the other's file is not
    // a picture.
    let full = dir.path().join("full");
    std::fs::write(&full, png(64, 48, [30, 200, 30])).unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a picture at all").unwrap();
    for (e, id, path) in [(good, 1u8, full), (broken, 2, junk)] {
        net_commands(&mut app);
        app.world_mut().resource_mut::<Focused>().0 = Some(e);
        app.update();
        let asked = net_commands(&mut app);
        assert!(
            asked.iter().any(|c| matches!(c, ClientCommand::FetchMedia { media } if media.hash == MediaHash([id; 32]))),
            "{asked:?}"
        );
        app.world_mut().write_message(MediaReady { hash: MediaHash([id; 32]), path });
    }
    for _ in 0..1000 {
        app.update();
        if texture_width(&app, good) == 64 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(texture_width(&app, good), 64, "the full picture replaced the thumbnail");
    for _ in 0..50 {
        app.update();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(texture_width(&app, broken), 8, "a broken full picture leaves the thumbnail");
}

#[test]
fn going_to_another_space_clears_the_scene_and_asks_the_client_for_its_notes() {
    let mut app = app();
    receive(&mut app, local(1, "here", [0.0, 1.5, -2.0], None));
    assert!(entity_of(&app, 1).is_some());
    net_commands(&mut app);
    let garden = SpaceId([9; 16]);
    app.world_mut().resource_mut::<CurrentSpace>().0 = Some(garden);
    app.update();
    assert!(entity_of(&app, 1).is_none(), "the other space's notes are gone");
    assert_eq!(app.world_mut().query::<&Note>().iter(app.world()).count(), 0);
    let asked = net_commands(&mut app);
    assert!(
        asked.iter().any(|c| matches!(c, ClientCommand::OpenSpace { space } if *space == garden)),
        "{asked:?}"
    );
    // The client sends the garden's notes; one of the space left behind is not shown.
    let mut there = local(2, "there", [1.0, 1.5, -2.0], None);
    there.space = garden;
    receive(&mut app, there);
    receive(&mut app, local(3, "left behind", [0.0, 1.5, -3.0], None));
    assert!(entity_of(&app, 2).is_some());
    assert!(entity_of(&app, 3).is_none());
}

#[test]
fn the_panel_says_who_is_in_the_space() {
    use cairn_proto::Role;
    let space = cairn_client::SpaceView {
        id: SPACE,
        name: "Garden".into(),
        role: Some(Role::Owner),
        members: vec![
            (cairn_proto::Handle::from_static("alice"), Role::Owner),
            (cairn_proto::Handle::from_static("bob"), Role::Member),
            (cairn_proto::Handle::from_static("carol"), Role::Reader),
        ],
        epoch: 1,
    };
    assert_eq!(cairn::ui::members_line(&space), "Members: alice (owner) · bob · carol (reader)");
}

#[test]
fn a_picture_is_decoded_off_the_frame_and_a_broken_one_shows_as_a_grey_card() {
    use cairn::render::NoteVisual;
    let mut app = app_with_visuals();
    let mut unreadable = picture_note(2, [1.0, 1.5, -2.0]);
    unreadable.body.as_mut().unwrap().thumbnail = b"not a picture".to_vec();
    // Its header is whole, so its shape is known at once; its pixels are cut short.
    let mut cut = picture_note(3, [-1.0, 1.5, -2.0]);
    let png = png(40, 10, [0, 0, 255]);
    let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
    cut.body.as_mut().unwrap().thumbnail = png[..idat + 10].to_vec();
    receive(&mut app, picture_note(1, [0.0, 1.5, -2.0]));
    receive(&mut app, unreadable);
    receive(&mut app, cut);
    settle_details(&mut app);
    // (whether it shows a texture, its colour, the picture part's height over width)
    let shown = |app: &App, id: u8| {
        let e = entity_of(app, id).unwrap();
        let v = app.world().get::<NoteVisual>(e).unwrap();
        let m = app.world().resource::<Assets<StandardMaterial>>();
        let m = m.get(v.detail_material.as_ref().unwrap()).unwrap();
        let texture = m
            .base_color_texture
            .as_ref()
            .map(|t| app.world().resource::<Assets<Image>>().get(t).map(|i| i.width()));
        let scale = app.world().get::<Transform>(v.detail.unwrap()).unwrap().scale;
        (texture, m.base_color.to_srgba().red, scale.y / scale.x)
    };
    let (texture, _, aspect) = shown(&app, 1);
    assert_eq!(texture, Some(Some(8)), "decoded and shown");
    assert!((aspect - 0.75).abs() < 1e-4);
    let (texture, red, aspect) = shown(&app, 2);
    assert_eq!(texture, None, "nothing to decode");
    assert!(red < 0.5 && (aspect - 0.75).abs() < 1e-4, "a grey 4:3 card");
    let (texture, red, aspect) = shown(&app, 3);
    assert_eq!(texture, None, "the decoding failed on the worker");
    assert!(red < 0.5, "grey");
    assert!((aspect - 0.25).abs() < 1e-4, "the shape its header gives: {aspect}");
}

#[test]
fn the_panel_prompts_invite_someone_and_make_a_space() {
    use bevy::input::keyboard::Key;
    use cairn::ui::{Prompt, PromptKind, prompt_key};
    use cairn_proto::Role;
    let type_in = |prompt: &mut Prompt, keys: &[Key], space| {
        keys.iter()
            .filter_map(|k| prompt_key(prompt, k, space))
            .filter_map(|(c, _)| c)
            .collect::<Vec<_>>()
    };
    let ch = |s: &str| Key::Character(s.into());
    // An invite: a handle has no spaces; Enter sends it and closes the prompt.
    let mut p = Prompt(Some((PromptKind::Invite, String::new())));
    let sent = type_in(&mut p, &[ch("b"), ch("o"), Key::Space, ch("b"), Key::Enter], Some(SPACE));
    assert!(p.0.is_none());
    assert!(
        matches!(&sent[..], [ClientCommand::Invite { space, handle, role: Role::Member }] if *space == SPACE && handle == "bob"),
        "{sent:?}"
    );
    // A new space's name may have spaces; Backspace edits; surrounding blanks go.
    let mut p = Prompt(Some((PromptKind::NewSpace, String::new())));
    let keys = [
        ch("R"),
        ch("o"),
        ch("o"),
        ch("f"),
        Key::Space,
        ch("g"),
        ch("x"),
        Key::Backspace,
        Key::Space,
        Key::Enter,
    ];
    let sent = type_in(&mut p, &keys, Some(SPACE));
    assert!(
        matches!(&sent[..], [ClientCommand::CreateSpace { name, .. }] if name == "Roof g"),
        "{sent:?}"
    );
    // Esc, or Enter on nothing, sends nothing; nor does an invite with no space open.
    for (kind, keys, space) in [
        (PromptKind::NewSpace, vec![ch("x"), Key::Escape], Some(SPACE)),
        (PromptKind::NewSpace, vec![Key::Space, Key::Enter], Some(SPACE)),
        (PromptKind::Invite, vec![ch("x"), Key::Enter], None),
    ] {
        let mut p = Prompt(Some((kind, String::new())));
        assert!(type_in(&mut p, &keys, space).is_empty());
        assert!(p.0.is_none());
    }
    // With no prompt open, keys do nothing here.
    assert!(type_in(&mut Prompt::default(), &[ch("x"), Key::Enter], Some(SPACE)).is_empty());
    // What is being done is said as news, not in the red of a problem.
    let mut p = Prompt(Some((PromptKind::Invite, "bob".into())));
    let (_, notice) = prompt_key(&mut p, &Key::Enter, Some(SPACE)).expect("an invite");
    assert_eq!(notice, cairn::common::Notice::info("inviting bob…"));
    let problem = cairn::common::Notice::problem("only an owner of this space may invite");
    assert_ne!(cairn::ui::notice_color(&notice), cairn::ui::notice_color(&problem));
    // A handle that breaks the rules sends nothing: the problem is said, and the prompt
    // stays open with the text to correct.
    let mut p = Prompt(Some((PromptKind::Invite, "Bob".into())));
    let (sent, notice) = prompt_key(&mut p, &Key::Enter, Some(SPACE)).expect("a reason");
    assert!(sent.is_none(), "{sent:?}");
    assert!(notice.problem && notice.text.starts_with("a handle has 1 to 32"), "{notice:?}");
    assert_eq!(p.0, Some((PromptKind::Invite, "Bob".to_owned())));
}

// Places: two headsets in one room, each measuring from its own stage.

mod places {
    use super::*;
    use cairn::notes::NoteAt;
    use cairn::notes::anchors::PlaceFrames;
    use cairn::places::{AlignmentStore, PlaceAction, PlaceView, Places, area_origin};
    use cairn_client::place::frame_from_marks;
    use cairn_crypto::{PlaceMark, PlaceRecord};
    use cairn_proto::NoteKind;

    /// Bob's stage against Alice's: turned 0.7 rad about the vertical and 2.4 m away. Alice's
    /// stage stands for the room (physical points are given in it).
    fn in_bobs_stage(p: Vec3) -> Vec3 {
        Quat::from_rotation_y(0.7) * p + Vec3::new(1.3, 0.0, -2.1)
    }

    /// The counter's two ends and the door's corner, in the room.
    const MARKS: [Vec3; 3] =
        [Vec3::new(0.5, 0.9, -1.5), Vec3::new(2.3, 0.9, -1.2), Vec3::new(1.0, 2.0, -3.0)];
    const PLACE: u8 = 40;

    /// The kitchen as Alice's client makes it: the marks she touched, in the place's frame.
    fn kitchen() -> LocalNote {
        let (in_place, _) = frame_from_marks(&MARKS.map(|m| m.to_array())).unwrap();
        let names = ["counter left", "counter right", "door top"];
        let record = PlaceRecord {
            name: "Kitchen".into(),
            description: "the counter's two ends, then the door's top left corner".into(),
            marks: names
                .iter()
                .zip(in_place)
                .map(|(n, position)| PlaceMark { name: (*n).into(), position })
                .collect(),
        };
        let mut body = NoteBody::text("alice", "Kitchen", Pose::default());
        body.kind = NoteKind::Place;
        body.place_record = Some(record);
        common::local_note(PLACE, body, true)
    }

    fn bare_device(view: PlaceView, store: Option<std::path::PathBuf>) -> App {
        let mut app = super::app();
        app.insert_resource(view);
        if let Some(path) = store {
            app.insert_resource(AlignmentStore::load(path));
        }
        app.update();
        app
    }

    fn device(view: PlaceView, store: Option<std::path::PathBuf>) -> App {
        let mut app = bare_device(view, store);
        receive(&mut app, kitchen());
        app
    }

    fn align(app: &mut App, points: impl IntoIterator<Item = Vec3>) {
        align_with(app, NoteId([PLACE; 16]), points);
    }

    fn align_with(app: &mut App, place: NoteId, points: impl IntoIterator<Item = Vec3>) {
        app.world_mut().write_message(PlaceAction::Align(place));
        app.update();
        for p in points {
            app.world_mut().write_message(PlaceAction::Mark(p));
            app.update();
        }
        app.update();
    }

    /// Writes a note with the composer where the pointer meets the floor at `floor`, and
    /// returns the draft that goes to the client.
    fn write_at(app: &mut App, floor: Vec3) -> cairn_client::Draft {
        compose(app, floor, "the salt is here", ComposeInput::Submit);
        sent(app)
    }

    fn compose(app: &mut App, floor: Vec3, text: &str, end: ComposeInput) {
        app.world_mut().write_message(ComposeInput::StartPlacing);
        app.update();
        point(app, floor + Vec3::new(0.0, 1.6, 2.0), floor);
        press(app);
        app.update();
        for input in [ComposeInput::Type(text.into()), end] {
            app.world_mut().write_message(input);
        }
        app.update();
    }

    /// The one post the app sent.
    fn sent(app: &mut App) -> cairn_client::Draft {
        let mut posts: Vec<_> = net_commands(app)
            .into_iter()
            .filter_map(|c| match c {
                ClientCommand::Post { draft, .. } => Some(draft),
                _ => None,
            })
            .collect();
        assert_eq!(posts.len(), 1, "{posts:?}");
        posts.remove(0)
    }

    /// The note as another device receives it: the body Alice's client seals from the draft.
    fn received(id: u8, draft: &cairn_client::Draft) -> LocalNote {
        let mut body = NoteBody::text("alice", &draft.text, draft.pose);
        body.place = draft.place;
        common::local_note(id, body, false)
    }

    fn shown(app: &mut App, id: u8) -> (Vec3, bool) {
        let e = entity_of(app, id).expect("the note is in the scene");
        let at = app.world().get::<NoteAt>(e).unwrap().0;
        (at, app.world().get::<Note>(e).unwrap().approximate)
    }

    #[test]
    fn a_note_left_in_a_place_stands_at_the_same_physical_spot_for_a_headset_that_aligned() {
        let dir = tempfile::tempdir().unwrap();
        // Alice makes the kitchen in her headset: she starts a note, writes the place's name
        // and how to find its marks, presses Place, and touches the three points.
        let mut alice = bare_device(PlaceView::Room, Some(dir.path().join("alice.json")));
        compose(
            &mut alice,
            Vec3::new(1.0, 0.0, -2.0),
            "Kitchen: the counter's two ends, then the door's top left corner",
            ComposeInput::MakePlace,
        );
        assert_eq!(*alice.world().resource::<Compose>(), Compose::Idle);
        for m in MARKS {
            alice.world_mut().write_message(PlaceAction::Mark(m));
            alice.update();
        }
        let made = sent(&mut alice);
        let Content::Place { record, .. } = made.content.clone() else {
            panic!("a place's record: {made:?}")
        };
        assert_eq!(record.name, "Kitchen");
        assert_eq!(record.description, "the counter's two ends, then the door's top left corner");
        assert_eq!(record.marks.len(), 3);
        let place_id = made.note_id.expect("the place's id is chosen by the app");
        // The place as the client hands it back, to her and to Bob.
        let mut body = NoteBody::text("alice", "", Pose::default());
        body.kind = NoteKind::Place;
        body.place_record = Some(record);
        let mut place_note = common::local_note(PLACE, body, true);
        place_note.note_id = place_id;
        receive(&mut alice, place_note.clone());
        assert_eq!(alice.world().resource::<Places>().0.len(), 1);
        assert!(entity_of(&alice, PLACE).is_none(), "a place's record is not a note in the scene");
        let maker = alice.world().resource::<PlaceFrames>().0[&place_id];
        assert_eq!(maker.residual, 0.0, "the maker is aligned with her own marks at once");
        // She leaves a note by the counter: it goes out in the place's frame.
        let draft = write_at(&mut alice, Vec3::new(1.4, 0.0, -1.0));
        let spot = Vec3::new(1.4, cairn::compose::NOTE_HEIGHT, -1.0);
        let stage_pose = Vec3::from_array(draft.pose.position);
        assert!(
            stage_pose.distance(spot) < 1e-4,
            "the stage pose stays, as a fallback: {stage_pose}"
        );
        let in_place = draft.place.expect("a note left in the room goes into its place");
        assert_eq!(in_place.place, place_id);

        // Bob's headset, in the same kitchen, measures from its own stage. Before he aligns,
        // the note stands at Alice's stage numbers in his stage, marked approximate.
        let mut bob = bare_device(PlaceView::Room, Some(dir.path().join("bob.json")));
        receive(&mut bob, place_note.clone());
        receive(&mut bob, received(1, &draft));
        let (before, approximate) = shown(&mut bob, 1);
        assert!(approximate);
        assert!(before.distance(spot) < 1e-4, "{before}");
        assert!(before.distance(in_bobs_stage(spot)) > 1.0);

        // He marks the same three points, in his stage, each up to 5 mm off.
        let noise = [
            Vec3::new(0.004, -0.002, 0.003),
            Vec3::new(-0.003, 0.004, -0.002),
            Vec3::new(0.002, 0.001, -0.004),
        ];
        align_with(&mut bob, place_id, MARKS.iter().zip(noise).map(|(m, n)| in_bobs_stage(*m) + n));
        let (after, approximate) = shown(&mut bob, 1);
        assert!(!approximate, "aligned: the note stands where it was left");
        let off = after.distance(in_bobs_stage(spot));
        eprintln!("with 5 mm of noise on the marks, the note stands {off} m from its spot");
        assert!(off < 0.01, "the note is {off} m from where Alice left it");

        // The alignment is kept with Bob's profile: the next session finds the place again
        // without marking anything.
        let mut again = bare_device(PlaceView::Room, Some(dir.path().join("bob.json")));
        receive(&mut again, place_note);
        receive(&mut again, received(1, &draft));
        let (restarted, approximate) = shown(&mut again, 1);
        assert!(!approximate);
        assert!(restarted.distance(after) < 1e-4, "{restarted} against {after}");
    }

    #[test]
    fn an_alignment_held_by_a_local_anchor_finds_the_place_after_the_stage_moved() {
        use cairn::notes::anchors::{AnchorKey, KnownAnchors, WantedAnchors};
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("bob.json");
        let mut bob = device(PlaceView::Room, Some(store.clone()));
        let mut body = NoteBody::text("alice", "by the counter", Pose::default());
        body.place = Some(cairn_crypto::PlacePose {
            place: NoteId([PLACE; 16]),
            pose: Pose { position: [1.0, 1.3, -0.5], ..Pose::default() },
        });
        let note = common::local_note(1, body, false);
        receive(&mut bob, note.clone());
        // No anchor is known near the place's origin: one is asked for there.
        align(&mut bob, MARKS.map(in_bobs_stage));
        let (aligned, _) = shown(&mut bob, 1);
        let wanted = bob.world().resource::<WantedAnchors>().0.clone();
        assert_eq!(wanted.len(), 1, "{wanted:?}");
        let origin = Vec3::from_array(
            bob.world().resource::<PlaceFrames>().0[&NoteId([PLACE; 16])].translation,
        );
        assert!(wanted[0].distance(origin) < 1e-4);
        // The runtime makes it (turned a little, as runtimes do): the alignment is held by it.
        let key = AnchorKey { kind: "msft".into(), id: b"cairn-1".to_vec() };
        let anchor_at =
            Transform::from_translation(origin).with_rotation(Quat::from_rotation_y(0.3));
        bob.world_mut().resource_mut::<KnownAnchors>().0.insert(key.clone(), anchor_at);
        bob.update();
        let kept = AlignmentStore::load(store.clone());
        let saved = kept.get(common::SPACE, NoteId([PLACE; 16])).expect("kept").clone();
        assert!(saved.anchor.is_some(), "held by the anchor");

        // The next session's stage was recentred (turned 0.4 rad, moved 0.9 m): the runtime
        // finds the anchor where the room has it in the new stage, and the place with it.
        let moved = |p: Vec3| Quat::from_rotation_y(0.4) * p + Vec3::new(0.5, 0.0, 0.7);
        let mut again = bare_device(PlaceView::Room, Some(store.clone()));
        let anchor_now = Transform::from_translation(moved(anchor_at.translation))
            .with_rotation(Quat::from_rotation_y(0.4) * anchor_at.rotation);
        again.world_mut().resource_mut::<KnownAnchors>().0.insert(key, anchor_now);
        receive(&mut again, kitchen());
        receive(&mut again, note.clone());
        let (found, approximate) = shown(&mut again, 1);
        assert!(!approximate);
        let off = found.distance(moved(aligned));
        assert!(off < 1e-3, "the note is {off} m from its spot in the moved stage");

        // Without the anchor (not found yet), the alignment stands as it was made.
        let mut unanchored = bare_device(PlaceView::Room, Some(store));
        receive(&mut unanchored, kitchen());
        receive(&mut unanchored, note);
        assert!(shown(&mut unanchored, 1).0.distance(aligned) < 1e-4);
    }

    #[test]
    fn bad_marks_are_refused_with_the_reason_and_the_alignment_before_stays() {
        use cairn::common::Notice;
        let dir = tempfile::tempdir().unwrap();
        let mut bob = device(PlaceView::Room, Some(dir.path().join("bob.json")));
        let notices = |app: &mut App| -> Vec<String> {
            app.world_mut().resource_mut::<Messages<Notice>>().drain().map(|n| n.text).collect()
        };
        align(&mut bob, MARKS.map(in_bobs_stage));
        let kept = bob.world().resource::<PlaceFrames>().clone();
        assert!(notices(&mut bob).iter().any(|n| n.contains("aligned to within")));
        // The same point twice is said at once.
        align(&mut bob, [in_bobs_stage(MARKS[0]), in_bobs_stage(MARKS[0]) + Vec3::X * 0.01]);
        assert!(notices(&mut bob).iter().any(|n| n.contains("that is point 1 again")), "twice");
        // Points in the wrong order do not fit the place.
        bob.world_mut().write_message(PlaceAction::Cancel);
        align(&mut bob, [MARKS[1], MARKS[0], MARKS[2]].map(in_bobs_stage));
        let said = notices(&mut bob);
        assert!(said.iter().any(|n| n.contains("check the order")), "{said:?}");
        // Points all within a hand's width.
        bob.world_mut().write_message(PlaceAction::Cancel);
        align(&mut bob, [Vec3::ZERO, Vec3::X * 0.1, Vec3::Z * 0.1]);
        let said = notices(&mut bob);
        assert!(said.iter().any(|n| n.contains("too close together")), "{said:?}");
        assert_eq!(*bob.world().resource::<PlaceFrames>(), kept, "the alignment before stays");
    }

    #[test]
    fn a_note_written_before_aligning_is_re_expressed_in_the_place_once_aligned() {
        let mut bob = device(PlaceView::Room, None);
        let first = write_at(&mut bob, in_bobs_stage(Vec3::new(1.4, 0.0, -1.0)));
        assert!(first.place.is_none(), "not aligned: the note goes out at its stage pose");
        let first_id = first.note_id.expect("its id is chosen here, to be replaced later");
        align(&mut bob, MARKS.map(in_bobs_stage));
        let commands = net_commands(&mut bob);
        let again = commands.iter().find_map(|c| match c {
            ClientCommand::Post { draft, .. } => Some(draft.clone()),
            _ => None,
        });
        let again = again.expect("posted again in the place's frame");
        assert!(
            commands.iter().any(
                |c| matches!(c, ClientCommand::Delete { note_id, .. } if *note_id == first_id)
            )
        );
        assert_ne!(again.note_id, Some(first_id));
        assert_eq!(again.text, first.text);
        let in_place = again.place.unwrap();
        // In the place's frame the note is where Alice's frame puts that physical spot.
        let alignment = cairn_client::place::align(
            &match &kitchen().body.unwrap().place_record {
                Some(r) => r.marks.clone(),
                None => unreachable!(),
            },
            &MARKS.map(|m| m.to_array()),
        )
        .unwrap();
        let physical = Vec3::from_array(alignment.pose_to_stage(&in_place.pose).position);
        assert!(physical.distance(Vec3::new(1.4, cairn::compose::NOTE_HEIGHT, -1.0)) < 0.01);
    }

    #[test]
    fn on_the_desktop_each_place_is_an_area_of_its_own() {
        let mut desk = device(PlaceView::Areas, None);
        let mut body = NoteBody::text("alice", "by the counter", Pose::default());
        body.place = Some(cairn_crypto::PlacePose {
            place: NoteId([PLACE; 16]),
            pose: Pose { position: [1.0, 1.3, -0.5], ..Pose::default() },
        });
        receive(&mut desk, common::local_note(1, body, false));
        let (at, approximate) = shown(&mut desk, 1);
        assert!(!approximate);
        assert!(at.distance(area_origin(0) + Vec3::new(1.0, 1.3, -0.5)) < 1e-4, "{at}");
        // Going to the place brings it on; a note written in its area goes into it.
        desk.world_mut().write_message(PlaceAction::GoTo(Some(NoteId([PLACE; 16]))));
        desk.update();
        assert_eq!(
            desk.world().resource::<cairn::places::CurrentPlace>().0,
            Some(NoteId([PLACE; 16]))
        );
        let draft = write_at(&mut desk, area_origin(0) + Vec3::new(-2.0, 0.0, 1.0));
        let in_place = draft.place.expect("written in the kitchen's area");
        assert!(
            Vec3::from_array(in_place.pose.position).distance(Vec3::new(
                -2.0,
                cairn::compose::NOTE_HEIGHT,
                1.0
            )) < 1e-4
        );
        // A note written away from every area has no place.
        assert!(write_at(&mut desk, Vec3::new(0.0, 0.0, -3.0)).place.is_none());
    }
}

/// The app links the server as one embedded node: built without PostgreSQL and NATS, and it
/// says so rather than starting half a server when asked for either.
///
/// The build is checked in the graph cargo resolves for the app alone (what `./dev run`
/// builds): this test binary is built with the whole workspace, where the server binary's
/// features are unified in. The refusal is checked where this binary's server lacks them.
#[test]
fn the_embedded_server_is_built_without_postgresql_and_nats_and_says_so() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = std::process::Command::new(cargo)
        .args(["tree", "--offline", "-p", "cairn", "-e", "normal", "--prefix", "none"])
        .args(["--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(tree.status.success(), "{}", String::from_utf8_lossy(&tree.stderr));
    let tree = String::from_utf8_lossy(&tree.stdout);
    let linked = |name: &str| tree.lines().any(|l| l.split(' ').next() == Some(name));
    assert!(linked("cairn-server"), "the app embeds the server");
    for backend in ["tokio-postgres", "deadpool-postgres", "async-nats"] {
        assert!(!linked(backend), "the app's server links {backend}");
    }

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = cairn_server::Config::for_data_dir(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    if !cairn_server::WITH_POSTGRES {
        let mut pg = config.clone();
        pg.database = Some("postgres://postgres@127.0.0.1:5432/postgres".into());
        let err = rt.block_on(cairn_server::start(pg)).err().expect("refused").to_string();
        assert!(err.contains("built without PostgreSQL"), "{err}");
    }
    if !cairn_server::WITH_NATS {
        let mut nats = config;
        nats.nats = Some("nats://127.0.0.1:4222".into());
        let err = rt.block_on(cairn_server::start(nats)).err().expect("refused").to_string();
        assert!(err.contains("built without NATS"), "{err}");
    }
}

/// Video notes: a clip made by FFmpeg now, re-encoded as a sender's device does, played by
/// the app's systems headless (the texture's pixels are the frame shown).
mod video {
    use super::*;
    use cairn::common::Notice;
    use cairn::net::{MediaArriving, MediaFailed, MediaReady};
    use cairn::render::NoteVisual;
    use cairn::video::Videos;
    use cairn_proto::{MediaHash, NoteKind};
    use cairn_video::synthetic::{self, Spec, bar_colour};

    /// A canonical clip of `seconds` at 320×240 with a tone, and its poster.
    pub fn clip(seconds: f32) -> cairn_client::VideoClip {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.mp4");
        let spec = Spec { width: 320, height: 240, seconds, ..Spec::default() };
        synthetic::make(&src, &spec).unwrap();
        cairn_client::VideoClip::from_file(&src).unwrap()
    }

    fn video_note(id: u8, position: [f32; 3], clip: &cairn_client::VideoClip) -> LocalNote {
        let mut body = NoteBody::text("alice", "", Pose { position, ..Pose::default() });
        body.kind = NoteKind::Video;
        body.thumbnail = clip.poster.clone();
        body.duration_ms = clip.duration_ms;
        body.media = vec![cairn_crypto::MediaRef {
            hash: MediaHash([id; 32]),
            key: cairn_crypto::MediaKey::generate(),
            size: clip.webm.len() as u64,
            mime: "video/webm".into(),
        }];
        common::local_note(id, body, false)
    }

    fn video_app() -> App {
        let mut app = app_with_visuals();
        app.init_asset::<bevy::audio::AudioSource>();
        app.init_resource::<cairn::audio::Voice>();
        app.add_plugins(cairn::video::plugin);
        app.update();
        app
    }

    /// The pixels the note's picture shows now: (width, height, rgba).
    fn shown(app: &App, e: Entity) -> Option<(u32, u32, Vec<u8>)> {
        let v = app.world().get::<NoteVisual>(e)?;
        let materials = app.world().resource::<Assets<StandardMaterial>>();
        let m = materials.get(v.detail_material.as_ref()?)?;
        let img = app.world().resource::<Assets<Image>>().get(m.base_color_texture.as_ref()?)?;
        Some((img.width(), img.height(), img.data.clone()?))
    }

    /// Which second of the clip the picture shows, from its bars.
    fn second_shown(app: &App, e: Entity) -> Option<u32> {
        let (w, h, rgba) = shown(app, e)?;
        if w != 320 {
            return None;
        }
        let bars: Vec<[u8; 3]> = (0..synthetic::BARS)
            .map(|b| {
                let i = (((h / 2) * w + (2 * b + 1) * w / 8) * 4) as usize;
                [rgba[i], rgba[i + 1], rgba[i + 2]]
            })
            .collect();
        (0..6).find(|&s| {
            bars.iter().enumerate().all(|(b, got)| {
                let want = bar_colour(b as u32, s);
                (0..3).all(|c| got[c].abs_diff(want[c]) <= 40)
            })
        })
    }

    fn run_for(app: &mut App, ms: u64) {
        let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        while std::time::Instant::now() < end {
            app.update();
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn position(app: &App, e: Entity) -> f64 {
        app.world().resource::<Videos>().position_ms(e).unwrap()
    }

    #[test]
    fn a_selected_video_plays_off_the_frame_seeks_pauses_and_stops_at_its_end() {
        let clip = clip(3.0);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clip.webm");
        std::fs::write(&file, &clip.webm).unwrap();
        let mut app = video_app();
        // Five metres off: too far to play by itself.
        receive(&mut app, video_note(1, [0.0, 1.5, -5.0], &clip));
        settle_details(&mut app);
        let e = entity_of(&app, 1).unwrap();
        let poster = shown(&app, e).expect("the poster shows");
        assert!(
            poster.0 <= 256 && poster.0 * 3 == poster.1 * 4,
            "a 4:3 poster: {:?}",
            (poster.0, poster.1)
        );
        run_for(&mut app, 300);
        assert!(fetched(&mut app).is_empty(), "nothing plays unasked at 5 m");

        // Selected: the clip is asked for, then plays frame after frame.
        point(&mut app, Vec3::new(0.0, 1.5, 0.0), Vec3::new(0.0, 1.5, -5.0));
        press(&mut app);
        app.update();
        assert_eq!(app.world().resource::<Focused>().0, Some(e), "the press hit it");
        assert_eq!(fetched(&mut app), vec![1]);
        app.world_mut().write_message(MediaReady { hash: MediaHash([1; 32]), path: file });
        let mut seen = Vec::new();
        for _ in 0..400 {
            app.update();
            std::thread::sleep(std::time::Duration::from_millis(10));
            if let Some(s) = second_shown(&app, e)
                && seen.last() != Some(&s)
            {
                seen.push(s);
            }
            if seen.len() >= 2 {
                break;
            }
        }
        assert_eq!(seen, vec![0, 1], "the bars move on a second in");

        // A press on the progress bar at 80 % seeks there.
        let (w, h) = (cairn::render::PANEL_WIDTH, cairn::render::PANEL_WIDTH * 0.75);
        let target = Vec3::new(w * 0.3, 1.5 - h / 2.0 + 0.03, -5.0);
        point(&mut app, Vec3::new(0.0, 1.5, 0.0), target);
        press(&mut app);
        let at = position(&app, e);
        assert!((at - 2400.0).abs() < 150.0, "sought to {at} ms");
        run_for(&mut app, 200);
        assert_eq!(second_shown(&app, e), Some(2), "the frame there");

        // A press on the picture pauses; another resumes.
        point(&mut app, Vec3::new(0.0, 1.5, 0.0), Vec3::new(0.0, 1.55, -5.0));
        press(&mut app);
        assert!(app.world().resource::<Videos>().is_paused(e));
        let paused_at = position(&app, e);
        run_for(&mut app, 300);
        assert_eq!(position(&app, e), paused_at, "the clock stands while paused");
        press(&mut app);
        assert!(!app.world().resource::<Videos>().is_paused(e));

        // It runs to its end and stops there, on its last frame.
        for _ in 0..300 {
            run_for(&mut app, 20);
            if app.world().resource::<Videos>().has_ended(e) {
                break;
            }
        }
        assert!(app.world().resource::<Videos>().has_ended(e), "it ended");
        assert_eq!(second_shown(&app, e), Some(2), "on its last frame");
        let last = shown(&app, e).unwrap();
        run_for(&mut app, 200);
        assert_eq!(shown(&app, e).unwrap().2, last.2, "and stays there");
        assert!(!app.world().resource::<Videos>().any_playing());
    }

    #[test]
    fn the_nearest_video_plays_by_itself_and_a_broken_clip_shows_grey_with_the_reason() {
        let clip = clip(1.0);
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.webm");
        std::fs::write(&junk, b"\x1a\x45\xdf\xa3 this is not a clip").unwrap();
        let mut app = video_app();
        app.world_mut().resource_mut::<cairn::notes::Viewer>().0 = Vec3::new(0.0, 1.6, 0.0);
        // Both arrive in one frame.
        app.world_mut().write_message(NoteUpdated(video_note(1, [0.0, 1.5, -2.5], &clip)));
        app.world_mut().write_message(NoteUpdated(video_note(2, [0.5, 1.5, -1.5], &clip)));
        settle_details(&mut app);
        app.update();
        assert_eq!(fetched(&mut app), vec![2], "only the nearest, unasked");
        run_for(&mut app, 100);
        assert!(fetched(&mut app).is_empty(), "asked once");
        let e = entity_of(&app, 2).unwrap();
        app.world_mut().write_message(MediaReady { hash: MediaHash([2; 32]), path: junk });
        let mut notices = Vec::new();
        let mut asked = Vec::new();
        for _ in 0..200 {
            app.update();
            std::thread::sleep(std::time::Duration::from_millis(10));
            asked.extend(fetched(&mut app));
            notices
                .extend(app.world_mut().resource_mut::<Messages<Notice>>().drain().map(|n| n.text));
            if !notices.is_empty() {
                break;
            }
        }
        assert!(notices.iter().any(|n| n.contains("this video cannot be played")), "{notices:?}");
        let v = app.world().get::<NoteVisual>(e).unwrap();
        let m = app.world().resource::<Assets<StandardMaterial>>();
        let m = m.get(v.detail_material.as_ref().unwrap()).unwrap();
        assert!(m.base_color_texture.is_none(), "a grey frame in place of the clip");
        // The app carries on: the other video is next to play by itself (its request may
        // have gone out while the failure was being looked for).
        for _ in 0..20 {
            app.update();
            asked.extend(fetched(&mut app));
        }
        assert_eq!(asked, vec![1]);
    }

    /// The clip arrives a piece at a time, as the client opens its chunks: it plays from the
    /// part there, before the rest has come, and runs on to its end once all has; another
    /// whose download fails part-way shows grey and says so.
    #[test]
    fn a_video_plays_while_it_arrives_and_one_whose_download_fails_shows_grey() {
        use std::io::Write;
        let clip = clip(3.0);
        let dir = tempfile::tempdir().unwrap();
        let growing = dir.path().join("growing.webm");
        let third = clip.webm.len() / 3;
        std::fs::write(&growing, &clip.webm[..third]).unwrap();
        let mut app = video_app();
        receive(&mut app, video_note(1, [0.0, 1.5, -5.0], &clip));
        receive(&mut app, video_note(2, [3.0, 1.5, -5.0], &clip));
        settle_details(&mut app);
        let (e1, e2) = (entity_of(&app, 1).unwrap(), entity_of(&app, 2).unwrap());
        app.world_mut().write_message(NoteActivated { entity: e1, source: PointerSource::Mouse });
        app.update();
        assert_eq!(fetched(&mut app), vec![1]);
        app.world_mut()
            .write_message(MediaArriving { hash: MediaHash([1; 32]), path: growing.clone() });
        let mut shown_early = false;
        for _ in 0..300 {
            run_for(&mut app, 10);
            if second_shown(&app, e1) == Some(0) {
                shown_early = true;
                break;
            }
        }
        assert!(shown_early, "its first second shows from the third that has arrived");
        assert!(std::fs::metadata(&growing).unwrap().len() < clip.webm.len() as u64);
        // The rest comes; the clip moves into the cache (the player keeps reading it).
        let mut f = std::fs::OpenOptions::new().append(true).open(&growing).unwrap();
        f.write_all(&clip.webm[third..]).unwrap();
        let cached = dir.path().join("cached.webm");
        std::fs::rename(&growing, &cached).unwrap();
        app.world_mut().write_message(MediaReady { hash: MediaHash([1; 32]), path: cached });
        for _ in 0..400 {
            run_for(&mut app, 20);
            if app.world().resource::<Videos>().has_ended(e1) {
                break;
            }
        }
        assert!(app.world().resource::<Videos>().has_ended(e1), "it played to its end");
        assert_eq!(second_shown(&app, e1), Some(2), "on its last frame");

        // The other starts from its first chunks, then its download fails.
        let partial = dir.path().join("partial.webm");
        std::fs::write(&partial, &clip.webm[..third]).unwrap();
        app.world_mut().write_message(NoteActivated { entity: e2, source: PointerSource::Mouse });
        app.update();
        assert_eq!(fetched(&mut app), vec![2]);
        app.world_mut().write_message(MediaArriving { hash: MediaHash([2; 32]), path: partial });
        run_for(&mut app, 200);
        assert!(app.world().resource::<Videos>().position_ms(e2).is_some(), "it is playing");
        app.world_mut().write_message(MediaFailed {
            hash: MediaHash([2; 32]),
            reason: "the downloaded blob does not match its address; discarded".into(),
        });
        app.update();
        let videos = app.world().resource::<Videos>();
        assert!(videos.position_ms(e2).is_none() && !videos.any_playing(), "it stopped");
        let v = app.world().get::<NoteVisual>(e2).unwrap();
        let m = app.world().resource::<Assets<StandardMaterial>>();
        let m = m.get(v.detail_material.as_ref().unwrap()).unwrap();
        assert!(m.base_color_texture.is_none(), "a grey frame in place of the clip");
    }
}

/// The real app under Xvfb: a video note a couple of metres in front of the camera plays by
/// itself; pictures a second apart show the bars moved on, and it stops at its end.
#[test]
fn a_video_note_plays_in_the_real_window_and_stops_at_its_end() {
    use cairn_client::{Content, Draft};
    use cairn_video::synthetic::{PALETTE, Spec};
    let x = process::Xvfb::start();
    let mut seeded = process::seed_empty();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("bars.mp4");
    let spec = Spec { width: 640, height: 360, seconds: 14.0, ..Spec::default() };
    cairn_video::synthetic::make(&src, &spec).unwrap();
    let clip = cairn_client::VideoClip::from_file(&src).unwrap();
    seeded.post(Draft {
        content: Content::Video(clip),
        pose: cairn_crypto::Pose { position: [0.0, 1.5, 1.6], ..Default::default() },
        ..Draft::default()
    });
    let out = seeded.dir.path().join("video.png");
    let report = seeded.dir.path().join("report.jsonl");
    let mut child = process::run_app(
        &x,
        &seeded,
        &[
            "--screenshot",
            out.to_str().unwrap(),
            "--screenshots",
            "3",
            "--report",
            report.to_str().unwrap(),
        ],
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(std::time::Instant::now() < deadline, "the app did not finish in time");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(status.success(), "the app exited with {status}");
    let events: Vec<String> = process::report_lines(&report)
        .iter()
        .filter_map(|l| l["event"].as_str().filter(|e| e.starts_with("video_")).map(String::from))
        .collect();
    assert_eq!(events, vec!["video_started", "video_ended"], "{events:?}");
    // How many pixels of each of the bars' colours each picture holds.
    let shots: Vec<Vec<usize>> = ["video.png", "video-2.png", "video-3.png"]
        .iter()
        .map(|name| {
            let path = seeded.dir.path().join(name);
            let _ = std::fs::create_dir_all(concat!(env!("CARGO_TARGET_TMPDIR"), "/screens"));
            let _ = std::fs::copy(&path, format!("{}/screens/{name}", env!("CARGO_TARGET_TMPDIR")));
            let img = image::open(&path).expect("a picture was saved").to_rgb8();
            PALETTE
                .iter()
                .map(|c| {
                    img.pixels().filter(|p| (0..3).all(|i| p.0[i].abs_diff(c[i]) <= 30)).count()
                })
                .collect()
        })
        .collect();
    // Four of the six colours show at a time; a second later one has gone and another come.
    for (a, b) in [(0, 1), (1, 2)] {
        let moved = (0..PALETTE.len()).any(|c| {
            (shots[a][c] > 400 && shots[b][c] < shots[a][c] / 10)
                || (shots[b][c] > 400 && shots[a][c] < shots[b][c] / 10)
        });
        assert!(moved, "pictures {a} and {b} show the same frame: {:?} / {:?}", shots[a], shots[b]);
    }
}
