//! Note entities: one per note of the current space, placed at the note's pose, updated and
//! removed as the client reports, linked to the notes they reply to, turned toward the
//! viewer, and faded and simplified with distance.

use crate::CairnSet;
use crate::net::{CurrentSpace, NoteRemoved, NoteUpdated};
use bevy::ecs::lifecycle::HookContext;
use bevy::ecs::world::DeferredWorld;
use bevy::prelude::*;
use cairn_client::LocalNote;
use cairn_crypto::NoteBody;
use cairn_proto::{DeviceId, NoteId, NoteKind, SpaceId};
use std::collections::HashMap;

pub mod anchors;
pub mod grid;
pub use anchors::{AnchorKey, KnownAnchors};
pub use grid::NoteGrid;

/// A note standing in the space. Despawning it takes it out of the [`NoteGrid`].
#[derive(Component, Debug, Clone)]
#[component(on_remove = leave_grid)]
pub struct Note {
    pub space: SpaceId,
    pub id: NoteId,
    pub seq: Option<u64>,
    pub sender: DeviceId,
    /// What it says, when it could be opened.
    pub body: Option<NoteBody>,
    /// Why it could not be opened (shown as a marked placeholder).
    pub error: Option<String>,
    pub unread: bool,
    /// It was left against a spatial anchor this device does not locate, so it stands at
    /// its stage pose, which may be off (see [`anchors`]).
    pub approximate: bool,
}

impl Note {
    pub fn kind(&self) -> Option<NoteKind> {
        self.body.as_ref().map(|b| b.kind)
    }
    pub fn pending(&self) -> bool {
        self.seq.is_none()
    }
    pub fn from_local(n: &LocalNote) -> Self {
        Note {
            space: n.space,
            id: n.note_id,
            seq: n.seq,
            sender: n.sender,
            body: n.body.clone(),
            error: n.error.clone(),
            unread: !n.read,
            approximate: n.body.as_ref().is_some_and(|b| b.anchor.is_some()),
        }
    }
}

/// The visual changed and must be rebuilt (text, pending state, unread).
#[derive(Component, Debug, Default)]
pub struct NeedsVisual;

fn leave_grid(mut world: DeferredWorld, ctx: HookContext) {
    if let Some(mut grid) = world.get_resource_mut::<NoteGrid>() {
        grid.remove(ctx.entity);
    }
}

/// The note's bounds for pointing, as half extents in its local frame. Immutable, so that
/// every change is an insert, which widens the [`NoteGrid`]'s reach to cover it.
#[derive(Component, Debug, Clone, Copy)]
#[component(immutable, on_insert = widen_grid)]
pub struct NoteBounds(pub Vec3);

/// The largest scale the arrival animation gives a note (its overshoot).
pub const ARRIVAL_PEAK_SCALE: f32 = 1.15;

fn widen_grid(mut world: DeferredWorld, ctx: HookContext) {
    let Some(half) = world.get::<NoteBounds>(ctx.entity).map(|b| b.0) else { return };
    if let Some(mut grid) = world.get_resource_mut::<NoteGrid>() {
        grid.widen(half.length());
    }
}

/// Links a reply to the entity of the note it answers.
#[derive(Component, Debug, Clone, Copy)]
pub struct ReplyLink(pub Entity);

/// Set on notes that just arrived live; drives a short scale-in animation.
#[derive(Component, Debug)]
pub struct Arriving(pub f32);

/// Turns the note about its vertical axis to face the viewer. Holds the yaw last applied,
/// so a transform is only written (and re-propagated) when it visibly changes.
#[derive(Component, Debug)]
pub struct Billboard(pub f32);

impl Default for Billboard {
    fn default() -> Self {
        Billboard(f32::NAN)
    }
}

/// How far a note is shown in full, and where it has faded out.
#[derive(Component, Debug, Clone, Copy)]
pub struct DistanceFade {
    pub alpha: f32,
}

