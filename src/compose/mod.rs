//! Writing, placing, replying, reacting and deleting. A place mode shows a ghost note that
//! follows the pointer over the floor or other notes; a press drops it; the text typed then
//! becomes the note. Input devices (keyboard and mouse, XR controllers) only send
//! [`ComposeInput`] messages and pointer presses, so all of this is testable headless.

use crate::CairnSet;
use crate::common::Notice;
use crate::interact::{EmptyPress, NoteActivated, Pointer};
use crate::net::{CurrentSpace, NetCommand, NetStatus, PostNote};
use crate::notes::{Focused, Note, NoteAt};
use bevy::prelude::*;
use cairn_client::{ClientCommand, Content, Draft};
use cairn_crypto::Pose;
use cairn_proto::NoteId;
use std::path::PathBuf;

/// The reactions offered, on keys 1 to 5.
pub const REACTIONS: [&str; 5] = ["♥", "★", "✓", "☺", "?"];
/// Height of a dropped note above the floor point it was dropped on.
pub const NOTE_HEIGHT: f32 = 1.35;
/// Longest note text, in characters.
pub const MAX_TEXT_CHARS: usize = 2000;

#[derive(Message, Debug, Clone)]
pub enum ComposeInput {
    /// Enter place mode (a new note, or a reply to the focused note).
    StartPlacing,
    /// Reply to the focused note: writing starts beside it.
    Reply,
    /// React to the focused note with `REACTIONS[i]`.
    React(usize),
    /// Delete the focused note (the author's own; the server checks).
    Delete,
    Type(String),
    Backspace,
    Submit,
    /// Make a place of what was written (its name, then after a colon how to find its
    /// marks) rather than post it as a note: the place's points are marked next.
    MakePlace,
    Cancel,
    /// A file was dropped on the window: a video (by its name's extension) becomes a video
    /// note, anything else an image note.
    DroppedFile(PathBuf),
}

/// What the composer is doing.
#[derive(Resource, Debug, Clone, Default, PartialEq)]
pub enum Compose {
    #[default]
    Idle,
    /// The ghost follows the pointer; a press drops it.
    Placing,
    /// Text is being typed for a note at `at`.
    Writing { at: Vec3, reply_to: Option<NoteId>, text: String },
}

impl Compose {
    /// Whether keystrokes belong to the composer (not to movement).
    pub fn is_typing(&self) -> bool {
        matches!(self, Compose::Writing { .. })
    }
}

/// The composer's systems (input, dropping, the ghost).
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ComposeSystems;

/// The ghost note shown while placing.
#[derive(Component, Debug)]
pub struct Ghost;

pub fn plugin(app: &mut App) {
    app.add_message::<ComposeInput>()
        .init_resource::<Compose>()
        .init_resource::<PreparingVideos>()
        .add_systems(Startup, spawn_ghost)
        .add_systems(
            Update,
            (handle_input, drop_on_press, move_ghost, post_prepared_videos)
                .chain()
                .in_set(ComposeSystems)
                .in_set(CairnSet::Apply)
                .after(crate::interact::press_set()),
        );
}

fn spawn_ghost(mut commands: Commands) {
    commands.spawn((Ghost, Transform::default(), Visibility::Hidden));
}

fn draft_at(at: Vec3) -> Draft {
    Draft { pose: Pose { position: at.to_array(), ..Pose::default() }, ..Draft::default() }
}

/// Where a reply stands: beside its parent, a little lower, toward the viewer's right.
pub fn reply_position(parent: Vec3) -> Vec3 {
    parent + Vec3::new(0.55, -0.25, 0.15)
}

