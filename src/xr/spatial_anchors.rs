//! Persisted spatial anchors through `XR_MSFT_spatial_anchor` and
//! `XR_MSFT_spatial_anchor_persistence`, where the runtime offers both: the glue between the
//! runtime and [`KnownAnchors`]. All placement logic is in [`crate::notes::anchors`] and is
//! tested headless; this file only talks to the runtime.
//!
//! * When the session starts, every anchor persisted in the runtime's store is loaded and
//!   given a space, which bevy_mod_openxr locates each frame like the controllers.
//! * Each frame the anchors the runtime tracks, with their world poses, become
//!   [`KnownAnchors`] (only when one appears, goes, or moves by more than a millimetre).
//! * A note written where no known anchor is within reach gets a new anchor at its spot,
//!   persisted under a fresh name, before it goes out; the notes layer then attaches it.
//!
//! Quest's `XR_FB_spatial_entity` is in [`super::fb_anchors`]. Runtimes with neither
//! (Monado) leave `KnownAnchors` empty: notes stand relative to the stage, and anchored
//! notes from elsewhere are marked approximate.

use super::anchor_spaces::{AnchorSpace, JustMade, check, spawn_anchor_space, stage_pose};
use super::input::StageOrigin;
use crate::CairnSet;
use crate::net::PostNote;
use crate::notes::anchors::{AnchorKey, KnownAnchors, WantedAnchors, attach, pose_to_transform};
use bevy::prelude::*;
use bevy_mod_openxr::openxr_session_running;
use bevy_mod_openxr::resources::{OxrFrameState, OxrInstance};
use bevy_mod_openxr::session::OxrSession;
use bevy_mod_xr::session::{XrPreDestroySession, XrSessionCreated};
use bevy_mod_xr::spaces::XrPrimaryReferenceSpace;
use openxr::sys;
use openxr::sys::Handle as _;

/// The anchors' `kind` in a note.
pub const MSFT: &str = "msft";

pub(super) fn plugin(app: &mut App) {
    app.add_systems(XrSessionCreated, open_anchor_store)
        .add_systems(XrPreDestroySession, close_anchor_store)
        .add_systems(
            Update,
            anchor_new_notes
                .in_set(CairnSet::Layout)
                .before(crate::places::place_outgoing)
                .run_if(resource_exists::<AnchorStore>)
                .run_if(openxr_session_running),
        );
}

/// Run condition: the runtime's MSFT anchor store is open this session.
pub(super) fn active(store: Option<Res<AnchorStore>>) -> bool {
    store.is_some()
}

/// The runtime's anchor store and the anchors this session holds.
#[derive(Resource)]
pub(super) struct AnchorStore {
    anchor: openxr::raw::SpatialAnchorMSFT,
    persistence: openxr::raw::SpatialAnchorPersistenceMSFT,
    store: sys::SpatialAnchorStoreConnectionMSFT,
    held: Vec<sys::SpatialAnchorMSFT>,
    made: u32,
}

fn persistence_name(name: &[u8]) -> Option<sys::SpatialAnchorPersistenceNameMSFT> {
    let mut out =
        sys::SpatialAnchorPersistenceNameMSFT { name: [0; sys::MAX_SPATIAL_ANCHOR_NAME_SIZE_MSFT] };
    if name.is_empty() || name.len() >= out.name.len() || name.contains(&0) {
        return None;
    }
    for (d, s) in out.name.iter_mut().zip(name) {
        *d = *s as std::ffi::c_char;
    }
    Some(out)
}

fn name_bytes(name: &sys::SpatialAnchorPersistenceNameMSFT) -> Vec<u8> {
    name.name.iter().take_while(|c| **c != 0).map(|c| *c as u8).collect()
}

