//! The thin OpenXR glue (bevy_mod_openxr): decides XR or desktop at start, creates the
//! controller actions and spaces, fills [`XrInput`] from the runtime each frame, applies the
//! stage origin, asks for see-through where the headset has it, and reports the session's
//! lifecycle. Everything it feeds is tested headless through `XrInput`.

use super::input::{Hand, HandInput, StageOrigin, XrInput};
use crate::CairnSet;
use crate::notes::FADE_END;
use crate::render::VirtualEnvironment;
use bevy::prelude::*;
use bevy_mod_openxr::action_binding::{OxrSendActionBindings, OxrSuggestActionBinding};
use bevy_mod_openxr::action_set_attaching::OxrAttachActionSet;
use bevy_mod_openxr::action_set_syncing::{OxrActionSetSyncSet, OxrSyncActionSet};
use bevy_mod_openxr::environment_blend_mode::OxrEnvironmentBlendModes;
use bevy_mod_openxr::openxr_session_running;
use bevy_mod_openxr::poll_events::{OxrEventHandlerExt, OxrEventIn};
use bevy_mod_openxr::resources::{OxrInstance, OxrSessionConfig};
use bevy_mod_openxr::session::OxrSession;
use bevy_mod_openxr::spaces::OxrSpaceLocationFlags;
use bevy_mod_xr::camera::XrCamera;
use bevy_mod_xr::hands::{HandBone, LeftHand, RightHand};
use bevy_mod_xr::session::{XrSessionCreated, XrState, XrStateChanged, XrTracker, XrTrackingRoot};
use bevy_mod_xr::spaces::XrSpaceLocationFlags;
use openxr::EnvironmentBlendMode;

use crate::common::DisplayMode;

/// What a look at the OpenXR runtime found.
#[derive(Debug, Clone)]
pub struct RuntimeInfo {
    pub runtime: String,
    pub system: String,
    pub fb_passthrough: bool,
    /// `XR_MSFT_spatial_anchor` with `XR_MSFT_spatial_anchor_persistence`: notes attach to
    /// anchors the runtime keeps between sessions.
    pub msft_spatial_anchors: bool,
    /// `XR_FB_spatial_entity` with its storage and query extensions (Quest): the same,
    /// asynchronously.
    pub fb_spatial_anchors: bool,
}

/// Looks for an OpenXR runtime and a headset without starting a session, so that the app
/// can say why it falls back to the desktop (and `--xr` can refuse with the reason).
#[allow(unsafe_code)]
pub fn probe() -> Result<RuntimeInfo, String> {
    // SAFETY: loads the system's OpenXR loader (a C library) and resolves its entry points,
    // exactly as bevy_mod_openxr does when it starts the session.
    let entry = unsafe { openxr::Entry::load() }
        .map_err(|e| format!("no OpenXR loader ({e}); install libopenxr-loader1"))?;
    let exts = entry.enumerate_extensions().map_err(|e| {
        format!(
            "no OpenXR runtime is active ({e}); start one (SteamVR, Monado) or set XR_RUNTIME_JSON"
        )
    })?;
    let app = openxr::ApplicationInfo {
        application_name: "cairn",
        engine_name: "bevy",
        ..Default::default()
    };
    let instance = entry
        .create_instance(&app, &openxr::ExtensionSet::default(), &[])
        .map_err(|e| format!("the OpenXR runtime refused an instance ({e})"))?;
    let runtime = instance
        .properties()
        .map(|p| format!("{} {}", p.runtime_name, p.runtime_version))
        .unwrap_or_else(|_| "OpenXR runtime".into());
    let system = instance
        .system(openxr::FormFactor::HEAD_MOUNTED_DISPLAY)
        .map_err(|e| format!("{runtime} found no headset ({e})"))?;
    let name = instance.system_properties(system).map(|p| p.system_name).unwrap_or_default();
    Ok(RuntimeInfo {
        runtime,
        system: if name.is_empty() { "headset".into() } else { name },
        fb_passthrough: exts.fb_passthrough,
        msft_spatial_anchors: exts.msft_spatial_anchor && exts.msft_spatial_anchor_persistence,
        fb_spatial_anchors: exts.fb_spatial_entity
            && exts.fb_spatial_entity_storage
            && exts.fb_spatial_entity_query,
    })
}

