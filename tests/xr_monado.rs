//! A real OpenXR session: the app against Monado (Debian 13's `monado-service`, its null
//! compositor and simulated headset) in a Debian 13 root made with debootstrap, as
//! `../shared/XR-TESTING.md` describes. `./dev test` makes the root (`target/xr-root`);
//! without it this test fails, saying how to make it. It needs root (chroot, bind mounts).
//!
//! Asserted from what the app reports (`--report`): it chose XR, the runtime took its
//! session through READY, SYNCHRONIZED and VISIBLE to FOCUSED, it rendered frames with notes
//! in view for several seconds, and when asked to stop it had the runtime end the session
//! (STOPPING, EXITING) and exited cleanly. A second session runs on Monado's remote driver,
//! which takes head and controller poses over TCP: the test points the right controller at a
//! note and pulls the trigger, and the app must activate that note.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

fn xr_root() -> PathBuf {
    let root = std::env::var_os("CAIRN_XR_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target/xr-root"));
    assert!(
        root.join("usr/bin/monado-service").exists(),
        "no Debian 13 root with Monado at {}: `./dev xr-root` makes it (`./dev test` does too)",
        root.display()
    );
    root
}

/// Where in the root the app finds the libraries of this machine that the root lacks.
const HOST_LIBS: &str = "/opt/cairn-host-libs";

/// The app is built against this machine's (Debian 12's) libraries and runs in the Debian 13
/// root. The root has most of them under the same names, but not FFmpeg 5.1's: Debian 13
/// carries FFmpeg 7, whose libraries have other names (`libavutil.so.59`, not `.57`). Every
/// library the app loads that the root lacks is copied from this machine into the root's
/// [`HOST_LIBS`], which the app is pointed at with `LD_LIBRARY_PATH`; the root's glibc is the
/// newer, so they load. Once per test run; a library already there at its size is kept.
fn provide_host_libraries(root: &Path, exe: &Path) {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let out = Command::new("ldd").arg(exe).output().expect("ldd");
        assert!(out.status.success(), "ldd {exe:?}: {}", String::from_utf8_lossy(&out.stderr));
        let dir = root.join(HOST_LIBS.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap();
        let lib_dirs = ["usr/lib/x86_64-linux-gnu", "lib/x86_64-linux-gnu", "usr/lib", "lib"];
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "\tlibavutil.so.57 => /lib/x86_64-linux-gnu/libavutil.so.57 (0x...)"
            let Some((name, rest)) = line.trim().split_once(" => ") else { continue };
            let Some(path) = rest.split_whitespace().next().filter(|p| p.starts_with('/')) else {
                panic!("the app needs {name}, which this machine lacks: {line}")
            };
            if lib_dirs.iter().any(|d| root.join(d).join(name).exists()) {
                continue;
            }
            let from = std::fs::metadata(path).unwrap();
            let to = dir.join(name);
            if std::fs::metadata(&to).is_ok_and(|m| m.len() == from.len()) {
                continue;
            }
            std::fs::copy(path, &to).unwrap_or_else(|e| panic!("copy {path} into the root: {e}"));
        }
    });
}

fn sh(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).status().is_ok_and(|s| s.success())
}

/// Bind mounts into the root, undone in reverse order on drop (also when the test fails).
struct Mounts {
    root: PathBuf,
    done: Vec<PathBuf>,
}

