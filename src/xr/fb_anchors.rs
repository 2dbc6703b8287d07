//! Persisted spatial anchors through `XR_FB_spatial_entity` with its storage and query
//! extensions (Meta Quest), where the runtime offers all three: the glue between the runtime
//! and [`KnownAnchors`], as [`super::spatial_anchors`] is for the MSFT extensions.
//!
//! Every call here is asynchronous: the runtime answers each request with an event some
//! frames later. [`FbFlow`] is the bookkeeping — which request is for what, and what to do
//! when it is answered — and is plain logic, tested without a runtime; the systems below
//! only make the calls it asks for and feed it the events.
//!
//! * When the session starts, the anchors saved in the headset's local store are queried;
//!   each one found is made locatable and then tracked like the MSFT anchors (an `XrSpace`
//!   that bevy_mod_openxr locates each frame, read by `anchors_in_view`).
//! * Because a new anchor takes some frames to exist, one is made as soon as the user
//!   chooses where a note goes (while they write it), when no known anchor is within
//!   reach of that spot and none is being made near it. It is tracked at once, then made
//!   storable and saved to the local store. When the note is sent, the notes layer attaches
//!   it to that anchor if the runtime has made it by then; if not, the note stands relative
//!   to the stage, as it would with no anchors at all.

use super::anchor_spaces::{AnchorSpace, JustMade, check, spawn_anchor_space, stage_pose};
use super::input::StageOrigin;
use crate::compose::Compose;
use crate::notes::anchors::{ANCHOR_REACH, AnchorKey, KnownAnchors, WantedAnchors, attach};
use bevy::prelude::*;
use bevy_mod_openxr::openxr_session_running;
use bevy_mod_openxr::poll_events::{OxrEventHandlerExt, OxrEventIn};
use bevy_mod_openxr::resources::{OxrFrameState, OxrInstance};
use bevy_mod_openxr::session::OxrSession;
use bevy_mod_xr::session::{XrPreDestroySession, XrSessionCreated};
use bevy_mod_xr::spaces::XrPrimaryReferenceSpace;
use openxr::sys;
use openxr::sys::Handle as _;
use std::collections::HashMap;

/// The anchors' `kind` in a note.
pub const FB: &str = "fb";

/// Most saved anchors loaded at the start of a session.
const MAX_LOADED: u32 = 1024;

pub(super) fn plugin(app: &mut App) {
    app.init_resource::<FbFlow>()
        .add_systems(XrSessionCreated, start_fb_anchors)
        .add_systems(XrPreDestroySession, stop_fb_anchors)
        .add_oxr_event_handler(fb_events)
        .add_systems(
            Update,
            anchor_where_writing
                .run_if(openxr_session_running)
                .run_if(resource_exists::<FbAnchorExt>),
        );
}

/// One anchor as the runtime names it: its space handle and its UUID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FbAnchor {
    pub space: u64,
    pub uuid: [u8; 16],
}

impl FbAnchor {
    pub fn key(&self) -> AnchorKey {
        AnchorKey { kind: FB.into(), id: self.uuid.to_vec() }
    }
}

/// The components of an anchor this app turns on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Component {
    /// The runtime locates it (needed for an anchor loaded from the store).
    Locatable,
    /// It may be saved.
    Storable,
}

/// What an outstanding request is for.
#[derive(Clone, Debug, PartialEq)]
enum Waiting {
    Query,
    /// A new anchor at this world pose.
    Create {
        at: Transform,
    },
    Enable {
        anchor: FbAnchor,
        component: Component,
    },
    Save {
        anchor: FbAnchor,
    },
}

/// What the runtime answered (an event, or the results of a query that it said are ready).
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Answer {
    QueryResults(Vec<FbAnchor>),
    QueryDone {
        ok: bool,
    },
    Created {
        ok: bool,
        anchor: FbAnchor,
    },
    /// A component was turned on; "already on" counts as done.
    Enabled {
        ok: bool,
    },
    Saved {
        ok: bool,
    },
}

/// What the glue is to do next.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Act {
    Enable {
        anchor: FbAnchor,
        component: Component,
    },
    Save {
        anchor: FbAnchor,
    },
    /// Locate this anchor from now on; `made_at`: made here this session, at this pose.
    Track {
        anchor: FbAnchor,
        made_at: Option<Transform>,
    },
    /// Give its space back to the runtime: it cannot be used.
    Release {
        anchor: FbAnchor,
    },
    Warn(String),
}

