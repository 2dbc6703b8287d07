//! One pointer abstraction for the mouse and XR controllers or hands: each source sends a
//! ray every frame and a press when it selects. Picking turns rays into hover and focus,
//! and finds where a ray meets the floor (for placing notes).

use crate::CairnSet;
use crate::net::NetCommand;
use crate::notes::{Focused, Note, NoteBounds, NoteGrid};
use bevy::prelude::*;

/// Where a pointer comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointerSource {
    Mouse,
    LeftHand,
    RightHand,
}

/// A pointer's ray this frame.
#[derive(Message, Debug, Clone, Copy)]
pub struct PointerRay {
    pub source: PointerSource,
    pub ray: Ray3d,
}

/// A pointer selected (mouse click, controller trigger, hand pinch).
#[derive(Message, Debug, Clone, Copy)]
pub struct PointerPress {
    pub source: PointerSource,
}

/// A note was activated by a press on it.
#[derive(Message, Debug, Clone, Copy)]
pub struct NoteActivated {
    pub entity: Entity,
    pub source: PointerSource,
}

/// A press that hit no note, with where its ray met the floor.
#[derive(Message, Debug, Clone, Copy)]
pub struct EmptyPress {
    pub source: PointerSource,
    pub floor: Option<Vec3>,
}

/// What the pointer is over.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct Pointer {
    pub source: Option<PointerSource>,
    pub ray: Option<Ray3d>,
    pub hovered: Option<Entity>,
    /// Where the ray meets the floor (y = 0), if it does in front of the pointer.
    pub floor: Option<Vec3>,
    /// Where the ray meets the nearest note, if any.
    pub note_hit: Option<Vec3>,
    /// The ray meets a world-space board (the XR keyboard or action bar) before any note:
    /// presses are the board's, not a note's or the floor's.
    pub on_panel: bool,
}

/// Pointing at things farther than this does nothing.
pub const MAX_POINT_DISTANCE: f32 = 60.0;

pub fn plugin(app: &mut App) {
    app.add_message::<PointerRay>()
        .add_message::<PointerPress>()
        .add_message::<NoteActivated>()
        .add_message::<EmptyPress>()
        .init_resource::<Pointer>()
        .init_resource::<NoteGrid>()
        .configure_sets(Update, PressSet.after(PickSet))
        .add_systems(
            Update,
            (pick.in_set(PickSet), press.in_set(PressSet))
                .in_set(CairnSet::Apply)
                .before(crate::notes::NoteSystems),
        )
        .add_systems(
            Update,
            mark_read_on_activate.in_set(CairnSet::Apply).after(crate::notes::NoteSystems),
        );
}

/// Picking: rays become hover. World-space boards that can take the pointer (XR's keyboard
/// and action bar) pick after it and before [`PressSet`].
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PickSet;

/// Presses: on the hovered note, or on nothing; composing runs after them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct PressSet;

pub fn press_set() -> PressSet {
    PressSet
}

/// Distance along `ray` to an oriented box (`half` extents, `transform`), if it hits.
pub fn ray_box(ray: Ray3d, transform: &GlobalTransform, half: Vec3) -> Option<f32> {
    let inv = transform.affine().inverse();
    let origin = inv.transform_point3(ray.origin);
    let dir = inv.transform_vector3(*ray.direction);
    let (mut tmin, mut tmax) = (f32::NEG_INFINITY, f32::INFINITY);
    for i in 0..3 {
        if dir[i].abs() < 1e-9 {
            if origin[i].abs() > half[i] {
                return None;
            }
        } else {
            let t1 = (-half[i] - origin[i]) / dir[i];
            let t2 = (half[i] - origin[i]) / dir[i];
            tmin = tmin.max(t1.min(t2));
            tmax = tmax.min(t1.max(t2));
        }
    }
    // `dir` may be scaled by the inverse transform; t is in the same units along the ray.
    (tmax >= tmin && tmax >= 0.0).then_some(tmin.max(0.0))
}

/// The broad phase of picking: whether `ray` passes within the bounding sphere of a box of
/// `half` extents, sized by `scale` and standing at `center` however it is turned, no
/// farther than [`MAX_POINT_DISTANCE`] along it. Cheap (no pose, no inverse), and never false
/// for a box [`ray_box`] would hit in range.
pub fn ray_near_box(ray: Ray3d, center: Vec3, scale: f32, half: Vec3) -> bool {
    let r2 = half.length_squared() * scale * scale;
    let to_center = center - ray.origin;
    let along = to_center.dot(*ray.direction);
    if along < 0.0 && along * along > r2 {
        return false;
    }
    if along > MAX_POINT_DISTANCE && (along - MAX_POINT_DISTANCE).powi(2) > r2 {
        return false;
    }
    to_center.length_squared() - along * along <= r2
}

/// Where `ray` meets the floor plane y = 0.
pub fn ray_floor(ray: Ray3d) -> Option<Vec3> {
    let t = ray.intersect_plane(Vec3::ZERO, InfinitePlane3d::new(Vec3::Y))?;
    (t > 0.0 && t < MAX_POINT_DISTANCE).then(|| ray.get_point(t))
}