/// On the notes within [`DETAIL_DISTANCE`] at the last distance pass (kept until
/// [`DETAIL_HYSTERESIS`] beyond it): the notes shown in detail, with parts of their own; the
/// others are drawn together in the far field (`render::far`). Work for near notes each
/// frame — turning panels, building details — visits those few instead of every note in the
/// space. Sparse storage:
/// notes gain and lose it as the viewer walks, without moving their other components.
#[derive(Component, Debug, Default)]
#[component(storage = "SparseSet")]
pub struct Near;

/// Full detail closer than this (metres).
pub const DETAIL_DISTANCE: f32 = 12.0;
/// A note shown in detail keeps it until it is this much farther than [`DETAIL_DISTANCE`],
/// so a viewer pacing along the edge does not have its panels torn down and redrawn.
pub const DETAIL_HYSTERESIS: f32 = 1.0;
/// Fully faded beyond this.
pub const FADE_END: f32 = 40.0;
/// A note whose [`DistanceFade::alpha`] is at most this is not drawn and cannot be pointed at.
pub const FADED_OUT: f32 = 0.01;

/// Note id -> entity, for the current space.
#[derive(Resource, Default, Debug)]
pub struct NoteIndex(pub HashMap<NoteId, Entity>);

/// Where the viewer's eyes are (the desktop camera, or the XR head).
#[derive(Resource, Debug, Clone, Copy)]
pub struct Viewer(pub Vec3);

impl Default for Viewer {
    fn default() -> Self {
        Viewer(Vec3::new(0.0, 1.6, 3.0))
    }
}

/// The systems that apply note changes; pointing runs before them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct NoteSystems;

pub fn plugin(app: &mut App) {
    app.world_mut().get_resource_or_init::<NoteGrid>().allow_scale(ARRIVAL_PEAK_SCALE);
    app.add_plugins(anchors::plugin);
    app.init_resource::<NoteIndex>()
        .init_resource::<Viewer>()
        .init_resource::<AwaitingParent>()
        .add_systems(
            Update,
            (
                (apply_updates, apply_removals, follow_space)
                    .chain()
                    .in_set(CairnSet::Apply)
                    .in_set(NoteSystems),
                mark_read_on_activate.in_set(CairnSet::Apply).after(NoteSystems),
                (link_replies, face_viewer, fade_with_distance, animate_arrivals)
                    .in_set(CairnSet::Layout),
            ),
        );
}

/// Spawns or updates the entity of each changed note of the current space, placed in the
/// [`NoteGrid`] and faded for the viewer's distance at once (the distance passes visit
/// every note only when the viewer has moved).
fn apply_updates(
    mut commands: Commands,
    mut updates: MessageReader<NoteUpdated>,
    mut index: ResMut<NoteIndex>,
    mut grid: ResMut<NoteGrid>,
    current: Res<CurrentSpace>,
    viewer: Res<Viewer>,
    known: Res<KnownAnchors>,
    mut notes: Query<(
        &mut Note,
        &mut Transform,
        &mut DistanceFade,
        Has<Near>,
        Has<anchors::Anchored>,
    )>,
    time: Option<Res<Time>>,
) {
    let live = time.map(|t| t.elapsed_secs() > 2.0).unwrap_or(false);
    for NoteUpdated(local) in updates.read() {
        if current.0 != Some(local.space) || local.deleted {
            continue;
        }
        let mut note = Note::from_local(local);
        let (transform, approximate) = anchors::place(note.body.as_ref(), &known);
        note.approximate = approximate;
        let anchored = note.body.as_ref().is_some_and(|b| b.anchor.is_some());
        match index.0.get(&local.note_id).copied() {
            Some(entity) => {
                if let Ok((mut existing, mut t, mut fade, near, was_anchored)) =
                    notes.get_mut(entity)
                {
                    *existing = note;
                    if t.translation != transform.translation {
                        let to = transform.translation;
                        move_note(
                            &mut commands,
                            &mut grid,
                            viewer.0,
                            entity,
                            &mut t,
                            &mut fade,
                            near,
                            to,
                        );
                    }
                    let mut e = commands.entity(entity);
                    e.insert(NeedsVisual);
                    if anchored && !was_anchored {
                        e.insert(anchors::Anchored);
                    } else if !anchored && was_anchored {
                        e.remove::<anchors::Anchored>();
                    }
                }
            }
            None => {
                let (alpha, detailed) = fade_at(transform.translation.distance(viewer.0), false);
                let mut e = commands.spawn((
                    note,
                    transform,
                    Visibility::default(),
                    Billboard::default(),
                    DistanceFade { alpha },
                    NoteBounds(Vec3::new(0.35, 0.25, 0.05)),
                    NeedsVisual,
                ));
                if detailed {
                    e.insert(Near);
                }
                if anchored {
                    e.insert(anchors::Anchored);
                }
                if live {
                    e.insert(Arriving(0.0));
                }
                grid.place(e.id(), transform.translation);
                index.0.insert(local.note_id, e.id());
            }
        }
    }
}

