//! `--report FILE`: the app appends one JSON line per thing a test may want to know — a note
//! drawn, the connection state — with milliseconds since the Unix epoch. Tests of the real
//! process (screenshots, end to end, XR sessions) assert on it.

use crate::common::DisplayMode;
use crate::interact::NoteActivated;
use crate::net::NetStatus;
use crate::notes::{Note, NoteAt};
use crate::render::NoteVisual;
use crate::xr::XrInput;
use crate::xr::runtime::{SessionState, XrFrames, notes_in_view};
use bevy::prelude::*;
use std::io::Write;
use std::path::PathBuf;

#[derive(Resource)]
struct Report(std::fs::File);

pub fn plugin(path: PathBuf) -> impl Plugin {
    move |app: &mut App| match std::fs::OpenOptions::new().create(true).append(true).open(&path) {
        Ok(f) => {
            app.insert_resource(Report(f)).add_systems(
                Last,
                (
                    notes_shown,
                    notes_moved,
                    notes_activated,
                    connection_changes,
                    display_mode,
                    xr_session,
                    places_aligned,
                    boards_shown,
                    videos,
                ),
            );
        }
        Err(e) => error!("cannot write the report {}: {e}", path.display()),
    }
}

/// Appends one line to the report (when there is one).
pub fn line(report: &mut std::fs::File, value: serde_json::Value) {
    let _ = writeln!(report, "{value}");
}

fn notes_shown(mut report: ResMut<Report>, shown: Query<(&Note, &NoteAt), Added<NoteVisual>>) {
    for (n, at) in &shown {
        line(
            &mut report.0,
            serde_json::json!({"event": "note_shown", "id": n.id.to_hex(), "position": at.0.to_array(), "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// Notes that stand relative to an anchor or a place, when they move or stop (or start)
/// being approximate: an anchor found, a place aligned.
fn notes_moved(
    mut report: ResMut<Report>,
    moved: Query<(&Note, &NoteAt), (With<crate::notes::anchors::Anchored>, Changed<NoteAt>)>,
    mut last: Local<std::collections::HashMap<cairn_proto::NoteId, (Vec3, bool)>>,
) {
    for (n, at) in &moved {
        let now = (at.0, n.approximate);
        if last.insert(n.id, now) == Some(now) {
            continue;
        }
        line(
            &mut report.0,
            serde_json::json!({"event": "note_moved", "id": n.id.to_hex(), "position": at.0.to_array(), "approximate": n.approximate, "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// Video notes starting, ending and failing.
fn videos(
    mut report: ResMut<Report>,
    mut events: MessageReader<crate::video::VideoEvent>,
    notes: Query<&Note>,
) {
    use crate::video::VideoEventKind as K;
    for ev in events.read() {
        let id = notes.get(ev.note).map(|n| n.id.to_hex()).unwrap_or_default();
        let (event, reason) = match &ev.what {
            K::Started => ("video_started", None),
            K::Ended => ("video_ended", None),
            K::Failed(r) => ("video_failed", Some(r.clone())),
        };
        line(
            &mut report.0,
            serde_json::json!({"event": event, "id": id, "reason": reason, "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// Each alignment with a place as it changes: the transform and its residual.
fn places_aligned(
    mut report: ResMut<Report>,
    frames: Res<crate::notes::anchors::PlaceFrames>,
    view: Res<crate::places::PlaceView>,
) {
    if !frames.is_changed() || *view != crate::places::PlaceView::Room {
        return;
    }
    for (id, a) in &frames.0 {
        line(
            &mut report.0,
            serde_json::json!({"event": "place_aligned", "place": id.to_hex(), "yaw": a.yaw, "translation": a.translation, "residual": a.residual, "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// Boards of keys (the XR keyboard, a note's action bar) as they appear: each key's name and
/// its centre in the world, so a test can point a controller at one.
fn boards_shown(
    mut report: ResMut<Report>,
    boards: Query<(&crate::xr::boards::Board, &Transform), Added<crate::xr::boards::Board>>,
) {
    for (board, at) in &boards {
        let keys: Vec<_> = board
            .caps
            .iter()
            .map(|c| {
                serde_json::json!({"key": format!("{:?}", c.key), "position": at.transform_point(board.centre(c)).to_array()})
            })
            .collect();
        line(
            &mut report.0,
            serde_json::json!({"event": "board_shown", "keys": keys, "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// Notes activated by a pointer (a click, a trigger, a pinch), with the pointer's source.
fn notes_activated(
    mut report: ResMut<Report>,
    mut activated: MessageReader<NoteActivated>,
    notes: Query<&Note>,
) {
    for a in activated.read() {
        if let Ok(n) = notes.get(a.entity) {
            line(
                &mut report.0,
                serde_json::json!({"event": "note_activated", "id": n.id.to_hex(), "source": format!("{:?}", a.source), "t_ms": cairn_proto::now_ms()}),
            );
        }
    }
}

fn connection_changes(mut report: ResMut<Report>, status: Res<NetStatus>) {
    if status.is_changed() {
        line(
            &mut report.0,
            serde_json::json!({"event": "status", "state": format!("{:?}", status.state), "t_ms": cairn_proto::now_ms()}),
        );
    }
}

fn display_mode(mut report: ResMut<Report>, mode: Option<Res<DisplayMode>>) {
    if let Some(mode) = mode
        && mode.is_changed()
    {
        line(
            &mut report.0,
            serde_json::json!({"event": "mode", "xr": mode.is_xr(), "notice": mode.notice(), "t_ms": cairn_proto::now_ms()}),
        );
    }
}

/// The runtime's session states as they change, and once a second the frames rendered and
/// the notes in the head's view.
fn xr_session(
    mut report: ResMut<Report>,
    state: Option<Res<SessionState>>,
    frames: Option<Res<XrFrames>>,
    input: Option<Res<XrInput>>,
    notes: Query<&NoteAt>,
    time: Res<Time<Real>>,
    mut last: Local<f32>,
    mut reported: Local<usize>,
) {
    if let Some(state) = state {
        for s in state.0.iter().skip(*reported) {
            line(
                &mut report.0,
                serde_json::json!({"event": "xr_state", "state": s, "t_ms": cairn_proto::now_ms()}),
            );
        }
        *reported = state.0.len();
    }
    if let Some(frames) = frames
        && frames.0 > 0
        && time.elapsed_secs() - *last >= 1.0
    {
        *last = time.elapsed_secs();
        let head = input.as_ref().and_then(|i| i.head);
        let in_view = head.map_or(0, |head| notes_in_view(&head, notes.iter().map(|at| at.0)));
        let aims: Vec<_> = input
            .iter()
            .flat_map(|i| i.hands.iter())
            .map(|h| h.aim.map(|a| (a.translation.to_array(), a.forward().to_array())))
            .collect();
        line(
            &mut report.0,
            serde_json::json!({
                "event": "xr_frames",
                "frames": frames.0,
                "notes_in_view": in_view,
                "head": head.map(|h| h.translation.to_array()),
                "aims": aims,
                "t_ms": cairn_proto::now_ms(),
            }),
        );
    }
}
