//! What the app's test files share: a note as the client hands it to the app, and an Xvfb
//! display for the real app in a real window.
#![allow(dead_code)]

use cairn_client::LocalNote;
use cairn_crypto::NoteBody;
use cairn_proto::{DeviceId, NoteId, SpaceId};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The space the headless tests show.
pub const SPACE: SpaceId = SpaceId([1; 16]);

/// Note `id` of [`SPACE`], acknowledged with sequence number `id`, from another device.
pub fn local_note(id: u8, body: NoteBody, read: bool) -> LocalNote {
    LocalNote {
        space: SPACE,
        note_id: NoteId([id; 16]),
        seq: Some(u64::from(id)),
        sender: DeviceId([9; 32]),
        body: Some(body),
        error: None,
        deleted: false,
        read,
        stored_at: 0,
    }
}

pub struct Xvfb {
    child: Child,
    pub display: String,
}

impl Xvfb {
    pub fn start() -> Xvfb {
        let which = Command::new("sh").args(["-c", "command -v Xvfb"]).output().expect("sh");
        assert!(
            which.status.success(),
            "Xvfb is required for this test (Debian package xvfb; ./dev test installs it)"
        );
        for n in 90..140 {
            if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                || Path::new(&format!("/tmp/.X{n}-lock")).exists()
            {
                continue;
            }
            let child = Command::new("Xvfb")
                .args([&format!(":{n}"), "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xvfb starts");
            let mut x = Xvfb { child, display: format!(":{n}") };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if Path::new(&format!("/tmp/.X11-unix/X{n}")).exists() {
                    return x;
                }
                if x.child.try_wait().ok().flatten().is_some() {
                    break; // this display number was taken; try the next
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(x);
        }
        panic!("no Xvfb display could be started");
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
