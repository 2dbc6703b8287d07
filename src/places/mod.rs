//! Places: a note stands at the same physical spot for everyone who comes.
//!
//! A place (a kitchen, a lab bench) is a frame of reference whose record travels sealed like
//! a note (`cairn_client::place`). How its frame sits in this app's world depends on what
//! the world is ([`PlaceView`]):
//!
//! * **In the room (AR).** Each headset measures from its own stage, so a device aligns with
//!   a place by marking the place's reference points with a controller or a pinch
//!   ([`PlaceAction::Align`], then one [`PlaceAction::Mark`] per point, in order). The
//!   least-squares alignment is kept with the profile ([`AlignmentStore`]), so the next
//!   session finds the place again. Until a device aligns, the place's notes stand at their
//!   stage pose, marked approximate; a note this device writes there meanwhile is posted at
//!   once, and re-expressed in the place's frame (posted again, the first one deleted) when
//!   the device aligns.
//! * **A virtual scene (desktop, VR).** Everyone shares the scene's origin, so each place is
//!   an area of its own beside the notes that have no place ([`area_origin`]); the sidebar
//!   and the hand display list the places and go to one.
//!
//! [`PlaceFrames`] (kept here, defined beside the note placing that reads it) says where each
//! place's frame is in the world now; `notes::anchors::place` puts notes by it, and notes written near a place go out in its frame.

use crate::CairnSet;
use crate::common::Notice;
use crate::interact::{PointerPress, PointerRay, PointerSource};
use crate::net::{CurrentSpace, NetCommand, NoteRemoved, NoteUpdated, PostNote};
use crate::notes::anchors::{
    AnchorKey, KnownAnchors, PlaceFrames, WantedAnchors, attach, pose_to_transform,
};
use bevy::prelude::*;
use cairn_client::place::{align, describe_residual, frame_from_marks, mark_names};
use cairn_client::{Alignment, ClientCommand, Content, Draft, Place};
use cairn_crypto::{PlaceMark, PlacePose, PlaceRecord, Pose, SpatialAnchor};
use cairn_proto::{NoteId, NoteKind, SpaceId};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// What the world is, for places.
#[derive(Resource, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlaceView {
    /// A virtual scene (the desktop, VR): each place is an area of it.
    #[default]
    Areas,
    /// The real room (AR): each place must be aligned with this device's stage.
    Room,
}

/// How far apart the places' areas stand in a virtual scene (metres): past the distance at
/// which notes fade, so one area's notes do not crowd another's.
pub const AREA_SPACING: f32 = 45.0;

/// Where the `i`th place's area is in a virtual scene: in a row along x, the notes that
/// have no place around the origin.
pub fn area_origin(i: usize) -> Vec3 {
    Vec3::new(AREA_SPACING * (i + 1) as f32, 0.0, 0.0)
}

/// Where a virtual scene's viewer goes for [`PlaceAction::GoTo`]: the place's area, or the
/// start; none for a place that is gone.
pub fn area_of(places: &Places, target: Option<NoteId>) -> Option<Vec3> {
    match target {
        None => Some(Vec3::ZERO),
        Some(id) => places.0.iter().position(|p| p.id == id).map(area_origin),
    }
}

/// The place after the current one, in the order they were made; after the last, the start
/// (`None`), and from the start the first.
pub fn next_place(places: &Places, now: &CurrentPlace) -> Option<NoteId> {
    let at = now.0.and_then(|id| places.0.iter().position(|p| p.id == id));
    let next = at.map_or(0, |i| i + 1);
    places.0.get(next).map(|p| p.id)
}

/// The places of the space on screen, in the order they were made.
#[derive(Resource, Debug, Default, Clone)]
pub struct Places(pub Vec<Place>);

impl Places {
    pub fn get(&self, id: NoteId) -> Option<&Place> {
        self.0.iter().find(|p| p.id == id)
    }
}

/// The place this device is in: the one last gone to or aligned. Notes written in the room
/// go into it.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CurrentPlace(pub Option<NoteId>);