/// Moves a standing note to `to`: its cell in the [`NoteGrid`], its fade and its level of
/// detail follow at once.
#[allow(clippy::too_many_arguments)]
fn move_note(
    commands: &mut Commands,
    grid: &mut NoteGrid,
    viewer: Vec3,
    e: Entity,
    t: &mut Transform,
    fade: &mut DistanceFade,
    near: bool,
    to: Vec3,
) {
    t.translation = to;
    grid.place(e, to);
    let (alpha, detailed) = fade_at(to.distance(viewer), near);
    fade.alpha = alpha;
    set_near(commands, e, detailed, near);
}

fn apply_removals(
    mut commands: Commands,
    mut removals: MessageReader<NoteRemoved>,
    mut index: ResMut<NoteIndex>,
) {
    for r in removals.read() {
        if let Some(e) = index.0.remove(&r.note_id) {
            commands.entity(e).despawn();
        }
    }
}

/// When the current space changes, clear the scene (the client re-sends that space's notes).
fn follow_space(
    mut commands: Commands,
    current: Res<CurrentSpace>,
    mut index: ResMut<NoteIndex>,
    mut last: Local<Option<Option<SpaceId>>>,
) {
    if last.is_some_and(|l| l != current.0) {
        for (_, e) in index.0.drain() {
            commands.entity(e).despawn();
        }
    }
    *last = Some(current.0);
}

/// Replies whose parent has not arrived yet.
#[derive(Resource, Default, Debug)]
pub struct AwaitingParent(Vec<Entity>);

/// Links replies to their parents: new or changed notes, and those still waiting for a
/// parent, so the work is per change, not per note per frame.
fn link_replies(
    mut commands: Commands,
    index: Res<NoteIndex>,
    mut waiting: ResMut<AwaitingParent>,
    changed: Query<Entity, (Changed<Note>, Without<ReplyLink>)>,
    notes: Query<&Note, Without<ReplyLink>>,
) {
    let mut still = Vec::new();
    let candidates: Vec<Entity> = changed.iter().chain(waiting.0.drain(..)).collect();
    for e in candidates {
        let Ok(n) = notes.get(e) else { continue };
        let Some(parent) = n.body.as_ref().and_then(|b| b.reply_to) else { continue };
        match index.0.get(&parent) {
            Some(p) => {
                commands.entity(e).insert(ReplyLink(*p));
            }
            None => {
                if !still.contains(&e) {
                    still.push(e);
                }
            }
        }
    }
    waiting.0 = still;
}

/// Smallest turn worth writing (radians, about half a degree).
const BILLBOARD_STEP: f32 = 0.01;

/// How far the viewer may move before far notes are faded and turned again (metres).
const FULL_PASS_EVERY: f32 = 0.25;

/// Whether the viewer moved far enough since `last` for a pass over every note.
pub(crate) fn full_pass(last: &mut Option<Vec3>, viewer: Vec3) -> bool {
    let due = last.is_none_or(|p| p.distance(viewer) > FULL_PASS_EVERY);
    if due {
        *last = Some(viewer);
    }
    due
}

