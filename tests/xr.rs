//! XR mode's logic, headless: injected head and controller (or hand) poses in `XrInput`,
//! the same notes and pointer as the desktop.

use bevy::prelude::*;
use cairn::CairnLogicPlugin;
use cairn::audio::VoiceInput;
use cairn::compose::{Compose, ComposeInput, NOTE_HEIGHT};
use cairn::interact::{NoteActivated, Pointer, PointerPress, PointerSource};
use cairn::net::{CurrentSpace, NoteUpdated};
use cairn::notes::{Focused, NoteIndex};
use cairn::xr::{self, Hand, StageOrigin, XrInput, XrPointerState};
use cairn_crypto::{NoteBody, Pose};
use cairn_proto::NoteId;

mod common;

use common::{SPACE, local_note};

fn app() -> App {
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, CairnLogicPlugin));
    app.add_plugins(xr::logic_plugin);
    app.insert_resource(CurrentSpace(Some(SPACE)));
    app.update();
    app
}

fn receive(app: &mut App, id: u8, at: [f32; 3]) -> Entity {
    let body = NoteBody::text("alice", "hello", Pose { position: at, ..Pose::default() });
    app.world_mut().write_message(NoteUpdated(local_note(id, body, false)));
    app.update();
    app.update();
    app.world().resource::<NoteIndex>().0[&NoteId([id; 16])]
}

/// An aim pose at `from`, pointing at `to`.
fn aim(from: Vec3, to: Vec3) -> Transform {
    Transform::from_translation(from).looking_at(to, Vec3::Y)
}

fn input(app: &mut App) -> Mut<'_, XrInput> {
    app.world_mut().resource_mut::<XrInput>()
}

fn presses(app: &mut App) -> Vec<PointerSource> {
    app.world_mut().resource_mut::<Messages<PointerPress>>().drain().map(|p| p.source).collect()
}

const HEAD: Vec3 = Vec3::new(0.0, 1.6, 0.0);

#[test]
fn the_aim_ray_selects_the_note_it_points_at_and_the_trigger_activates_it() {
    let mut app = app();
    let left = receive(&mut app, 1, [-1.0, 1.4, -2.0]);
    let right = receive(&mut app, 2, [1.0, 1.4, -2.0]);
    input(&mut app).head = Some(aim(HEAD, Vec3::new(0.0, 1.5, -2.0)));
    let hand = Vec3::new(0.2, 1.2, -0.3);
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(hand, Vec3::new(1.0, 1.4, -2.0)));
    app.update();
    assert_eq!(app.world().resource::<Pointer>().hovered, Some(right));
    assert_eq!(app.world().resource::<Pointer>().source, Some(PointerSource::RightHand));
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(hand, Vec3::new(-1.0, 1.4, -2.0)));
    app.update();
    assert_eq!(app.world().resource::<Pointer>().hovered, Some(left));
    input(&mut app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    assert_eq!(app.world().resource::<Focused>().0, Some(left));
    let activated: Vec<(Entity, PointerSource)> = app
        .world_mut()
        .resource_mut::<Messages<NoteActivated>>()
        .drain()
        .map(|a| (a.entity, a.source))
        .collect();
    assert_eq!(activated, vec![(left, PointerSource::RightHand)]);
}

#[test]
fn a_hand_pinch_and_a_controller_trigger_give_the_same_press() {
    let mut app = app();
    let hand = Vec3::new(0.2, 1.2, -0.3);
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(hand, Vec3::new(0.0, 1.4, -2.0)));
    input(&mut app).hand_mut(Hand::Left).aim = Some(aim(-hand, Vec3::new(0.0, 1.4, -2.0)));
    app.update();
    presses(&mut app);

    // Trigger: one press per pull, with hysteresis; a half-released trigger does not re-fire.
    for (value, expect) in [(0.5, 0), (0.9, 1), (1.0, 0), (0.5, 0), (0.9, 0), (0.1, 0), (0.8, 1)] {
        input(&mut app).hand_mut(Hand::Right).trigger = value;
        app.update();
        let got = presses(&mut app);
        assert_eq!(got.len(), expect, "trigger at {value}");
        assert!(got.iter().all(|s| *s == PointerSource::RightHand));
    }
    input(&mut app).hand_mut(Hand::Right).trigger = 0.0;
    app.update();

    // A pinch with the (tracked) left hand: the same press, from the left, which now points.
    let pinch = |d: f32| Some((Vec3::new(0.0, 1.2, -0.3), Vec3::new(d, 1.2, -0.3)));
    for (d, expect) in [(0.05, 0), (0.01, 1), (0.025, 0), (0.015, 0), (0.05, 0), (0.012, 1)] {
        input(&mut app).hand_mut(Hand::Left).pinch = pinch(d);
        app.update();
        assert_eq!(presses(&mut app), vec![PointerSource::LeftHand; expect], "pinch at {d} m");
    }
    assert_eq!(app.world().resource::<XrPointerState>().active, Hand::Left);
    assert_eq!(app.world().resource::<Pointer>().source, Some(PointerSource::LeftHand));
}

