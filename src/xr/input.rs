//! What the headset says each frame ([`XrInput`]: the head, and per hand an aim pose,
//! trigger, grip, thumbstick and pinch), and what the hands do with it: pointing and
//! pressing, snap turns and teleports (moving the [`StageOrigin`]), recording with grip, and
//! panels keeping their angle. Plain Bevy logic: the OpenXR glue (`runtime`) fills
//! `XrInput`, tests inject it.

use crate::audio::{ViewerRight, VoiceInput};
use crate::compose::{Compose, NOTE_HEIGHT};
use crate::interact::{EmptyPress, PointerPress, PointerRay, PointerSource, ray_floor};
use crate::notes::{Arriving, Billboard, Near, Viewer};
use bevy::prelude::*;

/// Which hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Hand {
    Left,
    Right,
}

impl Hand {
    pub fn source(self) -> PointerSource {
        match self {
            Hand::Left => PointerSource::LeftHand,
            Hand::Right => PointerSource::RightHand,
        }
    }
    fn index(self) -> usize {
        match self {
            Hand::Left => 0,
            Hand::Right => 1,
        }
    }
}

/// One hand's input this frame, in world space. Controllers give `aim`, `trigger`, `grip`
/// and `thumbstick`; tracked hands give `aim` and `pinch` (thumb tip, index tip).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HandInput {
    pub aim: Option<Transform>,
    pub trigger: f32,
    pub grip: f32,
    pub thumbstick: Vec2,
    pub pinch: Option<(Vec3, Vec3)>,
}

/// What the headset reported this frame. Filled by the OpenXR glue, or by tests.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub struct XrInput {
    pub head: Option<Transform>,
    pub hands: [HandInput; 2],
    /// Nothing is tracked: the session is not running (the headset asleep or taken off, the
    /// runtime between sessions). No pose or button is held over from before; a voice note
    /// being recorded is discarded, not posted, since its grip was never let go.
    pub paused: bool,
}

impl XrInput {
    pub fn hand(&self, hand: Hand) -> &HandInput {
        &self.hands[hand.index()]
    }
    pub fn hand_mut(&mut self, hand: Hand) -> &mut HandInput {
        &mut self.hands[hand.index()]
    }
}

/// Trigger pulled past this selects; it must fall below [`TRIGGER_RELEASE`] to select again.
pub const TRIGGER_PRESS: f32 = 0.75;
pub const TRIGGER_RELEASE: f32 = 0.35;
/// Thumb and index tips closer than this pinch; apart farther than [`PINCH_RELEASE`] let go.
pub const PINCH_PRESS: f32 = 0.02;
pub const PINCH_RELEASE: f32 = 0.035;
/// Grip held past this records.
pub const GRIP_HOLD: f32 = 0.8;
/// Snap turn per flick, and the stick travel that counts as a flick or a push.
pub const SNAP_TURN: f32 = std::f32::consts::FRAC_PI_6;
pub const STICK_ON: f32 = 0.7;
pub const STICK_OFF: f32 = 0.3;

/// A press with hysteresis: `update` answers whether this frame starts a press.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Latch(bool);

impl Latch {
    pub fn update(&mut self, on: bool, off: bool) -> bool {
        if !self.0 && on {
            self.0 = true;
            return true;
        }
        if self.0 && off {
            self.0 = false;
        }
        false
    }
    pub fn held(&self) -> bool {
        self.0
    }
}

/// Per-hand state carried between frames.
#[derive(Debug, Default, Clone, Copy)]
struct HandLatches {
    trigger: Latch,
    pinch: Latch,
    grip: Latch,
    turn: Latch,
    teleport: Latch,
}

#[derive(Resource, Debug, Clone, Copy)]
pub struct XrPointerState {
    /// The hand whose ray points (the last one that selected).
    pub active: Hand,
    latches: [HandLatches; 2],
    /// Where a teleport would land, while the stick is pushed forward.
    pub teleport_target: Option<Vec3>,
}

