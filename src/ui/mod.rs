//! The sidebar of the desktop mode: who and where you are, the connection (online,
//! offline, syncing, outbox), the notes of the space as a list (unread first), local search
//! over decrypted notes, the note being written, and the keys.

use crate::CairnSet;
use crate::common::Notice;
use crate::compose::Compose;
use crate::desktop::{FlyCamera, SIDEBAR_WIDTH_PX, SidebarTyping};
use crate::net::{CurrentSpace, NetStatus, status_text};
use crate::notes::{Focused, Note, NoteAt, list_order, row_text};
use bevy::input::keyboard::{Key, KeyboardInput};
use bevy::prelude::*;
use cairn_client::{ClientCommand, SpaceView};
use cairn_proto::{NoteKind, Policy, Role, SpaceId};

/// Local search over the notes of the space.
#[derive(Resource, Debug, Default, Clone)]
pub struct Search {
    pub active: bool,
    pub query: String,
}

/// What a prompt in the sidebar asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// A handle to invite into the current space, as a member (`I`).
    Invite,
    /// The name of a new space (`C`).
    NewSpace,
}

/// A line being typed into the sidebar for an action: what it is for, and the text so far.
#[derive(Resource, Debug, Default, Clone)]
pub struct Prompt(pub Option<(PromptKind, String)>);

/// Whether the keys are typing into the sidebar (a search or a prompt), so nothing else —
/// walking, the note keys, recording — takes them.
pub fn typing_in_sidebar(search: &Search, prompt: &Prompt) -> bool {
    search.active || prompt.0.is_some()
}

/// One key typed into an open prompt: Enter gives the command to send and a line saying
/// what is being done (and closes the prompt), or only a line saying why nothing is sent
/// (a handle that breaks the rules: the prompt stays open to correct it); Esc closes it;
/// anything else edits the text. A handle has no spaces.
pub fn prompt_key(
    prompt: &mut Prompt,
    key: &Key,
    space: Option<SpaceId>,
) -> Option<(Option<ClientCommand>, Notice)> {
    let (kind, text) = prompt.0.as_mut()?;
    match key {
        Key::Enter => {
            let text = text.trim().to_owned();
            let kind = *kind;
            prompt.0 = None;
            if text.is_empty() {
                return None;
            }
            match kind {
                PromptKind::Invite => {
                    let space = space?;
                    match cairn_proto::Handle::new(text.as_str()) {
                        Ok(handle) => {
                            let notice = Notice::info(format!("inviting {handle}…"));
                            let invite =
                                ClientCommand::Invite { space, handle, role: Role::Member };
                            Some((Some(invite), notice))
                        }
                        Err(e) => {
                            prompt.0 = Some((PromptKind::Invite, text));
                            Some((None, Notice::problem(e.to_string())))
                        }
                    }
                }
                PromptKind::NewSpace => {
                    let notice =
                        Notice::info(format!("making the space {text}… (it appears in the list)"));
                    Some((
                        Some(ClientCommand::CreateSpace { name: text, policy: Policy::default() }),
                        notice,
                    ))
                }
            }
        }
        Key::Escape => {
            prompt.0 = None;
            None
        }
        Key::Backspace => {
            text.pop();
            None
        }
        Key::Space if *kind == PromptKind::NewSpace => {
            text.push(' ');
            None
        }
        Key::Character(c) if !(*kind == PromptKind::Invite && c.contains(char::is_whitespace)) => {
            text.push_str(c);
            None
        }
        _ => None,
    }
}

#[derive(Component)]
struct StatusText;
#[derive(Component)]
struct SpaceText;
#[derive(Component)]
struct SearchText;
#[derive(Component)]
struct ComposeText;
#[derive(Component)]
struct NoticeText;
#[derive(Component)]
struct ListRoot;
#[derive(Component)]
struct NoteRow(Entity);
#[derive(Component)]
struct MembersText;
#[derive(Component)]
struct SpacesRoot;
#[derive(Component)]
struct SpaceRow(SpaceId);
#[derive(Component)]
struct PlacesRoot;
/// A row of the places list: a place, or (None) the open area around the start.
#[derive(Component)]
struct PlaceRow(Option<cairn_proto::NoteId>);

/// Rows shown in the list.
const LIST_ROWS: usize = 16;

pub fn plugin(app: &mut App) {
    app.init_resource::<Search>()
        .init_resource::<Prompt>()
        .init_resource::<SidebarTyping>()
        .add_systems(Startup, spawn_sidebar)
        .add_systems(
            Update,
            (
                sidebar_keys.in_set(CairnSet::Input),
                (
                    update_texts,
                    rebuild_list,
                    click_rows,
                    rebuild_spaces,
                    click_spaces,
                    rebuild_places,
                    click_places,
                    fly_to_place,
                )
                    .in_set(CairnSet::Layout),
            ),
        );
}

