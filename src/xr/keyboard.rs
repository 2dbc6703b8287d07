//! Typing in the headset. While a note is being written (after placing it, or on Reply), a
//! keyboard floats before the wearer: 45 cm ahead and 30 cm below the eyes, tilted to face
//! them, and it stays where it appeared. The pointer (a controller's aim or a tracked hand)
//! hovers a key, and a trigger pull or a pinch types it: the same press that selects a note,
//! so there is nothing new to learn. A strip above the keys shows the text so far.
//!
//! The logic here is renderer-free: it spawns the keyboard's entity, turns the pointer's
//! ray into a hovered key, and presses into [`ComposeInput`]s. [`dress_keyboard`] draws it
//! when there is a renderer.

use super::XrInput;
use crate::compose::{Compose, ComposeInput};
use crate::interact::{Pointer, PointerPress};
use crate::render::NoteAssets;
use crate::render::text::{Button, PanelStyle, render_buttons, render_panel};
use bevy::prelude::*;
use std::sync::LazyLock;

/// A key's side (metres): about a fingertip-sized target at arm's length.
pub const PITCH: f32 = 0.036;
/// The keyboard is this many keys wide and tall.
const COLUMNS: f32 = 11.0;
const ROWS: f32 = 5.0;
/// The strip above the keys that shows the text being written (metres).
const PREVIEW_HEIGHT: f32 = 0.06;
/// Where the keyboard appears relative to the head: ahead, and below the eyes.
const AHEAD: f32 = 0.45;
const BELOW: f32 = 0.3;

/// What a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    /// The next letter in upper case.
    Shift,
    Backspace,
    Space,
    /// Post the note.
    Post,
    /// Stop writing; nothing is posted.
    Cancel,
}

/// A key on the board: its row (0 at the top), its left edge and width in keys.
#[derive(Debug, Clone, Copy)]
pub struct KeyCap {
    pub key: Key,
    pub row: u8,
    pub left: f32,
    pub width: f32,
}

impl KeyCap {
    pub fn label(&self, upper: bool) -> String {
        match self.key {
            Key::Char(c) if upper => c.to_uppercase().collect(),
            Key::Char(c) => c.to_string(),
            Key::Shift => "⇧".into(),
            Key::Backspace => "⌫".into(),
            Key::Space => "space".into(),
            Key::Post => "Post ↵".into(),
            Key::Cancel => "Cancel".into(),
        }
    }

    /// The key's centre in the keyboard's frame (metres; x right, y up, keys facing +Z).
    pub fn centre(&self) -> Vec3 {
        Vec3::new(
            (self.left + self.width / 2.0 - COLUMNS / 2.0) * PITCH,
            (ROWS / 2.0 - f32::from(self.row) - 0.5) * PITCH,
            0.0,
        )
    }
}

/// The layout: digits, three rows of letters and punctuation, and a row with cancel, space
/// and post. Eleven keys wide.
pub static LAYOUT: LazyLock<Vec<KeyCap>> = LazyLock::new(|| {
    let mut caps = Vec::new();
    let row = |row: u8, start: f32, chars: &str, caps: &mut Vec<KeyCap>| {
        for (i, c) in chars.chars().enumerate() {
            caps.push(KeyCap { key: Key::Char(c), row, left: start + i as f32, width: 1.0 });
        }
    };
    row(0, 0.0, "1234567890", &mut caps);
    caps.push(KeyCap { key: Key::Backspace, row: 0, left: 10.0, width: 1.0 });
    row(1, 0.0, "qwertyuiop'", &mut caps);
    row(2, 0.0, "asdfghjkl?!", &mut caps);
    caps.push(KeyCap { key: Key::Shift, row: 3, left: 0.0, width: 2.0 });
    row(3, 2.0, "zxcvbnm,.", &mut caps);
    caps.push(KeyCap { key: Key::Cancel, row: 4, left: 0.0, width: 2.5 });
    caps.push(KeyCap { key: Key::Space, row: 4, left: 2.5, width: 5.5 });
    caps.push(KeyCap { key: Key::Post, row: 4, left: 8.0, width: 3.0 });
    caps
});