/// The requests in flight and what each is for.
#[derive(Resource, Debug, Default)]
pub(super) struct FbFlow {
    waiting: HashMap<u64, Waiting>,
    /// Spots where making an anchor failed this session: not tried again, so a runtime
    /// that refuses is not asked every frame.
    refused: Vec<Vec3>,
}

impl FbFlow {
    pub fn querying(&mut self, request: u64) {
        self.waiting.insert(request, Waiting::Query);
    }

    pub fn creating(&mut self, request: u64, at: Transform) {
        self.waiting.insert(request, Waiting::Create { at });
    }

    pub fn enabling(&mut self, request: u64, anchor: FbAnchor, component: Component) {
        self.waiting.insert(request, Waiting::Enable { anchor, component });
    }

    pub fn saving(&mut self, request: u64, anchor: FbAnchor) {
        self.waiting.insert(request, Waiting::Save { anchor });
    }

    /// Whether an anchor is being made within `reach` of `at`, or making one there failed.
    pub fn covers(&self, at: Vec3, reach: f32) -> bool {
        let making = self.waiting.values().any(|w| match w {
            Waiting::Create { at: t } => t.translation.distance(at) <= reach,
            _ => false,
        });
        making || self.refused.iter().any(|r| r.distance(at) <= reach)
    }

    /// Making an anchor at `at` failed.
    pub fn refused(&mut self, at: Vec3) {
        self.refused.push(at);
    }

    /// What to do now that the runtime answered `request`. Answers to requests this flow
    /// did not make, or of the wrong kind, change nothing.
    pub fn answer(&mut self, request: u64, answer: Answer) -> Vec<Act> {
        let Some(waiting) = self.waiting.get(&request).cloned() else { return Vec::new() };
        match (waiting, answer) {
            // Results may come before the query is done; it stays waiting until then.
            (Waiting::Query, Answer::QueryResults(found)) => found
                .into_iter()
                .map(|anchor| Act::Enable { anchor, component: Component::Locatable })
                .collect(),
            (Waiting::Query, Answer::QueryDone { ok }) => {
                self.waiting.remove(&request);
                if ok {
                    Vec::new()
                } else {
                    vec![Act::Warn("the saved anchors could not be loaded".into())]
                }
            }
            (Waiting::Create { at }, Answer::Created { ok, anchor }) => {
                self.waiting.remove(&request);
                if ok {
                    vec![
                        Act::Track { anchor, made_at: Some(at) },
                        Act::Enable { anchor, component: Component::Storable },
                    ]
                } else {
                    self.refused.push(at.translation);
                    vec![Act::Warn(
                        "no anchor was made; the note stands relative to the stage".into(),
                    )]
                }
            }
            (Waiting::Enable { anchor, component }, Answer::Enabled { ok }) => {
                self.waiting.remove(&request);
                match (component, ok) {
                    (Component::Locatable, true) => vec![Act::Track { anchor, made_at: None }],
                    (Component::Locatable, false) => vec![
                        Act::Warn("a saved anchor could not be located".into()),
                        Act::Release { anchor },
                    ],
                    (Component::Storable, true) => vec![Act::Save { anchor }],
                    (Component::Storable, false) => vec![Act::Warn(
                        "a new anchor cannot be saved; it lasts this session only".into(),
                    )],
                }
            }
            (Waiting::Save { .. }, Answer::Saved { ok }) => {
                self.waiting.remove(&request);
                if ok {
                    Vec::new()
                } else {
                    vec![Act::Warn("a new anchor was not saved; it lasts this session only".into())]
                }
            }
            _ => Vec::new(),
        }
    }

    fn clear(&mut self) {
        self.waiting.clear();
        self.refused.clear();
    }
}

/// The runtime's function tables for the three extensions.
#[derive(Resource)]
pub(super) struct FbAnchorExt {
    entity: openxr::raw::SpatialEntityFB,
    storage: openxr::raw::SpatialEntityStorageFB,
    query: openxr::raw::SpatialEntityQueryFB,
    destroy_space: sys::pfn::DestroySpace,
}

