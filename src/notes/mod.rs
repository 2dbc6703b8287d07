//! Note entities: one per note of the current space, placed at the note's pose, updated and
//! removed as the client reports, linked to the notes they reply to, and shown in detail
//! (turned toward the viewer, with parts of their own) when near; far notes are drawn
//! together, faded with distance, by `render::far`.

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
pub use anchors::{AnchorKey, KnownAnchors, WantedAnchors};
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
    /// It was left against a spatial anchor this device does not locate, or in a place this
    /// device has not aligned with, so it stands at its stage pose, which may be off (see
    /// [`anchors`]).
    pub approximate: bool,
}

impl Note {
    pub fn kind(&self) -> Option<NoteKind> {
        self.body.as_ref().map(|b| b.kind)
    }
    pub fn pending(&self) -> bool {
        self.seq.is_none()
    }
    /// Its signature did not verify under its sender's key: nothing shows who left it, so
    /// nothing it says is shown (the server does not check notes' signatures; readers do).
    pub fn unverifiable(&self) -> bool {
        self.error.as_deref() == Some(cairn_client::client::UNVERIFIABLE)
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
            approximate: n.body.as_ref().is_some_and(anchors::stands_relative),
        }
    }
}

/// The order of the note lists (the sidebar, the hand display): unread first, then newest (pending ones on top).
pub(crate) fn list_order(n: &Note) -> (bool, std::cmp::Reverse<u64>) {
    (!n.unread, std::cmp::Reverse(n.seq.unwrap_or(u64::MAX)))
}

/// A note's row in the note lists (the sidebar, the hand display): a mark (pending, unread),
/// the author and what it says, cut to 40 characters.
pub(crate) fn row_text(n: &Note) -> String {
    let mark = if n.pending() {
        "…"
    } else if n.unread {
        "●"
    } else {
        " "
    };
    match &n.body {
        Some(b) => {
            let what = match b.kind {
                NoteKind::Voice => format!("voice {:.0}s", f64::from(b.duration_ms) / 1000.0),
                NoteKind::Image => format!("picture {}", b.text),
                NoteKind::Video => {
                    format!("video {:.0}s {}", f64::from(b.duration_ms) / 1000.0, b.text)
                }
                NoteKind::Reaction => format!("reacted {}", b.reaction.clone().unwrap_or_default()),
                NoteKind::Text => b.text.clone(),
                NoteKind::Place => format!(
                    "made place {}",
                    b.place_record.as_ref().map(|r| r.name.as_str()).unwrap_or_default()
                ),
            };
            let line = format!("{mark} {}: {what}", b.author);
            if line.chars().count() > 40 {
                format!("{}…", line.chars().take(39).collect::<String>().trim_end())
            } else {
                line
            }
        }
        None => format!("{mark} (cannot be opened)"),
    }
}
/// Where a note stands in the space (world coordinates): its pose's position, or where its
/// spatial anchor puts it. Every note has one. Only a [`Near`] note also has a `Transform`
/// (and visibility), turned toward the viewer and sized each frame, under which its parts
/// hang: the thousands of far notes, drawn together by the far field, cost Bevy's transform
/// and visibility passes nothing each frame.
#[derive(Component, Debug, Clone, Copy, PartialEq)]
pub struct NoteAt(pub Vec3);

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

/// Turns the note about its vertical axis to face the viewer while it is [`Near`]. Holds the
/// direction it last faced (toward the viewer, on the ground plane: x and z, unit length), so
/// a transform is only written (and re-propagated) when that visibly changes. (A far note is
/// turned where it is drawn and pointed at: see [`far_pose`].)
#[derive(Component, Debug)]
pub struct Billboard(pub Vec2);

impl Default for Billboard {
    fn default() -> Self {
        Billboard(Vec2::NAN)
    }
}

/// On the notes within [`DETAIL_DISTANCE`] at the last distance pass (kept until
/// [`DETAIL_HYSTERESIS`] beyond it): the notes shown in detail, with parts of their own,
/// turned toward the viewer and unfaded; the others are drawn together in the far field
/// (`render::far`), which fades and turns them as it draws them. Work each frame — turning
/// panels, building details — and the distance passes visit these few instead of every
/// note in the space. Only a near note has a `Transform`, visibility and a [`Billboard`]
/// (see [`NoteAt`]).
#[derive(Component, Debug, Default)]
pub struct Near;

