//! Boards of keys standing in the world, for what a controller cannot type or click:
//!
//! * **The keyboard.** While a note is being written (after a trigger on the floor, or on
//!   Reply), a keyboard floats before the wearer: 45 cm ahead and 30 cm below the eyes, tilted
//!   to face them, and it stays where it appeared. A strip above the keys shows the text.
//! * **The action bar.** Under the focused note, while nothing is being written: Reply, the
//!   reactions, Delete on your own note, and in the room Align with the note's place.
//!
//! The pointer (a controller's aim or a tracked hand) hovers a key, and a trigger pull or a
//! pinch presses it: the same press that selects a note, so there is nothing new to learn.
//! A board takes the press only where it is nearer than any note.
//!
//! The logic here is renderer-free: it spawns the boards' entities, turns the pointer's ray
//! into a hovered key, and presses into [`ComposeInput`]s. [`dress_boards`] draws them when
//! there is a renderer.

use super::input::{StageOrigin, XrInput};
use crate::compose::{Compose, ComposeInput, REACTIONS};
use crate::interact::{Pointer, PointerPress};
use crate::net::NetStatus;
use crate::notes::{FarPanelScale, Focused, Note, NoteAt, NoteBounds, Viewer, pose_as_shown};
use crate::places::{CurrentPlace, PlaceAction, PlaceView, Places};
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
    /// Reply to the focused note (the action bar).
    Reply,
    /// React to the focused note with `REACTIONS[i]`.
    React(usize),
    /// Delete the focused note (your own).
    Delete,
    /// Align with the focused note's place (in the room, where the space has places).
    Align,
    /// Make a place of what was written (in the room).
    MakePlace,
    /// Go to the next place's area (in VR, where the space has places; after the last, the
    /// start).
    NextPlace,
}

/// What a letter key types: `c`, or its capital.
fn cased(c: char, upper: bool) -> String {
    if upper { c.to_uppercase().collect() } else { c.to_string() }
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
            Key::Char(c) => cased(c, upper),
            Key::Shift => "⇧".into(),
            Key::Backspace => "⌫".into(),
            Key::Space => "space".into(),
            Key::Post => "Post ↵".into(),
            Key::Cancel => "Cancel".into(),
            Key::Reply => "Reply".into(),
            Key::React(i) => REACTIONS.get(i).copied().unwrap_or("?").into(),
            Key::Delete => "Delete".into(),
            Key::Align => "Align".into(),
            Key::MakePlace => "Place".into(),
            Key::NextPlace => "Next place".into(),
        }
    }
}

/// A board of keys standing in the world: the keyboard, or the action bar under a focused
/// note. Its frame is centred on the keys (x right, y up, keys facing +Z); a strip above
/// them (the keyboard's text) takes the pointer too.
#[derive(Component, Debug, Clone, Copy)]
pub struct Board {
    pub caps: &'static [KeyCap],
    pub columns: f32,
    pub rows: f32,
    pub strip: f32,
}

impl Board {
    /// The keyboard.
    pub fn keyboard() -> Self {
        Board { caps: &LAYOUT, columns: COLUMNS, rows: ROWS, strip: PREVIEW_HEIGHT }
    }

    /// The keyboard in the room: a shorter space bar and a key that makes a place of the
    /// text.
    pub fn room_keyboard() -> Self {
        Board { caps: &ROOM_LAYOUT, ..Board::keyboard() }
    }

    /// A key's centre in the board's frame (metres).
    pub fn centre(&self, cap: &KeyCap) -> Vec3 {
        Vec3::new(
            (cap.left + cap.width / 2.0 - self.columns / 2.0) * PITCH,
            (self.rows / 2.0 - f32::from(cap.row) - 0.5) * PITCH,
            0.0,
        )
    }