/// What a person does with places.
#[derive(Message, Debug, Clone, PartialEq)]
pub enum PlaceAction {
    /// Make a place here (in the room): its [`MAKE_MARKS`] reference points are marked next.
    Make { name: String, description: String },
    /// Go to a place (`None`: around the start, where the notes with no place stand): it
    /// becomes the current one, and in a virtual scene the viewer goes to its area (the
    /// desktop's camera flies there, the VR stage moves there).
    GoTo(Option<NoteId>),
    /// Start aligning with a place (again, at any time): its marks are marked next.
    Align(NoteId),
    /// A reference point marked (in the world: the controller's tip, a pinch).
    Mark(Vec3),
    /// Stop aligning, keeping what was there.
    Cancel,
}

/// What points are being marked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Marking {
    /// Aligning with this place.
    Align(NoteId),
    /// Making a place with this name and description.
    Make { name: String, description: String },
}

/// The points a place's maker marks in the app: enough to fix the frame and check it (two
/// would do; a third catches a point marked in the wrong spot).
pub const MAKE_MARKS: usize = 3;
/// The names of those points, in the order marked.
pub const MADE_MARK_NAMES: [&str; MAKE_MARKS] = ["first point", "second point", "third point"];

/// The marking in progress (aligning with a place, or making one) and the points marked so
/// far.
#[derive(Resource, Debug, Default, Clone, PartialEq)]
pub struct Aligning(pub Option<(Marking, Vec<Vec3>)>);

impl Aligning {
    pub fn active(&self) -> bool {
        self.0.is_some()
    }
}

/// Whether no alignment is in progress, nor changed since the condition last ran (a run
/// condition: while aligning, a press marks a point rather than starting a note; the press
/// that marks the last point ends the alignment, perhaps before this runs, and must not
/// start a note either).
pub fn not_aligning(aligning: Res<Aligning>) -> bool {
    !aligning.active() && !aligning.is_changed()
}

/// An alignment as kept with the profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedAlignment {
    /// The place's frame in this device's stage, as it was when aligned.
    pub alignment: Alignment,
    /// When it was made, unix milliseconds.
    pub aligned_at: u64,
    /// Where the runtime keeps local spatial anchors: one near the place's origin and the
    /// place's frame relative to it. A later session that locates the anchor finds the
    /// place from it, right even when the stage was recentred or the boundary redrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<SpatialAnchor>,
}

impl SavedAlignment {
    /// Where the place's frame is now: from its anchor when this device locates it, else
    /// as it was aligned in the stage.
    pub fn located(&self, known: &KnownAnchors) -> Alignment {
        let Some(anchor) = &self.anchor else { return self.alignment };
        let Some(at) = known.0.get(&AnchorKey::of(anchor)) else { return self.alignment };
        let offset = pose_to_transform(&anchor.offset);
        let world = Transform::from_matrix((at.compute_affine() * offset.compute_affine()).into());
        // The frame's x axis, levelled: gravity is the runtime's, so only the turn counts.
        let x = world.rotation * Vec3::X;
        Alignment {
            yaw: (-x.z).atan2(x.x),
            translation: world.translation.to_array(),
            residual: self.alignment.residual,
        }
    }
}

/// This device's alignments, kept in the profile directory (`alignments.json`): they are
/// about this device's stage, so they never leave it.
#[derive(Resource, Debug, Default, Clone)]
pub struct AlignmentStore {
    path: Option<PathBuf>,
    saved: HashMap<String, SavedAlignment>,
}

fn store_key(space: SpaceId, place: NoteId) -> String {
    format!("{}/{}", space.to_hex(), place.to_hex())
}

