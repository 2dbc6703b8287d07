//! The flat-screen mode: a fly camera (W A S D to walk, right-drag to look, scroll to move
//! forward and back), the mouse as a pointer, and the keyboard for composing.

use crate::CairnSet;
use crate::compose::{Compose, ComposeInput};
use crate::interact::{PointerPress, PointerRay, PointerSource};
use crate::notes::Viewer;
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::input::mouse::{AccumulatedMouseMotion, AccumulatedMouseScroll};
use bevy::prelude::*;
use bevy::window::{FileDragAndDrop, PrimaryWindow};

/// The desktop camera's orientation.
#[derive(Component, Debug, Clone, Copy)]
pub struct FlyCamera {
    pub yaw: f32,
    pub pitch: f32,
}

/// The sidebar (`ui`) has the keyboard: a search or a prompt is open there, so walking, the
/// note keys and recording leave the keys alone. The sidebar keeps it.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SidebarTyping(pub bool);

/// Width of the sidebar in logical pixels: the pointer ignores it.
pub const SIDEBAR_WIDTH_PX: f32 = 330.0;
const WALK_SPEED: f32 = 2.5;
const LOOK_SENSITIVITY: f32 = 0.004;

pub fn plugin(app: &mut App) {
    app.init_resource::<SidebarTyping>()
        .add_systems(Startup, spawn_camera)
        .add_systems(
            Update,
            (
                fit_viewport,
                fly,
                pointer_from_mouse,
                keys_to_compose,
                dropped_files,
                track_viewer,
                voice_keys,
            )
                .in_set(CairnSet::Input)
                .run_if(crate::common::desktop_mode),
        )
        .add_systems(Update, cameras_follow_mode);
}

/// In a running XR session the headset is the view: the window's cameras rest.
fn cameras_follow_mode(
    mode: Option<Res<crate::common::DisplayMode>>,
    mut cams: Query<&mut Camera, Or<(With<FlyCamera>, With<IsDefaultUiCamera>)>>,
) {
    let Some(mode) = mode else { return };
    if !mode.is_changed() {
        return;
    }
    for mut c in &mut cams {
        c.is_active = !mode.is_xr();
    }
}

fn spawn_camera(mut commands: Commands) {
    let eye = Vec3::new(0.0, 1.7, 3.8);
    let target = Vec3::new(0.0, 1.3, -1.5);
    let dir = (target - eye).normalize();
    commands.spawn((
        Camera3d::default(),
        Transform::from_translation(eye).looking_to(dir, Vec3::Y),
        FlyCamera { yaw: f32::atan2(-dir.x, -dir.z), pitch: dir.y.asin() },
        DistanceFog {
            color: Color::srgb(0.72, 0.82, 0.92),
            falloff: FogFalloff::Linear { start: 25.0, end: 70.0 },
            ..default()
        },
        SpatialListener::new(0.2),
        // Notes are paper and ink: keep white white (the default filmic curve greys it).
        bevy::core_pipeline::tonemapping::Tonemapping::None,
    ));
    // The sidebar draws on its own camera, over the whole window.
    commands.spawn((
        Camera2d,
        Camera { order: 1, clear_color: ClearColorConfig::None, ..default() },
        IsDefaultUiCamera,
    ));
}

/// The 3D view takes the window right of the sidebar, so no note hides behind it.
fn fit_viewport(
    windows: Query<&Window, With<PrimaryWindow>>,
    mut cams: Query<&mut Camera, With<FlyCamera>>,
) {
    let (Ok(window), Ok(mut camera)) = (windows.single(), cams.single_mut()) else { return };
    let (w, h) = (window.physical_width(), window.physical_height());
    let sidebar = (SIDEBAR_WIDTH_PX * window.scale_factor()) as u32;
    let viewport = (w > sidebar + 200 && h > 0).then(|| bevy::camera::Viewport {
        physical_position: UVec2::new(sidebar, 0),
        physical_size: UVec2::new(w - sidebar, h),
        ..default()
    });
    if camera.viewport.as_ref().map(|v| (v.physical_position, v.physical_size))
        != viewport.as_ref().map(|v| (v.physical_position, v.physical_size))
    {
        camera.viewport = viewport;
    }
}