/// Panels turn about the vertical axis toward the viewer, so text is never seen edge-on.
/// Notes within reading distance turn every frame; farther ones, whose facing barely changes
/// as the viewer walks, when the viewer has moved 25 cm. Notes past the fade are left alone.
pub fn face_viewer(
    viewer: Res<Viewer>,
    mut last: Local<Option<Vec3>>,
    mut q: ParamSet<(
        Query<(&mut Billboard, &mut Transform)>,
        Query<(&mut Billboard, &mut Transform), With<Near>>,
    )>,
) {
    let turn = |(mut board, mut t): (Mut<Billboard>, Mut<Transform>)| {
        let mut to = viewer.0 - t.translation;
        to.y = 0.0;
        let d2 = to.length_squared();
        if !(1e-6..=FADE_END * FADE_END).contains(&d2) {
            return;
        }
        let yaw = f32::atan2(to.x, to.z);
        if board.0.is_nan() || (yaw - board.0).abs() > BILLBOARD_STEP {
            board.0 = yaw;
            t.rotation = Quat::from_rotation_y(yaw);
        }
    };
    if full_pass(&mut last, viewer.0) {
        q.p0().iter_mut().for_each(turn);
    } else {
        // Between passes only the near notes turn; the far ones wait for the next pass.
        q.p1().iter_mut().for_each(turn);
    }
}

/// A note's alpha at distance `d` from the viewer, and whether it is shown in detail, given
/// whether it was (a detailed note keeps its detail a little past [`DETAIL_DISTANCE`]).
fn fade_at(d: f32, was_near: bool) -> (f32, bool) {
    let alpha = 1.0 - ((d - DETAIL_DISTANCE) / (FADE_END - DETAIL_DISTANCE)).clamp(0.0, 1.0);
    let reach = if was_near { DETAIL_DISTANCE + DETAIL_HYSTERESIS } else { DETAIL_DISTANCE };
    (alpha, d < reach)
}

/// Marks a note near (detailed) or not, when that changed.
fn set_near(commands: &mut Commands, e: Entity, detailed: bool, near: bool) {
    // `try_`: a tombstone may despawn the note before these commands apply.
    if detailed && !near {
        commands.entity(e).try_insert(Near);
    } else if !detailed && near {
        commands.entity(e).try_remove::<Near>();
    }
}

/// Alpha and level of detail from the distance to the viewer, recomputed when the viewer
/// has moved 25 cm (a note that arrives or moves is faded where that happens).
pub fn fade_with_distance(
    mut commands: Commands,
    viewer: Res<Viewer>,
    mut last: Local<Option<Vec3>>,
    mut q: Query<(Entity, &Transform, &mut DistanceFade, Has<Near>)>,
) {
    if !full_pass(&mut last, viewer.0) {
        return;
    }
    for (e, t, mut fade, near) in &mut q {
        let (alpha, detailed) = fade_at(t.translation.distance(viewer.0), near);
        set_near(&mut commands, e, detailed, near);
        if (fade.alpha - alpha).abs() > 0.02 {
            fade.alpha = alpha;
        }
    }
}

pub fn animate_arrivals(
    mut commands: Commands,
    time: Res<Time>,
    mut q: Query<(Entity, &mut Arriving, &mut Transform)>,
) {
    for (e, mut a, mut t) in &mut q {
        a.0 = (a.0 + time.delta_secs() * 2.5).min(1.0);
        // Ease out with a little overshoot.
        let x = a.0;
        let over = ARRIVAL_PEAK_SCALE - 1.0;
        t.scale = Vec3::splat(1.0 + over * (std::f32::consts::PI * x).sin() - over * (1.0 - x));
        if a.0 >= 1.0 {
            t.scale = Vec3::ONE;
            commands.entity(e).remove::<Arriving>();
        }
    }
}

/// Activating a note reads it: its glow goes, and the client remembers.
fn mark_read_on_activate(
    mut activated: MessageReader<crate::interact::NoteActivated>,
    mut notes: Query<&mut Note>,
    mut net: MessageWriter<crate::net::NetCommand>,
) {
    for a in activated.read() {
        if let Ok(mut n) = notes.get_mut(a.entity)
            && n.unread
        {
            n.unread = false;
            net.write(crate::net::NetCommand(cairn_client::ClientCommand::MarkRead {
                space: n.space,
                note_id: n.id,
            }));
        }
    }
}