    pub fn cap(&self, key: Key) -> Option<&'static KeyCap> {
        self.caps.iter().find(|c| c.key == key)
    }

    /// The key under a point of the board's plane (its frame, metres), if any.
    pub fn key_at(&self, local: Vec2) -> Option<&'static KeyCap> {
        let column = local.x / PITCH + self.columns / 2.0;
        let row = self.rows / 2.0 - local.y / PITCH;
        if !(0.0..self.rows).contains(&row) {
            return None;
        }
        let row = row as u8;
        self.caps.iter().find(|c| c.row == row && (c.left..c.left + c.width).contains(&column))
    }

    /// Where a ray meets the board (its keys, or the strip above them): the distance along
    /// the ray, and the key there if any.
    pub fn hit(&self, ray: Ray3d, at: &Transform) -> Option<(f32, Option<&'static KeyCap>)> {
        let inverse = at.compute_affine().inverse();
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
        let (half_w, half_h) = (self.columns * PITCH / 2.0, self.rows * PITCH / 2.0);
        let inside = p.x.abs() <= half_w && p.y >= -half_h && p.y <= half_h + self.strip;
        // Boards are unscaled, so `s` is a distance along the ray (`dir` has length 1).
        inside.then(|| (s, self.key_at(p.truncate())))
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

/// The room's layout: as [`LAYOUT`], with Place between the space bar and Post.
pub static ROOM_LAYOUT: LazyLock<Vec<KeyCap>> = LazyLock::new(|| {
    let mut caps = LAYOUT.clone();
    for c in caps.iter_mut().filter(|c| c.key == Key::Space) {
        c.width = 3.5;
    }
    caps.push(KeyCap { key: Key::MakePlace, row: 4, left: 6.0, width: 2.0 });
    caps
});

/// The keyboard standing before the wearer while a note is being written.
#[derive(Component, Debug)]
pub struct VirtualKeyboard;

/// The boards' state: the hovered key (on the keyboard or the action bar), and whether the
/// next letter is upper case.
#[derive(Resource, Debug, Default, Clone, Copy, PartialEq)]
pub struct BoardState {
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

/// Shows the keyboard when writing starts (where the head is then) and takes it away when
/// writing ends.
pub(super) fn show_keyboard(
    mut commands: Commands,
    compose: Res<Compose>,
    input: Res<XrInput>,
    boards: Query<Entity, With<VirtualKeyboard>>,
    mut state: ResMut<BoardState>,
    view: Res<PlaceView>,
) {
    match (compose.is_typing(), boards.single()) {
        (true, Err(_)) => {
            let Some(head) = input.head else { return };
            let board = match *view {
                PlaceView::Room => Board::room_keyboard(),
                PlaceView::Areas => Board::keyboard(),
            };
            commands.spawn((VirtualKeyboard, board, keyboard_pose(&head), Visibility::default()));
            // A note starts with a capital.
            let empty = matches!(&*compose, Compose::Writing { text, .. } if text.is_empty());
            *state = BoardState { hovered: None, upper: empty };
        }
        (false, Ok(board)) => commands.entity(board).despawn(),
        _ => {}
    }
}

/// The pointer's ray on the boards: a key nearer than any note takes the hover, and the
/// next press is the board's.
pub(super) fn board_pick(
    mut pointer: ResMut<Pointer>,
    boards: Query<(&Transform, &Board)>,
    mut state: ResMut<BoardState>,
) {
    state.hovered = None;
    let Some(ray) = pointer.ray else { return };
    let nearest = boards
        .iter()
        .filter_map(|(at, board)| board.hit(ray, at))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    let Some((distance, cap)) = nearest else { return };
    if pointer.note_hit.is_some_and(|hit| hit.distance(ray.origin) < distance) {
        return;
    }
    state.hovered = cap.map(|c| c.key);
    pointer.hovered = None;
    pointer.note_hit = None;
    pointer.on_panel = true;
}

/// A press on a key types it, or acts on the focused note.
#[allow(clippy::too_many_arguments)]
pub(super) fn press_keys(
    mut presses: MessageReader<PointerPress>,
    pointer: Res<Pointer>,
    mut state: ResMut<BoardState>,
    mut typed: MessageWriter<ComposeInput>,
    focused: Res<Focused>,
    notes: Query<&Note>,
    places: Res<Places>,
    now: Res<CurrentPlace>,
    mut place_actions: MessageWriter<PlaceAction>,
) {
    for _ in presses.read() {
        let (true, Some(key)) = (pointer.on_panel, state.hovered) else { continue };
        let input = match key {
            Key::Char(c) => {
                let upper = std::mem::take(&mut state.upper);
                ComposeInput::Type(cased(c, upper))
            }
            Key::Shift => {
                state.upper = !state.upper;
                continue;
            }
            Key::Space => ComposeInput::Type(" ".into()),
            Key::Backspace => ComposeInput::Backspace,
            Key::Post => ComposeInput::Submit,
            Key::Cancel => ComposeInput::Cancel,
            Key::Reply => ComposeInput::Reply,
            Key::React(i) => ComposeInput::React(i),
            Key::Delete => ComposeInput::Delete,
            Key::MakePlace => ComposeInput::MakePlace,
            Key::Align => {
                let of_note = focused
                    .0
                    .and_then(|e| notes.get(e).ok())
                    .and_then(|n| n.body.as_ref().and_then(|b| b.place).map(|p| p.place));
                if let Some(place) = crate::places::place_to_align(of_note, &places, &now) {
                    place_actions.write(PlaceAction::Align(place));
                }
                continue;
            }
            Key::NextPlace => {
                place_actions.write(PlaceAction::GoTo(crate::places::next_place(&places, &now)));
                continue;
            }
        };
        typed.write(input);
    }
}

/// The action bar under the focused note: reply, the reactions, (on your own note) delete,
/// and where the space has places, the places' key.
#[derive(Component, Debug)]
pub struct ActionBar {
    pub note: Entity,
    pub place_key: Option<Key>,
}

fn actions(own: bool, place_key: Option<Key>) -> Vec<KeyCap> {
    let mut caps = vec![KeyCap { key: Key::Reply, row: 0, left: 0.0, width: 2.0 }];
    caps.extend((0..REACTIONS.len()).map(|i| KeyCap {
        key: Key::React(i),
        row: 0,
        left: 2.0 + i as f32,
        width: 1.0,
    }));
    let mut left = 2.0 + REACTIONS.len() as f32;
    for key in own.then_some(Key::Delete).into_iter().chain(place_key) {
        let width = if key == Key::NextPlace { 3.0 } else { 2.0 };
        caps.push(KeyCap { key, row: 0, left, width });
        left += width;
    }
    caps
}

/// The places' keys an action bar may carry.
const PLACE_KEYS: [Option<Key>; 3] = [None, Some(Key::Align), Some(Key::NextPlace)];

static ACTIONS: LazyLock<Vec<Vec<KeyCap>>> = LazyLock::new(|| {
    PLACE_KEYS.iter().flat_map(|k| [actions(false, *k), actions(true, *k)]).collect()
});

impl Board {
    /// The action bar for a note (`own`: the wearer wrote it, so it may be deleted;
    /// `place_key`: Align in the room, Next place in VR, where the space has places).
    pub fn actions(own: bool, place_key: Option<Key>) -> Self {
        let slot = PLACE_KEYS.iter().position(|k| *k == place_key).unwrap_or(0);
        let caps: &'static [KeyCap] = &ACTIONS[2 * slot + usize::from(own)];
        let columns = caps.iter().map(|c| c.left + c.width).fold(0.0, f32::max);
        Board { caps, columns, rows: 1.0, strip: 0.0 }
    }
}

/// Where the action bar stands: just under the note's panel, turned as the note is.
fn action_bar_pose(note: &Transform, bounds: &NoteBounds) -> Transform {
    let below = bounds.0.y * note.scale.y + PITCH * 0.5 + 0.01;
    Transform::from_translation(note.translation - Vec3::Y * below + note.back() * 0.01)
        .with_rotation(note.rotation)
}

/// While a note is focused and nothing is being written, its action bar stands under it,
/// following it as it turns toward the head.
#[allow(clippy::too_many_arguments)]
pub(super) fn show_action_bar(
    mut commands: Commands,
    compose: Res<Compose>,
    focused: Res<Focused>,
    status: Res<NetStatus>,
    viewer: Res<Viewer>,
    far: Res<FarPanelScale>,
    notes: Query<(&Note, &NoteAt, Option<&Transform>, &NoteBounds), Without<ActionBar>>,
    mut bars: Query<(Entity, &ActionBar, &mut Transform)>,
    view: Res<PlaceView>,
    places: Res<Places>,
) {
    let place_key = match *view {
        _ if places.0.is_empty() => None,
        PlaceView::Room => Some(Key::Align),
        PlaceView::Areas => Some(Key::NextPlace),
    };
    // A far note's bar stands under it as the far field draws it.
    let wanted = focused.0.filter(|_| *compose == Compose::Idle).and_then(|e| {
        let (note, at, near, bounds) = notes.get(e).ok()?;
        Some((e, (note, pose_as_shown(at, near, &viewer, &far), bounds)))
    });
    let mut shown = false;
    for (bar, ActionBar { note, place_key: has }, mut t) in &mut bars {
        match wanted {
            Some((e, (_, note_at, bounds))) if e == *note && *has == place_key && !shown => {
                let pose = action_bar_pose(&note_at, bounds);
                if *t != pose {
                    *t = pose;
                }
                shown = true;
            }
            _ => commands.entity(bar).despawn(),
        }
    }
    if let (false, Some((e, (note, at, bounds)))) = (shown, wanted) {
        let own = note.body.as_ref().is_some_and(|b| b.author == status.handle);
        commands.spawn((
            ActionBar { note: e, place_key },
            Board::actions(own, place_key),
            action_bar_pose(&at, bounds),
            Visibility::default(),
        ));
    }
}

/// A board's drawn parts: its keys (a texture per case), the glow on the hovered key, and
/// for the keyboard the text being written.
#[derive(Component, Debug)]
pub struct BoardLook {
    pub keys: Entity,
    lower: Handle<StandardMaterial>,
    upper: Option<Handle<StandardMaterial>>,
    pub highlight: Entity,
    pub preview: Option<Entity>,
    /// The case and the text drawn now.
    shown_upper: bool,
    shown: Option<String>,
}

/// Pixels per key on a board's texture.
const KEY_PX: f32 = 64.0;

fn keys_material(
    assets: &NoteAssets,
    board: &Board,
    materials: &mut Assets<StandardMaterial>,
    images: &mut Assets<Image>,
    upper: bool,
) -> Handle<StandardMaterial> {
    let labels: Vec<String> = board.caps.iter().map(|c| c.label(upper)).collect();
    let gap = KEY_PX * 0.06;
    let buttons: Vec<Button> = board
        .caps
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
    let raster = render_buttons(
        &assets.fonts,
        (board.columns * KEY_PX) as u32,
        (board.rows * KEY_PX) as u32,
        &buttons,
    );
    crate::render::panel_material(materials, images, raster)
}

/// Draws the boards: the keys (in the case the next letter takes), a glow on the hovered
/// key, and above the keyboard the text so far.
pub fn dress_boards(
    mut commands: Commands,
    assets: Option<Res<NoteAssets>>,
    state: Res<BoardState>,
    compose: Res<Compose>,
    mut boards: Query<(Entity, &Board, Option<&mut BoardLook>, Has<VirtualKeyboard>)>,
    mut parts: Query<(&mut Transform, &mut Visibility), Without<Board>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut images: ResMut<Assets<Image>>,
) {
    let Some(assets) = assets else { return };
    for (entity, board, look, is_keyboard) in &mut boards {
        let Some(mut look) = look else {
            let lower = keys_material(&assets, board, &mut materials, &mut images, false);
            let upper = is_keyboard
                .then(|| keys_material(&assets, board, &mut materials, &mut images, true));
            let mut quad = |material, transform| {
                commands
                    .spawn((Mesh3d(assets.quad.clone()), MeshMaterial3d(material), transform))
                    .id()
            };
            let keys = quad(
                lower.clone(),
                Transform::from_scale(Vec3::new(board.columns * PITCH, board.rows * PITCH, 1.0)),
            );
            let glow = materials.add(StandardMaterial {
                base_color: Color::srgba(0.3, 0.8, 1.0, 0.45),
                unlit: true,
                alpha_mode: AlphaMode::Blend,
                ..default()
            });
            let highlight = quad(glow, Transform::default());
            let preview = is_keyboard.then(|| quad(assets.card.clone(), Transform::default()));
            commands.entity(highlight).insert(Visibility::Hidden);
            commands
                .entity(entity)
                .add_children(&[keys, highlight])
                .add_children(preview.as_slice())
                .insert(BoardLook {
                    keys,
                    lower,
                    upper,
                    highlight,
                    preview,
                    shown_upper: false,
                    shown: None,
                });
            continue;
        };
        if let Some(upper) = &look.upper
            && look.shown_upper != state.upper
        {
            let material = if state.upper { upper.clone() } else { look.lower.clone() };
            commands.entity(look.keys).insert(MeshMaterial3d(material));
            look.shown_upper = state.upper;
        }
        if let Ok((mut t, mut vis)) = parts.get_mut(look.highlight) {
            match state.hovered.and_then(|k| board.cap(k)) {
                Some(cap) => {
                    *t = Transform::from_translation(board.centre(cap) + Vec3::Z * 0.002)
                        .with_scale(Vec3::new(cap.width * PITCH, PITCH, 1.0));
                    *vis = Visibility::Inherited;
                }
                None => *vis = Visibility::Hidden,
            }
        }
        let (Some(preview), Compose::Writing { text, .. }) = (look.preview, &*compose) else {
            continue;
        };
        if look.shown.as_ref() == Some(text) {
            continue;
        }
        let style = PanelStyle { max_lines: 2, body_px: 26.0, ..PanelStyle::NOTE };
        let raster = render_panel(&assets.fonts, "Writing a note", &format!("{text}▏"), &style);
        let width = board.columns * PITCH;
        let height = width * raster.height as f32 / raster.width as f32;
        let material = crate::render::panel_material(&mut materials, &mut images, raster);
        commands.entity(preview).insert((
            MeshMaterial3d(material),
            Transform::from_xyz(0.0, board.rows * PITCH / 2.0 + height / 2.0 + 0.005, 0.0)
                .with_scale(Vec3::new(width, height, 1.0)),
        ));
        look.shown = Some(text.clone());
    }
}

/// A board stands where it appeared in the room (the stage), not in the world: when the
/// thumbstick turns or teleports the stage, the keyboard comes along, so it is still at hand
/// after the jump rather than left behind where the wearer was. (The action bar follows its
/// note, which does not move.)
pub(super) fn ride_the_stage(
    stage: Res<StageOrigin>,
    mut last: Local<Option<Transform>>,
    mut boards: Query<&mut Transform, With<VirtualKeyboard>>,
) {
    let now = stage.0;
    let before = last.replace(now);
    let Some(before) = before.filter(|b| *b != now) else { return };
    let moved = now.compute_affine() * before.compute_affine().inverse();
    for mut t in &mut boards {
        *t = Transform::from_matrix((moved * t.compute_affine()).into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_found_at_its_centre_and_the_rows_fill_the_width() {
        for board in [Board::keyboard(), Board::room_keyboard()] {
            for cap in board.caps {
                let found =
                    board.key_at(board.centre(cap).truncate()).expect("a key at its centre");
                assert_eq!(found.key, cap.key);
            }
            for row in 0..5u8 {
                let width: f32 = board.caps.iter().filter(|c| c.row == row).map(|c| c.width).sum();
                assert_eq!(width, COLUMNS, "row {row}");
            }
            assert!(board.key_at(Vec2::new(0.0, ROWS * PITCH)).is_none(), "above the keys");
            assert!(board.key_at(Vec2::new(COLUMNS * PITCH, 0.0)).is_none(), "right of the keys");
        }
        assert!(Board::room_keyboard().cap(Key::MakePlace).is_some());
        assert!(Board::keyboard().cap(Key::MakePlace).is_none());
    }

    #[test]
    fn each_action_bar_has_the_keys_asked_for_each_found_at_its_centre() {
        for place_key in PLACE_KEYS {
            for own in [false, true] {
                let bar = Board::actions(own, place_key);
                for cap in bar.caps {
                    let found =
                        bar.key_at(bar.centre(cap).truncate()).expect("a key at its centre");
                    assert_eq!(found.key, cap.key);
                }
                assert_eq!(bar.cap(Key::Delete).is_some(), own);
                for key in [Key::Align, Key::NextPlace] {
                    assert_eq!(bar.cap(key).is_some(), place_key == Some(key), "{key:?}");
                }
                let width: f32 = bar.caps.iter().map(|c| c.width).sum();
                assert_eq!(width, bar.columns, "no gaps, no overlaps");
            }
        }
    }

    #[test]
    fn the_keyboard_stands_ahead_and_below_the_eyes_facing_them() {
        let head = Transform::from_xyz(1.0, 1.6, 2.0).looking_to(Vec3::NEG_X, Vec3::Y);
        let board = keyboard_pose(&head);
        let keys = Board::keyboard();
        let to_eyes = (head.translation - board.translation).normalize();
        assert!(board.back().dot(to_eyes) > 0.999, "keys face the eyes");
        assert!((board.translation.x - (1.0 - AHEAD)).abs() < 1e-4);
        assert!((board.translation.y - (1.6 - BELOW)).abs() < 1e-4);
        // A ray from the eyes to a key's centre lands on that key.
        for cap in LAYOUT.iter() {
            let at = board.transform_point(keys.centre(cap));
            let ray = Ray3d::new(head.translation, Dir3::new(at - head.translation).unwrap());
            let (d, found) = keys.hit(ray, &board).expect("the ray meets the board");
            assert_eq!(found.map(|c| c.key), Some(cap.key));
            assert!((d - head.translation.distance(at)).abs() < 1e-4);
        }
        // Looking away misses it.
        let away = Ray3d::new(head.translation, Dir3::X);
        assert!(keys.hit(away, &board).is_none());
    }
}
