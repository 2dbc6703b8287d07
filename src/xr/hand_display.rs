//! In the headset the desktop sidebar is out of sight, so its essentials ride on the left
//! hand: a small world-space display over the left controller (or tracked hand) with the
//! connection, what is being composed, and the notes of the space, unread first. And the
//! ears are where the head is: the spatial-audio listener follows it.

use super::input::{Hand, XrInput};
use crate::compose::Compose;
use crate::net::NetStatus;
use crate::notes::Note;
use crate::render::NoteAssets;
use crate::render::text::{PanelStyle, render_panel};
use bevy::prelude::*;

/// Rows of notes on the hand display.
pub const HAND_ROWS: usize = 8;
/// The display's width in metres: about a phone's.
const WIDTH: f32 = 0.16;

/// The hand display's two parts: a header (connection) and a body (composing, the places'
/// lines, then notes).
pub fn hand_display_text(
    notes: &[&Note],
    compose: &Compose,
    status: &NetStatus,
    places: &[String],
) -> (String, String) {
    let header = crate::net::status_text(status);
    let mut rows: Vec<&&Note> = notes.iter().collect();
    rows.sort_by_key(|n| crate::notes::list_order(n));
    let mut body = match compose {
        Compose::Idle => String::new(),
        Compose::Placing => "Placing: point at the floor, pull the trigger\n".into(),
        Compose::Writing { text, .. } => format!("Writing: {text}▏\n"),
    };
    for line in places {
        body.push_str(line);
        body.push('\n');
    }
    for n in rows.iter().take(HAND_ROWS) {
        body.push_str(&crate::notes::row_text(n));
        body.push('\n');
    }
    if rows.len() > HAND_ROWS {
        body.push_str(&format!("… and {} more", rows.len() - HAND_ROWS));
    }
    if rows.is_empty() {
        body.push_str("No notes here yet: hold grip to record one");
    }
    (header, body.trim_end().to_owned())
}

/// What the hand display needs to say about places.
#[derive(bevy::ecs::system::SystemParam)]
pub struct PlacesNow<'w> {
    places: Res<'w, crate::places::Places>,
    frames: Res<'w, crate::notes::anchors::PlaceFrames>,
    now: Res<'w, crate::places::CurrentPlace>,
    view: Res<'w, crate::places::PlaceView>,
    aligning: Res<'w, crate::places::Aligning>,
}

impl PlacesNow<'_> {
    /// A line per place, then what to do next (the point to mark, or how to align).
    fn lines(&self) -> Vec<String> {
        use crate::places::{place_row, places_hint};
        let mut lines: Vec<String> = self
            .places
            .0
            .iter()
            .map(|p| place_row(p, *self.view, &self.frames, &self.now))
            .collect();
        lines.extend(places_hint(
            &self.places,
            *self.view,
            &self.frames,
            &self.now,
            &self.aligning,
        ));
        if *self.view == crate::places::PlaceView::Areas && !self.places.0.is_empty() {
            lines.push("Next place, under any note, goes to each place in turn".into());
        }
        lines
    }
}

#[derive(Component, Debug)]
pub struct HandDisplay {
    shown: (String, String),
}

/// The listener of spatial audio, at the head.
#[derive(Component, Debug)]
pub struct HeadListener;