/// The nearest visible note each ray meets, among the few the [`NoteGrid`] holds near it.
/// A near note is hit where it stands; a far one as the far field draws it (turned toward
/// the viewer), unless it has faded out of sight.
fn pick(
    mut rays: MessageReader<PointerRay>,
    mut pointer: ResMut<Pointer>,
    grid: Res<NoteGrid>,
    viewer: Res<crate::notes::Viewer>,
    far_scale: Res<crate::notes::FarPanelScale>,
    mut candidates: Local<Vec<Entity>>,
    // Note entities are roots: a near note's `Transform` is where it stands in the world.
    notes: Query<(&crate::notes::NoteAt, &NoteBounds, Option<&Transform>), With<Note>>,
) {
    use crate::notes::{FADED_OUT, fade_alpha, pose_as_shown};
    for r in rays.read() {
        let mut best: Option<(f32, Entity)> = None;
        // A ray ends where it meets the floor: nothing beneath it can be pointed at, and a ray
        // aimed down the room asks for the notes of a few metres, not of sixty.
        let floor = ray_floor(r.ray);
        let length = floor.map_or(MAX_POINT_DISTANCE, |f| f.distance(r.ray.origin));
        grid.near_ray(r.ray, length, &mut candidates);
        for (e, (at, bounds, near)) in
            candidates.iter().filter_map(|&e| Some((e, notes.get(e).ok()?)))
        {
            if near.is_none() && fade_alpha(at.0.distance(viewer.0)) <= FADED_OUT {
                continue;
            }
            // The bounding sphere first: it is the same however the note is turned, so most
            // candidates are passed over before their pose is worked out.
            let (center, scale) = match near {
                Some(t) => (t.translation, t.scale.abs().max_element()),
                None => (at.0, far_scale.0),
            };
            if !ray_near_box(r.ray, center, scale, bounds.0) {
                continue;
            }
            let t = GlobalTransform::from(pose_as_shown(at, near, &viewer, &far_scale));
            if let Some(d) = ray_box(r.ray, &t, bounds.0)
                && d < length
                && best.is_none_or(|(bd, _)| d < bd)
            {
                best = Some((d, e));
            }
        }
        *pointer = Pointer {
            source: Some(r.source),
            ray: Some(r.ray),
            hovered: best.map(|(_, e)| e),
            floor,
            note_hit: best.map(|(d, _)| r.ray.get_point(d)),
            on_panel: false,
        };
    }
}

fn press(
    mut presses: MessageReader<PointerPress>,
    pointer: Res<Pointer>,
    mut focused: ResMut<Focused>,
    mut activated: MessageWriter<NoteActivated>,
    mut empty: MessageWriter<EmptyPress>,
) {
    for p in presses.read() {
        if pointer.on_panel {
            continue;
        }
        match pointer.hovered {
            Some(entity) => {
                focused.0 = Some(entity);
                activated.write(NoteActivated { entity, source: p.source });
            }
            None => {
                empty.write(EmptyPress { source: p.source, floor: pointer.floor });
            }
        }
    }
}

/// Activating a note reads it: its glow goes, and the client remembers.
fn mark_read_on_activate(
    mut activated: MessageReader<NoteActivated>,
    mut notes: Query<&mut Note>,
    mut net: MessageWriter<NetCommand>,
) {
    for a in activated.read() {
        if let Ok(mut n) = notes.get_mut(a.entity)
            && n.unread
        {
            n.unread = false;
            net.write(NetCommand(cairn_client::ClientCommand::MarkRead {
                space: n.space,
                note_id: n.id,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::grid::tests::Lcg;

    #[test]
    fn the_broad_phase_never_drops_a_box_the_ray_hits() {
        let mut rng = Lcg(7);
        let (mut hits, mut culled) = (0, 0);
        for _ in 0..20_000 {
            let rotation =
                Quat::from_euler(EulerRot::YXZ, rng.next() * 3.2, rng.next() * 1.5, rng.next());
            let scale = 1.0 + rng.next().abs() * 2.0;
            let place = rng.vec(70.0);
            let transform = GlobalTransform::from(
                Transform::from_translation(place)
                    .with_rotation(rotation)
                    .with_scale(Vec3::splat(scale)),
            );
            let half = Vec3::new(0.35, 0.25, 0.05) * (0.5 + rng.next().abs());
            // Rays toward the box give hits and near misses; random ones mostly far misses.
            let origin = rng.vec(5.0);
            let toward = (transform.translation() - origin).normalize() + rng.vec(0.004);
            let aim = if rng.next() > 0.0 { toward } else { rng.vec(1.0) };
            let Ok(dir) = Dir3::new(aim) else { continue };
            let ray = Ray3d::new(origin, dir);
            let near = ray_near_box(ray, place, scale, half);
            if ray_box(ray, &transform, half).is_some_and(|d| d < MAX_POINT_DISTANCE) {
                hits += 1;
                assert!(near, "a hit the broad phase dropped: {ray:?} {transform:?} {half}");
            }
            if !near {
                culled += 1;
            }
        }
        // Both kinds occur, and the broad phase takes most misses off the narrow phase.
        assert!(hits > 500 && culled > 5_000, "hits {hits}, culled {culled}");
    }

    #[test]
    fn the_broad_phase_keeps_a_box_straight_ahead_and_drops_one_behind() {
        let ray = Ray3d::new(Vec3::new(0.0, 1.6, 0.0), Dir3::NEG_Z);
        let half = Vec3::new(0.35, 0.25, 0.05);
        let ahead = Vec3::new(0.1, 1.6, -5.0);
        let behind = Vec3::new(0.0, 1.6, 5.0);
        let beyond = Vec3::new(0.0, 1.6, -(MAX_POINT_DISTANCE + 2.0));
        assert!(ray_near_box(ray, ahead, 1.0, half));
        assert!(!ray_near_box(ray, behind, 1.0, half));
        assert!(!ray_near_box(ray, beyond, 1.0, half));
    }
}