#[test]
fn placing_with_the_controller_puts_the_note_where_its_ray_meets_the_floor() {
    let mut app = app();
    app.world_mut().write_message(ComposeInput::StartPlacing);
    app.update();
    let target = Vec3::new(0.5, 0.0, -2.5);
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(Vec3::new(0.2, 1.1, -0.2), target));
    app.update();
    let floor = app.world().resource::<Pointer>().floor.unwrap();
    assert!(floor.distance(target) < 1e-3, "{floor}");
    input(&mut app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    app.update();
    let Compose::Writing { at, .. } = app.world().resource::<Compose>().clone() else {
        panic!("not writing");
    };
    assert!(at.distance(Vec3::new(target.x, NOTE_HEIGHT, target.z)) < 1e-3, "{at}");
}

#[test]
fn panels_face_the_head_and_keep_their_angle_from_one_to_three_metres() {
    let mut app = app();
    let note = receive(&mut app, 1, [0.0, 1.5, -2.0]);
    let angle_at = |app: &mut App, head: Vec3| -> (f32, Quat) {
        input(app).head = Some(aim(head, Vec3::new(0.0, 1.5, -2.0)));
        app.update();
        let t = *app.world().get::<Transform>(note).unwrap();
        let d = t.translation.distance(head);
        (xr::angular_height(0.5 * t.scale.y, d), t.rotation)
    };
    // Facing: the panel's +Z (its face) points at the head, whichever side it stands.
    for head in [Vec3::new(0.0, 1.6, 0.0), Vec3::new(2.0, 1.6, -2.0), Vec3::new(-1.5, 1.6, -3.5)] {
        let (_, rot) = angle_at(&mut app, head);
        let mut to = head - Vec3::new(0.0, 1.5, -2.0);
        to.y = 0.0;
        let face = rot * Vec3::Z;
        assert!(face.angle_between(to).abs() < 0.1, "faces {face} not {to}");
    }
    // Angular rule: the same angle at 1, 2 and 3 m; smaller farther; not shrunk nearer.
    let (a1, _) = angle_at(&mut app, Vec3::new(0.0, 1.5, -1.0));
    let (a2, _) = angle_at(&mut app, Vec3::new(0.0, 1.5, 0.0));
    let (a3, _) = angle_at(&mut app, Vec3::new(0.0, 1.5, 1.0));
    let (a6, _) = angle_at(&mut app, Vec3::new(0.0, 1.5, 4.0));
    let (a_half, _) = angle_at(&mut app, Vec3::new(0.0, 1.5, -1.5));
    for a in [a2, a3] {
        assert!((a - a1).abs() / a1 < 0.03, "{a1} vs {a}");
    }
    assert!(a6 < a3 * 0.6, "far panels shrink: {a6} vs {a3}");
    assert!(a_half > a1, "near panels are not shrunk: {a_half} vs {a1}");
}

#[test]
fn the_thumbstick_snap_turns_about_the_head_and_teleports_to_the_aimed_floor() {
    let mut app = app();
    input(&mut app).head = Some(Transform::from_xyz(1.0, 1.6, 0.0));
    // A flick right turns 30 degrees clockwise about the head, once per flick.
    for x in [0.9, 1.0, 0.0] {
        input(&mut app).hand_mut(Hand::Right).thumbstick = Vec2::new(x, 0.0);
        app.update();
    }
    let stage = app.world().resource::<StageOrigin>().0;
    let (axis, angle) = stage.rotation.to_axis_angle();
    assert!((angle - xr::SNAP_TURN).abs() < 1e-4 && axis.y < 0.0, "{axis} {angle}");
    // The stage started where the world is, so the head's place is a fixed point of the turn.
    let pivot = Vec3::new(1.0, 0.0, 0.0);
    assert!(stage.transform_point(pivot).distance(pivot) < 1e-4, "turned about the head");
    // Push forward and aim at the floor, release: the head lands over the target.
    let before = app.world().resource::<StageOrigin>().0.translation;
    let target = Vec3::new(2.0, 0.0, -3.0);
    input(&mut app).hand_mut(Hand::Left).aim = Some(aim(Vec3::new(0.8, 1.1, -0.2), target));
    input(&mut app).hand_mut(Hand::Left).thumbstick = Vec2::new(0.0, 0.95);
    app.update();
    let aimed = app.world().resource::<XrPointerState>().teleport_target.unwrap();
    assert!(aimed.distance(target) < 1e-3);
    input(&mut app).hand_mut(Hand::Left).thumbstick = Vec2::ZERO;
    app.update();
    let moved = app.world().resource::<StageOrigin>().0.translation - before;
    assert!(moved.distance(Vec3::new(1.0, 0.0, -3.0)) < 1e-3, "moved by {moved}");
}

