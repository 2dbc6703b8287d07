//! The anchor spaces both kinds of persisted anchor share (`spatial_anchors` for the MSFT
//! extensions, `fb_anchors` for Meta's): an anchor's space as an entity bevy_mod_openxr
//! locates each frame, and the pass that turns the located ones into [`KnownAnchors`].

use super::input::StageOrigin;
use crate::notes::anchors::{AnchorKey, KnownAnchors};
use bevy::prelude::*;
use bevy_mod_openxr::spaces::OxrSpaceLocationFlags;
use bevy_mod_xr::session::XrTracker;
use bevy_mod_xr::spaces::{XrSpace, XrSpaceLocationFlags};
use openxr::sys;
use openxr::sys::Handle as _;

/// The located space of one anchor (of either kind).
#[derive(Component, Debug)]
pub(super) struct AnchorSpace(pub AnchorKey);

/// On an anchor this session has just made, until the runtime first locates it: its pose is
/// the one it was made at, which the note attached to it already stands at. Without this,
/// the frame between making and first locating would mark that note approximate.
#[derive(Component, Debug)]
#[component(storage = "SparseSet")]
pub(super) struct JustMade;

pub(super) fn check(what: &str, r: sys::Result) -> Result<(), String> {
    if r.into_raw() >= 0 { Ok(()) } else { Err(format!("{what}: {r:?}")) }
}

/// A new anchor's pose as the runtime wants it: in the stage's own frame, before locomotion
/// moved the stage in the world.
pub(super) fn stage_pose(stage: &StageOrigin, world: &Transform) -> sys::Posef {
    let local = Transform::from_matrix(
        (stage.0.compute_affine().inverse() * world.compute_affine()).into(),
    );
    let (r, p) = (local.rotation, local.translation);
    sys::Posef {
        orientation: sys::Quaternionf { x: r.x, y: r.y, z: r.z, w: r.w },
        position: sys::Vector3f { x: p.x, y: p.y, z: p.z },
    }
}

/// An anchor's space as an entity that bevy_mod_openxr locates each frame.
#[allow(unsafe_code)]
pub(super) fn spawn_anchor_space(
    commands: &mut Commands,
    space: sys::Space,
    key: AnchorKey,
) -> Entity {
    // SAFETY: a space handle the runtime just created; bevy_mod_openxr locates it each frame
    // and destroys it with the entity.
    let space = unsafe { XrSpace::from_raw(space.into_raw()) };
    commands
        .spawn((
            space,
            AnchorSpace(key),
            XrTracker,
            Transform::default(),
            OxrSpaceLocationFlags(openxr::SpaceLocationFlags::default()),
            XrSpaceLocationFlags::default(),
        ))
        .id()
}

/// What one anchor space says this frame: where the runtime locates it (`None`: not
/// tracked), and whether this session just made it and the runtime has not located it yet.
struct Sighting<'a> {
    key: &'a AnchorKey,
    located: Option<Transform>,
    just_made: bool,
}

/// The anchors known now: those the runtime tracks, and those just made that it has not
/// located yet, at the pose they were made at (from `before`).
fn known_now<'a>(
    sightings: impl Iterator<Item = Sighting<'a>>,
    before: &KnownAnchors,
) -> std::collections::HashMap<AnchorKey, Transform> {
    sightings
        .filter_map(|s| {
            let at = s.located.or_else(|| s.just_made.then(|| before.0.get(s.key).copied())?)?;
            Some((s.key.clone(), at))
        })
        .collect()
}

/// The anchors the runtime tracks now become [`KnownAnchors`], written only when that
/// changes what a note would do (so notes follow anchors without work every frame).
pub(super) fn anchors_in_view(
    mut commands: Commands,
    spaces: Query<(Entity, &AnchorSpace, &GlobalTransform, &XrSpaceLocationFlags, Has<JustMade>)>,
    mut known: ResMut<KnownAnchors>,
) {
    let sightings = spaces.iter().map(|(e, a, t, f, just_made)| {
        let tracked = f.position_tracked && f.rotation_tracked;
        if tracked && just_made {
            commands.entity(e).remove::<JustMade>();
        }
        Sighting { key: &a.0, located: tracked.then(|| t.compute_transform()), just_made }
    });
    let now = known_now(sightings, &known);
    let same = now.len() == known.0.len()
        && now.iter().all(|(k, t)| {
            known.0.get(k).is_some_and(|o| {
                // Rotations compared by where they send two axes (about the angle, in
                // radians): an f32 quaternion dot cannot resolve a milliradian.
                let apart = (o.rotation * Vec3::X).distance(t.rotation * Vec3::X)
                    + (o.rotation * Vec3::Z).distance(t.rotation * Vec3::Z);
                o.translation.distance(t.translation) <= 1e-3 && apart <= 2e-3
            })
        });
    if !same {
        known.0 = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_just_made_anchor_stays_known_until_the_runtime_first_locates_it() {
        let key = |id: u8| AnchorKey { kind: "msft".into(), id: vec![id] };
        let (made, loaded, lost) = (key(1), key(2), key(3));
        let made_at = Transform::from_xyz(1.0, 0.0, -2.0);
        let before = KnownAnchors(
            [(made.clone(), made_at), (lost.clone(), Transform::from_xyz(5.0, 0.0, 0.0))].into(),
        );
        let at = Transform::from_xyz(0.0, 0.0, -4.0);
        let now = known_now(
            [
                // Made this session, not located yet: kept where it was made.
                Sighting { key: &made, located: None, just_made: true },
                // Loaded from the store and located: known where the runtime says.
                Sighting { key: &loaded, located: Some(at), just_made: false },
                // Loaded and no longer tracked: no longer known.
                Sighting { key: &lost, located: None, just_made: false },
            ]
            .into_iter(),
            &before,
        );
        assert_eq!(now.len(), 2);
        assert_eq!(now[&made], made_at);
        assert_eq!(now[&loaded], at);
        // Once located, the runtime's pose wins.
        let refined = Transform::from_xyz(1.01, 0.0, -2.0);
        let now = known_now(
            [Sighting { key: &made, located: Some(refined), just_made: true }].into_iter(),
            &before,
        );
        assert_eq!(now[&made], refined);
    }
}