/// Opens the runtime's anchor store and loads every anchor persisted in it.
#[allow(unsafe_code)]
fn open_anchor_store(instance: Res<OxrInstance>, session: Res<OxrSession>, mut commands: Commands) {
    let exts = instance.exts();
    let (Some(anchor), Some(persistence)) =
        (exts.msft_spatial_anchor, exts.msft_spatial_anchor_persistence)
    else {
        info!("cairn: the runtime persists no spatial anchors; notes stand relative to the stage");
        return;
    };
    let raw = session.as_raw();
    let mut store = sys::SpatialAnchorStoreConnectionMSFT::NULL;
    // SAFETY: the function pointers were loaded by openxr for this instance, whose
    // extensions include these; `raw` is the live session; `store` is an out-parameter.
    let opened = check("xrCreateSpatialAnchorStoreConnectionMSFT", unsafe {
        (persistence.create_spatial_anchor_store_connection)(raw, &mut store)
    });
    if let Err(e) = opened {
        warn!("cairn: no spatial anchor store ({e}); notes stand relative to the stage");
        return;
    }
    let mut names = Vec::new();
    let mut count = 0u32;
    // SAFETY: the two-call idiom: first the count (no buffer), then a buffer of that size.
    let listed = check("xrEnumeratePersistedSpatialAnchorNamesMSFT", unsafe {
        (persistence.enumerate_persisted_spatial_anchor_names)(
            store,
            0,
            &mut count,
            std::ptr::null_mut(),
        )
    })
    .and_then(|()| {
        names = vec![
            sys::SpatialAnchorPersistenceNameMSFT {
                name: [0; sys::MAX_SPATIAL_ANCHOR_NAME_SIZE_MSFT]
            };
            count as usize
        ];
        check("xrEnumeratePersistedSpatialAnchorNamesMSFT", unsafe {
            (persistence.enumerate_persisted_spatial_anchor_names)(
                store,
                names.len() as u32,
                &mut count,
                names.as_mut_ptr(),
            )
        })
    });
    if let Err(e) = listed {
        warn!("cairn: could not list the persisted anchors ({e})");
    }
    names.truncate(count as usize);
    let mut held = Vec::new();
    for name in names {
        let info = sys::SpatialAnchorFromPersistedAnchorCreateInfoMSFT {
            ty: sys::SpatialAnchorFromPersistedAnchorCreateInfoMSFT::TYPE,
            next: std::ptr::null(),
            spatial_anchor_store: store,
            spatial_anchor_persistence_name: name,
        };
        let mut a = sys::SpatialAnchorMSFT::NULL;
        // SAFETY: as above; `info` lives across the call.
        let made = check("xrCreateSpatialAnchorFromPersistedNameMSFT", unsafe {
            (persistence.create_spatial_anchor_from_persisted_name)(raw, &info, &mut a)
        });
        match made.and_then(|()| anchor_space(&anchor, raw, a)) {
            Ok(space) => {
                held.push(a);
                let key = AnchorKey { kind: MSFT.into(), id: name_bytes(&name) };
                spawn_anchor_space(&mut commands, space, key);
            }
            Err(e) => warn!("cairn: a persisted anchor could not be loaded ({e})"),
        }
    }
    info!("cairn: spatial anchors on (XR_MSFT_spatial_anchor), {} persisted", held.len());
    commands.insert_resource(AnchorStore { anchor, persistence, store, held, made: 0 });
}

#[allow(unsafe_code)]
fn anchor_space(
    ext: &openxr::raw::SpatialAnchorMSFT,
    session: sys::Session,
    anchor: sys::SpatialAnchorMSFT,
) -> Result<sys::Space, String> {
    let info = sys::SpatialAnchorSpaceCreateInfoMSFT {
        ty: sys::SpatialAnchorSpaceCreateInfoMSFT::TYPE,
        next: std::ptr::null(),
        anchor,
        pose_in_anchor_space: sys::Posef::IDENTITY,
    };
    let mut space = sys::Space::NULL;
    // SAFETY: a live session and anchor; `space` is an out-parameter.
    check("xrCreateSpatialAnchorSpaceMSFT", unsafe {
        (ext.create_spatial_anchor_space)(session, &info, &mut space)
    })?;
    Ok(space)
}

