//! One pointer abstraction for the mouse and XR controllers or hands: each source sends a
//! ray every frame and a press when it selects. Picking turns rays into hover and focus,
//! and finds where a ray meets the floor (for placing notes).

use crate::CairnSet;
use crate::notes::{Note, NoteBounds};
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
}

/// The note in focus (clicked), if any.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Focused(pub Option<Entity>);

/// Pointing at things farther than this does nothing.
pub const MAX_POINT_DISTANCE: f32 = 60.0;

pub fn plugin(app: &mut App) {
    app.add_message::<PointerRay>()
        .add_message::<PointerPress>()
        .add_message::<NoteActivated>()
        .add_message::<EmptyPress>()
        .init_resource::<Pointer>()
        .init_resource::<Focused>()
        .add_systems(
            Update,
            (pick, press)
                .chain()
                .in_set(PressSet)
                .in_set(CairnSet::Apply)
                .before(crate::notes::NoteSystems),
        );
}

/// Picking and presses; composing runs after them.
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

/// Where `ray` meets the floor plane y = 0.
pub fn ray_floor(ray: Ray3d) -> Option<Vec3> {
    let t = ray.intersect_plane(Vec3::ZERO, InfinitePlane3d::new(Vec3::Y))?;
    (t > 0.0 && t < MAX_POINT_DISTANCE).then(|| ray.get_point(t))
}

fn pick(
    mut rays: MessageReader<PointerRay>,
    mut pointer: ResMut<Pointer>,
    notes: Query<(Entity, &GlobalTransform, &NoteBounds, &Visibility), With<Note>>,
) {
    for r in rays.read() {
        let mut best: Option<(f32, Entity)> = None;
        for (e, t, bounds, vis) in &notes {
            if *vis == Visibility::Hidden {
                continue;
            }
            if let Some(d) = ray_box(r.ray, t, bounds.0)
                && d < MAX_POINT_DISTANCE
                && best.is_none_or(|(bd, _)| d < bd)
            {
                best = Some((d, e));
            }
        }
        *pointer = Pointer {
            source: Some(r.source),
            ray: Some(r.ray),
            hovered: best.map(|(_, e)| e),
            floor: ray_floor(r.ray),
            note_hit: best.map(|(d, _)| r.ray.get_point(d)),
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