/// Run condition: FB anchors are on for this session.
pub(super) fn active(ext: Option<Res<FbAnchorExt>>) -> bool {
    ext.is_some()
}

/// The session starts: where the runtime has the extensions, ask for the saved anchors.
#[allow(unsafe_code)]
fn start_fb_anchors(
    instance: Res<OxrInstance>,
    session: Res<OxrSession>,
    mut flow: ResMut<FbFlow>,
    mut commands: Commands,
) {
    let exts = instance.exts();
    let (Some(entity), Some(storage), Some(query)) =
        (exts.fb_spatial_entity, exts.fb_spatial_entity_storage, exts.fb_spatial_entity_query)
    else {
        return;
    };
    let filter = sys::SpaceStorageLocationFilterInfoFB {
        ty: sys::SpaceStorageLocationFilterInfoFB::TYPE,
        next: std::ptr::null(),
        location: sys::SpaceStorageLocationFB::LOCAL,
    };
    let info = sys::SpaceQueryInfoFB {
        ty: sys::SpaceQueryInfoFB::TYPE,
        next: std::ptr::null(),
        query_action: sys::SpaceQueryActionFB::LOAD,
        max_result_count: MAX_LOADED,
        timeout: sys::Duration::NONE,
        filter: (&filter as *const sys::SpaceStorageLocationFilterInfoFB).cast(),
        exclude_filter: std::ptr::null(),
    };
    let mut request = sys::AsyncRequestIdFB::default();
    // SAFETY: the function pointers were loaded by openxr for this instance, whose
    // extensions include these; `info` and the filter it points to live across the call;
    // `request` is an out-parameter.
    let asked = check("xrQuerySpacesFB", unsafe {
        (query.query_spaces)(
            session.as_raw(),
            (&info as *const sys::SpaceQueryInfoFB).cast(),
            &mut request,
        )
    });
    match asked {
        Ok(()) => flow.querying(request.into_raw()),
        Err(e) => warn!("cairn: the saved spatial anchors could not be asked for ({e})"),
    }
    info!("cairn: spatial anchors on (XR_FB_spatial_entity)");
    let destroy_space = instance.fp().destroy_space;
    commands.insert_resource(FbAnchorExt { entity, storage, query, destroy_space });
}

/// The session ends: the anchors' spaces go (bevy_mod_openxr destroys each with its
/// entity); what was saved stays in the headset's store for the next session.
fn stop_fb_anchors(
    spaces: Query<(Entity, &AnchorSpace)>,
    mut flow: ResMut<FbFlow>,
    mut known: ResMut<KnownAnchors>,
    mut commands: Commands,
) {
    for (e, a) in &spaces {
        if a.0.kind == FB {
            commands.entity(e).despawn();
        }
    }
    known.0.retain(|k, _| k.kind != FB);
    flow.clear();
    commands.remove_resource::<FbAnchorExt>();
}

/// The runtime answered one of our requests.
fn fb_events(
    event: OxrEventIn,
    ext: Option<Res<FbAnchorExt>>,
    session: Option<Res<OxrSession>>,
    mut flow: ResMut<FbFlow>,
    mut known: ResMut<KnownAnchors>,
    mut commands: Commands,
) {
    let (Some(ext), Some(session)) = (ext, session) else { return };
    let done = |r: sys::Result| r.into_raw() >= 0;
    let anchor = |space: sys::Space, uuid: sys::UuidEXT| FbAnchor {
        space: space.into_raw(),
        uuid: uuid.data,
    };
    let (request, answer) = match *event {
        openxr::Event::SpaceQueryResultsAvailableFB(e) => {
            let request = e.request_id();
            (request.into_raw(), Answer::QueryResults(query_results(&ext, &session, request)))
        }
        openxr::Event::SpaceQueryCompleteFB(e) => {
            (e.request_id().into_raw(), Answer::QueryDone { ok: done(e.result()) })
        }
        openxr::Event::SpatialAnchorCreateCompleteFB(e) => (
            e.request_id().into_raw(),
            Answer::Created { ok: done(e.result()), anchor: anchor(e.space(), e.uuid()) },
        ),
        openxr::Event::SpaceSetStatusCompleteFB(e) => {
            let ok = done(e.result())
                || e.result() == sys::Result::ERROR_SPACE_COMPONENT_STATUS_ALREADY_SET_FB;
            (e.request_id().into_raw(), Answer::Enabled { ok })
        }
        openxr::Event::SpaceSaveCompleteFB(e) => {
            (e.request_id().into_raw(), Answer::Saved { ok: done(e.result()) })
        }
        _ => return,
    };
    let acts = flow.answer(request, answer);
    carry_out(acts, &ext, &session, &mut flow, &mut known, &mut commands);
}