/// A note about to go out with no known anchor within reach gets a new anchor at its spot,
/// persisted, so that this device finds the spot again after the stage shifts; so does a
/// place's origin aligned with none near ([`WantedAnchors`]).
#[allow(unsafe_code)]
fn anchor_new_notes(
    mut store: ResMut<AnchorStore>,
    mut known: ResMut<KnownAnchors>,
    session: Res<OxrSession>,
    reference: Option<Res<XrPrimaryReferenceSpace>>,
    frame: Option<Res<OxrFrameState>>,
    stage: Res<StageOrigin>,
    mut out: MessageReader<PostNote>,
    mut wanted: ResMut<WantedAnchors>,
    mut commands: Commands,
) {
    let (Some(reference), Some(frame)) = (reference, frame) else { return };
    let notes = out
        .read()
        .filter(|post| post.draft.anchor.is_none())
        .map(|post| pose_to_transform(&post.draft.pose));
    // The notes about to go out, and the places' origins aligned with no anchor near.
    let spots: Vec<Transform> =
        notes.chain(wanted.0.drain(..).map(Transform::from_translation)).collect();
    for world in spots {
        if attach(&world, &known).is_some() {
            continue;
        }
        let info = sys::SpatialAnchorCreateInfoMSFT {
            ty: sys::SpatialAnchorCreateInfoMSFT::TYPE,
            next: std::ptr::null(),
            space: sys::Space::from_raw(reference.0.0.as_raw()),
            pose: stage_pose(&stage, &world),
            time: frame.predicted_display_time,
        };
        let raw = session.as_raw();
        let mut a = sys::SpatialAnchorMSFT::NULL;
        // SAFETY: a live session and reference space; `info` lives across the call.
        if let Err(e) = check("xrCreateSpatialAnchorMSFT", unsafe {
            (store.anchor.create_spatial_anchor)(raw, &info, &mut a)
        }) {
            warn!("cairn: no anchor for the new note ({e}); it stands relative to the stage");
            continue;
        }
        store.made += 1;
        let name = format!("cairn-{}-{}", cairn_proto::now_ms(), store.made).into_bytes();
        let persisted =
            persistence_name(&name).ok_or_else(|| "bad name".to_string()).and_then(|n| {
                let info = sys::SpatialAnchorPersistenceInfoMSFT {
                    ty: sys::SpatialAnchorPersistenceInfoMSFT::TYPE,
                    next: std::ptr::null(),
                    spatial_anchor_persistence_name: n,
                    spatial_anchor: a,
                };
                // SAFETY: a live store connection and anchor.
                check("xrPersistSpatialAnchorMSFT", unsafe {
                    (store.persistence.persist_spatial_anchor)(store.store, &info)
                })
            });
        match persisted.and_then(|()| anchor_space(&store.anchor, raw, a)) {
            Ok(space) => {
                store.held.push(a);
                let key = AnchorKey { kind: MSFT.into(), id: name };
                let e = spawn_anchor_space(&mut commands, space, key.clone());
                commands.entity(e).insert(JustMade);
                // Known at once, so the note is attached to it this frame.
                known.0.insert(key, world);
            }
            Err(e) => {
                warn!(
                    "cairn: the new anchor was not kept ({e}); the note stands relative to the stage"
                );
                // SAFETY: the anchor was created above and is not used after this.
                unsafe { (store.anchor.destroy_spatial_anchor)(a) };
            }
        }
    }
}

/// The session ends: its anchors and the store connection go with it (the persisted
/// anchors stay in the runtime's store for the next session).
#[allow(unsafe_code)]
fn close_anchor_store(
    store: Option<Res<AnchorStore>>,
    spaces: Query<(Entity, &AnchorSpace)>,
    mut known: ResMut<KnownAnchors>,
    mut commands: Commands,
) {
    let Some(store) = store else { return };
    for (e, a) in &spaces {
        if a.0.kind == MSFT {
            commands.entity(e).despawn();
        }
    }
    for a in &store.held {
        // SAFETY: anchors this session created and nothing uses any more.
        unsafe { (store.anchor.destroy_spatial_anchor)(*a) };
    }
    // SAFETY: the connection this session opened.
    unsafe { (store.persistence.destroy_spatial_anchor_store_connection)(store.store) };
    known.0.retain(|k, _| k.kind != MSFT);
    commands.remove_resource::<AnchorStore>();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistence_names_round_trip_and_bad_ones_are_refused() {
        let n = persistence_name(b"cairn-1764200000000-3").unwrap();
        assert_eq!(name_bytes(&n), b"cairn-1764200000000-3");
        assert!(persistence_name(b"").is_none());
        assert!(persistence_name(b"a\0b").is_none());
        assert!(persistence_name(&[b'x'; 256]).is_none(), "room for the terminating NUL");
        assert!(persistence_name(&[b'x'; 255]).is_some());
    }
}