/// The key under a point of the keyboard's plane (its frame, metres), if any: gaps between
/// rows and the margin around the keys hover nothing.
pub fn key_at(local: Vec2) -> Option<&'static KeyCap> {
    let column = local.x / PITCH + COLUMNS / 2.0;
    let row = ROWS / 2.0 - local.y / PITCH;
    if !(0.0..ROWS).contains(&row) {
        return None;
    }
    let row = row as u8;
    LAYOUT.iter().find(|c| c.row == row && (c.left..c.left + c.width).contains(&column))
}

/// The keyboard standing before the wearer while a note is being written.
#[derive(Component, Debug)]
pub struct VirtualKeyboard;

/// What the keyboard is showing: the hovered key, and whether the next letter is upper case.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq)]
pub struct KeyboardState {
    pub hovered: Option<Key>,
    pub upper: bool,
}

/// Where the keyboard appears for a head pose: ahead along the level gaze and below the
/// eyes, its keys facing the eyes.
pub fn keyboard_pose(head: &Transform) -> Transform {
    let forward = head.forward();
    let level = Vec3::new(forward.x, 0.0, forward.z).normalize_or(Vec3::NEG_Z);
    let at = head.translation + level * AHEAD - Vec3::Y * BELOW;
    // `looking_to` points −Z along the direction: away from the eyes, so +Z faces them.
    Transform::from_translation(at).looking_to(at - head.translation, Vec3::Y)
}

/// Where a ray meets the keyboard (within its board, preview strip included): the distance
/// along the ray, and the key there if any.
pub fn ray_keyboard(ray: Ray3d, keyboard: &Transform) -> Option<(f32, Option<&'static KeyCap>)> {
    let inverse = keyboard.compute_affine().inverse();
    let origin = inverse.transform_point3(ray.origin);
    let dir = inverse.transform_vector3(*ray.direction);
    if dir.z.abs() < 1e-6 {
        return None;
    }
    let s = -origin.z / dir.z;
    if s <= 0.0 {
        return None;
    }
    let p = origin + dir * s;
    let (half_w, half_h) = (COLUMNS * PITCH / 2.0, ROWS * PITCH / 2.0);
    let inside = p.x.abs() <= half_w && p.y >= -half_h && p.y <= half_h + PREVIEW_HEIGHT;
    // The keyboard's frame is unscaled, so distances along `dir` are distances along the ray
    // times the length of `dir`, which is 1.
    inside.then(|| (s, key_at(p.truncate())))
}

/// Shows the keyboard when writing starts (where the head is then) and takes it away when
/// writing ends.
pub(super) fn show_keyboard(
    mut commands: Commands,
    compose: Res<Compose>,
    input: Res<XrInput>,
    boards: Query<Entity, With<VirtualKeyboard>>,
    mut state: ResMut<KeyboardState>,
) {
    match (compose.is_typing(), boards.single()) {
        (true, Err(_)) => {
            let Some(head) = input.head else { return };
            commands.spawn((VirtualKeyboard, keyboard_pose(&head), Visibility::default()));
            // A note starts with a capital.
            let empty = matches!(&*compose, Compose::Writing { text, .. } if text.is_empty());
            *state = KeyboardState { hovered: None, upper: empty };
        }
        (false, Ok(board)) => {
            commands.entity(board).despawn();
            state.hovered = None;
        }
        _ => {}
    }
}

/// The pointer's ray on the keyboard: a key nearer than any note takes the hover, and the
/// next press is the keyboard's.
pub(super) fn keyboard_pick(
    mut pointer: ResMut<Pointer>,
    boards: Query<&Transform, With<VirtualKeyboard>>,
    mut state: ResMut<KeyboardState>,
) {
    state.hovered = None;
    let (Some(ray), Ok(board)) = (pointer.ray, boards.single()) else { return };
    let Some((distance, cap)) = ray_keyboard(ray, board) else { return };
    if pointer.note_hit.is_some_and(|hit| hit.distance(ray.origin) < distance) {
        return;
    }
    state.hovered = cap.map(|c| c.key);
    pointer.hovered = None;
    pointer.note_hit = None;
    pointer.on_panel = true;
}