/// The blend modes to ask for, best first: see-through (AR) where the headset has it.
pub fn blend_preference() -> Vec<EnvironmentBlendMode> {
    vec![
        EnvironmentBlendMode::ALPHA_BLEND,
        EnvironmentBlendMode::ADDITIVE,
        EnvironmentBlendMode::OPAQUE,
    ]
}

/// The raw OpenXR session states (IDLE, READY, SYNCHRONIZED, VISIBLE, FOCUSED, STOPPING,
/// LOSS_PENDING, EXITING) in the order the runtime reported them; several can arrive within
/// one frame. The last is the current one.
#[derive(Resource, Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionState(pub Vec<String>);

/// Frames rendered in a running session.
#[derive(Resource, Debug, Default, Clone, Copy)]
pub struct XrFrames(pub u64);

/// How many of the notes at `notes` stand within about 50° of the head's gaze and before
/// the distance where notes have faded out.
pub fn notes_in_view(head: &Transform, notes: impl Iterator<Item = Vec3>) -> usize {
    let fwd = head.forward();
    notes
        .filter(|at| {
            let to = *at - head.translation;
            let d = to.length();
            d > 0.1 && d < FADE_END && fwd.dot(to / d) > 0.64
        })
        .count()
}

#[derive(Resource)]
struct ControllerActions {
    set: openxr::ActionSet,
    aim: openxr::Action<openxr::Posef>,
    trigger: openxr::Action<f32>,
    grip: openxr::Action<f32>,
    thumbstick: openxr::Action<openxr::Vector2f>,
    hands: [openxr::Path; 2],
}

/// The aim space of one controller.
#[derive(Component, Debug, Clone, Copy)]
pub(crate) struct AimSpace(pub(crate) Hand);

/// The OpenXR glue (added by [`super::openxr_plugin`]).
pub fn plugin(app: &mut App) {
    app.init_resource::<SessionState>()
        .init_resource::<XrFrames>()
        .insert_resource(OxrSessionConfig {
            blend_mode_preference: blend_preference(),
            ..default()
        })
        .add_oxr_event_handler(session_state_events)
        .add_systems(Startup, create_actions.run_if(resource_exists::<OxrInstance>))
        .add_systems(OxrSendActionBindings, suggest_bindings)
        .add_systems(XrSessionCreated, (attach_actions, spawn_aim_spaces))
        .add_systems(
            PreUpdate,
            sync_actions.before(OxrActionSetSyncSet).run_if(openxr_session_running),
        )
        .add_systems(Update, leave_on_sigterm)
        .add_systems(
            Update,
            (
                fall_back_when_the_session_cannot_start,
                (
                    pause_input_while_stopped,
                    (read_controllers, read_hands, read_head)
                        .chain()
                        .run_if(openxr_session_running),
                )
                    .chain()
                    .in_set(CairnSet::Input)
                    .before(super::input::head_is_viewer),
                apply_stage.in_set(CairnSet::Layout),
                (see_through, count_frames, end_with_the_session),
            ),
        );
}

/// bevy_mod_openxr found no usable runtime after all (the probe said yes, the session
/// said no): the window shows the desktop view, and the sidebar says why.
fn fall_back_when_the_session_cannot_start(
    state: Option<Res<XrState>>,
    mut mode: ResMut<DisplayMode>,
) {
    if mode.is_xr() && state.is_some_and(|s| *s == XrState::Unavailable) {
        *mode = DisplayMode::Desktop {
            reason: "the OpenXR runtime could not start a session (see the log)".into(),
        };
        warn!("cairn: {}", mode.notice());
    }
}

fn session_state_events(event: OxrEventIn, mut state: ResMut<SessionState>) {
    if let openxr::Event::SessionStateChanged(e) = *event {
        let name = format!("{:?}", e.state());
        info!("OpenXR session state: {name}");
        state.0.push(name);
    }
}

