//! A real OpenXR session: the app against Monado (Debian 13's `monado-service`, its null
//! compositor and simulated headset) in a Debian 13 root made with debootstrap, as
//! `../shared/XR-TESTING.md` describes. `./dev test` makes the root (`target/xr-root`);
//! without it this test fails, saying how to make it. It needs root (chroot, bind mounts).
//!
//! Asserted from what the app reports (`--report`): it chose XR, the runtime took its
//! session through READY, SYNCHRONIZED and VISIBLE to FOCUSED, it rendered frames with notes
//! in view for several seconds, and when asked to stop it had the runtime end the session
//! (STOPPING, EXITING) and exited cleanly.

mod common;

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

#[test]
fn the_app_runs_a_focused_session_in_monado_with_notes_in_view_and_leaves_it_cleanly() {
    let root = xr_root();
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_cairn"));
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let x = common::Xvfb::start();
    let display = x.display.clone();
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
    let work = root.join("tmp/cairn-xr");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let _ = std::fs::remove_file(root.join("tmp/monado_comp_ipc"));

    // monado-service watches its standard input: give it a pipe we hold open.
    let mut monado = Killed(
        Command::new("chroot")
            .arg(&root)
            .args([
                "/usr/bin/env",
                "XDG_RUNTIME_DIR=/tmp",
                "XRT_COMPOSITOR_NULL=1",
                "/usr/bin/monado-service",
            ])
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

    let report_path = work.join("report.jsonl");
    let mut app = Killed(
        Command::new("chroot")
            .arg(&root)
            .args([
                "/usr/bin/env",
                "XDG_RUNTIME_DIR=/tmp",
                "XR_RUNTIME_JSON=/usr/share/openxr/1/openxr_monado.json",
                &format!("DISPLAY={display}"),
                "HOME=/tmp/cairn-xr",
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
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chroot cairn"),
    );
    let stderr = app.0.stderr.take().unwrap();
    let log: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push(line);
            }
        });
    }
    let dump = || log.lock().unwrap().join("\n");

    // FOCUSED, then several seconds of frames with notes in view.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut focused_at = None;
    loop {
        let lines = report(&report_path);
        if focused_at.is_none()
            && lines.iter().any(|l| l["event"] == "xr_state" && l["state"] == "FOCUSED")
        {
            focused_at = Some(Instant::now());
        }
        let frames: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["event"] == "xr_frames").collect();
        let seen = frames.iter().filter(|l| l["notes_in_view"].as_u64().unwrap_or(0) > 0).count();
        if focused_at.is_some_and(|t| t.elapsed() > Duration::from_secs(5)) && seen >= 4 {
            break;
        }
        if let Some(status) = app.0.try_wait().unwrap() {
            panic!("the app exited early ({status}):\n{}", dump());
        }
        assert!(
            Instant::now() < deadline,
            "no focused session with notes in view:\n{lines:?}\n{}",
            dump()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let lines = report(&report_path);
    let mode: Vec<_> = lines.iter().filter(|l| l["event"] == "mode").collect();
    assert_eq!(mode[0]["xr"], true, "{mode:?}");
    let states: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "xr_state")
        .filter_map(|l| l["state"].as_str())
        .collect();
    for s in ["READY", "SYNCHRONIZED", "VISIBLE", "FOCUSED"] {
        assert!(states.contains(&s), "state {s} missing from {states:?}");
    }
    let frames: Vec<u64> = lines
        .iter()
        .filter(|l| l["event"] == "xr_frames")
        .filter_map(|l| l["frames"].as_u64())
        .collect();
    assert!(frames.windows(2).all(|w| w[1] > w[0]), "frames keep coming: {frames:?}");

    // Asked to stop (SIGTERM), the app asks the runtime to end the session; the runtime takes
    // it through STOPPING and EXITING, and the app exits cleanly.
    assert!(sh("kill", &["-TERM", &app.0.id().to_string()]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = app.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "the app did not leave the session:\n{}", dump());
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "the app exited with {status}:\n{}", dump());
    let states: Vec<String> = report(&report_path)
        .iter()
        .filter(|l| l["event"] == "xr_state")
        .filter_map(|l| l["state"].as_str().map(str::to_owned))
        .collect();
    let after = states.iter().rposition(|s| s == "FOCUSED").unwrap();
    let tail: Vec<&str> = states[after..].iter().map(String::as_str).collect();
    for s in ["STOPPING", "EXITING"] {
        assert!(tail.contains(&s), "state {s} missing after FOCUSED: {tail:?}");
    }
    assert!(sh("kill", &["-TERM", &monado.0.id().to_string()]));
    let _ = monado.0.wait();
    drop(mounts);
}