/// The sidebar's font: DejaVu Sans, which has the symbols the sidebar uses (· ● … ▏ ♥ ★).
#[derive(Resource, Clone)]
struct UiFont(Handle<Font>);

fn label(text: impl Into<String>, size: f32, color: Color, font: &UiFont) -> impl Bundle {
    styled_label(text, size, color, font, LineBreak::NoWrap)
}

/// A label that wraps at word boundaries within the sidebar.
fn wrapping_label(text: impl Into<String>, size: f32, color: Color, font: &UiFont) -> impl Bundle {
    styled_label(text, size, color, font, LineBreak::WordBoundary)
}

fn styled_label(
    text: impl Into<String>,
    size: f32,
    color: Color,
    font: &UiFont,
    linebreak: LineBreak,
) -> impl Bundle {
    (
        Text::new(text),
        TextFont {
            font: FontSource::Handle(font.0.clone()),
            font_size: FontSize::Px(size),
            ..default()
        },
        TextColor(color),
        TextLayout { linebreak, ..default() },
    )
}

fn spawn_sidebar(mut commands: Commands, assets: Res<AssetServer>) {
    let font = UiFont(assets.load("fonts/DejaVuSans.ttf"));
    commands.insert_resource(font.clone());
    let font = &font;
    commands
        .spawn((
            Node {
                width: Val::Px(SIDEBAR_WIDTH_PX),
                height: Val::Percent(100.0),
                flex_direction: FlexDirection::Column,
                padding: UiRect::all(Val::Px(14.0)),
                row_gap: Val::Px(8.0),
                ..default()
            },
            BackgroundColor(Color::srgba(0.08, 0.09, 0.11, 0.82)),
        ))
        .with_children(|p| {
            p.spawn(label("Cairn", 28.0, Color::srgb(0.98, 0.85, 0.55), font));
            // The status and notices can be long (the display mode says why): they wrap.
            p.spawn((wrapping_label("", 15.0, Color::srgb(0.75, 0.8, 0.85), font), StatusText));
            p.spawn((label("", 18.0, Color::WHITE, font), SpaceText));
            p.spawn((wrapping_label("", 14.0, Color::srgb(0.75, 0.8, 0.85), font), MembersText));
            // The other spaces, when there are any: click one to go there.
            p.spawn((Node { flex_direction: FlexDirection::Column, row_gap: Val::Px(2.0), ..default() }, SpacesRoot));
            // The space's places, when it has any: click one to go there (in the room, to
            // align with it).
            p.spawn((Node { flex_direction: FlexDirection::Column, row_gap: Val::Px(2.0), ..default() }, PlacesRoot));
            p.spawn((label("/ to search", 15.0, Color::srgb(0.6, 0.62, 0.66), font), SearchText));
            p.spawn((Node { flex_direction: FlexDirection::Column, row_gap: Val::Px(3.0), flex_grow: 1.0, overflow: Overflow::clip(), ..default() }, ListRoot));
            p.spawn((label("", 16.0, Color::srgb(1.0, 0.95, 0.7), font), ComposeText));
            p.spawn((wrapping_label("", 14.0, PROBLEM_COLOR, font), NoticeText));
            p.spawn(label("N new note · click to focus · R reply\n1-5 react · Del delete · drop an image\nhold V to record · X voice speed\nI invite · C new space · / search\nWASD walk · right-drag look · scroll", 13.0, Color::srgb(0.6, 0.62, 0.66), font));
        });
}