impl AlignmentStore {
    /// The alignments kept at `path`; none when the file is missing, and none (with a
    /// warning) when it cannot be read: marking the points again makes them anew.
    pub fn load(path: PathBuf) -> Self {
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!("cairn: ignoring the unreadable {}: {e}", path.display());
                HashMap::new()
            }),
            Err(_) => HashMap::new(),
        };
        AlignmentStore { path: Some(path), saved }
    }

    pub fn get(&self, space: SpaceId, place: NoteId) -> Option<&SavedAlignment> {
        self.saved.get(&store_key(space, place))
    }

    /// Keeps an alignment (and the anchor it is held by, if any).
    pub fn put(
        &mut self,
        space: SpaceId,
        place: NoteId,
        alignment: Alignment,
        anchor: Option<SpatialAnchor>,
    ) -> Result<(), String> {
        let saved = SavedAlignment { alignment, aligned_at: cairn_proto::now_ms(), anchor };
        self.saved.insert(store_key(space, place), saved);
        self.write()
    }

    /// Holds a kept alignment by an anchor found after it was made.
    pub fn hold_by(
        &mut self,
        space: SpaceId,
        place: NoteId,
        anchor: SpatialAnchor,
    ) -> Result<(), String> {
        let Some(saved) = self.saved.get_mut(&store_key(space, place)) else { return Ok(()) };
        saved.anchor = Some(anchor);
        self.write()
    }

    /// Writes the alignments whole to a new file, then renames it over the old one, so a
    /// crash never leaves half a file.
    fn write(&self) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let json = serde_json::to_vec_pretty(&self.saved).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("keeping the alignment in {}: {e}", path.display()))
    }
}

/// Notes this device wrote in a place it had not aligned with, this session: re-expressed
/// in the place's frame when it aligns. (Their stage poses are this session's: after a
/// restart the stage may have moved, so they stay approximate.)
#[derive(Resource, Debug, Default)]
pub struct Unplaced(pub Vec<(SpaceId, NoteId, NoteId, Draft)>);

pub fn plugin(app: &mut App) {
    app.add_message::<PlaceAction>()
        .init_resource::<PlaceView>()
        .init_resource::<Places>()
        .init_resource::<PlaceFrames>()
        .init_resource::<CurrentPlace>()
        .init_resource::<Aligning>()
        .init_resource::<AlignmentStore>()
        .init_resource::<Unplaced>()
        .init_resource::<AlignedNow>()
        .add_systems(
            Update,
            (
                (follow_places, marks_from_presses, act, hold_alignments, frames)
                    .chain()
                    .in_set(CairnSet::Apply)
                    .before(crate::notes::NoteSystems),
                place_outgoing.in_set(CairnSet::Layout),
            ),
        );
}

/// Keeps [`Places`] to the current space's places as they arrive, change and go.
fn follow_places(
    mut updates: MessageReader<NoteUpdated>,
    mut removals: MessageReader<NoteRemoved>,
    current: Res<CurrentSpace>,
    mut places: ResMut<Places>,
    mut place_now: ResMut<CurrentPlace>,
    mut last: Local<Option<SpaceId>>,
) {
    if *last != current.0 {
        *last = current.0;
        places.0.clear();
        place_now.0 = None;
    }
    for NoteUpdated(n) in updates.read() {
        if current.0 != Some(n.space) || n.body.as_ref().is_none_or(|b| b.kind != NoteKind::Place) {
            continue;
        }
        let found = Place::all_in(std::slice::from_ref(n));
        places.0.retain(|p| p.id != n.note_id);
        places.0.extend(found);
        places.0.sort_by_key(|p| p.seq.unwrap_or(u64::MAX));
    }
    for r in removals.read() {
        if places.0.iter().any(|p| p.id == r.note_id) {
            places.0.retain(|p| p.id != r.note_id);
        }
    }
}

/// In the room, a press of either hand while aligning marks a point: where the controller's
/// aim (its tip) is.
fn marks_from_presses(
    aligning: Res<Aligning>,
    view: Res<PlaceView>,
    mut rays: MessageReader<PointerRay>,
    mut presses: MessageReader<PointerPress>,
    mut actions: MessageWriter<PlaceAction>,
    mut last: Local<HashMap<PointerSource, Vec3>>,
) {
    for r in rays.read() {
        last.insert(r.source, r.ray.origin);
    }
    if !aligning.active() || *view != PlaceView::Room {
        presses.clear();
        return;
    }
    for p in presses.read() {
        if p.source != PointerSource::Mouse
            && let Some(at) = last.get(&p.source)
        {
            actions.write(PlaceAction::Mark(*at));
        }
    }
}