impl Mounts {
    fn new(root: &Path) -> Mounts {
        Mounts { root: root.to_path_buf(), done: Vec::new() }
    }
    /// Binds host `path` at the same path inside the root.
    fn bind(&mut self, path: &Path) {
        let inside = self.root.join(path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(&inside).unwrap();
        assert!(
            sh("mount", &["--bind", path.to_str().unwrap(), inside.to_str().unwrap()]),
            "bind {path:?}"
        );
        self.done.push(inside);
    }
    fn proc(&mut self) {
        let inside = self.root.join("proc");
        assert!(sh("mount", &["-t", "proc", "proc", inside.to_str().unwrap()]));
        self.done.push(inside);
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.done.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn report(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Both sessions use the root's one Monado socket: they take turns.
static ONE_SESSION_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Monado and the app, running in the root; dropped in field order: the app, Monado, the
/// mounts, the display.
struct Session {
    app: Killed,
    monado: Killed,
    _mounts: Mounts,
    _x: common::Xvfb,
    report_path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Session {
    /// Starts `monado-service` (with `monado_env` added to its environment) and the app in XR.
    fn start(monado_env: &[&str]) -> Session {
        Session::start_with(monado_env, &[], |_| {})
    }

    /// As [`Session::start`], with `app_args` added to the app's and `prepare` run on the
    /// session's directory (the root's `/tmp/cairn-xr`) before the app starts: the app's
    /// profile is its `home`.
    fn start_with(monado_env: &[&str], app_args: &[&str], prepare: impl FnOnce(&Path)) -> Session {
        let root = xr_root();
        let exe = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
        let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let x = common::Xvfb::start();
        let mut mounts = Mounts::new(&root);
        mounts.proc();
        mounts.bind(Path::new("/sys"));
        mounts.bind(Path::new("/dev"));
        mounts.bind(Path::new("/tmp/.X11-unix"));
        // The app finds its assets and shaders beside its manifest; the binary may live elsewhere.
        mounts.bind(&manifest);
        let exe_dir = exe.parent().unwrap();
        if !exe_dir.starts_with(&manifest) {
            mounts.bind(exe_dir);
        }
        provide_host_libraries(&root, &exe);
        let work = root.join("tmp/cairn-xr");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let _ = std::fs::remove_file(root.join("tmp/monado_comp_ipc"));
        prepare(&work);

        // monado-service watches its standard input: give it a pipe we hold open.
        let monado = Killed(
            Command::new("chroot")
                .arg(&root)
                .args(["/usr/bin/env", "XDG_RUNTIME_DIR=/tmp", "XRT_COMPOSITOR_NULL=1"])
                .args(monado_env)
                .arg("/usr/bin/monado-service")
                .stdin(Stdio::piped())
                .stdout(std::fs::File::create(work.join("monado.log")).unwrap())
                .stderr(Stdio::from(std::fs::File::create(work.join("monado.err")).unwrap()))
                .spawn()
                .expect("chroot monado-service"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while !root.join("tmp/monado_comp_ipc").exists() {
            assert!(
                Instant::now() < deadline,
                "monado-service did not start: {}",
                std::fs::read_to_string(work.join("monado.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }

        let mut app = Killed(
            Command::new("chroot")
                .arg(&root)
                .args([
                    "/usr/bin/env",
                    "XDG_RUNTIME_DIR=/tmp",
                    "XR_RUNTIME_JSON=/usr/share/openxr/1/openxr_monado.json",
                    &format!("DISPLAY={}", x.display),
                    "HOME=/tmp/cairn-xr",
                    &format!("LD_LIBRARY_PATH={HOST_LIBS}"),
                    "RUST_LOG=warn,cairn=info,bevy_mod_openxr=info",
                ])
                .arg(&exe)
                .args([
                    "--xr",
                    "--home",
                    "/tmp/cairn-xr/home",
                    "--report",
                    "/tmp/cairn-xr/report.jsonl",
                ])
                .args(app_args)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("chroot cairn"),
        );
        let stderr = app.0.stderr.take().unwrap();
        let log: Arc<Mutex<Vec<String>>> = Default::default();
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line);
                }
            });
        }
        Session { app, monado, _mounts: mounts, _x: x, report_path: work.join("report.jsonl"), log }
    }

    fn report(&self) -> Vec<serde_json::Value> {
        report(&self.report_path)
    }

    fn dump(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits until `done` holds for the report, failing with `what` after `limit`.
    fn wait_for(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + limit;
        loop {
            let lines = self.report();
            if done(&lines) {
                return lines;
            }
            if let Some(status) = self.app.0.try_wait().unwrap() {
                panic!("the app exited early ({status}) waiting for {what}:\n{}", self.dump());
            }
            assert!(Instant::now() < deadline, "no {what}:\n{lines:?}\n{}", self.dump());
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Waits until the app has begun a frame after this call, so that its input has seen
    /// what the controllers were set to before it: a press shorter than a frame is never
    /// seen, and the first frames of a session on a loaded machine take a second or more.
    /// (Two `xr_frames` lines written after this millisecond, with different counts: the
    /// later one's frame began after the earlier line was written.)
    fn a_frame_later(&mut self) {
        let since = cairn_proto::now_ms();
        self.wait_for("a frame after the controllers changed", Duration::from_secs(30), |lines| {
            let mut counts = lines
                .iter()
                .filter(|l| l["event"] == "xr_frames" && l["t_ms"].as_u64() > Some(since))
                .filter_map(|l| l["frames"].as_u64());
            counts.next().is_some_and(|first| counts.any(|c| c > first))
        });
    }

    /// SIGTERM to the app; it must leave the session and exit cleanly.
    fn stop(mut self) {
        assert!(sh("kill", &["-TERM", &self.app.0.id().to_string()]));
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = self.app.0.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "the app did not leave the session:\n{}",
                self.dump()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "the app exited with {status}:\n{}", self.dump());
        assert!(sh("kill", &["-TERM", &self.monado.0.id().to_string()]));
        let _ = self.monado.0.wait();
    }
}

fn states(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["event"] == "xr_state")
        .filter_map(|l| l["state"].as_str().map(str::to_owned))
        .collect()
}

fn vec3(v: &serde_json::Value) -> Option<[f32; 3]> {
    let a = v.as_array()?;
    Some([a.first()?.as_f64()? as f32, a.get(1)?.as_f64()? as f32, a.get(2)?.as_f64()? as f32])
}

#[test]
fn the_app_runs_a_focused_session_in_monado_with_notes_in_view_and_leaves_it_cleanly() {
    let _turn = ONE_SESSION_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut session = Session::start(&[]);

    // FOCUSED, then several seconds of frames with notes in view.
    let mut focused_at = None;
    let lines =
        session.wait_for("focused session with notes in view", Duration::from_secs(240), |lines| {
            if focused_at.is_none() && states(lines).iter().any(|s| s == "FOCUSED") {
                focused_at = Some(Instant::now());
            }
            let seen = lines
                .iter()
                .filter(|l| {
                    l["event"] == "xr_frames" && l["notes_in_view"].as_u64().unwrap_or(0) > 0
                })
                .count();
            focused_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) && seen >= 4
        });
    let mode: Vec<_> = lines.iter().filter(|l| l["event"] == "mode").collect();
    assert_eq!(mode[0]["xr"], true, "{mode:?}");
    let seen = states(&lines);
    for s in ["READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED"] {
        assert!(seen.iter().any(|x| x == s), "state {s} missing from {seen:?}");
    }
    let frames: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "xr_frames")
        .filter_map(|l| l["frames"].as_u64())
        .collect();
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "frames keep coming: {frames:?}");

    // Asked to stop (SIGTERM), the app asks the runtime to end the session; the runtime takes
    // it through STOPPING and EXITING, and the app exits cleanly.
    let report_path = session.report_path.clone();
    session.stop();
    let states = states(&report(&report_path));
    let after = states.iter().rposition(|s| s == "FOCUSED").unwrap();
    let tail: Vec<&str> = states[after..].iter().map(String::as_str).collect();
    for s in ["STOPPING", "EXITING"] {
        assert!(tail.contains(&s), "state {s} missing after FOCUSED: {tail:?}");
    }
}

/// Monado's remote driver (`P_OVERRIDE_ACTIVE_CONFIG=remote`) listens on TCP port 4242 for
/// `struct r_remote_data` (Monado's `drivers/remote/r_interface.h`, header `mndrmt3`): the
/// head's pose, then the left and right controllers' poses, axes and buttons, native-endian
/// (little-endian here), 376 bytes a packet.
mod remote {
    use bevy::math::{Quat, Vec3};
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    pub const PACKET: usize = 376;
    const HEAD_CENTER: usize = 8 + 2 * 48;
    const LEFT: usize = 8 + 128;
    const RIGHT: usize = LEFT + 120;

    #[derive(Debug, Clone, Copy)]
    pub struct Controller {
        pub position: Vec3,
        pub rotation: Quat,
        pub trigger: f32,
    }

    #[derive(Debug, Clone, Copy)]
    pub struct Poses {
        pub head: (Vec3, Quat),
        pub left: Controller,
        pub right: Controller,
    }

    /// Where the tests stand the head: 1.6 m over the tracking space's origin.
    pub const HEAD: Vec3 = Vec3::new(0.0, 1.6, 0.0);

    impl Poses {
        /// The head looking ahead; the controllers held low, pointing at the floor just
        /// ahead (at no note).
        pub fn at_rest() -> Poses {
            let down = Quat::from_rotation_x(-1.2);
            let resting = |x: f32| Controller {
                position: Vec3::new(x, 1.0, -0.2),
                rotation: down,
                trigger: 0.0,
            };
            Poses { head: (HEAD, Quat::IDENTITY), left: resting(-0.25), right: resting(0.25) }
        }
    }

    fn put(buf: &mut [u8], at: usize, values: &[f32]) {
        for (i, v) in values.iter().enumerate() {
            buf[at + 4 * i..at + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
        }
    }

    fn pose(buf: &mut [u8], at: usize, position: Vec3, rotation: Quat) {
        put(buf, at, &rotation.to_array());
        put(buf, at + 16, &position.to_array());
    }

    pub fn packet(p: &Poses) -> [u8; PACKET] {
        let mut buf = [0u8; PACKET];
        buf[..8].copy_from_slice(b"mndrmt3\0");
        pose(&mut buf, HEAD_CENTER, p.head.0, p.head.1);
        for (at, c) in [(LEFT, p.left), (RIGHT, p.right)] {
            pose(&mut buf, at, c.position, c.rotation);
            put(&mut buf, at + 72, &[c.trigger]);
            buf[at + 105] = 1; // active
            buf[at + 112] = u8::from(c.trigger > 0.5); // trigger_click
            buf[at + 113] = u8::from(c.trigger > 0.0); // trigger_touch
        }
        buf
    }

    /// Sends the current poses 100 times a second until dropped.
    pub struct Feeder {
        pub poses: Arc<Mutex<Poses>>,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Feeder {
        pub fn connect(poses: Poses) -> Feeder {
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut stream = loop {
                match TcpStream::connect("127.0.0.1:4242") {
                    Ok(s) => break s,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "Monado's remote driver: {e}");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            };
            stream.set_nodelay(true).unwrap();
            // The hub may send its starting state; nothing here needs it.
            let mut drain = stream.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut sink = [0u8; PACKET];
                while drain.read(&mut sink).is_ok_and(|n| n > 0) {}
            });
            let poses = Arc::new(Mutex::new(poses));
            let stop = Arc::new(AtomicBool::new(false));
            let thread = {
                let (poses, stop) = (poses.clone(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let p = *poses.lock().unwrap();
                        if stream.write_all(&packet(&p)).is_err() {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            };
            Feeder { poses, stop, thread: Some(thread) }
        }

        pub fn set(&self, change: impl FnOnce(&mut Poses)) {
            change(&mut self.poses.lock().unwrap());
        }
    }

    impl Drop for Feeder {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// Where the runtime's tracking space puts the app's world: the head's position in the
/// world, as the app last reported it, less where the remote driver holds it.
fn tracking_offset(lines: &[serde_json::Value]) -> bevy::math::Vec3 {
    let last = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "xr_frames" && vec3(&l["head"]).is_some())
        .expect("a frame with the head tracked");
    bevy::math::Vec3::from(vec3(&last["head"]).unwrap()) - remote::HEAD
}

#[test]
fn in_monado_with_its_remote_driver_the_controller_aim_selects_the_note_it_points_at() {
    use bevy::math::{Quat, Vec3};
    use remote::{Controller, Feeder, Poses};

    let _turn = ONE_SESSION_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut session = Session::start(&["P_OVERRIDE_ACTIVE_CONFIG=remote"]);
    let feeder = Feeder::connect(Poses::at_rest());

    // Focused, with the notes drawn and the head and the right aim tracked.
    let lines = session.wait_for(
        "focused session with notes and a tracked right aim",
        Duration::from_secs(240),
        |lines| {
            states(lines).iter().any(|s| s == "FOCUSED")
                && lines.iter().filter(|l| l["event"] == "note_shown").count() >= 5
                && lines.iter().any(|l| {
                    l["event"] == "xr_frames"
                        && vec3(&l["head"]).is_some()
                        && vec3(&l["aims"][1][0]).is_some()
                })
        },
    );
    let offset = tracking_offset(&lines);
    let notes: Vec<(String, Vec3)> = lines
        .iter()
        .filter(|l| l["event"] == "note_shown")
        .filter_map(|l| Some((l["id"].as_str()?.to_owned(), Vec3::from(vec3(&l["position"])?))))
        .collect();

    // Aim the right controller at the note farthest to the right, from beside the head.
    let hand = Vec3::new(0.25, 1.3, -0.2);
    let (target, at) = notes.iter().max_by(|a, b| a.1.x.total_cmp(&b.1.x)).cloned().unwrap();
    let dir = (at - offset - hand).normalize();
    let aim = Quat::from_rotation_arc(Vec3::NEG_Z, dir);
    feeder.set(|p| p.right = Controller { position: hand, rotation: aim, trigger: 0.0 });
    // The app's aim ray follows.
    session.wait_for("the right aim turned toward the note", Duration::from_secs(30), |lines| {
        lines
            .iter()
            .rev()
            .find(|l| l["event"] == "xr_frames")
            .is_some_and(|l| vec3(&l["aims"][1][1]).is_some_and(|f| Vec3::from(f).dot(dir) > 0.99))
    });
    // Pull the trigger, hold it until the app has seen it, let go.
    feeder.set(|p| p.right.trigger = 1.0);
    session.a_frame_later();
    feeder.set(|p| p.right.trigger = 0.0);
    let lines = session.wait_for(
        "a note activated by the right controller",
        Duration::from_secs(30),
        |lines| lines.iter().any(|l| l["event"] == "note_activated"),
    );
    let activated: Vec<_> = lines.iter().filter(|l| l["event"] == "note_activated").collect();
    assert_eq!(activated.len(), 1, "one press, one activation: {activated:?}");
    assert_eq!(activated[0]["id"], target.as_str(), "notes: {notes:?}; activated: {activated:?}");
    assert_eq!(activated[0]["source"], "RightHand");
    drop(feeder);
    session.stop();
}

#[test]
fn when_the_runtime_dies_mid_session_the_app_says_so_and_exits_with_its_own_status() {
    let _turn = ONE_SESSION_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut session = Session::start(&[]);
    session.wait_for("focused session", Duration::from_secs(240), |lines| {
        states(lines).iter().any(|s| s == "FOCUSED")
    });
    // The runtime's process dies (SIGKILL): its next frame call fails with INSTANCE_LOST.
    assert!(sh("kill", &["-KILL", &session.monado.0.id().to_string()]));
    let _ = session.monado.0.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = session.app.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the app kept running:\n{}", session.dump());
        std::thread::sleep(Duration::from_millis(100));
    };
    // Give the reader thread the last lines.
    std::thread::sleep(Duration::from_millis(300));
    let log = session.dump();
    assert_eq!(status.code(), Some(cairn::xr::runtime::EXIT_RUNTIME_LOST), "{log}");
    assert!(log.contains("the OpenXR runtime stopped (ERROR_"), "{log}");
    assert!(!log.contains("stack backtrace"), "a clear message, not a backtrace:\n{log}");
    let lost: Vec<_> =
        session.report().into_iter().filter(|l| l["event"] == "runtime_lost").collect();
    assert_eq!(lost.len(), 1, "{lost:?}");
}

/// A place, end to end in a real session: Alice made the kitchen (its marks, in her stage,
/// which stands for the room) and left a note by the counter. Bob's headset, run by Monado's
/// remote driver, has a stage turned and moved against hers. Before he aligns the note is
/// approximate, at Alice's numbers in his stage; he focuses it, presses Align on its action
/// bar, and touches the three marks with the controller (the test drives it there and pulls
/// the trigger); the app then reports the note where it was left in the room, in his stage.
#[test]
fn in_monado_a_headset_touches_a_places_marks_and_its_note_stands_where_it_was_left() {
    use bevy::math::{Quat, Vec3};
    use cairn_client::{Client, Content, Draft};
    use cairn_crypto::{PlaceMark, PlacePose, PlaceRecord, Pose};
    use cairn_proto::{Policy, Role};
    use remote::{Controller, Feeder, Poses};

    let _turn = ONE_SESSION_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = cairn_server::Config::for_data_dir(dir.path().join("server"));
    config.listen = "127.0.0.1:0".parse().unwrap();
    let server = rt.block_on(cairn_server::start(config)).unwrap();
    let url = server.ws_url();

    // The room, in Alice's stage: the counter's ends and the door's top corner; the note.
    let marks = [Vec3::new(0.4, 0.9, -1.3), Vec3::new(1.6, 0.9, -1.1), Vec3::new(0.9, 1.7, -1.8)];
    let spot = Vec3::new(0.2, 1.35, -1.5);
    // Bob's stage against the room: turned 0.5 rad, 0.6 m away.
    let bobs = |p: Vec3| Quat::from_rotation_y(0.5) * p + Vec3::new(0.3, 0.0, 0.5);
    let mut note_id = String::new();
    let mut session = Session::start_with(
        &["P_OVERRIDE_ACTIVE_CONFIG=remote"],
        &["--room", "--server", &url, "--space", "Kitchen"],
        |work| {
            rt.block_on(async {
                let mut bob = Client::init(
                    &work.join("home"),
                    &url,
                    &cairn_proto::Handle::from_static("bob"),
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
                let space = alice.create_space("Kitchen", Policy::default()).await.unwrap();
                alice
                    .invite(&space, &cairn_proto::Handle::from_static("bob"), Role::Member)
                    .await
                    .unwrap();
                let stage: Vec<[f32; 3]> = marks.iter().map(|m| m.to_array()).collect();
                let (in_place, maker) = cairn_client::place::frame_from_marks(&stage).unwrap();
                let names = ["counter left", "counter right", "door top"];
                let record = PlaceRecord {
                    name: "Kitchen".into(),
                    description: "the counter's ends, then the door's top left corner".into(),
                    marks: names
                        .iter()
                        .zip(in_place)
                        .map(|(n, position)| PlaceMark { name: (*n).into(), position })
                        .collect(),
                };
                let place = alice
                    .post(
                        &space,
                        Draft {
                            content: Content::Place { record, picture: None },
                            ..Draft::default()
                        },
                    )
                    .await
                    .unwrap();
                let pose = Pose { position: spot.to_array(), ..Pose::default() };
                let note = alice
                    .post(
                        &space,
                        Draft {
                            text: "the salt is here".into(),
                            pose,
                            place: Some(PlacePose {
                                place: place.note_id,
                                pose: maker.pose_to_place(&pose),
                            }),
                            ..Draft::default()
                        },
                    )
                    .await
                    .unwrap();
                note_id = note.note_id.to_hex();
                bob.sync().await.unwrap();
            })
        },
    );
    let feeder = Feeder::connect(Poses::at_rest());
    let shown = |lines: &[serde_json::Value]| {
        lines.iter().find(|l| l["event"] == "note_shown" && l["id"] == note_id.as_str()).cloned()
    };
    let lines = session.wait_for(
        "a focused session showing the note, with the right aim tracked",
        Duration::from_secs(240),
        |lines| {
            states(lines).iter().any(|s| s == "FOCUSED")
                && shown(lines).is_some()
                && lines.iter().any(|l| {
                    l["event"] == "xr_frames"
                        && vec3(&l["head"]).is_some()
                        && vec3(&l["aims"][1][0]).is_some()
                })
        },
    );
    // Not aligned: the note stands at Alice's stage numbers in Bob's stage.
    let before = Vec3::from(vec3(&shown(&lines).unwrap()["position"]).unwrap());
    assert!(before.distance(spot) < 1e-3, "{before} against {spot}");
    let offset = tracking_offset(&lines);

    // Points the right controller from `hand` (tracking space) at `target` (the world) and
    // waits until the app's aim follows.
    let aim_at = |session: &mut Session, hand: Vec3, target: Vec3| {
        let dir = (target - offset - hand).normalize();
        let rotation = Quat::from_rotation_arc(Vec3::NEG_Z, dir);
        feeder.set(|p| p.right = Controller { position: hand, rotation, trigger: 0.0 });
        session.wait_for("the right aim turned", Duration::from_secs(30), |lines| {
            lines.iter().rev().find(|l| l["event"] == "xr_frames").is_some_and(|l| {
                vec3(&l["aims"][1][1]).is_some_and(|f| Vec3::from(f).dot(dir) > 0.999)
            })
        });
    };
    // Held until the app has seen the press, and let go until it has seen the release.
    let pull = |session: &mut Session| {
        feeder.set(|p| p.right.trigger = 1.0);
        session.a_frame_later();
        feeder.set(|p| p.right.trigger = 0.0);
        session.a_frame_later();
    };
    // Focus the note; its action bar offers Align.
    let hand = Vec3::new(0.25, 1.3, -0.2);
    aim_at(&mut session, hand, before);
    pull(&mut session);
    let lines = session.wait_for("an action bar with Align", Duration::from_secs(30), |lines| {
        lines.iter().any(|l| {
            l["event"] == "board_shown"
                && l["keys"].as_array().is_some_and(|k| k.iter().any(|k| k["key"] == "Align"))
        })
    });
    let align_key = lines
        .iter()
        .filter(|l| l["event"] == "board_shown")
        .flat_map(|l| l["keys"].as_array().cloned().unwrap_or_default())
        .find(|k| k["key"] == "Align")
        .and_then(|k| vec3(&k["position"]))
        .map(Vec3::from)
        .unwrap();
    aim_at(&mut session, hand, align_key);
    pull(&mut session);

    // Touch the marks: the mark is where the app's aim ray starts, which the runtime puts a
    // little off the controller's own pose; measure that with the orientation used to touch.
    let touch = Quat::from_rotation_x(-0.6);
    feeder.set(|p| p.right = Controller { position: hand, rotation: touch, trigger: 0.0 });
    let aim_origin = |lines: &[serde_json::Value]| {
        lines
            .iter()
            .rev()
            .find(|l| l["event"] == "xr_frames")
            .and_then(|l| Some((vec3(&l["aims"][1][0])?, vec3(&l["aims"][1][1])?)))
    };
    let lines = session.wait_for("the touching orientation", Duration::from_secs(30), |lines| {
        aim_origin(lines).is_some_and(|(_, f)| Vec3::from(f).dot(touch * Vec3::NEG_Z) > 0.999)
    });
    let tip = Vec3::from(aim_origin(&lines).unwrap().0) - offset - hand;
    for m in marks {
        let at = bobs(m) - offset - tip;
        feeder.set(|p| p.right.position = at);
        session.wait_for("the controller at the mark", Duration::from_secs(30), |lines| {
            aim_origin(lines).is_some_and(|(o, _)| Vec3::from(o).distance(bobs(m)) < 0.002)
        });
        pull(&mut session);
    }
    let lines = session.wait_for(
        "the note moved to where it was left, no longer approximate",
        Duration::from_secs(30),
        |lines| {
            lines.iter().any(|l| {
                l["event"] == "note_moved"
                    && l["id"] == note_id.as_str()
                    && l["approximate"] == false
            })
        },
    );
    let aligned: Vec<_> = lines.iter().filter(|l| l["event"] == "place_aligned").collect();
    assert_eq!(aligned.len(), 1, "{aligned:?}");
    assert!(aligned[0]["residual"].as_f64().unwrap() < 0.005, "{aligned:?}");
    let moved = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "note_moved" && l["id"] == note_id.as_str())
        .unwrap();
    let after = Vec3::from(vec3(&moved["position"]).unwrap());
    let off = after.distance(bobs(spot));
    eprintln!(
        "aligned in Monado: residual {} m; the note stands {off} m from where it was left",
        aligned[0]["residual"]
    );
    assert!(
        off < 0.01,
        "the note stands {off} m from where it was left: {after} against {}",
        bobs(spot)
    );
    drop(feeder);
    session.stop();
    let _ = rt.block_on(server.shutdown());
}