/// Full detail closer than this (metres).
pub const DETAIL_DISTANCE: f32 = 12.0;
/// A note shown in detail keeps it until it is this much farther than [`DETAIL_DISTANCE`],
/// so a viewer pacing along the edge does not have its panels torn down and redrawn.
pub const DETAIL_HYSTERESIS: f32 = 1.0;
/// Fully faded beyond this.
pub const FADE_END: f32 = 40.0;
/// At most this many notes are shown in detail: the nearest, where more stand within
/// [`DETAIL_DISTANCE`]. A detailed text note is a panel texture of about 0.4 MB, so this is
/// about 100 MB of panels, what a standalone headset can spare; and in a crowd that dense
/// the notes past the nearest few hundred, up to 12 m away, are small enough to read as
/// cards. It keeps a frame's work for notes bounded however crowded the space.
pub const DETAIL_BUDGET: usize = 256;
/// A note whose [`fade_alpha`] is at most this is not drawn and cannot be pointed at.
pub const FADED_OUT: f32 = 0.01;

/// How opaque a far note is at `d` metres from the viewer: whole at [`DETAIL_DISTANCE`],
/// fading to nothing at [`FADE_END`]. (Near notes are shown whole.)
pub fn fade_alpha(d: f32) -> f32 {
    1.0 - ((d - DETAIL_DISTANCE) / (FADE_END - DETAIL_DISTANCE)).clamp(0.0, 1.0)
}

/// The turn about the vertical axis that faces a note at `at` toward `viewer`, or `None`
/// when the viewer stands right above or below it.
pub fn facing_yaw(at: Vec3, viewer: Vec3) -> Option<f32> {
    let mut to = viewer - at;
    to.y = 0.0;
    (to.length_squared() >= 1e-6).then(|| f32::atan2(to.x, to.z))
}

/// How a far note stands where it is drawn and pointed at: at its place, turned toward the
/// viewer, at the far panels' size ([`FarPanelScale`]). (A far note has no `Transform`; near
/// notes are turned and sized there, each frame.)
pub fn far_pose(at: Vec3, viewer: Vec3, scale: f32) -> Transform {
    let yaw = facing_yaw(at, viewer).unwrap_or(0.0);
    Transform { translation: at, rotation: Quat::from_rotation_y(yaw), scale: Vec3::splat(scale) }
}

/// How a note standing at `at` is shown: a near note as its `Transform` says (turned and
/// sized each frame), a far one, which has none, as the far field draws it ([`far_pose`]).
pub fn pose_as_shown(
    at: &NoteAt,
    near: Option<&Transform>,
    viewer: &Viewer,
    far: &FarPanelScale,
) -> Transform {
    near.copied().unwrap_or_else(|| far_pose(at.0, viewer.0, far.0))
}

/// The size far panels are drawn and pointed at: 1 on the desktop; in XR, the comfort
/// rule's largest (every far note is past the distance where it stops growing).
#[derive(Resource, Debug, Clone, Copy)]
pub struct FarPanelScale(pub f32);

impl Default for FarPanelScale {
    fn default() -> Self {
        FarPanelScale(1.0)
    }
}

/// Note id -> entity, for the current space.
#[derive(Resource, Default, Debug)]
pub struct NoteIndex(pub HashMap<NoteId, Entity>);

/// The note in focus (the last one pressed, or chosen in a list), if any: it is always shown
/// in detail. Pointing (`interact`) and the lists set it.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Focused(pub Option<Entity>);

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
    app.init_resource::<NoteIndex>()
        .init_resource::<KnownAnchors>()
        .init_resource::<WantedAnchors>()
        .init_resource::<Viewer>()
        .init_resource::<Focused>()
        .init_resource::<FarPanelScale>()
        .init_resource::<RecountNear>()
        .init_resource::<AwaitingParent>()
        .add_systems(
            Update,
            (
                (apply_updates, apply_removals, follow_space)
                    .chain()
                    .in_set(CairnSet::Apply)
                    .in_set(NoteSystems),
                follow_anchors.in_set(CairnSet::Apply).after(NoteSystems),
                // A note that comes near is turned the same frame.
                (link_replies, (follow_distance, face_viewer).chain(), animate_arrivals)
                    .in_set(CairnSet::Layout),
            ),
        );
}