#[allow(clippy::too_many_arguments)]
fn handle_input(
    mut inputs: MessageReader<ComposeInput>,
    mut compose: ResMut<Compose>,
    focused: Res<Focused>,
    pointer: Res<Pointer>,
    current: Res<CurrentSpace>,
    status: Res<NetStatus>,
    notes: Query<(&Note, &NoteAt)>,
    mut posts: MessageWriter<PostNote>,
    mut net: MessageWriter<NetCommand>,
    mut places: MessageWriter<crate::places::PlaceAction>,
    mut preparing: ResMut<PreparingVideos>,
    mut notices: MessageWriter<Notice>,
) {
    let focused_note = focused.0.and_then(|e| notes.get(e).ok());
    for input in inputs.read() {
        match input.clone() {
            ComposeInput::StartPlacing => *compose = Compose::Placing,
            ComposeInput::Reply => {
                if let Some((n, t)) = focused_note {
                    *compose = Compose::Writing {
                        at: reply_position(t.0),
                        reply_to: Some(n.id),
                        text: String::new(),
                    };
                }
            }
            ComposeInput::React(i) => {
                if let (Some((n, t)), Some(space), Some(emoji)) =
                    (focused_note, current.0, REACTIONS.get(i))
                {
                    let mut draft = draft_at(t.0 + Vec3::new(-0.3, -0.28, 0.05));
                    draft.reply_to = Some(n.id);
                    draft.content = Content::Reaction((*emoji).to_owned());
                    posts.write(PostNote { space, draft });
                }
            }
            ComposeInput::Delete => {
                if let Some((n, _)) = focused_note {
                    let mine = n.body.as_ref().is_some_and(|b| b.author == status.handle);
                    if mine {
                        net.write(NetCommand(ClientCommand::Delete {
                            space: n.space,
                            note_id: n.id,
                        }));
                    }
                }
            }
            ComposeInput::Type(s) => {
                if let Compose::Writing { text, .. } = compose.as_mut() {
                    for c in s.chars().filter(|c| !c.is_control() || *c == '\n') {
                        if text.chars().count() < MAX_TEXT_CHARS {
                            text.push(c);
                        }
                    }
                }
            }
            ComposeInput::Backspace => {
                if let Compose::Writing { text, .. } = compose.as_mut() {
                    text.pop();
                }
            }
            ComposeInput::Submit => {
                if let (Compose::Writing { at, reply_to, text }, Some(space)) =
                    (compose.clone(), current.0)
                {
                    if !text.trim().is_empty() {
                        let mut draft = draft_at(at);
                        draft.text = text.trim().to_owned();
                        draft.reply_to = reply_to;
                        posts.write(PostNote { space, draft });
                    }
                    *compose = Compose::Idle;
                }
            }
            ComposeInput::MakePlace => {
                if let Compose::Writing { text, .. } = compose.as_ref() {
                    let (name, description) = place_name_and_description(text);
                    if !name.is_empty() {
                        places.write(crate::places::PlaceAction::Make { name, description });
                        *compose = Compose::Idle;
                    }
                }
            }
            ComposeInput::Cancel => *compose = Compose::Idle,
            ComposeInput::DroppedFile(path) => {
                let Some(space) = current.0 else { continue };
                let at = pointer.floor.map(|f| f + Vec3::Y * NOTE_HEIGHT).unwrap_or(Vec3::new(
                    0.0,
                    NOTE_HEIGHT,
                    -1.5,
                ));
                let mut draft = draft_at(at);
                draft.text =
                    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
                if is_video_file(&path) {
                    // Re-encoding takes seconds: on a worker, posted when done.
                    let file = path.clone();
                    let job = move || cairn_client::VideoClip::from_file(&file);
                    let task = bevy::tasks::AsyncComputeTaskPool::get_or_init(Default::default)
                        .spawn(async move { job() });
                    preparing.0.push((space, draft, task));
                    notices.write(Notice::info(format!(
                        "preparing the video {} …",
                        path.file_name().unwrap_or_default().to_string_lossy()
                    )));
                    continue;
                }
                match std::fs::read(&path) {
                    Ok(bytes) => {
                        draft.content = Content::Image(bytes);
                        posts.write(PostNote { space, draft });
                    }
                    Err(e) => warn!("could not read {}: {e}", path.display()),
                }
            }
        }
    }
}

/// Whether a dropped file is a video, by its name (a wrong guess is still refused with the
/// reason when it is read).
pub fn is_video_file(path: &std::path::Path) -> bool {
    let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
    matches!(ext.as_str(), "mp4" | "m4v" | "mov" | "webm" | "mkv" | "avi" | "3gp" | "ogv")
}

/// Videos being re-encoded on a worker, with the drafts they go into.
#[derive(Resource, Default)]
pub struct PreparingVideos(
    Vec<(
        cairn_proto::SpaceId,
        Draft,
        bevy::tasks::Task<Result<cairn_client::VideoClip, cairn_client::ClientError>>,
    )>,
);

/// A video that is ready is posted; one that cannot be a video note says why.
fn post_prepared_videos(
    mut preparing: ResMut<PreparingVideos>,
    mut posts: MessageWriter<PostNote>,
    mut notices: MessageWriter<Notice>,
) {
    preparing.0.retain_mut(|(space, draft, task)| {
        let Some(result) = bevy::tasks::futures::check_ready(task) else { return true };
        match result {
            Ok(clip) => {
                let mut draft = draft.clone();
                draft.content = Content::Video(clip);
                posts.write(PostNote { space: *space, draft });
            }
            Err(e) => {
                notices.write(Notice::problem(format!("the video was not posted: {e}")));
            }
        }
        false
    });
}

/// A place's name and description from what was written: "Kitchen: the counter's two ends,
/// then the door's corner" (the name alone is enough).
pub fn place_name_and_description(text: &str) -> (String, String) {
    let (name, description) = text.split_once([':', '\n']).unwrap_or((text, ""));
    (name.trim().to_owned(), description.trim().to_owned())
}

/// In place mode, a press drops the note where the ghost stands.
fn drop_on_press(
    mut compose: ResMut<Compose>,
    mut empty: MessageReader<EmptyPress>,
    mut on_note: MessageReader<NoteActivated>,
    ghost: Query<&Transform, With<Ghost>>,
) {
    let pressed = empty.read().count() + on_note.read().count() > 0;
    if pressed
        && *compose == Compose::Placing
        && let Ok(t) = ghost.single()
    {
        *compose = Compose::Writing { at: t.translation, reply_to: None, text: String::new() };
    }
}

/// Where a note would stand if dropped now: in front of the note the pointer is on, or
/// above the floor point it meets.
pub fn placement(pointer: &Pointer) -> Option<Vec3> {
    if let (Some(hit), Some(ray)) = (pointer.note_hit, pointer.ray) {
        return Some(hit - *ray.direction * 0.12);
    }
    pointer.floor.map(|f| f + Vec3::Y * NOTE_HEIGHT)
}

fn move_ghost(
    compose: Res<Compose>,
    pointer: Res<Pointer>,
    mut ghost: Query<(&mut Transform, &mut Visibility), With<Ghost>>,
) {
    let Ok((mut t, mut vis)) = ghost.single_mut() else { return };
    match (&*compose, placement(&pointer)) {
        (Compose::Placing, Some(at)) => {
            t.translation = at;
            *vis = Visibility::Visible;
        }
        (Compose::Writing { at, .. }, _) => {
            t.translation = *at;
            *vis = Visibility::Visible;
        }
        _ => *vis = Visibility::Hidden,
    }
}
