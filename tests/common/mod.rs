//! What the app's test files share: a note as the client hands it to the app, and an Xvfb
//! display for the real app in a real window.
#![allow(dead_code)]

use cairn_client::LocalNote;
use cairn_crypto::NoteBody;
use cairn_proto::{DeviceId, NoteId, SpaceId};
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};

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
    /// Xvfb's stdout, kept open for as long as it runs.
    _out: BufReader<ChildStdout>,
}

impl Xvfb {
    /// Starts Xvfb on a display it picks itself (`-displayfd`): it takes a free number under
    /// its own lock file and prints it once it accepts connections, so tests that start
    /// their servers at the same moment never share one.
    pub fn start() -> Xvfb {
        let which = Command::new("sh").args(["-c", "command -v Xvfb"]).output().expect("sh");
        assert!(
            which.status.success(),
            "Xvfb is required for this test (Debian package xvfb; ./dev test installs it)"
        );
        let mut child = Command::new("Xvfb")
            .args(["-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb starts");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        let Ok(n) = line.trim().parse::<u32>() else {
            let _ = child.kill();
            panic!("Xvfb did not say which display it took (it printed {line:?})");
        };
        Xvfb { child, display: format!(":{n}"), _out: out }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