impl FbFlow {
    /// The acts for a component that was already on (the runtime says so at once instead
    /// of with an event).
    fn answer_now(&mut self, anchor: FbAnchor, component: Component) -> Vec<Act> {
        const NOW: u64 = u64::MAX;
        self.enabling(NOW, anchor, component);
        self.answer(NOW, Answer::Enabled { ok: true })
    }
}

/// Carries out the acts `flow` asked for, and those that follow at once (a component the
/// runtime says is already on).
#[allow(unsafe_code)]
fn carry_out(
    acts: Vec<Act>,
    ext: &FbAnchorExt,
    session: &OxrSession,
    flow: &mut FbFlow,
    known: &mut KnownAnchors,
    commands: &mut Commands,
) {
    let mut acts = std::collections::VecDeque::from(acts);
    while let Some(act) = acts.pop_front() {
        match act {
            Act::Track { anchor, made_at } => {
                let e =
                    spawn_anchor_space(commands, sys::Space::from_raw(anchor.space), anchor.key());
                if let Some(at) = made_at {
                    commands.entity(e).insert(JustMade);
                    known.0.insert(anchor.key(), at);
                }
            }
            Act::Save { anchor } => {
                let info = sys::SpaceSaveInfoFB {
                    ty: sys::SpaceSaveInfoFB::TYPE,
                    next: std::ptr::null(),
                    space: sys::Space::from_raw(anchor.space),
                    location: sys::SpaceStorageLocationFB::LOCAL,
                    persistence_mode: sys::SpacePersistenceModeFB::INDEFINITE,
                };
                let mut request = sys::AsyncRequestIdFB::default();
                // SAFETY: a live session and anchor space; `info` lives across the call.
                match check("xrSaveSpaceFB", unsafe {
                    (ext.storage.save_space)(session.as_raw(), &info, &mut request)
                }) {
                    Ok(()) => flow.saving(request.into_raw(), anchor),
                    Err(e) => {
                        warn!("cairn: a new anchor was not saved ({e}); it lasts this session only")
                    }
                }
            }
            Act::Release { anchor } => {
                // SAFETY: a space the runtime gave us and that nothing else holds.
                unsafe { (ext.destroy_space)(sys::Space::from_raw(anchor.space)) };
            }
            Act::Warn(w) => warn!("cairn: {w}"),
            Act::Enable { anchor, component } => {
                let component_type = match component {
                    Component::Locatable => sys::SpaceComponentTypeFB::LOCATABLE,
                    Component::Storable => sys::SpaceComponentTypeFB::STORABLE,
                };
                let info = sys::SpaceComponentStatusSetInfoFB {
                    ty: sys::SpaceComponentStatusSetInfoFB::TYPE,
                    next: std::ptr::null(),
                    component_type,
                    enabled: sys::TRUE,
                    timeout: sys::Duration::NONE,
                };
                let mut request = sys::AsyncRequestIdFB::default();
                // SAFETY: a space the runtime gave us for this session; `info` lives
                // across the call.
                let r = unsafe {
                    (ext.entity.set_space_component_status)(
                        sys::Space::from_raw(anchor.space),
                        &info,
                        &mut request,
                    )
                };
                if r == sys::Result::ERROR_SPACE_COMPONENT_STATUS_ALREADY_SET_FB {
                    // On already: answer at once, as the event would have.
                    acts.extend(flow.answer_now(anchor, component));
                } else {
                    match check("xrSetSpaceComponentStatusFB", r) {
                        Ok(()) => flow.enabling(request.into_raw(), anchor, component),
                        Err(e) => warn!("cairn: an anchor component could not be turned on ({e})"),
                    }
                }
            }
        }
    }
}