impl Default for XrPointerState {
    fn default() -> Self {
        XrPointerState { active: Hand::Right, latches: Default::default(), teleport_target: None }
    }
}

/// The tracking root: the stage's place and heading in the world. Locomotion moves it;
/// the OpenXR glue applies it to bevy_mod_xr's tracking root entity.
#[derive(Resource, Debug, Clone, Copy, PartialEq)]
pub struct StageOrigin(pub Transform);

impl Default for StageOrigin {
    fn default() -> Self {
        StageOrigin(Transform::IDENTITY)
    }
}

/// A ray along an aim pose's forward (−Z) direction.
pub fn aim_ray(aim: &Transform) -> Ray3d {
    Ray3d::new(aim.translation, aim.forward())
}

/// The vertical angle a panel of `height` metres takes at `distance`.
pub fn angular_height(height: f32, distance: f32) -> f32 {
    2.0 * (height / (2.0 * distance.max(1e-3))).atan()
}

/// Panels are laid out for reading at 1 m. Between 1 and 3 m they grow with distance, so
/// text keeps the angle it has at 1 m (about 1.3° for a line of body text) and stays
/// readable; nearer they are not shrunk (you leaned in to read), and beyond 3 m they keep
/// their 3 m size and shrink with distance like any object, so far notes stay quiet.
pub fn comfort_scale(distance: f32) -> f32 {
    distance.clamp(1.0, MAX_COMFORT_SCALE)
}

/// The largest size [`comfort_scale`] gives a panel (its size at 3 m).
pub const MAX_COMFORT_SCALE: f32 = 3.0;

pub(super) fn head_is_viewer(
    input: Res<XrInput>,
    mut viewer: ResMut<Viewer>,
    mut right: ResMut<ViewerRight>,
) {
    if let Some(head) = input.head {
        viewer.0 = head.translation;
        right.0 = *head.right();
    }
}

/// Rays and presses from controllers and hands: trigger and pinch are the same press.
pub(super) fn pointer_from_hands(
    input: Res<XrInput>,
    mut state: ResMut<XrPointerState>,
    mut rays: MessageWriter<PointerRay>,
    mut presses: MessageWriter<PointerPress>,
) {
    let mut pressed = [false; 2];
    for hand in [Hand::Left, Hand::Right] {
        let h = input.hand(hand);
        let l = &mut state.latches[hand.index()];
        let trigger = l.trigger.update(h.trigger >= TRIGGER_PRESS, h.trigger <= TRIGGER_RELEASE);
        let pinch = match h.pinch {
            Some((thumb, index)) => {
                let d = thumb.distance(index);
                l.pinch.update(d <= PINCH_PRESS, d >= PINCH_RELEASE)
            }
            None => l.pinch.update(false, true),
        };
        pressed[hand.index()] = (trigger || pinch) && h.aim.is_some();
    }
    // Selecting with the other hand hands it the pointer.
    for hand in [Hand::Left, Hand::Right] {
        if pressed[hand.index()] {
            state.active = hand;
        }
    }
    let active = state.active;
    if let Some(aim) = input.hand(active).aim {
        rays.write(PointerRay { source: active.source(), ray: aim_ray(&aim) });
        if pressed[active.index()] {
            presses.write(PointerPress { source: active.source() });
        }
    }
}

/// In the headset the trigger places: a press on the floor, with nothing being composed,
/// starts a note standing there (the keyboard comes up to write it; Cancel drops it).
pub(super) fn press_on_the_floor_starts_a_note(
    mut empty: MessageReader<EmptyPress>,
    mut compose: ResMut<Compose>,
) {
    for press in empty.read() {
        if let (Compose::Idle, PointerSource::LeftHand | PointerSource::RightHand, Some(floor)) =
            (&*compose, press.source, press.floor)
        {
            *compose = Compose::Writing {
                at: floor + Vec3::Y * NOTE_HEIGHT,
                reply_to: None,
                text: String::new(),
            };
        }
    }
}