/// A press on a key types it.
pub(super) fn type_on_keyboard(
    mut presses: MessageReader<PointerPress>,
    pointer: Res<Pointer>,
    mut state: ResMut<KeyboardState>,
    mut typed: MessageWriter<ComposeInput>,
) {
    for _ in presses.read() {
        let (true, Some(key)) = (pointer.on_panel, state.hovered) else { continue };
        match key {
            Key::Char(c) => {
                let text = if state.upper { c.to_uppercase().collect() } else { c.to_string() };
                typed.write(ComposeInput::Type(text));
                state.upper = false;
            }
            Key::Shift => state.upper = !state.upper,
            Key::Space => {
                typed.write(ComposeInput::Type(" ".into()));
            }
            Key::Backspace => {
                typed.write(ComposeInput::Backspace);
            }
            Key::Post => {
                typed.write(ComposeInput::Submit);
            }
            Key::Cancel => {
                typed.write(ComposeInput::Cancel);
            }
        }
    }
}

/// The keyboard's drawn parts.
#[derive(Component, Debug)]
pub struct KeyboardLook {
    pub keys: Entity,
    lower: Handle<StandardMaterial>,
    upper: Handle<StandardMaterial>,
    pub highlight: Entity,
    pub preview: Entity,
    /// The case and the text drawn now.
    shown_upper: bool,
    shown: Option<String>,
}

/// Pixels per key on the keyboard's texture.
const KEY_PX: f32 = 64.0;

fn keys_material(
    assets: &NoteAssets,
    materials: &mut Assets<StandardMaterial>,
    images: &mut Assets<Image>,
    upper: bool,
) -> Handle<StandardMaterial> {
    let labels: Vec<String> = LAYOUT.iter().map(|c| c.label(upper)).collect();
    let gap = KEY_PX * 0.06;
    let buttons: Vec<Button> = LAYOUT
        .iter()
        .zip(&labels)
        .map(|(c, label)| Button {
            rect: [
                c.left * KEY_PX + gap,
                f32::from(c.row) * KEY_PX + gap,
                c.width * KEY_PX - 2.0 * gap,
                KEY_PX - 2.0 * gap,
            ],
            label,
        })
        .collect();
    let raster =
        render_buttons(&assets.fonts, (COLUMNS * KEY_PX) as u32, (ROWS * KEY_PX) as u32, &buttons);
    crate::render::panel_material(materials, images, raster)
}