#[test]
fn holding_grip_records_and_releasing_it_posts() {
    let mut app = app();
    let voice = |app: &mut App, grip: f32| -> Vec<VoiceInput> {
        input(app).hand_mut(Hand::Right).grip = grip;
        app.update();
        app.world_mut().resource_mut::<Messages<VoiceInput>>().drain().collect()
    };
    assert_eq!(voice(&mut app, 0.3), vec![]);
    assert_eq!(voice(&mut app, 0.95), vec![VoiceInput::StartRecording]);
    assert_eq!(voice(&mut app, 0.7), vec![], "a loosened grip keeps recording");
    assert_eq!(voice(&mut app, 0.1), vec![VoiceInput::StopRecording]);
}

#[test]
fn a_recording_the_headset_stops_tracking_is_discarded_not_posted() {
    let mut app = app();
    let drain = |app: &mut App| -> Vec<VoiceInput> {
        app.world_mut().resource_mut::<Messages<VoiceInput>>().drain().collect()
    };
    input(&mut app).hand_mut(Hand::Right).grip = 0.95;
    app.update();
    assert_eq!(drain(&mut app), vec![VoiceInput::StartRecording]);
    // The headset goes to sleep with the grip held: the glue pauses and clears the input.
    *input(&mut app) = XrInput { paused: true, ..Default::default() };
    app.update();
    assert_eq!(drain(&mut app), vec![VoiceInput::CancelRecording]);
    app.update();
    assert_eq!(drain(&mut app), vec![], "discarded once");
    // Awake again, the grip already let go: nothing more; held anew, a new recording.
    *input(&mut app) = XrInput::default();
    app.update();
    assert_eq!(drain(&mut app), vec![]);
    input(&mut app).hand_mut(Hand::Right).grip = 0.95;
    app.update();
    assert_eq!(drain(&mut app), vec![VoiceInput::StartRecording]);
}

#[test]
fn a_note_left_against_an_anchor_this_device_does_not_know_is_marked_approximate() {
    let mut body = NoteBody::text("alice", "on the shelf", Pose::default());
    let note =
        |body: &NoteBody| cairn::notes::Note::from_local(&local_note(1, body.clone(), false));
    let plain = cairn::render::header_line(&note(&body), 0);
    assert!(!plain.contains("approximate"), "{plain}");
    body.anchor = Some(shelf_anchor(Pose::default()));
    let anchored = cairn::render::header_line(&note(&body), 0);
    assert!(anchored.contains("≈ place approximate"), "{anchored}");
}

fn shelf_anchor(offset: Pose) -> cairn_crypto::SpatialAnchor {
    cairn_crypto::SpatialAnchor { kind: "msft".into(), id: b"shelf".to_vec(), offset }
}

fn shelf_key() -> cairn::notes::AnchorKey {
    cairn::notes::AnchorKey { kind: "msft".into(), id: b"shelf".to_vec() }
}

fn set_anchor(app: &mut App, at: Option<Transform>) {
    let mut known = app.world_mut().resource_mut::<cairn::notes::KnownAnchors>();
    match at {
        Some(t) => known.0.insert(shelf_key(), t),
        None => known.0.remove(&shelf_key()),
    };
    app.update();
}

#[test]
fn an_anchored_note_stands_at_its_anchor_where_this_device_locates_it_and_follows_it() {
    let mut app = app();
    // Left 40 cm above and 10 cm in front of the shelf's anchor; its stage pose is where the
    // author's stage put it, 1 m off from where this device's anchor is.
    let mut body = NoteBody::text(
        "alice",
        "on the shelf",
        Pose { position: [3.0, 1.4, -2.0], ..Pose::default() },
    );
    body.anchor = Some(shelf_anchor(Pose { position: [0.0, 0.4, 0.1], ..Pose::default() }));
    app.world_mut().write_message(NoteUpdated(local_note(5, body, false)));
    app.update();
    app.update();
    let e = app.world().resource::<NoteIndex>().0[&NoteId([5; 16])];
    let at = |app: &App| app.world().get::<Transform>(e).unwrap().translation;
    let approximate = |app: &App| app.world().get::<cairn::notes::Note>(e).unwrap().approximate;
    // Not located here (yet): the stage pose, marked.
    assert!(at(&app).distance(Vec3::new(3.0, 1.4, -2.0)) < 1e-4, "{}", at(&app));
    assert!(approximate(&app));
    // The runtime locates the anchor, turned a quarter: the note stands at the anchor, exact,
    // and its header is redrawn without the mark.
    let shelf = Transform::from_xyz(4.0, 1.0, -2.0)
        .with_rotation(Quat::from_rotation_y(std::f32::consts::FRAC_PI_2));
    set_anchor(&mut app, Some(shelf));
    let want = shelf.transform_point(Vec3::new(0.0, 0.4, 0.1));
    assert!(at(&app).distance(want) < 1e-4, "{} vs {want}", at(&app));
    assert!(!approximate(&app));
    let header = cairn::render::header_line(app.world().get::<cairn::notes::Note>(e).unwrap(), 0);
    assert!(!header.contains("approximate"), "{header}");
    // Pointing finds it where it now stands.
    input(&mut app).head = Some(aim(HEAD, want));
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(Vec3::new(0.2, 1.2, -0.3), want));
    app.update();
    assert_eq!(app.world().resource::<Pointer>().hovered, Some(e));
    // The runtime refines the anchor by 3 cm: the note follows.
    let refined = Transform { translation: shelf.translation + Vec3::Z * 0.03, ..shelf };
    set_anchor(&mut app, Some(refined));
    assert!(at(&app).distance(want + Vec3::Z * 0.03) < 1e-4);
    // Tracking lost: back to the stage pose, marked again.
    set_anchor(&mut app, None);
    assert!(at(&app).distance(Vec3::new(3.0, 1.4, -2.0)) < 1e-4);
    assert!(approximate(&app));
}