/// Snap turn about the head and teleport to where the stick aimed, by moving the stage.
pub(super) fn locomotion(
    input: Res<XrInput>,
    mut state: ResMut<XrPointerState>,
    mut stage: ResMut<StageOrigin>,
) {
    let head = input.head.map_or(stage.0.translation, |h| h.translation);
    let mut target = None;
    for hand in [Hand::Left, Hand::Right] {
        let h = *input.hand(hand);
        let stick = h.thumbstick;
        let l = &mut state.latches[hand.index()];
        if l.turn.update(stick.x.abs() >= STICK_ON, stick.x.abs() <= STICK_OFF) {
            // Stick right turns right (clockwise seen from above): a negative yaw.
            let turn = Quat::from_rotation_y(-SNAP_TURN * stick.x.signum());
            stage.0.rotate_around(Vec3::new(head.x, 0.0, head.z), turn);
        }
        let was_aiming = l.teleport.held();
        l.teleport.update(stick.y >= STICK_ON, stick.y <= STICK_OFF);
        if l.teleport.held() {
            target = h.aim.and_then(|aim| ray_floor(aim_ray(&aim)));
        } else if was_aiming && let Some(to) = state.teleport_target {
            // Released: the head lands above the target, its height kept.
            let delta = Vec3::new(to.x - head.x, 0.0, to.z - head.z);
            stage.0.translation += delta;
        }
    }
    state.teleport_target = target;
}

/// Going to a place in VR moves the stage so that the head stands a few steps in front of
/// the place's area, its height and heading kept (in the room nothing moves: the stage is
/// the room).
pub(super) fn walk_to_place(
    input: Res<XrInput>,
    view: Res<crate::places::PlaceView>,
    places: Res<crate::places::Places>,
    mut actions: MessageReader<crate::places::PlaceAction>,
    mut stage: ResMut<StageOrigin>,
) {
    for action in actions.read() {
        let crate::places::PlaceAction::GoTo(target) = action else { continue };
        if *view != crate::places::PlaceView::Areas {
            continue;
        }
        let Some(origin) = crate::places::area_of(&places, *target) else { continue };
        let head = input.head.map_or(stage.0.translation, |h| h.translation);
        let to = origin + Vec3::Z * 3.0;
        stage.0.translation += Vec3::new(to.x - head.x, 0.0, to.z - head.z);
    }
}

/// Hold grip to record a voice note where you stand; release to post it. While the input is
/// [`XrInput::paused`], a recording is discarded.
pub(super) fn grip_records(
    input: Res<XrInput>,
    mut state: ResMut<XrPointerState>,
    mut voice: MessageWriter<VoiceInput>,
) {
    if input.paused {
        for l in &mut state.latches {
            if l.grip.held() {
                voice.write(VoiceInput::CancelRecording);
            }
            l.grip = Latch::default();
        }
        return;
    }
    for hand in [Hand::Left, Hand::Right] {
        let grip = input.hand(hand).grip;
        let l = &mut state.latches[hand.index()];
        let was = l.grip.held();
        if l.grip.update(grip >= GRIP_HOLD, grip < GRIP_HOLD * 0.5) {
            voice.write(VoiceInput::StartRecording);
        } else if was && !l.grip.held() {
            voice.write(VoiceInput::StopRecording);
        }
    }
}

/// Every near panel gets the size the angular rule gives it at its distance from the head,
/// each frame. (Far panels are past the distance where the rule stops growing them: the far
/// field draws them at its largest, [`crate::notes::FarPanelScale`].)
pub(super) fn panels_keep_their_angle(
    viewer: Res<Viewer>,
    mut q: Query<(&mut Transform, Has<Arriving>), (With<Billboard>, With<Near>)>,
) {
    for (mut t, arriving) in &mut q {
        let s = comfort_scale(t.translation.distance(viewer.0));
        // The arrival animation writes its own scale each frame; ride on top of it.
        let base = if arriving { t.scale.x } else { 1.0 };
        let want = Vec3::splat(base * s);
        if (t.scale - want).abs().max_element() > 1e-3 {
            t.scale = want;
        }
    }
}