/// What to say while aligning: which point to mark next.
pub fn next_mark_prompt(place: &Place, marked: usize) -> String {
    let marks = &place.record.marks;
    match marks.get(marked) {
        Some(m) => format!(
            "Aligning {}: touch \"{}\" with a controller and pull the trigger (or pinch there), point {} of {}",
            place.record.name,
            m.name,
            marked + 1,
            marks.len()
        ),
        None => format!("Aligning {}", place.record.name),
    }
}

/// What to say while making a place: which point to mark next.
pub fn next_make_prompt(name: &str, marked: usize) -> String {
    format!(
        "Making the place {name}: touch the {} that others can find again (a counter's end, a \
         door frame's corner) with a controller and pull the trigger, point {} of {MAKE_MARKS}",
        MADE_MARK_NAMES.get(marked).copied().unwrap_or("next point"),
        marked + 1
    )
}

/// What to say while marking.
fn marking_prompt(marking: &Marking, places: &Places, marked: usize) -> Option<String> {
    match marking {
        Marking::Align(id) => places.get(*id).map(|p| next_mark_prompt(p, marked)),
        Marking::Make { name, .. } => Some(next_make_prompt(name, marked)),
    }
}

/// How to align, for a place this device has not aligned with.
pub fn how_to_align(place: &Place) -> String {
    format!(
        "{} is not aligned here: its notes stand where they would in the maker's room, marked ≈. \
         To align, choose the place in the sidebar (in a headset: Align under any note) \
         and touch {} ({})",
        place.record.name,
        mark_names(&place.record.marks),
        if place.record.description.is_empty() {
            "as its maker named them"
        } else {
            &place.record.description
        }
    )
}

#[allow(clippy::too_many_arguments)]
fn act(
    mut actions: MessageReader<PlaceAction>,
    mut aligning: ResMut<Aligning>,
    mut store: ResMut<AlignmentStore>,
    mut place_now: ResMut<CurrentPlace>,
    mut unplaced: ResMut<Unplaced>,
    places: Res<Places>,
    current: Res<CurrentSpace>,
    view: Res<PlaceView>,
    known: Res<KnownAnchors>,
    mut anchoring: Anchoring,
    mut notices: MessageWriter<Notice>,
    mut posts: MessageWriter<PostNote>,
    mut net: MessageWriter<NetCommand>,
) {
    for action in actions.read() {
        match action {
            PlaceAction::GoTo(target) => {
                if target.is_none_or(|id| places.get(id).is_some()) {
                    place_now.0 = *target;
                }
            }
            PlaceAction::Make { name, description } => {
                if *view != PlaceView::Room {
                    notices.write(Notice::problem(
                        "places are made in the room, with a headset that shows it (or --room)",
                    ));
                    continue;
                }
                let marking =
                    Marking::Make { name: name.clone(), description: description.clone() };
                notices.write(Notice::info(next_make_prompt(name, 0)));
                aligning.0 = Some((marking, Vec::new()));
            }
            PlaceAction::Align(id) => {
                let Some(place) = places.get(*id) else { continue };
                if *view != PlaceView::Room {
                    notices.write(Notice::info(format!(
                        "{} needs no aligning here: in a virtual scene every place is an area of it",
                        place.record.name
                    )));
                    continue;
                }
                place_now.0 = Some(*id);
                aligning.0 = Some((Marking::Align(*id), Vec::new()));
                notices.write(Notice::info(next_mark_prompt(place, 0)));
            }
            PlaceAction::Cancel => {
                if aligning.0.take().is_some() {
                    notices.write(Notice::info("marking cancelled; the places are as they were"));
                }
            }
            PlaceAction::Mark(at) => {
                // The place gone (deleted, or another space): nothing to mark for.
                let valid = match &aligning.0 {
                    None => continue,
                    Some((Marking::Align(id), _)) => places.get(*id).is_some(),
                    Some((Marking::Make { .. }, _)) => true,
                };
                let (true, Some(space)) = (valid, current.0) else {
                    aligning.0 = None;
                    continue;
                };
                let Some((marking, marked)) = aligning.0.as_mut() else { continue };
                let prompt = match &*marking {
                    Marking::Align(id) => places.get(*id),
                    Marking::Make { .. } => None,
                };
                let needed = prompt.map_or(MAKE_MARKS, |p| p.record.marks.len());
                let say_next = |n: usize| marking_prompt(marking, &places, n).unwrap_or_default();
                // One point marked twice is said at once, not after the last point.
                let separation = cairn_crypto::note::PLACE_MARK_SEPARATION;
                if let Some(i) = marked.iter().position(|p| p.distance(*at) < separation) {
                    notices.write(Notice::problem(format!(
                        "that is point {} again: {}",
                        i + 1,
                        say_next(marked.len())
                    )));
                    continue;
                }
                marked.push(*at);
                if marked.len() < needed {
                    notices.write(Notice::info(say_next(marked.len())));
                    continue;
                }
                let points: Vec<[f32; 3]> = marked.iter().map(|p| p.to_array()).collect();
                let done = match (&*marking, prompt) {
                    (Marking::Align(id), Some(place)) => align(&place.record.marks, &points)
                        .map(|alignment| {
                            let anchor = anchoring.hold(space, *id, &alignment, &known);
                            let kept = store.put(space, *id, alignment, anchor);
                            reexpress(space, *id, &alignment, &mut unplaced, &mut posts, &mut net);
                            let said = format!(
                                "{}: {}",
                                place.record.name,
                                describe_residual(alignment.residual)
                            );
                            (kept, said)
                        })
                        .map_err(|e| e.to_string()),
                    (Marking::Make { name, description }, _) => {
                        make(space, name, description, &points, &mut posts).map(|(id, maker)| {
                            let anchor = anchoring.hold(space, id, &maker, &known);
                            let kept = store.put(space, id, maker, anchor);
                            place_now.0 = Some(id);
                            let said = format!(
                                "made the place {name}: others align with it by touching \
                                     the same three points in the same order"
                            );
                            (kept, said)
                        })
                    }
                    (Marking::Align(_), None) => continue,
                };
                match done {
                    Ok((kept, said)) => {
                        aligning.0 = None;
                        notices.write(match kept {
                            Ok(()) => Notice::info(said),
                            Err(e) => Notice::problem(e),
                        });
                    }
                    Err(e) => {
                        // Start the marks again; what was kept before stays.
                        marked.clear();
                        notices.write(Notice::problem(format!("{e}. {}", say_next(0))));
                    }
                }
            }
        }
    }
}