fn create_actions(instance: Res<OxrInstance>, mut commands: Commands) {
    let made = (|| -> openxr::Result<ControllerActions> {
        let hands = [
            instance.string_to_path("/user/hand/left")?,
            instance.string_to_path("/user/hand/right")?,
        ];
        let set = instance.create_action_set("cairn", "Cairn", 0)?;
        Ok(ControllerActions {
            aim: set.create_action("aim", "Point", &hands)?,
            trigger: set.create_action("select", "Select and place", &hands)?,
            grip: set.create_action("record", "Hold to record", &hands)?,
            thumbstick: set.create_action("move", "Turn and teleport", &hands)?,
            set,
            hands,
        })
    })();
    match made {
        Ok(actions) => commands.insert_resource(actions),
        Err(e) => error!("cairn: could not create controller actions: {e}"),
    }
}

/// Bindings for the common controllers; runtimes map others onto the simple controller.
fn suggest_bindings(
    actions: Res<ControllerActions>,
    mut out: MessageWriter<OxrSuggestActionBinding>,
) {
    let profiles: [(&str, &str, Option<&str>, Option<&str>); 5] = [
        ("khr/simple_controller", "select/click", None, None),
        ("oculus/touch_controller", "trigger/value", Some("squeeze/value"), Some("thumbstick")),
        ("valve/index_controller", "trigger/value", Some("squeeze/value"), Some("thumbstick")),
        ("htc/vive_controller", "trigger/value", Some("squeeze/click"), Some("trackpad")),
        ("microsoft/motion_controller", "trigger/value", Some("squeeze/click"), Some("thumbstick")),
    ];
    for (profile, trigger, grip, stick) in profiles {
        let interaction_profile = format!("/interaction_profiles/{profile}");
        let mut bind = |action: openxr::sys::Action, input: &str| {
            out.write(OxrSuggestActionBinding {
                action,
                interaction_profile: interaction_profile.clone().into(),
                bindings: ["left", "right"]
                    .iter()
                    .map(|h| format!("/user/hand/{h}/input/{input}").into())
                    .collect(),
            });
        };
        bind(actions.aim.as_raw(), "aim/pose");
        bind(actions.trigger.as_raw(), trigger);
        if let Some(grip) = grip {
            bind(actions.grip.as_raw(), grip);
        }
        if let Some(stick) = stick {
            bind(actions.thumbstick.as_raw(), stick);
        }
    }
}

fn attach_actions(
    actions: Option<Res<ControllerActions>>,
    mut attach: MessageWriter<OxrAttachActionSet>,
) {
    if let Some(actions) = actions {
        attach.write(OxrAttachActionSet(actions.set.clone()));
    }
}

fn sync_actions(
    actions: Option<Res<ControllerActions>>,
    mut sync: MessageWriter<OxrSyncActionSet>,
) {
    if let Some(actions) = actions {
        sync.write(OxrSyncActionSet(actions.set.clone()));
    }
}

fn spawn_aim_spaces(
    actions: Option<Res<ControllerActions>>,
    session: Res<OxrSession>,
    mut commands: Commands,
) {
    let Some(actions) = actions else { return };
    for (hand, path) in [(Hand::Left, actions.hands[0]), (Hand::Right, actions.hands[1])] {
        match session.create_action_space(&actions.aim, path, Isometry3d::IDENTITY) {
            Ok(space) => {
                commands.spawn((
                    space,
                    AimSpace(hand),
                    XrTracker,
                    Transform::default(),
                    OxrSpaceLocationFlags(openxr::SpaceLocationFlags::default()),
                    XrSpaceLocationFlags::default(),
                ));
            }
            Err(e) => error!("cairn: no aim space for the {hand:?} hand: {e}"),
        }
    }
}

fn read_controllers(
    actions: Option<Res<ControllerActions>>,
    session: Res<OxrSession>,
    spaces: Query<(&AimSpace, &GlobalTransform, &XrSpaceLocationFlags)>,
    mut input: ResMut<XrInput>,
) {
    let Some(actions) = actions else { return };
    for (hand, path) in [(Hand::Left, actions.hands[0]), (Hand::Right, actions.hands[1])] {
        let h = input.hand_mut(hand);
        let value =
            |a: &openxr::Action<f32>| a.state(&session, path).map_or(0.0, |s| s.current_state);
        h.trigger = value(&actions.trigger);
        h.grip = value(&actions.grip);
        h.thumbstick = actions
            .thumbstick
            .state(&session, path)
            .map_or(Vec2::ZERO, |s| Vec2::new(s.current_state.x, s.current_state.y));
        h.aim = spaces
            .iter()
            .find(|(a, _, flags)| a.0 == hand && flags.position_tracked && flags.rotation_tracked)
            .map(|(_, t, _)| t.compute_transform());
    }
}

