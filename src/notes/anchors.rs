//! Spatial anchors: notes that stand exactly where they were left in a real room.
//!
//! A note always carries its pose in the space's frame (the stage), which every device can
//! show. Where the device knows a persisted spatial anchor near the spot, the note is also
//! attached to it ([`SpatialAnchor`]: the anchor's id and the note's pose relative to it,
//! inside the encrypted body). A device that locates that anchor puts the note at the
//! anchor, which stays right when the stage is recentred or the room re-learnt; one that
//! does not falls back to the stage pose and marks the note as approximate.
//!
//! All of this works over [`KnownAnchors`], the anchors this device locates this frame with
//! their world poses: the XR glue fills it where the runtime persists anchors, tests fill it
//! directly. Nothing here needs a runtime.

use bevy::prelude::*;
use cairn_client::Alignment;
use cairn_crypto::{NoteBody, Pose, SpatialAnchor};
use cairn_proto::NoteId;
use std::collections::HashMap;

/// Where each place's frame is in the world now: the place's points carried into the world
/// (`Alignment::to_stage`). A place missing here is not aligned on this device. `places`
/// keeps it; notes stand by it ([`place`]).
#[derive(Resource, Debug, Default, Clone, PartialEq)]
pub struct PlaceFrames(pub HashMap<NoteId, Alignment>);

/// Which anchor: the runtime's kind of anchor and its id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnchorKey {
    pub kind: String,
    pub id: Vec<u8>,
}

impl AnchorKey {
    pub fn of(anchor: &SpatialAnchor) -> Self {
        AnchorKey { kind: anchor.kind.clone(), id: anchor.id.clone() }
    }
}

/// The spatial anchors this device can locate now, with their poses in the world. Empty
/// where the runtime persists no anchors (the desktop; runtimes without the extensions).
#[derive(Resource, Debug, Default, Clone)]
pub struct KnownAnchors(pub HashMap<AnchorKey, Transform>);

/// Spots where the app wants a local anchor made (a place's origin, aligned with no anchor
/// near it): the XR glue makes one at each where the runtime keeps anchors, and takes them;
/// elsewhere the last few simply stay.
#[derive(Resource, Debug, Default)]
pub struct WantedAnchors(pub Vec<Vec3>);

impl WantedAnchors {
    const MOST: usize = 8;

    pub fn want(&mut self, at: Vec3) {
        if self.0.len() >= Self::MOST {
            self.0.remove(0);
        }
        self.0.push(at);
    }
}

/// A new note is attached to a known anchor at most this far away (metres). Farther, a small
/// error in the anchor's rotation would move the note noticeably (a lever arm), and a
/// runtime keeps an anchor accurate only near it.
pub const ANCHOR_REACH: f32 = 3.0;

/// On notes attached to an anchor or standing in a place, so that following anchors and
/// places visits only those.
#[derive(Component, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct Anchored;

/// A pose as a transform; a malformed position or rotation (a hostile or broken note) gives
/// the origin or no rotation rather than a NaN in the scene.
pub fn pose_to_transform(pose: &Pose) -> Transform {
    let [x, y, z] = pose.position;
    let [qx, qy, qz, qw] = pose.rotation;
    let q = Quat::from_xyzw(qx, qy, qz, qw);
    let rotation =
        if q.is_finite() && (q.length() - 1.0).abs() < 0.01 { q } else { Quat::IDENTITY };
    let translation = Vec3::new(x, y, z);
    Transform {
        translation: if translation.is_finite() { translation } else { Vec3::ZERO },
        rotation,
        scale: Vec3::ONE,
    }
}

fn transform_to_pose(t: &Transform) -> Pose {
    Pose { position: t.translation.to_array(), rotation: t.rotation.to_array() }
}

/// Whether a note stands relative to something that may be found, lost or moved on this
/// device (a spatial anchor, a place), rather than at its stage pose alone.
pub fn stands_relative(body: &NoteBody) -> bool {
    body.anchor.is_some() || body.place.is_some()
}