/// Makes a place from the points its maker marked: posts its record (with an id chosen here)
/// and gives back the maker's own alignment with it, so the maker's device is aligned at once.
fn make(
    space: SpaceId,
    name: &str,
    description: &str,
    points: &[[f32; 3]],
    posts: &mut MessageWriter<PostNote>,
) -> Result<(NoteId, Alignment), String> {
    let (in_place, maker) = frame_from_marks(points).map_err(|e| e.to_string())?;
    let record = PlaceRecord {
        name: name.to_owned(),
        description: description.to_owned(),
        marks: MADE_MARK_NAMES
            .iter()
            .zip(in_place)
            .map(|(n, position)| PlaceMark { name: (*n).to_owned(), position })
            .collect(),
    };
    record.check()?;
    let id = cairn_client::client::new_note_id();
    let draft = Draft {
        content: Content::Place { record, picture: None },
        note_id: Some(id),
        ..Draft::default()
    };
    posts.write(PostNote { space, draft });
    Ok((id, maker))
}

/// The places aligned this session (their alignments are about this session's stage, so an
/// anchor found later may hold them; an older one's stage may have moved since).
#[derive(Resource, Debug, Default)]
pub struct AlignedNow(pub HashSet<(SpaceId, NoteId)>);

/// What holds a new alignment to a runtime's local anchor.
#[derive(bevy::ecs::system::SystemParam)]
struct Anchoring<'w> {
    aligned: ResMut<'w, AlignedNow>,
    wanted: ResMut<'w, WantedAnchors>,
}