/// While the session is not running (the headset asleep or taken off, the runtime between
/// sessions) the readers above do not run: the input is paused and cleared, so no pose or
/// held button outlives the session.
fn pause_input_while_stopped(
    state: Option<Res<XrState>>,
    session: Option<Res<OxrSession>>,
    mut input: ResMut<XrInput>,
) {
    let running = openxr_session_running(state, session);
    if !running && !input.paused {
        *input = XrInput { paused: true, ..default() };
    } else if running && input.paused {
        input.paused = false;
    }
}

/// Tracked hands: a pinch between thumb and index tips, and an aim from the palm along the
/// index finger, where no controller aims.
fn read_hands(
    bones: Query<(
        &HandBone,
        &GlobalTransform,
        &XrSpaceLocationFlags,
        Has<LeftHand>,
        Has<RightHand>,
    )>,
    mut input: ResMut<XrInput>,
) {
    for (hand, want_left) in [(Hand::Left, true), (Hand::Right, false)] {
        let at = |bone: HandBone| {
            bones
                .iter()
                .find(|(b, _, f, l, r)| {
                    std::mem::discriminant(*b) == std::mem::discriminant(&bone)
                        && f.position_tracked
                        && if want_left { *l } else { *r }
                })
                .map(|(_, t, ..)| t.translation())
        };
        let (thumb, index, palm, knuckle) = (
            at(HandBone::ThumbTip),
            at(HandBone::IndexTip),
            at(HandBone::Palm),
            at(HandBone::IndexProximal),
        );
        let h: &mut HandInput = input.hand_mut(hand);
        h.pinch = thumb.zip(index);
        if h.aim.is_none()
            && let (Some(palm), Some(knuckle)) = (palm, knuckle)
            && let Ok(dir) = Dir3::new(knuckle - palm)
        {
            h.aim = Some(Transform::from_translation(palm).looking_to(dir, Vec3::Y));
        }
    }
}

/// The head: between the eyes.
fn read_head(cams: Query<&GlobalTransform, With<XrCamera>>, mut input: ResMut<XrInput>) {
    let eyes: Vec<Transform> = cams.iter().map(|t| t.compute_transform()).collect();
    if let Some(first) = eyes.first() {
        let centre = eyes.iter().map(|t| t.translation).sum::<Vec3>() / eyes.len() as f32;
        input.head = Some(Transform { translation: centre, ..*first });
    }
}

/// Locomotion moves the stage: bevy_mod_xr's tracking root carries the cameras and spaces.
fn apply_stage(stage: Res<StageOrigin>, mut root: Query<&mut Transform, With<XrTrackingRoot>>) {
    if stage.is_changed() {
        for mut t in &mut root {
            *t = stage.0;
        }
    }
}

/// Where the headset blends with the room (or shows it through cameras), the virtual place
/// goes and only the notes stay, over a transparent background.
fn see_through(
    blend: Option<Res<OxrEnvironmentBlendModes>>,
    mut env: Query<&mut Visibility, With<VirtualEnvironment>>,
    mut clear: ResMut<ClearColor>,
    mut lights: Query<&mut DirectionalLight>,
    mut view: ResMut<crate::places::PlaceView>,
    mut done: Local<Option<bool>>,
) {
    let Some(blend) = blend else { return };
    let ar = blend.blend_mode() != EnvironmentBlendMode::OPAQUE;
    if *done == Some(ar) {
        return;
    }
    *done = Some(ar);
    info!(
        "cairn: {} (blend mode {:?})",
        if ar { "AR: notes in the real room" } else { "VR" },
        blend.blend_mode()
    );
    for mut v in &mut env {
        *v = if ar { Visibility::Hidden } else { Visibility::Inherited };
    }
    if ar {
        clear.0 = Color::NONE;
        // The real room: each place must be aligned with this headset's stage.
        view.set_if_neq(crate::places::PlaceView::Room);
    }
    // A 90 Hz budget: no shadow maps in XR.
    for mut l in &mut lights {
        l.shadow_maps_enabled = false;
    }
}

fn count_frames(state: Option<Res<XrState>>, mut frames: ResMut<XrFrames>) {
    if matches!(state.as_deref(), Some(XrState::Running)) {
        frames.0 += 1;
    }
}