/// Where a note stands here, and whether that place is approximate: at its anchor when this
/// device locates it; else in its place when this device knows where the place's frame is
/// (aligned with it in the room, or its area in a virtual scene); otherwise at its stage
/// pose, approximate when it has an anchor or a place (it was left against a room this
/// device does not know). An unopened note stands at the origin.
pub fn place(
    body: Option<&NoteBody>,
    known: &KnownAnchors,
    frames: &PlaceFrames,
) -> (Transform, bool) {
    let Some(body) = body else { return (Transform::from_xyz(0.0, 1.2, 0.0), false) };
    if let Some(anchor) = &body.anchor
        && let Some(at) = known.0.get(&AnchorKey::of(anchor))
    {
        let offset = pose_to_transform(&anchor.offset);
        let world = Transform::from_matrix((at.compute_affine() * offset.compute_affine()).into());
        return (Transform { scale: Vec3::ONE, ..world }, false);
    }
    if let Some(p) = &body.place
        && let Some(frame) = frames.0.get(&p.place)
    {
        return (pose_to_transform(&frame.pose_to_stage(&p.pose)), false);
    }
    (pose_to_transform(&body.pose), stands_relative(body))
}

/// The anchor a note placed at `at` is attached to: the nearest known one within
/// [`ANCHOR_REACH`], with the note's pose relative to it.
pub fn attach(at: &Transform, known: &KnownAnchors) -> Option<SpatialAnchor> {
    let (key, anchor) = known
        .0
        .iter()
        .map(|(k, t)| (k, t, t.translation.distance(at.translation)))
        .filter(|(_, _, d)| *d <= ANCHOR_REACH)
        .min_by(|a, b| a.2.total_cmp(&b.2).then_with(|| a.0.id.cmp(&b.0.id)))
        .map(|(k, t, _)| (k, t))?;
    let relative = anchor.compute_affine().inverse() * at.compute_affine();
    Some(SpatialAnchor {
        kind: key.kind.clone(),
        id: key.id.clone(),
        offset: transform_to_pose(&Transform::from_matrix(relative.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(id: u8, at: Transform) -> KnownAnchors {
        KnownAnchors(HashMap::from([(AnchorKey { kind: "msft".into(), id: vec![id] }, at)]))
    }

    #[test]
    fn a_note_attached_where_it_stands_is_placed_back_there_and_follows_its_anchor() {
        let anchor = Transform::from_xyz(2.0, 0.0, -1.0).with_rotation(Quat::from_rotation_y(0.7));
        let note = Transform::from_xyz(2.5, 1.3, -2.0).with_rotation(Quat::from_rotation_y(-0.2));
        let a = attach(&note, &known(1, anchor)).expect("within reach");
        let mut body = NoteBody::text("al", "here", transform_to_pose(&note));
        body.anchor = Some(a);
        let (back, approximate) = place(Some(&body), &known(1, anchor), &Default::default());
        assert!(!approximate);
        assert!(back.translation.distance(note.translation) < 1e-4, "{back:?}");
        assert!(back.rotation.abs_diff_eq(note.rotation, 1e-4), "{back:?}");
        // The runtime refines the anchor 5 cm along x: the note comes along, the stage pose
        // does not matter.
        let refined = Transform { translation: anchor.translation + Vec3::X * 0.05, ..anchor };
        let (moved, _) = place(Some(&body), &known(1, refined), &Default::default());
        assert!(moved.translation.distance(note.translation + Vec3::X * 0.05) < 1e-4);
        // A device that does not know it shows the stage pose, approximate.
        let (stage, approximate) =
            place(Some(&body), &KnownAnchors::default(), &Default::default());
        assert!(approximate && stage.translation.distance(note.translation) < 1e-4);
    }

    #[test]
    fn a_note_attaches_to_the_nearest_anchor_within_reach_and_to_none_beyond() {
        let mut anchors = known(1, Transform::from_xyz(0.0, 0.0, 0.0));
        anchors.0.insert(
            AnchorKey { kind: "msft".into(), id: vec![2] },
            Transform::from_xyz(2.0, 0.0, 0.0),
        );
        let near_second = Transform::from_xyz(1.5, 1.0, 0.0);
        assert_eq!(attach(&near_second, &anchors).unwrap().id, vec![2]);
        let far = Transform::from_xyz(2.0 + ANCHOR_REACH + 0.1, 0.0, 0.0);
        assert!(attach(&far, &anchors).is_none());
        assert!(attach(&near_second, &KnownAnchors::default()).is_none());
    }

    #[test]
    fn a_broken_pose_stands_at_the_origin_unrotated() {
        let t = pose_to_transform(&Pose {
            position: [f32::NAN, 0.0, 1.0],
            rotation: [0.0, 0.0, 3.0, 0.0],
        });
        assert_eq!((t.translation, t.rotation), (Vec3::ZERO, Quat::IDENTITY));
    }
}