/// The sidebar's keys: `/` searches, `I` invites someone into the space, `C` makes a new
/// space; while one of them is open, the keys type into it.
#[allow(clippy::too_many_arguments)]
fn sidebar_keys(
    mut keys: MessageReader<KeyboardInput>,
    mut search: ResMut<Search>,
    mut prompt: ResMut<Prompt>,
    compose: Res<Compose>,
    current: Res<CurrentSpace>,
    status: Res<NetStatus>,
    mut net: MessageWriter<crate::net::NetCommand>,
    mut notices: MessageWriter<Notice>,
    mut typing: ResMut<SidebarTyping>,
) {
    for k in keys.read() {
        if !k.state.is_pressed() || compose.is_typing() {
            continue;
        }
        if prompt.0.is_some() {
            if let Some((command, notice)) = prompt_key(&mut prompt, &k.logical_key, current.0) {
                notices.write(notice);
                if let Some(command) = command {
                    net.write(crate::net::NetCommand(command));
                }
            }
            continue;
        }
        if !search.active {
            if k.logical_key == Key::Character("/".into()) {
                search.active = true;
                search.query.clear();
            } else if k.key_code == KeyCode::KeyI {
                let mine = current.0.and_then(|id| status.spaces.iter().find(|s| s.id == id));
                if mine.is_some_and(|s| s.role == Some(Role::Owner)) {
                    prompt.0 = Some((PromptKind::Invite, String::new()));
                } else {
                    notices.write(Notice::problem("only an owner of this space may invite"));
                }
            } else if k.key_code == KeyCode::KeyC {
                prompt.0 = Some((PromptKind::NewSpace, String::new()));
            }
            continue;
        }
        match &k.logical_key {
            Key::Enter => search.active = false,
            Key::Escape => {
                search.active = false;
                search.query.clear();
            }
            Key::Backspace => {
                search.query.pop();
            }
            Key::Space => search.query.push(' '),
            Key::Character(s) => search.query.push_str(s),
            _ => {}
        }
    }
    typing.set_if_neq(SidebarTyping(typing_in_sidebar(&search, &prompt)));
}

#[allow(clippy::too_many_arguments)]
fn update_texts(
    status: Res<NetStatus>,
    mode: Option<Res<crate::common::DisplayMode>>,
    current: Res<CurrentSpace>,
    compose: Res<Compose>,
    search: Res<Search>,
    prompt: Res<Prompt>,
    mut notices: MessageReader<Notice>,
    mut last_notice: Local<Option<(Notice, f32)>>,
    time: Res<Time>,
    mut texts: ParamSet<(
        Query<&mut Text, With<StatusText>>,
        Query<&mut Text, With<SpaceText>>,
        Query<&mut Text, With<ComposeText>>,
        Query<&mut Text, With<SearchText>>,
        Query<(&mut Text, &mut TextColor), With<NoticeText>>,
        Query<&mut Text, With<MembersText>>,
    )>,
) {
    let set = |t: &mut Text, s: String| {
        if t.0 != s {
            t.0 = s;
        }
    };
    if let Ok(mut t) = texts.p0().single_mut() {
        let line = status_text(&status);
        set(
            &mut t,
            match &mode {
                Some(m) => format!("{line}\n{}", m.notice()),
                None => line,
            },
        );
    }
    let space = current.0.and_then(|id| status.spaces.iter().find(|s| s.id == id));
    let space_name = space.map(|s| s.name.clone()).unwrap_or_else(|| "no space yet".into());
    if let Ok(mut t) = texts.p1().single_mut() {
        set(&mut t, format!("Space: {space_name}"));
    }
    if let Ok(mut t) = texts.p5().single_mut() {
        set(&mut t, space.map(members_line).unwrap_or_default());
    }
    if let Ok(mut t) = texts.p2().single_mut() {
        let s = match &*compose {
            Compose::Idle => String::new(),
            Compose::Placing => "Placing a note: click where it should stand (Esc cancels)".into(),
            Compose::Writing { text, reply_to, .. } => {
                let what = if reply_to.is_some() { "Reply" } else { "New note" };
                format!("{what}: {text}▏\nEnter to leave it · Esc to cancel")
            }
        };
        set(&mut t, s);
    }
    if let Ok(mut t) = texts.p3().single_mut() {
        let s = if let Some((kind, text)) = &prompt.0 {
            match kind {
                PromptKind::Invite => {
                    format!("Invite to {space_name}: {text}▏\nEnter to invite · Esc to cancel")
                }
                PromptKind::NewSpace => {
                    format!("New space: {text}▏\nEnter to make it · Esc to cancel")
                }
            }
        } else if search.active || !search.query.is_empty() {
            format!("Search: {}{}", search.query, if search.active { "▏" } else { "" })
        } else {
            "/ to search".into()
        };
        set(&mut t, s);
    }
    for n in notices.read() {
        *last_notice = Some((n.clone(), time.elapsed_secs()));
    }
    if let Ok((mut t, mut color)) = texts.p4().single_mut() {
        let s = match &*last_notice {
            Some((notice, at)) if time.elapsed_secs() - at < 8.0 => {
                let c = notice_color(notice);
                if color.0 != c {
                    color.0 = c;
                }
                notice.text.clone()
            }
            _ => String::new(),
        };
        set(&mut t, s);
    }
}