impl Anchoring<'_> {
    /// The anchor that holds a place aligned now: the nearest known one within reach of the
    /// place's origin. With none, one is asked for there (the XR glue makes it, where the
    /// runtime keeps anchors) and [`hold_alignments`] holds the place by it when it appears.
    fn hold(
        &mut self,
        space: SpaceId,
        place: NoteId,
        alignment: &Alignment,
        known: &KnownAnchors,
    ) -> Option<SpatialAnchor> {
        self.aligned.0.insert((space, place));
        let anchor = attach(&frame_transform(alignment), known);
        if anchor.is_none() {
            self.wanted.want(Vec3::from_array(alignment.translation));
        }
        anchor
    }
}

/// A place aligned this session without an anchor near its origin is held by one that
/// appears there (made at its asking, or found as the runtime learns the room).
fn hold_alignments(
    known: Res<KnownAnchors>,
    aligned: Res<AlignedNow>,
    mut store: ResMut<AlignmentStore>,
    mut notices: MessageWriter<Notice>,
) {
    if !known.is_changed() || known.0.is_empty() {
        return;
    }
    for &(space, place) in &aligned.0 {
        let Some(saved) = store.get(space, place) else { continue };
        if saved.anchor.is_some() {
            continue;
        }
        let Some(anchor) = attach(&frame_transform(&saved.alignment), &known) else { continue };
        if let Err(e) = store.hold_by(space, place, anchor) {
            notices.write(Notice::problem(e));
        }
    }
}

/// Posts again, in the place's frame, the notes this device wrote in `place` before it was
/// aligned, and deletes the first versions (their new ids are fresh; replies to the first
/// are rare in the minutes between).
fn reexpress(
    space: SpaceId,
    place: NoteId,
    alignment: &Alignment,
    unplaced: &mut Unplaced,
    posts: &mut MessageWriter<PostNote>,
    net: &mut MessageWriter<NetCommand>,
) {
    let (due, rest): (Vec<_>, Vec<_>) =
        unplaced.0.drain(..).partition(|(s, p, _, _)| *s == space && *p == place);
    unplaced.0 = rest;
    for (_, _, old, mut draft) in due {
        draft.place = Some(PlacePose { place, pose: alignment.pose_to_place(&draft.pose) });
        draft.note_id = Some(cairn_client::client::new_note_id());
        posts.write(PostNote { space, draft });
        net.write(NetCommand(ClientCommand::Delete { space, note_id: old }));
    }
}

/// Works out [`PlaceFrames`] again when the places, the view or an alignment changed.
fn frames(
    places: Res<Places>,
    view: Res<PlaceView>,
    store: Res<AlignmentStore>,
    known: Res<KnownAnchors>,
    current: Res<CurrentSpace>,
    mut frames: ResMut<PlaceFrames>,
) {
    let changed = places.is_changed() || view.is_changed() || store.is_changed();
    if !(changed || current.is_changed() || known.is_changed()) {
        return;
    }
    let next = PlaceFrames(match (*view, current.0) {
        (PlaceView::Areas, _) => places
            .0
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let o = area_origin(i);
                (p.id, Alignment { yaw: 0.0, translation: o.to_array(), residual: 0.0 })
            })
            .collect(),
        (PlaceView::Room, Some(space)) => places
            .0
            .iter()
            .filter_map(|p| Some((p.id, store.get(space, p.id)?.located(&known))))
            .collect(),
        (PlaceView::Room, None) => HashMap::new(),
    });
    frames.set_if_neq(next);
}

/// The place a note written at `at` goes into: in the room, the current place (or the
/// space's only place); in a virtual scene, the place whose area it stands in.
fn place_for(
    at: Vec3,
    view: PlaceView,
    places: &Places,
    frames: &PlaceFrames,
    now: &CurrentPlace,
) -> Option<NoteId> {
    match view {
        PlaceView::Room => now.0.or(match places.0.as_slice() {
            [only] => Some(only.id),
            _ => None,
        }),
        PlaceView::Areas => frames
            .0
            .iter()
            .map(|(id, a)| (id, Vec3::from_array(a.translation).distance(at)))
            .filter(|(_, d)| *d < AREA_SPACING / 2.0)
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| *id),
    }
}