#[test]
fn a_note_written_near_a_located_anchor_goes_out_attached_to_it() {
    let mut app = app();
    let shelf = Transform::from_xyz(1.0, 0.9, -2.5).with_rotation(Quat::from_rotation_y(0.5));
    set_anchor(&mut app, Some(shelf));
    let post = |app: &mut App, at: Vec3| {
        app.world_mut().insert_resource(Compose::Writing {
            at,
            reply_to: None,
            text: "milk".into(),
        });
        app.world_mut().write_message(ComposeInput::Submit);
        app.update();
        let posts = posted_drafts(app);
        assert_eq!(posts.len(), 1);
        posts.into_iter().next().unwrap()
    };
    let at = Vec3::new(0.0, NOTE_HEIGHT, -2.0);
    let draft = post(&mut app, at);
    // Its stage pose is unchanged (any device can show it); the anchor and the pose relative
    // to it put it back at the same spot.
    assert_eq!(draft.pose.position, at.to_array());
    let anchor = draft.anchor.expect("attached to the shelf's anchor");
    assert_eq!((anchor.kind.as_str(), anchor.id.as_slice()), ("msft", &b"shelf"[..]));
    let [x, y, z] = anchor.offset.position;
    assert!(shelf.transform_point(Vec3::new(x, y, z)).distance(at) < 1e-4);
    // Far from every known anchor: not attached.
    let draft = post(&mut app, Vec3::new(20.0, NOTE_HEIGHT, 5.0));
    assert!(draft.anchor.is_none());
}

#[test]
fn the_hand_display_lists_unread_notes_first_and_says_what_is_being_composed() {
    use cairn::xr::hand_display::{HAND_ROWS, hand_display_text};
    let note = |id: u8, text: &str, read: bool| {
        cairn::notes::Note::from_local(&local_note(
            id,
            NoteBody::text("alice", text, Pose::default()),
            read,
        ))
    };
    let notes =
        [note(1, "old and read", true), note(2, "new", false), note(3, "newest read", true)];
    let refs: Vec<&cairn::notes::Note> = notes.iter().collect();
    let status = cairn::net::NetStatus::default();
    let (header, body) = hand_display_text(&refs, &Compose::Placing, &status, &[]);
    assert_eq!(header, cairn::net::status_text(&status));
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines[0].starts_with("Placing"), "{body}");
    assert!(lines[1].contains("new") && lines[1].contains('●'), "unread first: {body}");
    assert!(lines[2].contains("newest read") && lines[3].contains("old and read"), "{body}");
    let many: Vec<cairn::notes::Note> = (0..20).map(|i| note(i, "n", true)).collect();
    let refs: Vec<&cairn::notes::Note> = many.iter().collect();
    let (_, body) = hand_display_text(&refs, &Compose::Idle, &status, &[]);
    assert_eq!(body.lines().count(), HAND_ROWS + 1, "{body}");
    assert!(body.ends_with("and 12 more"), "{body}");
}

/// Points the right controller at `key` on the keyboard and pulls the trigger once.
fn press_key(app: &mut App, key: xr::boards::Key) {
    let at = key_centre(app, key);
    press_at(app, key, at);
}