/// Spawns or updates the entity of each changed note of the current space, placed in the
/// [`NoteGrid`]; which notes are [`Near`] is worked out again the same frame
/// ([`follow_distance`]).
fn apply_updates(
    mut commands: Commands,
    mut updates: MessageReader<NoteUpdated>,
    mut index: ResMut<NoteIndex>,
    mut grid: ResMut<NoteGrid>,
    mut recount: ResMut<RecountNear>,
    current: Res<CurrentSpace>,
    known: Res<KnownAnchors>,
    frames: Res<anchors::PlaceFrames>,
    mut notes: Query<(&mut Note, &mut NoteAt, Option<&mut Transform>, Has<anchors::Anchored>)>,
    time: Option<Res<Time>>,
) {
    let live = time.map(|t| t.elapsed_secs() > 2.0).unwrap_or(false);
    for NoteUpdated(local) in updates.read() {
        if current.0 != Some(local.space) || local.deleted {
            continue;
        }
        // A place's record is not a note in the scene: `places` keeps it.
        if local.body.as_ref().is_some_and(|b| b.kind == NoteKind::Place) {
            continue;
        }
        let mut note = Note::from_local(local);
        let (transform, approximate) = anchors::place(note.body.as_ref(), &known, &frames);
        note.approximate = approximate;
        let anchored = note.body.as_ref().is_some_and(anchors::stands_relative);
        match index.0.get(&local.note_id).copied() {
            Some(entity) => {
                if let Ok((mut existing, mut at, t, was_anchored)) = notes.get_mut(entity) {
                    *existing = note;
                    if at.0 != transform.translation {
                        let to = transform.translation;
                        move_note(&mut grid, &mut recount, entity, &mut at, t, to);
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
                // Far until the distance pass (this frame) makes it near.
                let mut e = commands.spawn((
                    note,
                    NoteAt(transform.translation),
                    NoteBounds(Vec3::new(0.35, 0.25, 0.05)),
                    NeedsVisual,
                ));
                if anchored {
                    e.insert(anchors::Anchored);
                }
                if live {
                    e.insert(Arriving(0.0));
                }
                grid.place(e.id(), transform.translation);
                recount.0 = true;
                index.0.insert(local.note_id, e.id());
            }
        }
    }
}

/// Moves a standing note to `to`: its cell in the [`NoteGrid`] follows at once, and its
/// level of detail the same frame.
fn move_note(
    grid: &mut NoteGrid,
    recount: &mut RecountNear,
    e: Entity,
    at: &mut NoteAt,
    near: Option<Mut<Transform>>,
    to: Vec3,
) {
    at.0 = to;
    if let Some(mut t) = near {
        t.translation = to;
    }
    grid.place(e, to);
    recount.0 = true;
}

/// Set when notes arrived, moved or went: which are near is worked out again this frame,
/// not at the next distance pass.
#[derive(Resource, Debug, Default)]
pub struct RecountNear(pub(crate) bool);

fn apply_removals(
    mut commands: Commands,
    mut removals: MessageReader<NoteRemoved>,
    mut index: ResMut<NoteIndex>,
    mut recount: ResMut<RecountNear>,
) {
    for r in removals.read() {
        if let Some(e) = index.0.remove(&r.note_id) {
            commands.entity(e).despawn();
            // In a crowd, a note taken away makes room in the detail budget.
            recount.0 = true;
        }
    }
}

/// When the current space changes, clear the scene and ask the client for the new space's
/// notes. (The first space shown needs no asking: the client sends every cached note at
/// start.)
fn follow_space(
    mut commands: Commands,
    current: Res<CurrentSpace>,
    mut index: ResMut<NoteIndex>,
    mut net: MessageWriter<crate::net::NetCommand>,
    mut last: Local<Option<Option<SpaceId>>>,
) {
    if let Some(before) = *last
        && before != current.0
    {
        for (_, e) in index.0.drain() {
            commands.entity(e).despawn();
        }
        if let (Some(_), Some(space)) = (before, current.0) {
            net.write(crate::net::NetCommand(cairn_client::ClientCommand::OpenSpace { space }));
        }
    }
    *last = Some(current.0);
}

/// Replies whose parent has not arrived yet.
#[derive(Resource, Default, Debug)]
pub struct AwaitingParent(Vec<Entity>);

/// Links replies to their parents: new or changed notes (those whose visual is due, which
/// every arrival and update is), and those still waiting for a parent, so the work is per
/// change, not per note per frame. Runs before the visuals are built.
pub fn link_replies(
    mut commands: Commands,
    index: Res<NoteIndex>,
    mut waiting: ResMut<AwaitingParent>,
    changed: Query<Entity, (With<NeedsVisual>, Without<ReplyLink>)>,
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
/// Largest turn a near panel may lag behind facing the viewer (radians, about 6 degrees).
const BILLBOARD_MAX_STEP: f32 = 0.1;
/// How much a panel's edge may seem to grow or shrink before it is turned (a share of its
/// size), and the half width of a panel at scale 1 (metres).
const BILLBOARD_TOLERANCE: f32 = 0.005;
const PANEL_HALF_WIDTH: f32 = 0.35;

/// The turn worth writing for a panel `d` metres away at `scale`. A panel turned δ away
/// from facing the viewer brings one edge w·sin δ nearer (w: its half width) and the other
/// as much farther: seen from `d` metres, each looks w·δ/d larger or smaller, a share of a
/// percent that nobody sees, while it turns only when that share would grow past
/// [`BILLBOARD_TOLERANCE`]. Its width is foreshortened by cos δ, under 0.5 % at 6 degrees. So
/// a near panel turns often and a farther one seldom (a walking viewer turns a note `d` away
/// by an angle ∝ 1/d, and its step is ∝ d).
fn billboard_step(d: f32, scale: f32) -> f32 {
    (BILLBOARD_TOLERANCE * d / (PANEL_HALF_WIDTH * scale.max(1e-3)))
        .clamp(BILLBOARD_STEP, BILLBOARD_MAX_STEP)
}

/// How far the viewer may move before the levels of detail are looked at again and the far
/// field is redrawn for the new place (metres).
const FULL_PASS_EVERY: f32 = 0.25;

/// Whether the viewer moved far enough since `last` for a distance pass.
pub(crate) fn full_pass(last: &mut Option<Vec3>, viewer: Vec3) -> bool {
    let due = last.is_none_or(|p| p.distance(viewer) > FULL_PASS_EVERY);
    if due {
        *last = Some(viewer);
    }
    due
}

/// Near panels turn about the vertical axis toward the viewer each frame, so text is never
/// seen edge-on. (Far notes are turned where they are drawn: see [`far_pose`].)
pub fn face_viewer(
    viewer: Res<Viewer>,
    mut q: Query<(&mut Billboard, &mut Transform), With<Near>>,
) {
    for (mut board, mut t) in &mut q {
        let to = viewer.0 - t.translation;
        let flat = Vec2::new(to.x, to.z);
        let flat_sq = flat.length_squared();
        if flat_sq < 1e-6 {
            continue;
        }
        let dir = flat / flat_sq.sqrt();
        let step = billboard_step((flat_sq + to.y * to.y).sqrt(), t.scale.x);
        // Turned when the direction moved by more than `step` radians: its cosine against
        // the last one below cos(step), which for these small steps is 1 - step²/2 (so no
        // angle is computed for the notes that stay as they are, nearly all of them).
        if board.0.is_nan() || board.0.dot(dir) < 1.0 - 0.5 * step * step {
            board.0 = dir;
            t.rotation = Quat::from_rotation_y(f32::atan2(dir.x, dir.y));
        }
    }
}

/// Marks a note near (detailed) or not, when that changed. A near note gets a `Transform`
/// at its place and visibility, for its parts to hang from ([`face_viewer`] turns it the
/// same frame); a far one loses them with its parts.
fn set_near(commands: &mut Commands, e: Entity, at: Vec3, detailed: bool, near: bool) {
    // `try_`: a tombstone may despawn the note before these commands apply.
    if detailed && !near {
        commands.entity(e).try_insert((
            Near,
            Billboard::default(),
            Transform::from_translation(at),
            Visibility::default(),
        ));
    } else if !detailed && near {
        commands.entity(e).try_remove::<(
            Near,
            Billboard,
            Transform,
            GlobalTransform,
            bevy::transform::components::TransformTreeChanged,
            Visibility,
            InheritedVisibility,
            ViewVisibility,
        )>();
    }
}

/// Which notes are shown in detail: the focused note, wherever it stands (it was clicked to
/// be read), and the nearest others within [`DETAIL_DISTANCE`], up to [`DETAIL_BUDGET`] in
/// all (a note already detailed keeps its detail [`DETAIL_HYSTERESIS`] farther, and counts
/// as that much nearer in the ranking, so that a viewer pacing along the edge, or a crowd
/// on the budget's edge, does not have panels torn down and redrawn). Worked out when the
/// viewer has moved 25 cm, and the frame notes arrive, move or go or the focus changes.
/// Visits the notes that were near and those the [`NoteGrid`] holds within the detail
/// distance, not every note.
#[allow(clippy::too_many_arguments)]
pub fn follow_distance(
    mut commands: Commands,
    viewer: Res<Viewer>,
    grid: Res<NoteGrid>,
    mut recount: ResMut<RecountNear>,
    focused: Res<Focused>,
    mut last: Local<Option<Vec3>>,
    mut around: Local<Vec<Entity>>,
    mut ranked: Local<Vec<(f32, Entity, Vec3, bool)>>,
    near: Query<(Entity, &NoteAt), With<Near>>,
    far: Query<&NoteAt, Without<Near>>,
) {
    let moved = full_pass(&mut last, viewer.0);
    if !moved && !recount.0 && !focused.is_changed() {
        return;
    }
    recount.0 = false;
    // (distance, less the hysteresis for a detailed note, and none for the focused one; the
    // note; whether it is detailed)
    let rank = |e: Entity, d: f32| if focused.0 == Some(e) { f32::NEG_INFINITY } else { d };
    ranked.clear();
    ranked.extend(
        near.iter()
            .map(|(e, at)| (rank(e, at.0.distance(viewer.0) - DETAIL_HYSTERESIS), e, at.0, true)),
    );
    grid.near_point(viewer.0, DETAIL_DISTANCE, &mut around);
    if let Some(f) = focused.0
        && !around.contains(&f)
    {
        around.push(f);
    }
    ranked.extend(around.iter().filter_map(|&e| {
        let at = far.get(e).ok()?.0;
        Some((rank(e, at.distance(viewer.0)), e, at, false))
    }));
    // The nearest `DETAIL_BUDGET` first, in no particular order: a partition, not a sort.
    if ranked.len() > DETAIL_BUDGET {
        ranked.select_nth_unstable_by(DETAIL_BUDGET, |a, b| a.0.total_cmp(&b.0));
    }
    for (i, &(d, e, at, was)) in ranked.iter().enumerate() {
        set_near(&mut commands, e, at, d < DETAIL_DISTANCE && i < DETAIL_BUDGET, was);
    }
}

pub fn animate_arrivals(
    mut commands: Commands,
    time: Res<Time>,
    mut q: Query<(Entity, &mut Arriving, Option<&mut Transform>)>,
) {
    for (e, mut a, t) in &mut q {
        a.0 = (a.0 + time.delta_secs() * 2.5).min(1.0);
        // Ease out with a little overshoot (seen on near notes; a far one arrives unscaled).
        let x = a.0;
        let over = ARRIVAL_PEAK_SCALE - 1.0;
        let scale = if a.0 >= 1.0 {
            commands.entity(e).remove::<Arriving>();
            1.0
        } else {
            1.0 + over * (std::f32::consts::PI * x).sin() - over * (1.0 - x)
        };
        if let Some(mut t) = t {
            t.scale = Vec3::splat(scale);
        }
    }
}

/// Attached notes follow their anchors and places: the runtime refines an anchor as it learns
/// the room, and an anchor located or a place aligned only now moves its notes from the
/// approximate stage place to the exact one (and one lost sends them back, marked again).
/// Runs only when the anchors or the places' frames changed, over the attached notes only.
#[allow(clippy::type_complexity)]
fn follow_anchors(
    mut commands: Commands,
    known: Res<KnownAnchors>,
    frames: Res<anchors::PlaceFrames>,
    mut grid: ResMut<NoteGrid>,
    mut recount: ResMut<RecountNear>,
    mut notes: Query<
        (Entity, &mut Note, &mut NoteAt, Option<&mut Transform>),
        With<anchors::Anchored>,
    >,
) {
    if !known.is_changed() && !frames.is_changed() {
        return;
    }
    for (e, mut note, mut at, t) in &mut notes {
        let (to, approximate) = anchors::place(note.body.as_ref(), &known, &frames);
        if at.0.distance(to.translation) > 1e-3 {
            move_note(&mut grid, &mut recount, e, &mut at, t, to.translation);
        }
        if note.approximate != approximate {
            // Its header says whether the place is approximate: redraw it.
            note.approximate = approximate;
            commands.entity(e).insert(NeedsVisual);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_near_panel_turns_in_small_steps_and_a_farther_one_in_larger_ones() {
        // At arm's length, the half-degree floor; at 7 m, a tolerance-sized step; past that,
        // the six-degree ceiling; a panel three times larger (XR) turns three times as often.
        assert_eq!(billboard_step(0.5, 1.0), BILLBOARD_STEP);
        let at_7 = billboard_step(7.0, 1.0);
        assert!((at_7 - BILLBOARD_TOLERANCE * 7.0 / PANEL_HALF_WIDTH).abs() < 1e-6, "{at_7}");
        assert_eq!(billboard_step(12.0, 1.0), BILLBOARD_MAX_STEP);
        assert!((billboard_step(7.0, 3.0) - at_7 / 3.0).abs() < 1e-6);
        // What the step is for: the nearer edge of a panel lagging by it looks at most
        // `BILLBOARD_TOLERANCE` larger than it would facing the viewer.
        for d in [1.0f32, 3.0, 7.0, 12.0] {
            let step = billboard_step(d, 1.0);
            let edge_nearer = PANEL_HALF_WIDTH * step.sin();
            let grows = d / (d - edge_nearer) - 1.0;
            assert!(grows <= BILLBOARD_TOLERANCE * 1.05, "{d} m: {grows}");
        }
    }

    #[test]
    fn a_near_panel_is_turned_only_when_the_viewer_moved_it_more_than_its_step() {
        let mut world = World::new();
        world.insert_resource(Viewer(Vec3::new(0.0, 1.6, 0.0)));
        let at = Vec3::new(0.0, 1.5, -3.0);
        let e = world.spawn((Near, Billboard::default(), Transform::from_translation(at))).id();
        let mut face = IntoSystem::into_system(face_viewer);
        face.initialize(&mut world);
        let mut turn = |world: &mut World, viewer: Vec3| {
            world.resource_mut::<Viewer>().0 = viewer;
            let before = world.entity(e).get_ref::<Transform>().unwrap().last_changed();
            world.increment_change_tick();
            face.run((), world).unwrap();
            let t = world.entity(e).get_ref::<Transform>().unwrap();
            (t.last_changed() != before, t.rotation)
        };
        let facing = |rotation: Quat, viewer: Vec3| {
            let mut want = viewer - at;
            want.y = 0.0;
            (rotation * Vec3::Z).angle_between(want)
        };
        let (changed, r) = turn(&mut world, Vec3::new(0.0, 1.6, 0.0));
        assert!(changed && facing(r, Vec3::new(0.0, 1.6, 0.0)) < 1e-4, "the first frame turns it");
        // 1 cm sideways at 3 m is a fifth of the smallest step: left as it is.
        let (changed, _) = turn(&mut world, Vec3::new(0.01, 1.6, 0.0));
        assert!(!changed, "a sub-step move rewrites nothing");
        // 30 cm sideways is about 5.7 degrees, over the step: turned to face exactly.
        let v = Vec3::new(0.3, 1.6, 0.0);
        let (changed, r) = turn(&mut world, v);
        assert!(changed && facing(r, v) < 1e-4, "{}", facing(r, v));
        // Straight above it (no direction on the ground): left as it is.
        let (changed, _) = turn(&mut world, Vec3::new(0.0, 4.0, -3.0));
        assert!(!changed);
    }

    #[test]
    fn a_far_note_is_drawn_facing_the_viewer_and_fades_out_by_the_end_of_the_fade() {
        let at = Vec3::new(3.0, 1.5, -20.0);
        let viewer = Vec3::new(0.0, 1.6, 0.0);
        let pose = far_pose(at, viewer, 3.0);
        let mut to = viewer - at;
        to.y = 0.0;
        assert!((pose.rotation * Vec3::Z).angle_between(to) < 1e-4);
        assert_eq!((pose.translation, pose.scale), (at, Vec3::splat(3.0)));
        // Straight above it, no facing can be worked out: it stays unturned.
        assert_eq!(far_pose(at, at + Vec3::Y, 1.0).rotation, Quat::IDENTITY);
        assert_eq!(fade_alpha(DETAIL_DISTANCE), 1.0);
        assert!((fade_alpha((DETAIL_DISTANCE + FADE_END) / 2.0) - 0.5).abs() < 1e-6);
        assert_eq!(fade_alpha(FADE_END), 0.0);
    }
}