/// Where a note this device writes goes out, whatever wrote it (the keyboard, a voice
/// recording, a dropped file, a reaction, a new place): the one system that places a
/// [`PostNote`] before `net` posts it.
///
/// 1. Near a known anchor, it goes out attached to it (on a headset the XR glue has just
///    made one at its spot if none was near).
/// 2. Written in a place, it goes out in the place's frame. In a virtual scene the stage pose
///    it carries is the place-relative one too (a device in the room that has not aligned
///    shows it relative to its own stage, approximate); in the room, a note written before
///    this device aligned goes out with its stage pose and is remembered for [`reexpress`].
pub fn place_outgoing(
    known: Res<KnownAnchors>,
    view: Res<PlaceView>,
    places: Res<Places>,
    frames: Res<PlaceFrames>,
    now: Res<CurrentPlace>,
    mut unplaced: ResMut<Unplaced>,
    mut out: MessageMutator<PostNote>,
) {
    for PostNote { space, draft } in out.read() {
        if draft.anchor.is_none() && !known.0.is_empty() {
            draft.anchor = attach(&pose_to_transform(&draft.pose), &known);
        }
        if draft.place.is_some() || matches!(draft.content, Content::Place { .. }) {
            continue;
        }
        let at = Vec3::from_array(draft.pose.position);
        let Some(place) = place_for(at, *view, &places, &frames, &now) else { continue };
        match frames.0.get(&place) {
            Some(alignment) => {
                let pose = alignment.pose_to_place(&draft.pose);
                draft.place = Some(PlacePose { place, pose });
                if *view == PlaceView::Areas {
                    draft.pose = pose;
                }
            }
            None => {
                let id = *draft.note_id.get_or_insert_with(cairn_client::client::new_note_id);
                unplaced.0.push((*space, place, id, draft.clone()));
            }
        }
    }
}

/// A place's frame as a transform in the world.
pub fn frame_transform(a: &Alignment) -> Transform {
    Transform::from_translation(Vec3::from_array(a.translation))
        .with_rotation(Quat::from_rotation_y(a.yaw))
}

/// A pose in a place, in the world.
pub fn pose_in_world(a: &Alignment, pose: &Pose) -> Pose {
    a.pose_to_stage(pose)
}

/// One line per place for the sidebar and the hand display: its name and maker (any
/// member may make a place, so two may share a name; the maker is the signed author), and
/// in the room whether this device is aligned with it.
pub fn place_row(
    place: &Place,
    view: PlaceView,
    frames: &PlaceFrames,
    now: &CurrentPlace,
) -> String {
    let here = if now.0 == Some(place.id) { "▸ " } else { "  " };
    let named = format!("{here}{} (by {})", place.record.name, place.author);
    match (view, frames.0.get(&place.id)) {
        (PlaceView::Areas, _) => named,
        (PlaceView::Room, Some(a)) => format!("{named}: {}", describe_residual(a.residual)),
        (PlaceView::Room, None) => format!("{named}: not aligned"),
    }
}

/// What the panels say about places beyond their rows: while aligning, which point is next;
/// in the room, how to align with the current place (or the only one) when this device has
/// not.
pub fn places_hint(
    places: &Places,
    view: PlaceView,
    frames: &PlaceFrames,
    now: &CurrentPlace,
    aligning: &Aligning,
) -> Option<String> {
    if let Some((marking, marked)) = &aligning.0 {
        return marking_prompt(marking, places, marked.len());
    }
    if view != PlaceView::Room {
        return None;
    }
    if places.0.is_empty() {
        return Some(
            "No places here yet. To make one (so that notes stand at the same spot for every \
             headset), start a note, write the place's name and press Place"
                .into(),
        );
    }
    let place = match now.0 {
        Some(id) => places.get(id),
        None => match places.0.as_slice() {
            [only] => Some(only),
            _ => None,
        },
    }?;
    (!frames.0.contains_key(&place.id)).then(|| how_to_align(place))
}

/// The place an Align pressed on a note means: the note's own place; else the current place;
/// else the space's first.
pub fn place_to_align(
    of_note: Option<NoteId>,
    places: &Places,
    now: &CurrentPlace,
) -> Option<NoteId> {
    of_note
        .filter(|id| places.get(*id).is_some())
        .or(now.0)
        .or_else(|| places.0.first().map(|p| p.id))
}