/// Points the right controller at `at`, checks that `key` is hovered, pulls the trigger.
fn press_at(app: &mut App, key: xr::boards::Key, at: Vec3) {
    input(app).hand_mut(Hand::Right).aim = Some(aim(KEY_HAND, at));
    app.update();
    assert_eq!(app.world().resource::<xr::boards::BoardState>().hovered, Some(key));
    input(app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    input(app).hand_mut(Hand::Right).trigger = 0.0;
    app.update();
}

/// The head looks ahead and down a little, and a note is being written (the keyboard comes up).
fn start_writing(app: &mut App) {
    input(app).head = Some(aim(HEAD, Vec3::new(0.0, 1.2, -2.0)));
    app.world_mut().insert_resource(Compose::Writing {
        at: Vec3::new(0.0, NOTE_HEIGHT, -2.0),
        reply_to: None,
        text: String::new(),
    });
    app.update();
}

fn writing(app: &App) -> Option<String> {
    match app.world().resource::<Compose>() {
        Compose::Writing { text, .. } => Some(text.clone()),
        _ => None,
    }
}

const KEY_HAND: Vec3 = Vec3::new(0.15, 1.2, -0.15);

/// The keyboard's pose, while it is up.
fn keyboard(app: &mut App) -> Transform {
    let world = app.world_mut();
    let mut q = world.query_filtered::<&Transform, With<xr::boards::VirtualKeyboard>>();
    *q.single(world).expect("the keyboard is up")
}

fn key_centre(app: &mut App, key: xr::boards::Key) -> Vec3 {
    let board = xr::boards::Board::keyboard();
    let cap = board.cap(key).expect("a key of the layout");
    keyboard(app).transform_point(board.centre(cap))
}

#[test]
fn the_headset_keyboard_types_the_note_and_posts_it_and_a_note_behind_it_is_not_touched() {
    use cairn::xr::boards::{Key, VirtualKeyboard};
    let mut app = app();
    input(&mut app).head = Some(aim(HEAD, Vec3::new(0.0, 1.2, -2.0)));
    // The trigger on the floor, with nothing being composed, starts a note standing there.
    let target = Vec3::new(-0.8, 0.0, -2.5);
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(Vec3::new(0.2, 1.1, -0.2), target));
    app.update();
    input(&mut app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    input(&mut app).hand_mut(Hand::Right).trigger = 0.0;
    app.update();
    assert_eq!(writing(&app).as_deref(), Some(""), "a press on the floor starts writing");
    let boards =
        app.world_mut().query_filtered::<(), With<VirtualKeyboard>>().iter(app.world()).count();
    assert_eq!(boards, 1, "the keyboard comes up");

    // A note stands a metre behind the H key, on the line from the hand through it.
    let h = key_centre(&mut app, Key::Char('h'));
    let behind_at = h + (h - KEY_HAND).normalize();
    let behind = receive(&mut app, 1, behind_at.to_array());

    // The first letter is a capital; shift is one-shot; backspace takes a character back.
    for key in [Key::Char('h'), Key::Char('i'), Key::Char('x'), Key::Backspace, Key::Space] {
        press_key(&mut app, key);
    }
    press_key(&mut app, Key::Shift);
    press_key(&mut app, Key::Char('a'));
    press_key(&mut app, Key::Char('l'));
    press_key(&mut app, Key::Char('!'));
    assert_eq!(writing(&app).as_deref(), Some("Hi Al!"));
    // The keys sat in front of the note: it was never focused or activated.
    assert_eq!(app.world().resource::<Focused>().0, None);
    assert!(
        app.world_mut()
            .resource_mut::<Messages<NoteActivated>>()
            .drain()
            .all(|a| a.entity != behind)
    );

    app.world_mut().resource_mut::<Messages<cairn::net::NetCommand>>().clear();
    press_key(&mut app, Key::Post);
    let posted = posted_drafts(&mut app);
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].text, "Hi Al!");
    let [x, _, z] = posted[0].pose.position;
    assert!(Vec3::new(x, 0.0, z).distance(target) < 1e-3, "the note stands where it was placed");
    assert_eq!(writing(&app), None);
    app.update();
    let boards =
        app.world_mut().query_filtered::<(), With<VirtualKeyboard>>().iter(app.world()).count();
    assert_eq!(boards, 0, "the keyboard goes when the note is posted");

    // With the keyboard gone, the aim through where the H key was reaches the note behind.
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(KEY_HAND, h));
    app.update();
    assert_eq!(app.world().resource::<Pointer>().hovered, Some(behind));
}

#[test]
fn cancel_on_the_headset_keyboard_posts_nothing() {
    use cairn::xr::boards::Key;
    let mut app = app();
    start_writing(&mut app);
    press_key(&mut app, Key::Char('q'));
    assert_eq!(writing(&app).as_deref(), Some("Q"));
    app.world_mut().resource_mut::<Messages<cairn::net::NetCommand>>().clear();
    press_key(&mut app, Key::Cancel);
    assert_eq!(writing(&app), None);
    let commands =
        app.world_mut().resource_mut::<Messages<cairn::net::NetCommand>>().drain().count();
    assert_eq!(commands, 0);
}