#[allow(clippy::too_many_arguments)]
fn fly(
    time: Res<Time>,
    keys: Res<ButtonInput<KeyCode>>,
    buttons: Res<ButtonInput<MouseButton>>,
    motion: Res<AccumulatedMouseMotion>,
    scroll: Res<AccumulatedMouseScroll>,
    compose: Res<Compose>,
    sidebar: Res<SidebarTyping>,
    mut cams: Query<(&mut Transform, &mut FlyCamera)>,
) {
    let Ok((mut t, mut fly)) = cams.single_mut() else { return };
    if buttons.pressed(MouseButton::Right) {
        fly.yaw -= motion.delta.x * LOOK_SENSITIVITY;
        fly.pitch = (fly.pitch - motion.delta.y * LOOK_SENSITIVITY).clamp(-1.4, 1.4);
    }
    t.rotation = Quat::from_euler(EulerRot::YXZ, fly.yaw, fly.pitch, 0.0);
    let forward = Vec3::new(-fly.yaw.sin(), 0.0, -fly.yaw.cos());
    let right = Vec3::new(-forward.z, 0.0, forward.x);
    let mut step = Vec3::ZERO;
    if !compose.is_typing() && !sidebar.0 {
        if keys.pressed(KeyCode::KeyW) || keys.pressed(KeyCode::ArrowUp) {
            step += forward;
        }
        if keys.pressed(KeyCode::KeyS) || keys.pressed(KeyCode::ArrowDown) {
            step -= forward;
        }
        if keys.pressed(KeyCode::KeyD) || keys.pressed(KeyCode::ArrowRight) {
            step += right;
        }
        if keys.pressed(KeyCode::KeyA) || keys.pressed(KeyCode::ArrowLeft) {
            step -= right;
        }
    }
    t.translation += step.normalize_or_zero() * WALK_SPEED * time.delta_secs();
    let forward_dir = *t.forward();
    t.translation += forward_dir * scroll.delta.y * 0.4;
    t.translation.y = t.translation.y.clamp(0.3, 30.0);
}

fn pointer_from_mouse(
    windows: Query<&Window, With<PrimaryWindow>>,
    cams: Query<(&Camera, &GlobalTransform)>,
    buttons: Res<ButtonInput<MouseButton>>,
    mut rays: MessageWriter<PointerRay>,
    mut presses: MessageWriter<PointerPress>,
) {
    let (Ok(window), Ok((camera, cam_t))) = (windows.single(), cams.single()) else { return };
    let Some(cursor) = window.cursor_position() else { return };
    if cursor.x < SIDEBAR_WIDTH_PX {
        return;
    }
    if let Ok(ray) = camera.viewport_to_world(cam_t, cursor) {
        rays.write(PointerRay { source: PointerSource::Mouse, ray });
        if buttons.just_pressed(MouseButton::Left) {
            presses.write(PointerPress { source: PointerSource::Mouse });
        }
    }
}

fn keys_to_compose(
    mut keys: MessageReader<KeyboardInput>,
    compose: Res<Compose>,
    sidebar: Res<SidebarTyping>,
    mut out: MessageWriter<ComposeInput>,
) {
    for k in keys.read() {
        if !k.state.is_pressed() || sidebar.0 {
            continue;
        }
        if compose.is_typing() {
            match &k.logical_key {
                Key::Enter => out.write(ComposeInput::Submit),
                Key::Escape => out.write(ComposeInput::Cancel),
                Key::Backspace => out.write(ComposeInput::Backspace),
                Key::Space => out.write(ComposeInput::Type(" ".into())),
                Key::Character(s) => out.write(ComposeInput::Type(s.to_string())),
                _ => continue,
            };
            continue;
        }
        let input = match (&k.logical_key, k.key_code) {
            (_, KeyCode::KeyN) => ComposeInput::StartPlacing,
            (_, KeyCode::KeyR) => ComposeInput::Reply,
            (_, KeyCode::Delete) => ComposeInput::Delete,
            (Key::Escape, _) => ComposeInput::Cancel,
            (_, KeyCode::Digit1) => ComposeInput::React(0),
            (_, KeyCode::Digit2) => ComposeInput::React(1),
            (_, KeyCode::Digit3) => ComposeInput::React(2),
            (_, KeyCode::Digit4) => ComposeInput::React(3),
            (_, KeyCode::Digit5) => ComposeInput::React(4),
            _ => continue,
        };
        out.write(input);
    }
}

fn dropped_files(mut drops: MessageReader<FileDragAndDrop>, mut out: MessageWriter<ComposeInput>) {
    for d in drops.read() {
        if let FileDragAndDrop::DroppedFile { path_buf, .. } = d {
            out.write(ComposeInput::DroppedFile(path_buf.clone()));
        }
    }
}

fn track_viewer(
    cams: Query<&GlobalTransform, With<FlyCamera>>,
    mut viewer: ResMut<Viewer>,
    mut right: ResMut<crate::audio::ViewerRight>,
) {
    if let Ok(t) = cams.single() {
        viewer.0 = t.translation();
        right.0 = *t.right();
    }
}

/// Hold V to record a voice note; X cycles the playback speed.
fn voice_keys(
    keys: Res<ButtonInput<KeyCode>>,
    compose: Res<Compose>,
    sidebar: Res<SidebarTyping>,
    mut out: MessageWriter<crate::audio::VoiceInput>,
) {
    if compose.is_typing() || sidebar.0 {
        return;
    }
    if keys.just_pressed(KeyCode::KeyV) {
        out.write(crate::audio::VoiceInput::StartRecording);
    }
    if keys.just_released(KeyCode::KeyV) {
        out.write(crate::audio::VoiceInput::StopRecording);
    }
    if keys.just_pressed(KeyCode::KeyX) {
        out.write(crate::audio::VoiceInput::CycleSpeed);
    }
}
