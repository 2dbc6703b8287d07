//! XR mode: the same notes in a headset. Everything here but [`openxr`] is plain Bevy logic
//! over an [`XrInput`] resource (head pose, and per hand an aim pose, trigger, grip,
//! thumbstick and pinch), so that tests drive it headless with injected poses. The OpenXR
//! glue only fills `XrInput` from the runtime and reports the session's state.
//!
//! The modules, each using only those listed before it: [`input`] (what the headset says,
//! and what the hands do with it), [`boards`] (the keyboard and action bar standing in the
//! world), [`runtime`] (the OpenXR glue), [`anchor_spaces`], [`spatial_anchors`] and
//! [`fb_anchors`] (persisted anchors), [`hand_display`]. This file only puts them together.
//!
//! What the logic does with it:
//! * the head is the [`Viewer`] (panels turn toward it, audio follows it);
//! * the active hand's aim is a [`PointerRay`]; a trigger pull or a pinch is a
//!   [`PointerPress`] (either hand; pressing with the other hand makes it the active one);
//! * holding grip records a voice note, releasing it posts it;
//! * the thumbstick snap-turns (left/right) and teleports (push forward to aim at the floor,
//!   release to go there) by moving the tracking root, never the head;
//! * text panels keep the angle they take in the view between 1 and 3 m ([`comfort_scale`]).

pub mod anchor_spaces;
pub mod boards;
pub mod fb_anchors;
pub mod hand_display;
pub mod input;
pub mod runtime;
pub mod spatial_anchors;

pub use input::{
    Hand, MAX_COMFORT_SCALE, SNAP_TURN, StageOrigin, XrInput, XrPointerState, angular_height,
};

use crate::CairnSet;
use crate::audio::{ViewerRight, VoiceInput};
use crate::interact::{PickSet, PressSet};
use bevy::prelude::*;
use bevy_mod_openxr::openxr_session_running;

/// The logic of XR mode, renderer-free (headless tests add it with the logic plugin).
pub fn logic_plugin(app: &mut App) {
    // Panels grow up to 3x (riding on the arrival animation): pointing must reach that far.
    app.world_mut()
        .get_resource_or_init::<crate::notes::NoteGrid>()
        .allow_scale(MAX_COMFORT_SCALE * crate::notes::ARRIVAL_PEAK_SCALE);
    app.insert_resource(crate::notes::FarPanelScale(MAX_COMFORT_SCALE))
        .init_resource::<XrInput>()
        .init_resource::<XrPointerState>()
        .init_resource::<StageOrigin>()
        .init_resource::<ViewerRight>()
        .add_message::<VoiceInput>()
        .init_resource::<boards::BoardState>()
        .add_systems(
            Update,
            (
                input::head_is_viewer,
                input::pointer_from_hands,
                input::locomotion,
                input::walk_to_place,
                boards::ride_the_stage,
                input::grip_records,
            )
                .chain()
                .in_set(CairnSet::Input),
        )
        .add_systems(
            Update,
            (
                boards::board_pick.after(PickSet).before(PressSet),
                boards::press_keys.in_set(PressSet).after(boards::board_pick),
            )
                .in_set(CairnSet::Apply),
        )
        .add_systems(
            Update,
            input::press_on_the_floor_starts_a_note
                .run_if(crate::places::not_aligning)
                .in_set(CairnSet::Apply)
                .after(crate::compose::ComposeSystems),
        )
        .add_systems(
            Update,
            (boards::show_keyboard, boards::show_action_bar)
                .in_set(CairnSet::Layout)
                .after(crate::notes::face_viewer)
                .after(input::panels_keep_their_angle),
        )
        .add_systems(
            Update,
            input::panels_keep_their_angle
                .in_set(CairnSet::Layout)
                .after(crate::notes::animate_arrivals)
                .after(crate::notes::face_viewer),
        );
}

/// XR presentation on top of `add_xr_plugins(DefaultPlugins)`: the OpenXR glue, persisted
/// anchors of either kind, and what is drawn only in a running session (the hand display,
/// the boards' dress).
pub fn openxr_plugin(app: &mut App) {
    app.add_plugins((runtime::plugin, spatial_anchors::plugin, fb_anchors::plugin)).add_systems(
        Update,
        (
            anchor_spaces::anchors_in_view
                .in_set(CairnSet::Input)
                .run_if(spatial_anchors::active.or_else(fb_anchors::active)),
            (
                hand_display::update_hand_display,
                hand_display::ears_at_the_head,
                boards::dress_boards.after(boards::show_keyboard).after(boards::show_action_bar),
            )
                .in_set(CairnSet::Layout),
        )
            .run_if(openxr_session_running),
    );
}