/// The results of a query the runtime says are ready (the two-call idiom).
#[allow(unsafe_code)]
fn query_results(
    ext: &FbAnchorExt,
    session: &OxrSession,
    request: sys::AsyncRequestIdFB,
) -> Vec<FbAnchor> {
    let mut results = sys::SpaceQueryResultsFB {
        ty: sys::SpaceQueryResultsFB::TYPE,
        next: std::ptr::null_mut(),
        result_capacity_input: 0,
        result_count_output: 0,
        results: std::ptr::null_mut(),
    };
    // SAFETY: first the count (no buffer), then a buffer of that size that lives across
    // the second call.
    let counted = check("xrRetrieveSpaceQueryResultsFB", unsafe {
        (ext.query.retrieve_space_query_results)(session.as_raw(), request, &mut results)
    });
    if let Err(e) = counted {
        warn!("cairn: the saved anchors could not be read ({e})");
        return Vec::new();
    }
    let mut found =
        vec![
            sys::SpaceQueryResultFB { space: sys::Space::NULL, uuid: sys::UuidEXT::default() };
            results.result_count_output as usize
        ];
    results.result_capacity_input = found.len() as u32;
    results.results = found.as_mut_ptr();
    let read = check("xrRetrieveSpaceQueryResultsFB", unsafe {
        (ext.query.retrieve_space_query_results)(session.as_raw(), request, &mut results)
    });
    if let Err(e) = read {
        warn!("cairn: the saved anchors could not be read ({e})");
        return Vec::new();
    }
    found.truncate(results.result_count_output as usize);
    found.iter().map(|r| FbAnchor { space: r.space.into_raw(), uuid: r.uuid.data }).collect()
}

/// While the user writes a note at a spot no known anchor reaches, an anchor is made there,
/// so that it exists (the runtime answers some frames later) when the note is sent; so is
/// one at a place's origin aligned with none near ([`WantedAnchors`]).
#[allow(clippy::too_many_arguments)]
fn anchor_where_writing(
    compose: Res<Compose>,
    ext: Res<FbAnchorExt>,
    session: Res<OxrSession>,
    reference: Option<Res<XrPrimaryReferenceSpace>>,
    frame: Option<Res<OxrFrameState>>,
    stage: Res<StageOrigin>,
    known: Res<KnownAnchors>,
    mut wanted: ResMut<WantedAnchors>,
    mut flow: ResMut<FbFlow>,
) {
    let (Some(reference), Some(frame)) = (reference, frame) else { return };
    let writing = match &*compose {
        Compose::Writing { at, .. } => Some(*at),
        _ => None,
    };
    // Where a note is being written, and the places' origins aligned with no anchor near.
    let spots: Vec<Vec3> = writing.into_iter().chain(wanted.0.drain(..)).collect();
    for at in spots {
        anchor_at(at, &ext, &session, &reference, &frame, &stage, &known, &mut flow);
    }
}