/// Draws the keyboard: the keys (in the case the next letter takes), a glow on the hovered
/// key, and the text so far above them.
pub fn dress_keyboard(
    mut commands: Commands,
    assets: Option<Res<NoteAssets>>,
    state: Res<KeyboardState>,
    compose: Res<Compose>,
    mut boards: Query<(Entity, Option<&mut KeyboardLook>), With<VirtualKeyboard>>,
    mut parts: Query<(&mut Transform, &mut Visibility), Without<VirtualKeyboard>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut images: ResMut<Assets<Image>>,
) {
    let Some(assets) = assets else { return };
    let Ok((board, look)) = boards.single_mut() else { return };
    let Some(mut look) = look else {
        let lower = keys_material(&assets, &mut materials, &mut images, false);
        let upper = keys_material(&assets, &mut materials, &mut images, true);
        let quad = |commands: &mut Commands, material, transform| {
            commands.spawn((Mesh3d(assets.quad.clone()), MeshMaterial3d(material), transform)).id()
        };
        let keys = quad(
            &mut commands,
            lower.clone(),
            Transform::from_scale(Vec3::new(COLUMNS * PITCH, ROWS * PITCH, 1.0)),
        );
        let glow = materials.add(StandardMaterial {
            base_color: Color::srgba(0.3, 0.8, 1.0, 0.45),
            unlit: true,
            alpha_mode: AlphaMode::Blend,
            ..default()
        });
        let highlight = quad(&mut commands, glow, Transform::default());
        commands.entity(highlight).insert(Visibility::Hidden);
        let preview = quad(&mut commands, assets.card.clone(), Transform::default());
        commands.entity(board).add_children(&[keys, highlight, preview]).insert(KeyboardLook {
            keys,
            lower,
            upper,
            highlight,
            preview,
            shown_upper: false,
            shown: None,
        });
        return;
    };
    if look.shown_upper != state.upper {
        let material = if state.upper { look.upper.clone() } else { look.lower.clone() };
        commands.entity(look.keys).insert(MeshMaterial3d(material));
        look.shown_upper = state.upper;
    }
    if let Ok((mut t, mut vis)) = parts.get_mut(look.highlight) {
        match state.hovered.and_then(|k| LAYOUT.iter().find(|c| c.key == k)) {
            Some(cap) => {
                *t = Transform::from_translation(cap.centre() + Vec3::Z * 0.002)
                    .with_scale(Vec3::new(cap.width * PITCH, PITCH, 1.0));
                *vis = Visibility::Inherited;
            }
            None => *vis = Visibility::Hidden,
        }
    }
    let Compose::Writing { text, .. } = &*compose else { return };
    if look.shown.as_ref() == Some(text) {
        return;
    }
    let style = PanelStyle { max_lines: 2, body_px: 26.0, ..PanelStyle::NOTE };
    let raster = render_panel(&assets.fonts, "Writing a note", &format!("{text}▏"), &style);
    let width = COLUMNS * PITCH;
    let height = width * raster.height as f32 / raster.width as f32;
    let material = crate::render::panel_material(&mut materials, &mut images, raster);
    commands.entity(look.preview).insert((
        MeshMaterial3d(material),
        Transform::from_xyz(0.0, ROWS * PITCH / 2.0 + height / 2.0 + 0.005, 0.0)
            .with_scale(Vec3::new(width, height, 1.0)),
    ));
    look.shown = Some(text.clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_found_at_its_centre_and_the_rows_fill_the_width() {
        for cap in LAYOUT.iter() {
            let found = key_at(cap.centre().truncate()).expect("a key at its own centre");
            assert_eq!(found.key, cap.key);
        }
        for row in 0..5u8 {
            let width: f32 = LAYOUT.iter().filter(|c| c.row == row).map(|c| c.width).sum();
            assert_eq!(width, COLUMNS, "row {row}");
        }
        assert!(key_at(Vec2::new(0.0, ROWS * PITCH)).is_none(), "above the keys");
        assert!(key_at(Vec2::new(COLUMNS * PITCH, 0.0)).is_none(), "right of the keys");
    }

    #[test]
    fn the_keyboard_stands_ahead_and_below_the_eyes_facing_them() {
        let head = Transform::from_xyz(1.0, 1.6, 2.0).looking_to(Vec3::NEG_X, Vec3::Y);
        let board = keyboard_pose(&head);
        let to_eyes = (head.translation - board.translation).normalize();
        assert!(board.back().dot(to_eyes) > 0.999, "keys face the eyes");
        assert!((board.translation.x - (1.0 - AHEAD)).abs() < 1e-4);
        assert!((board.translation.y - (1.6 - BELOW)).abs() < 1e-4);
        // A ray from the eyes to a key's centre lands on that key.
        for cap in LAYOUT.iter() {
            let at = board.transform_point(cap.centre());
            let ray = Ray3d::new(head.translation, Dir3::new(at - head.translation).unwrap());
            let (d, found) = ray_keyboard(ray, &board).expect("the ray meets the board");
            assert_eq!(found.map(|c| c.key), Some(cap.key));
            assert!((d - head.translation.distance(at)).abs() < 1e-4);
        }
        // Looking away misses it.
        let away = Ray3d::new(head.translation, Dir3::X);
        assert!(ray_keyboard(away, &board).is_none());
    }
}