#[test]
fn the_keyboard_comes_along_when_the_thumbstick_turns_or_teleports_the_wearer() {
    use cairn::xr::boards::Key;
    let mut app = app();
    start_writing(&mut app);
    press_key(&mut app, Key::Char('h'));
    let head = |app: &mut App| input(app).head.unwrap();
    let relative = |app: &mut App| {
        let (h, k) = (head(app), keyboard(app));
        (h.rotation.inverse() * (k.translation - h.translation), h.rotation.inverse() * k.rotation)
    };
    let (offset, turn) = relative(&mut app);
    // Teleport: aim the left stick at the floor 3 m ahead and release. The runtime then
    // reports the head where the stage took it, in world space.
    let stage_before = app.world().resource::<StageOrigin>().0;
    let target = Vec3::new(0.5, 0.0, -3.0);
    input(&mut app).hand_mut(Hand::Left).aim = Some(aim(Vec3::new(-0.2, 1.1, -0.2), target));
    input(&mut app).hand_mut(Hand::Left).thumbstick = Vec2::new(0.0, 0.95);
    app.update();
    input(&mut app).hand_mut(Hand::Left).thumbstick = Vec2::ZERO;
    app.update();
    let stage_after = app.world().resource::<StageOrigin>().0;
    assert_ne!(stage_before, stage_after, "the stick teleported");
    let moved = stage_after.compute_affine() * stage_before.compute_affine().inverse();
    let h = head(&mut app);
    input(&mut app).head = Some(Transform::from_matrix((moved * h.compute_affine()).into()));
    app.update();
    let (offset_after, turn_after) = relative(&mut app);
    assert!(offset_after.distance(offset) < 1e-4, "{offset_after} vs {offset}");
    assert!(turn_after.abs_diff_eq(turn, 1e-4), "{turn_after} vs {turn}");
    // A snap turn about the head: the keyboard swings round with the wearer.
    for x in [1.0, 0.0] {
        input(&mut app).hand_mut(Hand::Left).thumbstick = Vec2::new(x, 0.0);
        app.update();
    }
    let turned = app.world().resource::<StageOrigin>().0.compute_affine()
        * stage_after.compute_affine().inverse();
    let h = head(&mut app);
    input(&mut app).head = Some(Transform::from_matrix((turned * h.compute_affine()).into()));
    app.update();
    let (offset_turned, turn_turned) = relative(&mut app);
    assert!(offset_turned.distance(offset) < 1e-4, "{offset_turned} vs {offset}");
    assert!(turn_turned.abs_diff_eq(turn, 1e-4), "{turn_turned} vs {turn}");
    // And it still types: what was written is kept, and a key at its new place works.
    let k = keyboard(&mut app);
    let board = xr::boards::Board::keyboard();
    let i = k.transform_point(board.centre(board.cap(Key::Char('i')).unwrap()));
    let hand = head(&mut app).transform_point(Vec3::new(0.15, -0.4, -0.15));
    input(&mut app).hand_mut(Hand::Right).aim = Some(aim(hand, i));
    app.update();
    assert_eq!(app.world().resource::<xr::boards::BoardState>().hovered, Some(Key::Char('i')));
    input(&mut app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    assert_eq!(writing(&app).as_deref(), Some("Hi"));
}

#[test]
fn the_headset_keyboard_is_drawn_with_its_hovered_key_lit_and_the_text_above_it() {
    use cairn::xr::boards::{BoardLook, Key};
    let mut app = App::new();
    app.add_plugins((MinimalPlugins, TransformPlugin, AssetPlugin::default(), CairnLogicPlugin));
    app.init_asset::<Mesh>().init_asset::<StandardMaterial>().init_asset::<Image>();
    app.init_asset::<cairn::render::VoiceOrbMaterial>();
    app.add_plugins((cairn::render::cpu_plugin, xr::logic_plugin));
    app.add_systems(Update, xr::boards::dress_boards.after(cairn::CairnSet::Layout));
    app.insert_resource(CurrentSpace(Some(SPACE)));
    app.update();
    start_writing(&mut app);
    app.update();
    let look = |app: &mut App| {
        let world = app.world_mut();
        let mut q = world.query_filtered::<&BoardLook, With<xr::boards::VirtualKeyboard>>();
        let l = q.single(world).expect("the keyboard is drawn");
        (l.keys, l.highlight, l.preview.expect("the keyboard shows its text"))
    };
    let (keys, highlight, preview) = look(&mut app);
    let material = |app: &App, e: Entity| {
        app.world().get::<MeshMaterial3d<StandardMaterial>>(e).expect("a material").0.clone()
    };
    // The keys' texture is the upper-case one at first (a note starts with a capital).
    let upper_keys = material(&app, keys);
    assert!(
        app.world()
            .resource::<Assets<StandardMaterial>>()
            .get(&upper_keys)
            .unwrap()
            .base_color_texture
            .is_some()
    );
    assert_eq!(app.world().get::<Visibility>(highlight), Some(&Visibility::Hidden));

    press_key(&mut app, Key::Char('o'));
    // Typed: lower case now, and the text shows above the keys.
    assert_ne!(material(&app, keys), upper_keys);
    let preview_material = material(&app, preview);
    let preview_at = app.world().get::<Transform>(preview).unwrap().translation;
    assert!(preview_at.y > 0.0, "the text stands above the keys: {preview_at}");
    press_key(&mut app, Key::Char('k'));
    assert_ne!(material(&app, preview), preview_material, "the text is redrawn as it grows");
    // Hovering a key lights it, where that key is.
    let board = xr::boards::Board::keyboard();
    let k = board.cap(Key::Char('k')).unwrap();
    assert_eq!(app.world().get::<Visibility>(highlight), Some(&Visibility::Inherited));
    let lit = app.world().get::<Transform>(highlight).unwrap().translation;
    assert!(lit.truncate().distance(board.centre(k).truncate()) < 1e-4, "{lit}");
    assert_eq!(writing(&app).as_deref(), Some("Ok"));
}

/// The action bar's pose and board, while it is up.
fn action_bar(app: &mut App) -> Option<(Entity, Transform, xr::boards::Board)> {
    let world = app.world_mut();
    let mut q = world.query::<(&xr::boards::ActionBar, &Transform, &xr::boards::Board)>();
    q.single(world).ok().map(|(bar, t, b)| (bar.note, *t, *b))
}

fn press_action(app: &mut App, key: xr::boards::Key) {
    let (_, at, board) = action_bar(app).expect("the action bar is up");
    let cap = board.cap(key).expect("a key of the action bar");
    press_at(app, key, at.transform_point(board.centre(cap)));
}

fn net_commands(app: &mut App) -> Vec<cairn_client::ClientCommand> {
    app.world_mut()
        .resource_mut::<Messages<cairn::net::NetCommand>>()
        .drain()
        .map(|c| c.0)
        .collect()
}

/// The drafts of the notes posted since the last look (other commands dropped).
fn posted_drafts(app: &mut App) -> Vec<cairn_client::Draft> {
    net_commands(app)
        .into_iter()
        .filter_map(|c| match c {
            cairn_client::ClientCommand::Post { draft, .. } => Some(draft),
            _ => None,
        })
        .collect()
}

/// A note two metres ahead of the head, which the right controller points at and selects;
/// `before` looks at the app once the note is there, before it is selected.
fn focus_a_note_ahead(app: &mut App, before: impl FnOnce(&mut App)) -> Entity {
    let ahead = Vec3::new(0.0, 1.5, -2.0);
    input(app).head = Some(aim(HEAD, ahead));
    let note = receive(app, 1, ahead.to_array());
    before(app);
    input(app).hand_mut(Hand::Right).aim = Some(aim(Vec3::new(0.15, 1.2, -0.15), ahead));
    app.update();
    input(app).hand_mut(Hand::Right).trigger = 1.0;
    app.update();
    input(app).hand_mut(Hand::Right).trigger = 0.0;
    app.update();
    assert_eq!(app.world().resource::<Focused>().0, Some(note));
    note
}

#[test]
fn the_action_bar_under_a_focused_note_reacts_replies_and_deletes_in_the_headset() {
    use cairn::xr::boards::Key;
    use cairn_client::{ClientCommand, Content};
    let mut app = app();
    app.world_mut().resource_mut::<cairn::net::NetStatus>().handle = "alice".into();
    let note = focus_a_note_ahead(&mut app, |app| {
        assert!(action_bar(app).is_none(), "no bar before a note is focused");
    });
    let (for_note, at, board) = action_bar(&mut app).expect("the bar comes up under the note");
    assert_eq!(for_note, note);
    let note_at = app.world().get::<Transform>(note).unwrap().translation;
    assert!(
        at.translation.y < note_at.y - 0.2,
        "under the panel: {} vs {}",
        at.translation,
        note_at
    );
    assert!(board.cap(Key::Delete).is_some(), "alice's own note can be deleted");

    // A reaction: a reply carrying the emoji, to this note.
    net_commands(&mut app);
    press_action(&mut app, Key::React(0));
    let sent = net_commands(&mut app);
    assert!(
        matches!(&sent[..], [ClientCommand::Post { draft, .. }]
            if matches!(&draft.content, Content::Reaction(r) if r == cairn::compose::REACTIONS[0])
                && draft.reply_to == Some(NoteId([1; 16]))),
        "{sent:?}"
    );
    assert_eq!(app.world().resource::<Focused>().0, Some(note), "the focus stays");

    // Delete, on your own note.
    press_action(&mut app, Key::Delete);
    let sent = net_commands(&mut app);
    assert!(
        matches!(&sent[..], [ClientCommand::Delete { note_id, .. }] if *note_id == NoteId([1; 16])),
        "{sent:?}"
    );

    // Reply: writing starts beside the note, the bar gives way to the keyboard.
    press_action(&mut app, Key::Reply);
    app.update();
    assert!(
        matches!(app.world().resource::<Compose>(), Compose::Writing { reply_to: Some(id), .. } if *id == NoteId([1; 16]))
    );
    assert!(action_bar(&mut app).is_none(), "no bar while writing");
    keyboard(&mut app);

    // Back from writing, the bar returns; seen by someone else, the note offers no Delete.
    app.world_mut().resource_mut::<cairn::net::NetStatus>().handle = "bob".into();
    press_key(&mut app, Key::Cancel);
    app.update();
    let (_, _, board) = action_bar(&mut app).expect("the bar is back after writing");
    assert!(board.cap(Key::Delete).is_none());
    assert!(board.cap(Key::Reply).is_some());
}

#[test]
fn a_panic_that_says_the_runtime_is_gone_is_told_apart_from_any_other() {
    use cairn::xr::runtime::{runtime_lost, runtime_lost_notice};
    // As bevy_mod_openxr 0.6 words them (`expect` on a failed frame or event call).
    assert_eq!(
        runtime_lost("Failed to wait frame: ERROR_INSTANCE_LOST"),
        Some("ERROR_INSTANCE_LOST")
    );
    assert_eq!(
        runtime_lost("Failed to poll event: ERROR_SESSION_LOST"),
        Some("ERROR_SESSION_LOST")
    );
    assert_eq!(
        runtime_lost("Failed to begin frame: ERROR_RUNTIME_FAILURE"),
        Some("ERROR_RUNTIME_FAILURE")
    );
    // Anything else is a bug of ours or theirs, and keeps its backtrace.
    assert_eq!(runtime_lost("Failed to wait frame: ERROR_TIME_INVALID"), None);
    assert_eq!(runtime_lost("called `Option::unwrap()` on a `None` value"), None);
    let notice = runtime_lost_notice("ERROR_INSTANCE_LOST");
    assert!(notice.contains("ERROR_INSTANCE_LOST") && notice.contains("--flat"), "{notice}");
}

/// A place's record as the client hands it over: two marks a metre and a half apart.
fn place_note(id: u8, name: &str) -> cairn_client::LocalNote {
    use cairn_crypto::{PlaceMark, PlaceRecord};
    let (in_place, _) =
        cairn_client::place::frame_from_marks(&[[0.0, 0.9, -1.0], [1.5, 0.9, -1.0]]).unwrap();
    let record = PlaceRecord {
        name: name.into(),
        description: "the bench's two ends".into(),
        marks: ["left end", "right end"]
            .iter()
            .zip(in_place)
            .map(|(n, position)| PlaceMark { name: (*n).into(), position })
            .collect(),
    };
    let mut body = NoteBody::text("alice", name, Pose::default());
    body.kind = cairn_proto::NoteKind::Place;
    body.place_record = Some(record);
    local_note(id, body, true)
}

#[test]
fn in_vr_next_place_on_the_action_bar_takes_the_wearer_to_each_places_area_then_back() {
    use cairn::places::{CurrentPlace, area_origin};
    use cairn::xr::boards::Key;
    let mut app = app();
    for (id, name) in [(40, "Kitchen"), (41, "Lab")] {
        app.world_mut().write_message(NoteUpdated(place_note(id, name)));
    }
    focus_a_note_ahead(&mut app, |_| {});
    let (_, _, board) = action_bar(&mut app).expect("the bar is up");
    assert!(board.cap(Key::Align).is_none(), "in VR nothing is aligned");

    // Each press goes on to the next place: the head lands three metres in front of its
    // area (its height kept); after the last, back to the start.
    let expected = [
        (Some(NoteId([40; 16])), area_origin(0)),
        (Some(NoteId([41; 16])), area_origin(1)),
        (None, Vec3::ZERO),
    ];
    // (The head's pose here stays where the test put it in the world, as if the wearer
    // stepped back each time: each move is from there.)
    for (place, origin) in expected {
        let before = app.world().resource::<StageOrigin>().0.translation;
        press_action(&mut app, Key::NextPlace);
        app.update();
        assert_eq!(app.world().resource::<CurrentPlace>().0, place);
        let moved = app.world().resource::<StageOrigin>().0.translation - before;
        let there = origin + Vec3::Z * 3.0;
        let expected = Vec3::new(there.x - HEAD.x, 0.0, there.z - HEAD.z);
        assert!(moved.distance(expected) < 1e-4, "moved {moved} for {place:?}");
    }
}