#[allow(clippy::too_many_arguments)]
pub(super) fn update_hand_display(
    mut commands: Commands,
    assets: Option<Res<NoteAssets>>,
    aims: Query<(Entity, &super::runtime::AimSpace)>,
    mut displays: Query<(&mut HandDisplay, &MeshMaterial3d<StandardMaterial>, &mut Transform)>,
    notes: Query<&Note>,
    compose: Res<Compose>,
    status: Res<NetStatus>,
    places: PlacesNow,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    time: Res<Time>,
    mut next: Local<f32>,
) {
    let Some(assets) = assets else { return };
    if time.elapsed_secs() < *next {
        return;
    }
    *next = time.elapsed_secs() + 0.25;
    let all: Vec<&Note> = notes.iter().collect();
    let text = hand_display_text(&all, &compose, &status, &places.lines());
    let style = PanelStyle { max_lines: HAND_ROWS + 8, body_px: 24.0, ..PanelStyle::NOTE };
    let raster = || render_panel(&assets.fonts, &text.0, &text.1, &style);
    match displays.single_mut() {
        Ok((mut display, material, mut t)) => {
            if display.shown == text {
                return;
            }
            let r = raster();
            t.scale = Vec3::new(WIDTH, WIDTH * r.height as f32 / r.width as f32, 1.0);
            if let Some(mut m) = materials.get_mut(&material.0) {
                if let Some(old) = m.base_color_texture.take() {
                    images.remove(&old);
                }
                m.base_color_texture = Some(images.add(crate::render::image_from_raster(r)));
            }
            display.shown = text;
        }
        Err(_) => {
            let Some((left, _)) = aims.iter().find(|(_, a)| a.0 == Hand::Left) else {
                return;
            };
            let r = raster();
            // Above the controller and a little toward the wearer, tilted to face the eyes
            // when the hand is raised to look at it.
            let t = Transform::from_xyz(0.0, 0.09, 0.06)
                .with_rotation(Quat::from_rotation_x(-0.35))
                .with_scale(Vec3::new(WIDTH, WIDTH * r.height as f32 / r.width as f32, 1.0));
            let material = crate::render::panel_material(&mut materials, &mut images, r);
            let display = commands
                .spawn((
                    HandDisplay { shown: text },
                    Mesh3d(assets.quad.clone()),
                    MeshMaterial3d(material),
                    t,
                ))
                .id();
            commands.entity(left).add_child(display);
        }
    }
}

/// Moves the spatial-audio listener to the head (the window's camera gives it up in XR).
pub(super) fn ears_at_the_head(
    mut commands: Commands,
    input: Res<XrInput>,
    mut ears: Query<&mut Transform, With<HeadListener>>,
    others: Query<Entity, (With<SpatialListener>, Without<HeadListener>)>,
) {
    let Some(head) = input.head else { return };
    match ears.single_mut() {
        Ok(mut t) => *t = head,
        Err(_) => {
            for e in &others {
                commands.entity(e).remove::<SpatialListener>();
            }
            commands.spawn((HeadListener, SpatialListener::new(0.2), head));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notes::anchors::PlaceFrames;
    use crate::places::{Aligning, CurrentPlace, PlaceView, Places};
    use bevy::ecs::system::SystemState;
    use cairn_crypto::{PlaceMark, PlaceRecord};
    use cairn_proto::NoteId;

    fn lines(view: PlaceView) -> Vec<String> {
        let mut world = World::new();
        let mark = |name: &str, x: f32| PlaceMark { name: name.into(), position: [x, 0.9, 0.0] };
        let record = PlaceRecord {
            name: "Kitchen".into(),
            description: "the counter's ends".into(),
            marks: vec![mark("left end", 0.0), mark("right end", 1.5)],
        };
        let place = cairn_client::Place {
            id: NoteId([4; 16]),
            author: "alice".into(),
            record,
            seq: Some(1),
        };
        world.insert_resource(Places(vec![place]));
        world.insert_resource(view);
        world.init_resource::<PlaceFrames>();
        world.init_resource::<CurrentPlace>();
        world.init_resource::<Aligning>();
        let mut state: SystemState<PlacesNow> = SystemState::new(&mut world);
        state.get(&world).expect("the resources are there").lines()
    }

    #[test]
    fn the_hand_display_lists_the_places_and_says_how_to_go_to_one_or_align() {
        let vr = lines(PlaceView::Areas);
        assert_eq!(vr[0], "  Kitchen (by alice)");
        assert!(vr[1].starts_with("Next place"), "{vr:?}");
        let room = lines(PlaceView::Room);
        assert_eq!(room[0], "  Kitchen (by alice): not aligned");
        assert!(room[1].contains("To align") && room[1].contains("left end"), "{room:?}");
    }
}