/// The list, rebuilt when notes or the search change (at most four times a second).
fn rebuild_list(
    mut commands: Commands,
    roots: Query<Entity, With<ListRoot>>,
    notes: Query<(Entity, Ref<Note>)>,
    search: Res<Search>,
    time: Res<Time>,
    font: Option<Res<UiFont>>,
    mut last: Local<(f32, usize, String)>,
) {
    let Some(font) = font else { return };
    let Ok(root) = roots.single() else { return };
    let changed = notes.iter().any(|(_, n)| n.is_changed())
        || notes.iter().len() != last.1
        || search.query != last.2;
    if !changed || time.elapsed_secs() - last.0 < 0.25 {
        return;
    }
    *last = (time.elapsed_secs(), notes.iter().len(), search.query.clone());
    let q = search.query.to_lowercase();
    let mut rows: Vec<(Entity, &Note)> = notes
        .iter()
        .map(|(e, n)| (e, n.into_inner()))
        .filter(|(_, n)| n.kind() != Some(NoteKind::Reaction))
        .filter(|(_, n)| {
            q.is_empty()
                || n.body.as_ref().is_some_and(|b| {
                    b.text.to_lowercase().contains(&q) || b.author.to_lowercase().contains(&q)
                })
        })
        .collect();
    rows.sort_by_key(|(_, n)| list_order(n));
    commands.entity(root).despawn_related::<Children>();
    let total = rows.len();
    for (e, n) in rows.into_iter().take(LIST_ROWS) {
        commands.spawn((
            Button,
            NoteRow(e),
            label(
                row_text(n),
                14.0,
                if n.unread { Color::WHITE } else { Color::srgb(0.78, 0.8, 0.84) },
                &font,
            ),
            ChildOf(root),
        ));
    }
    if total > LIST_ROWS {
        commands.spawn((
            label(
                format!("… and {} more", total - LIST_ROWS),
                13.0,
                Color::srgb(0.6, 0.62, 0.66),
                &font,
            ),
            ChildOf(root),
        ));
    }
}

/// Clicking a row focuses the note and walks the camera up to it.
fn click_rows(
    rows: Query<(&Interaction, &NoteRow), Changed<Interaction>>,
    mut focused: ResMut<Focused>,
    notes: Query<&NoteAt>,
    mut cams: Query<(&mut Transform, &mut FlyCamera)>,
) {
    for (interaction, row) in &rows {
        if *interaction != Interaction::Pressed {
            continue;
        }
        focused.0 = Some(row.0);
        if let (Ok(target), Ok((mut t, mut fly))) = (notes.get(row.0), cams.single_mut()) {
            let at = target.0;
            let eye = at + Vec3::new(0.0, 0.15, 1.4);
            let dir = (at - eye).normalize();
            t.translation = eye;
            fly.yaw = f32::atan2(-dir.x, -dir.z);
            fly.pitch = dir.y.asin();
        }
    }
}

/// The places list, rebuilt when the places, the alignments or the current place change: a
/// header, a row per place, the area around the start (in a virtual scene), and what to do
/// next (while aligning, or when the place here is not aligned).
fn rebuild_places(
    mut commands: Commands,
    roots: Query<Entity, With<PlacesRoot>>,
    places: Res<crate::places::Places>,
    frames: Res<crate::notes::anchors::PlaceFrames>,
    now: Res<crate::places::CurrentPlace>,
    view: Res<crate::places::PlaceView>,
    aligning: Res<crate::places::Aligning>,
    font: Option<Res<UiFont>>,
) {
    let Some(font) = font else { return };
    let Ok(root) = roots.single() else { return };
    let changed = places.is_changed()
        || frames.is_changed()
        || now.is_changed()
        || view.is_changed()
        || aligning.is_changed();
    if !changed && !font.is_added() {
        return;
    }
    commands.entity(root).despawn_related::<Children>();
    if places.0.is_empty() {
        return;
    }
    let dim = Color::srgb(0.6, 0.62, 0.66);
    let header = match *view {
        crate::places::PlaceView::Areas => "Places (click to go there):",
        crate::places::PlaceView::Room => "Places (click to align with one):",
    };
    commands.spawn((label(header, 14.0, dim, &font), ChildOf(root)));
    for p in &places.0 {
        let row = crate::places::place_row(p, *view, &frames, &now);
        commands.spawn((
            Button,
            PlaceRow(Some(p.id)),
            label(row, 14.0, Color::srgb(0.85, 0.92, 0.8), &font),
            ChildOf(root),
        ));
    }
    if *view == crate::places::PlaceView::Areas {
        let row = if now.0.is_none() { "▸ Around the start" } else { "  Around the start" };
        commands.spawn((
            Button,
            PlaceRow(None),
            label(row, 14.0, Color::srgb(0.85, 0.92, 0.8), &font),
            ChildOf(root),
        ));
    }
    if let Some(hint) = crate::places::places_hint(&places, *view, &frames, &now, &aligning) {
        commands.spawn((wrapping_label(hint, 13.0, INFO_COLOR, &font), ChildOf(root)));
    }
}