/// Set by SIGTERM (a service manager, `kill`, the test harness).
#[derive(Resource, Clone)]
struct Terminate(std::sync::Arc<std::sync::atomic::AtomicBool>);

/// On SIGTERM the app asks the runtime to end the session (xrRequestExitSession); the runtime
/// then takes it through STOPPING and EXITING, and the app exits when it reaches EXITING.
fn leave_on_sigterm(
    flag: Option<Res<Terminate>>,
    state: Option<Res<XrState>>,
    mut asked: Local<bool>,
    mut commands: Commands,
    mut request: MessageWriter<bevy_mod_xr::session::XrRequestExitMessage>,
    mut exit: MessageWriter<AppExit>,
) {
    let Some(flag) = flag else {
        let f = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Err(e) = signal_hook::flag::register(signal_hook::consts::SIGTERM, f.clone()) {
            warn!("cairn: cannot watch for SIGTERM: {e}");
        }
        commands.insert_resource(Terminate(f));
        return;
    };
    if *asked || !flag.0.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    *asked = true;
    if matches!(state.as_deref(), Some(XrState::Running | XrState::Ready | XrState::Idle)) {
        info!("cairn: SIGTERM; asking the runtime to end the session");
        request.write_default();
    } else {
        exit.write(AppExit::Success);
    }
}

/// The runtime ended the session for good (or the user quit from the headset): exit.
fn end_with_the_session(
    mut changes: MessageReader<XrStateChanged>,
    mut exit: MessageWriter<AppExit>,
) {
    for c in changes.read() {
        info!("cairn: XR state {:?}", c.0);
        if let XrState::Exiting { should_restart: false } = c.0 {
            info!("cairn: the runtime ended the session; exiting");
            exit.write(AppExit::Success);
        }
    }
}

/// The exit status when the OpenXR runtime went away under the app.
pub const EXIT_RUNTIME_LOST: i32 = 3;

/// The OpenXR errors that mean the runtime (or its connection to the headset) is gone for
/// this process, found in a panic's message: bevy_mod_openxr 0.6 stops with `expect` when a
/// frame or event call fails, and these are the failures that no retry mends.
pub fn runtime_lost(panic_message: &str) -> Option<&'static str> {
    [
        "ERROR_INSTANCE_LOST",
        "ERROR_SESSION_LOST",
        "ERROR_RUNTIME_FAILURE",
        "ERROR_RUNTIME_UNAVAILABLE",
    ]
    .into_iter()
    .find(|e| panic_message.contains(e))
}

/// What the user is told when the runtime went away.
pub fn runtime_lost_notice(error: &str) -> String {
    format!(
        "the OpenXR runtime stopped ({error}), so Cairn has closed. Notes you left are kept on \
         this device and sent when Cairn next runs; start it again once the runtime is back, or \
         with --flat for the desktop window."
    )
}

/// In XR, a panic that says the runtime went away (see [`runtime_lost`]) ends the process
/// with a clear message and [`EXIT_RUNTIME_LOST`] (and a `runtime_lost` line in the report)
/// instead of a backtrace; every other panic goes to the hook that was there before.
pub fn exit_cleanly_when_the_runtime_is_lost(report: Option<std::path::PathBuf>) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        let Some(error) = runtime_lost(message) else {
            previous(info);
            return;
        };
        eprintln!("cairn: {}", runtime_lost_notice(error));
        if let Some(path) = &report
            && let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(path)
        {
            // One JSON line, as the report's are (`report` is above this module: it reads
            // the session's state).
            use std::io::Write as _;
            let event = serde_json::json!({"event": "runtime_lost", "error": error, "t_ms": cairn_proto::now_ms()});
            let _ = writeln!(f, "{event}");
        }
        // `_exit`, not `exit`: this runs on whichever thread panicked while the renderer's,
        // the graphics driver's and the runtime client's threads still run, and `exit`'s
        // C destructors (the driver's, the OpenXR loader's) racing them could end the
        // process by a signal instead (seen once in CI). What must be said is written.
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        // SAFETY: `_exit` takes no pointers and ends the process at once.
        #[allow(unsafe_code)]
        unsafe {
            libc::_exit(EXIT_RUNTIME_LOST)
        }
    }));
}