/// Asks the runtime for an anchor at `at`, unless a known one or one being made reaches it.
#[allow(unsafe_code, clippy::too_many_arguments)]
fn anchor_at(
    at: Vec3,
    ext: &FbAnchorExt,
    session: &OxrSession,
    reference: &XrPrimaryReferenceSpace,
    frame: &OxrFrameState,
    stage: &StageOrigin,
    known: &KnownAnchors,
    flow: &mut FbFlow,
) {
    let world = Transform::from_translation(at);
    if attach(&world, known).is_some() || flow.covers(at, ANCHOR_REACH) {
        return;
    }
    let info = sys::SpatialAnchorCreateInfoFB {
        ty: sys::SpatialAnchorCreateInfoFB::TYPE,
        next: std::ptr::null(),
        space: sys::Space::from_raw(reference.0.0.as_raw()),
        pose_in_space: stage_pose(stage, &world),
        time: frame.predicted_display_time,
    };
    let mut request = sys::AsyncRequestIdFB::default();
    // SAFETY: a live session and reference space; `info` lives across the call.
    match check("xrCreateSpatialAnchorFB", unsafe {
        (ext.entity.create_spatial_anchor)(session.as_raw(), &info, &mut request)
    }) {
        Ok(()) => flow.creating(request.into_raw(), world),
        Err(e) => {
            warn!("cairn: no anchor made there ({e}); what stands there is relative to the stage");
            flow.refused(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(n: u8) -> FbAnchor {
        FbAnchor { space: 100 + n as u64, uuid: [n; 16] }
    }

    #[test]
    fn saved_anchors_are_made_locatable_then_tracked_and_a_failed_one_is_released() {
        let mut flow = FbFlow::default();
        flow.querying(1);
        let acts = flow.answer(1, Answer::QueryResults(vec![anchor(1), anchor(2)]));
        assert_eq!(
            acts,
            [
                Act::Enable { anchor: anchor(1), component: Component::Locatable },
                Act::Enable { anchor: anchor(2), component: Component::Locatable },
            ]
        );
        // The glue asks, under requests 2 and 3.
        flow.enabling(2, anchor(1), Component::Locatable);
        flow.enabling(3, anchor(2), Component::Locatable);
        assert_eq!(flow.answer(1, Answer::QueryDone { ok: true }), []);
        assert_eq!(
            flow.answer(2, Answer::Enabled { ok: true }),
            [Act::Track { anchor: anchor(1), made_at: None }]
        );
        let acts = flow.answer(3, Answer::Enabled { ok: false });
        assert!(matches!(&acts[..], [Act::Warn(_), Act::Release { anchor: a }] if *a == anchor(2)));
        // Every request was answered once; repeats and strangers change nothing.
        assert!(flow.waiting.is_empty());
        assert_eq!(flow.answer(2, Answer::Enabled { ok: true }), []);
        assert_eq!(flow.answer(77, Answer::Saved { ok: true }), []);
    }

    #[test]
    fn a_new_anchor_is_tracked_where_it_was_made_then_made_storable_and_saved() {
        let mut flow = FbFlow::default();
        let at = Transform::from_xyz(1.0, 0.0, -2.0);
        flow.creating(5, at);
        assert!(flow.covers(Vec3::new(2.0, 0.0, -2.0), ANCHOR_REACH));
        assert!(!flow.covers(Vec3::new(9.0, 0.0, -2.0), ANCHOR_REACH));
        // An answer of the wrong kind is not taken for the creation.
        assert_eq!(flow.answer(5, Answer::Saved { ok: true }), []);
        assert_eq!(
            flow.answer(5, Answer::Created { ok: true, anchor: anchor(3) }),
            [
                Act::Track { anchor: anchor(3), made_at: Some(at) },
                Act::Enable { anchor: anchor(3), component: Component::Storable },
            ]
        );
        assert!(!flow.covers(at.translation, ANCHOR_REACH), "made: no longer pending");
        flow.enabling(6, anchor(3), Component::Storable);
        assert_eq!(flow.answer(6, Answer::Enabled { ok: true }), [Act::Save { anchor: anchor(3) }]);
        flow.saving(7, anchor(3));
        assert_eq!(flow.answer(7, Answer::Saved { ok: true }), []);
        assert!(flow.waiting.is_empty());
        // A component already on counts as turned on.
        assert_eq!(
            flow.answer_now(anchor(3), Component::Storable),
            [Act::Save { anchor: anchor(3) }]
        );
    }

    #[test]
    fn failures_are_said_and_leave_nothing_waiting() {
        let mut flow = FbFlow::default();
        flow.creating(1, Transform::IDENTITY);
        assert!(matches!(
            &flow.answer(1, Answer::Created { ok: false, anchor: anchor(0) })[..],
            [Act::Warn(_)]
        ));
        // Not asked again for that spot (the runtime refused; it would refuse every frame).
        assert!(flow.covers(Vec3::new(0.5, 0.0, 0.0), ANCHOR_REACH));
        assert!(!flow.covers(Vec3::new(5.0, 0.0, 0.0), ANCHOR_REACH));
        flow.enabling(2, anchor(1), Component::Storable);
        assert!(matches!(&flow.answer(2, Answer::Enabled { ok: false })[..], [Act::Warn(_)]));
        flow.saving(3, anchor(1));
        assert!(matches!(&flow.answer(3, Answer::Saved { ok: false })[..], [Act::Warn(_)]));
        flow.querying(4);
        assert!(matches!(&flow.answer(4, Answer::QueryDone { ok: false })[..], [Act::Warn(_)]));
        assert!(flow.waiting.is_empty());
        assert_eq!(FbAnchor { space: 1, uuid: [7; 16] }.key().kind, FB);
    }
}