/// Clicking a place goes there in a virtual scene; in the room it starts aligning with it.
fn click_places(
    rows: Query<(&Interaction, &PlaceRow), Changed<Interaction>>,
    view: Res<crate::places::PlaceView>,
    mut actions: MessageWriter<crate::places::PlaceAction>,
) {
    use crate::places::{PlaceAction, PlaceView};
    for (interaction, row) in &rows {
        if *interaction != Interaction::Pressed {
            continue;
        }
        match (*view, row.0) {
            (PlaceView::Room, Some(id)) => {
                actions.write(PlaceAction::Align(id));
            }
            (PlaceView::Room, None) => {}
            (PlaceView::Areas, target) => {
                actions.write(PlaceAction::GoTo(target));
            }
        }
    }
}

/// Going to a place in a virtual scene, the desktop's camera flies to its area: a few steps
/// back from the area's origin, looking at it.
fn fly_to_place(
    mut actions: MessageReader<crate::places::PlaceAction>,
    view: Res<crate::places::PlaceView>,
    places: Res<crate::places::Places>,
    mut cams: Query<(&mut Transform, &mut FlyCamera)>,
) {
    for action in actions.read() {
        let crate::places::PlaceAction::GoTo(target) = action else { continue };
        if *view != crate::places::PlaceView::Areas {
            continue;
        }
        let Some(origin) = crate::places::area_of(&places, *target) else { continue };
        if let Ok((mut t, mut fly)) = cams.single_mut() {
            let eye = origin + Vec3::new(0.0, 1.6, 4.0);
            let dir = (origin + Vec3::Y * 1.2 - eye).normalize();
            t.translation = eye;
            fly.yaw = f32::atan2(-dir.x, -dir.z);
            fly.pitch = dir.y.asin();
        }
    }
}

/// A problem's line is red; news of what is being done is a quiet blue.
const PROBLEM_COLOR: Color = Color::srgb(1.0, 0.55, 0.5);
const INFO_COLOR: Color = Color::srgb(0.7, 0.84, 1.0);

/// The colour a notice is shown in.
pub fn notice_color(notice: &Notice) -> Color {
    if notice.problem { PROBLEM_COLOR } else { INFO_COLOR }
}

/// Who is in a space: "Members: alice (owner) · bob · carol (reader)".
pub fn members_line(space: &SpaceView) -> String {
    let people: Vec<String> = space
        .members
        .iter()
        .map(|(handle, role)| match role {
            Role::Member => handle.to_string(),
            Role::Owner | Role::Reader => format!("{handle} ({role})"),
        })
        .collect();
    format!("Members: {}", people.join(" · "))
}

/// The list of spaces to go to: shown when there is more than one, the current one marked.
fn rebuild_spaces(
    mut commands: Commands,
    roots: Query<Entity, With<SpacesRoot>>,
    status: Res<NetStatus>,
    current: Res<CurrentSpace>,
    font: Option<Res<UiFont>>,
    mut shown: Local<Vec<(SpaceId, String, bool)>>,
) {
    let Some(font) = font else { return };
    let Ok(root) = roots.single() else { return };
    if !status.is_changed() && !current.is_changed() && !font.is_added() {
        return;
    }
    let rows: Vec<(SpaceId, String, bool)> = if status.spaces.len() > 1 {
        status.spaces.iter().map(|s| (s.id, s.name.clone(), current.0 == Some(s.id))).collect()
    } else {
        Vec::new()
    };
    if *shown == rows {
        return;
    }
    commands.entity(root).despawn_related::<Children>();
    for (id, name, here) in &rows {
        let (text, colour) = if *here {
            (format!("▸ {name}"), Color::WHITE)
        } else {
            (format!("  {name}"), Color::srgb(0.6, 0.75, 0.95))
        };
        commands.spawn((Button, SpaceRow(*id), label(text, 14.0, colour, &font), ChildOf(root)));
    }
    *shown = rows;
}

/// Clicking a space goes there: the scene and the list show its notes.
fn click_spaces(
    rows: Query<(&Interaction, &SpaceRow), Changed<Interaction>>,
    mut current: ResMut<CurrentSpace>,
    mut focused: ResMut<Focused>,
) {
    for (interaction, row) in &rows {
        if *interaction == Interaction::Pressed && current.0 != Some(row.0) {
            current.0 = Some(row.0);
            focused.0 = None;
        }
    }
}
