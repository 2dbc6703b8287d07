//! Video notes in the app. The poster stands in a frame (drawn by `render` like a picture);
//! selecting the note, or coming within [`AUTOPLAY_DISTANCE`] of it, plays the clip on the
//! frame with its sound from the note. While it plays a press on the bottom band of the
//! picture (the progress bar) seeks there, and a press elsewhere pauses or resumes; X cycles
//! 1x / 1.5x / 2x as for voice notes. At the end it stops on its last frame.
//!
//! A clip plays as it downloads: the client opens each chunk as it arrives and says where the
//! opened part grows (`MediaArriving`), and the worker reads it from there, waiting at its end
//! for more. Decoding runs on a worker thread per playing clip ([`cairn_video::Decoder`]),
//! pictures a few frames ahead through a bounded channel and the sound into the emitter's
//! queue ([`sound::ClipSound`]), whose samples played are the clip's clock; the frame only
//! takes the picture due and uploads it. A clip that is not playing has no worker and costs
//! nothing per frame.

pub mod sound;

use crate::CairnSet;
use crate::audio::{Voice, spawn_emitter};
use crate::common::Notice;
use crate::interact::{NoteActivated, Pointer};
use crate::net::{MediaArriving, MediaFailed, MediaReady, NetCommand};
use crate::notes::{Near, Note, NoteAt, Viewer};
use crate::render::{
    BROKEN_PICTURE, FULL_PICTURE_DISTANCE, HasVideo, NoteAssets, NoteVisual, picture_size,
};
use bevy::asset::RenderAssetUsages;
use bevy::audio::{AddAudioSource, AudioSinkPlayback, SpatialAudioSink};
use bevy::prelude::*;
use bevy::render::render_resource::{Extent3d, TextureDimension, TextureFormat};
use cairn_client::ClientCommand;
use cairn_proto::{MediaHash, NoteKind};
use sound::ClipSound;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::sync::mpsc;

/// A video plays by itself when the viewer comes this near (metres), as a picture shows its
/// full image; only the nearest plays, and it stops when the viewer goes [`LEAVE_MARGIN`]
/// farther.
pub const AUTOPLAY_DISTANCE: f32 = FULL_PICTURE_DISTANCE;
const LEAVE_MARGIN: f32 = 1.0;
/// The bottom of the picture, as a fraction of its height, where a press seeks.
pub const SEEK_BAND: f32 = 0.2;
/// Frames decoded ahead of the one shown (each at most 1280×720 RGBA, 3.7 MB).
const FRAMES_AHEAD: usize = 4;
/// Frames a clip's clock waits for its sound to reach an audio output before it runs
/// without (a machine with no audio device never gives the emitter a sink).
const SINK_GRACE_FRAMES: u32 = 5;

/// Something a test (or the report) may want to know.
#[derive(Message, Debug, Clone)]
pub struct VideoEvent {
    pub note: Entity,
    pub what: VideoEventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum VideoEventKind {
    Started,
    Ended,
    Failed(String),
}

/// The videos playing and those waiting for their clip.
#[derive(Resource, Default)]
pub struct Videos {
    playing: HashMap<Entity, Playback>,
    waiting: HashMap<MediaHash, Vec<(Entity, bool)>>,
    /// Autoplayed to the end, or failed: not started again by nearness until the viewer has
    /// gone away.
    settled: HashSet<Entity>,
    /// Each note's poster texture, put back when a clip is stopped before its end.
    posters: HashMap<Entity, Option<Handle<Image>>>,
}

impl Videos {
    pub fn is_playing(&self, note: Entity) -> bool {
        self.playing.get(&note).is_some_and(|p| !p.paused && !p.ended)
    }
    /// Whether any clip is playing or about to (its clip asked for).
    pub fn any_playing(&self) -> bool {
        !self.waiting.is_empty() || self.playing.values().any(|p| !p.paused && !p.ended)
    }
    /// Whether a clip played to its end (it stands on its last frame).
    pub fn has_ended(&self, note: Entity) -> bool {
        self.playing.get(&note).is_some_and(|p| p.ended)
    }
    pub fn is_paused(&self, note: Entity) -> bool {
        self.playing.get(&note).is_some_and(|p| p.paused)
    }
    /// Where a playing clip is, in milliseconds.
    pub fn position_ms(&self, note: Entity) -> Option<f64> {
        self.playing.get(&note).map(|p| p.position_ms)
    }
    /// The furthest into its clip that a frame on a picture stands, in milliseconds (a
    /// screenshot series spaces its pictures by it).
    pub fn furthest_shown_ms(&self) -> Option<u32> {
        self.playing.values().filter_map(|p| p.shown_ms).max()
    }
}

struct Playback {
    hash: MediaHash,
    /// Seeks, as (generation, milliseconds).
    to_worker: mpsc::Sender<(u32, u32)>,
    /// (In a mutex only because a resource must be `Sync`; the frame has it `&mut`.)
    from_worker: std::sync::Mutex<mpsc::Receiver<FromWorker>>,
    /// Seeks so far: frames of an older generation are dropped.
    generation: u32,
    /// Until the sound (or its absence) is known the clock stands still.
    started: bool,
    /// The clip's sound, which the worker fills; while the emitter plays it, it is the clock.
    sound: ClipSound,
    /// Frames the emitter has been without a sink.
    sinkless_frames: u32,
    position_ms: f64,
    duration_ms: u32,
    paused: bool,
    ended: bool,
    autoplay: bool,
    decoded_all: bool,
    speed: f32,
    next: Option<cairn_video::Frame>,
    /// Where in the clip the frame on the picture stands, in milliseconds.
    shown_ms: Option<u32>,
    texture: Option<Handle<Image>>,
    /// The picture's material, which shows the poster, then the frames.
    material: Option<Handle<StandardMaterial>>,
    /// The poster, put back when the clip is stopped before its end.
    poster: Option<Handle<Image>>,
    emitter: Option<Entity>,
    bar: Option<Entity>,
    /// The picture's size in metres (for where a press lands).
    size: Vec2,
}

enum FromWorker {
    /// The clip is open: whether it has sound (which the worker puts in the playback's queue).
    Opened {
        sound: bool,
    },
    Frame(cairn_video::Frame, u32),
    End(u32),
    Failed(String),
}

pub fn plugin(app: &mut App) {
    // The emitters play only where there is audio (a run without it keeps the queue's type).
    if app.is_plugin_added::<bevy::audio::AudioPlugin>() {
        app.add_audio_source::<ClipSound>();
    } else {
        app.init_asset::<ClipSound>();
    }
    app.init_resource::<Videos>().add_message::<VideoEvent>().add_systems(
        Update,
        (activate, autoplay, receive_media, play)
            .chain()
            .in_set(CairnSet::Apply)
            .after(crate::interact::press_set()),
    );
}

fn video_of(note: &Note) -> Option<(&cairn_crypto::MediaRef, &[u8])> {
    let body = note.body.as_ref()?;
    (body.kind == NoteKind::Video)
        .then(|| body.media.first().map(|m| (m, body.thumbnail.as_slice())))
        .flatten()
}

fn request(
    videos: &mut Videos,
    net: &mut MessageWriter<NetCommand>,
    note: Entity,
    media: &cairn_crypto::MediaRef,
    autoplay: bool,
) {
    let waiting = videos.waiting.entry(media.hash).or_default();
    if waiting.iter().all(|(e, _)| *e != note) {
        waiting.push((note, autoplay));
        net.write(NetCommand(ClientCommand::FetchMedia { media: media.clone() }));
    }
}

#[allow(clippy::too_many_arguments)]
fn activate(
    mut commands: Commands,
    mut activated: MessageReader<NoteActivated>,
    mut videos: ResMut<Videos>,
    pointer: Res<Pointer>,
    notes: Query<(&Note, &GlobalTransform)>,
    sinks: Query<&SpatialAudioSink>,
    mut net: MessageWriter<NetCommand>,
) {
    for a in activated.read() {
        let Ok((note, transform)) = notes.get(a.entity) else { continue };
        let Some((media, _)) = video_of(note) else { continue };
        let ended = match videos.playing.get(&a.entity) {
            None => {
                videos.settled.remove(&a.entity);
                request(&mut videos, &mut net, a.entity, media, false);
                continue;
            }
            Some(p) => p.ended,
        };
        if ended {
            // Again from the start, with its sound: a fresh playback.
            if let Some(p) = videos.playing.remove(&a.entity) {
                despawn_parts(&mut commands, &p);
            }
            request(&mut videos, &mut net, a.entity, media, false);
            continue;
        }
        let p = videos.playing.get_mut(&a.entity).expect("looked up above");
        p.autoplay = false;
        let local = pointer.note_hit.map(|hit| transform.affine().inverse().transform_point3(hit));
        match local {
            Some(l) if l.y < -p.size.y / 2.0 + SEEK_BAND * p.size.y => {
                let fraction = (l.x / p.size.x + 0.5).clamp(0.0, 1.0);
                seek(p, (fraction * p.duration_ms as f32) as u32);
            }
            _ => {
                p.paused = !p.paused;
                if let Some(sink) = p.emitter.and_then(|e| sinks.get(e).ok()) {
                    if p.paused { sink.pause() } else { sink.play() }
                }
            }
        }
    }
}

/// Goes to `ms`: the worker seeks (frames and sound of the old generation are dropped) and
/// the sound's queue starts again there.
fn seek(p: &mut Playback, ms: u32) {
    let ms = ms.min(p.duration_ms.saturating_sub(1));
    p.generation += 1;
    p.sound.reset(p.generation, ms);
    let _ = p.to_worker.send((p.generation, ms));
    p.next = None;
    p.decoded_all = false;
    p.position_ms = f64::from(ms);
}

/// The nearest video within reach plays by itself (one at a time); an autoplayed one stops
/// when the viewer walks away.
fn autoplay(
    mut commands: Commands,
    viewer: Res<Viewer>,
    mut videos: ResMut<Videos>,
    near: Query<(Entity, &Note, &NoteAt), (With<HasVideo>, With<Near>)>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut net: MessageWriter<NetCommand>,
) {
    let mut nearest: Option<(f32, Entity)> = None;
    for (e, note, at) in &near {
        let d = at.0.distance(viewer.0);
        if d > AUTOPLAY_DISTANCE + LEAVE_MARGIN {
            videos.settled.remove(&e);
            if videos.playing.get(&e).is_some_and(|p| p.autoplay) {
                stop(&mut commands, &mut videos, e, &mut materials);
            }
            continue;
        }
        if d <= AUTOPLAY_DISTANCE
            && video_of(note).is_some()
            && !videos.settled.contains(&e)
            && nearest.is_none_or(|(best, _)| d < best)
        {
            nearest = Some((d, e));
        }
    }
    let busy = !videos.playing.is_empty() || !videos.waiting.is_empty();
    if let Some((_, e)) = nearest
        && !busy
        && let Ok((_, note, _)) = near.get(e)
        && let Some((media, _)) = video_of(note)
    {
        request(&mut videos, &mut net, e, media, true);
    }
}

/// Stops a clip before its end: its worker and sound go, the poster comes back.
fn stop(
    commands: &mut Commands,
    videos: &mut Videos,
    note: Entity,
    materials: &mut Assets<StandardMaterial>,
) {
    let Some(p) = videos.playing.remove(&note) else { return };
    despawn_parts(commands, &p);
    if let Some(mut m) = p.material.as_ref().and_then(|h| materials.get_mut(h)) {
        m.base_color_texture = p.poster;
    }
}

/// A clip is there to play: its first chunks have arrived (it plays as the rest comes), or
/// it is whole in the cache; its worker starts. A clip that could not be had shows grey.
#[allow(clippy::too_many_arguments)]
fn receive_media(
    mut commands: Commands,
    mut arriving: MessageReader<MediaArriving>,
    mut ready: MessageReader<MediaReady>,
    mut failed: MessageReader<MediaFailed>,
    mut videos: ResMut<Videos>,
    notes: Query<&Note>,
    visuals: Query<&NoteVisual>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut events: MessageWriter<VideoEvent>,
) {
    // An arriving clip grows to the size its note gives; one in the cache is whole as it is.
    let there = arriving
        .read()
        .map(|a| (a.hash, a.path.clone(), false))
        .chain(ready.read().map(|r| (r.hash, r.path.clone(), true)));
    let mut opened = Vec::new();
    for (hash, path, whole) in there {
        if !videos.waiting.contains_key(&hash) {
            continue;
        }
        // The arriving file moves into the cache when whole, so it may be gone already: then
        // `MediaReady` follows with its new place.
        match File::open(&path) {
            Ok(file) => {
                let len = if whole { file.metadata().ok().map(|m| m.len()) } else { None };
                opened.push((hash, file, len));
            }
            Err(e) => debug!("a clip at {path:?} is not there to open ({e}); waiting"),
        }
    }
    for (hash, file, len) in opened {
        let Some(waiting) = videos.waiting.remove(&hash) else { continue };
        for (note, autoplay) in waiting {
            let Ok(n) = notes.get(note) else { continue };
            let Some((media, poster)) = video_of(n) else { continue };
            let Ok(file) = file.try_clone() else { continue };
            let size = picture_size(cairn_client::image::dimensions(poster).ok());
            let duration_ms = n.body.as_ref().map_or(0, |b| b.duration_ms);
            let material = visuals.get(note).ok().and_then(|v| v.detail_material.clone());
            let current = material
                .as_ref()
                .and_then(|h| materials.get(h))
                .and_then(|m| m.base_color_texture.clone());
            let poster = videos.posters.entry(note).or_insert(current).clone();
            let sound = ClipSound::default();
            let (to_worker, from_worker) =
                spawn_worker(file, len.unwrap_or(media.size), sound.clone());
            videos.playing.insert(
                note,
                Playback {
                    hash,
                    to_worker,
                    from_worker: std::sync::Mutex::new(from_worker),
                    generation: 0,
                    started: false,
                    sound,
                    sinkless_frames: 0,
                    position_ms: 0.0,
                    duration_ms,
                    paused: false,
                    ended: false,
                    autoplay,
                    decoded_all: false,
                    speed: 1.0,
                    next: None,
                    shown_ms: None,
                    texture: None,
                    material,
                    poster,
                    emitter: None,
                    bar: None,
                    size,
                },
            );
            events.write(VideoEvent { note, what: VideoEventKind::Started });
        }
    }
    // A clip that could not be had: those waiting for it, and one playing as it arrived.
    for f in failed.read() {
        let mut notes: Vec<Entity> =
            videos.waiting.remove(&f.hash).into_iter().flatten().map(|(e, _)| e).collect();
        notes.extend(videos.playing.iter().filter(|(_, p)| p.hash == f.hash).map(|(e, _)| *e));
        for note in notes {
            let material = match videos.playing.remove(&note) {
                Some(p) => {
                    despawn_parts(&mut commands, &p);
                    p.material
                }
                None => visuals.get(note).ok().and_then(|v| v.detail_material.clone()),
            };
            show_broken(&mut materials, material.as_ref());
            videos.settled.insert(note);
            events.write(VideoEvent { note, what: VideoEventKind::Failed(f.reason.clone()) });
        }
    }
}

/// A grey frame in place of a clip that cannot be played.
fn show_broken(
    materials: &mut Assets<StandardMaterial>,
    material: Option<&Handle<StandardMaterial>>,
) {
    if let Some(mut m) = material.and_then(|h| materials.get_mut(h)) {
        m.base_color_texture = None;
        m.base_color = BROKEN_PICTURE;
    }
}

/// The worker: opens the clip (as far as it has arrived), says whether it has sound, then
/// decodes pictures as far ahead as the channel holds and the sound beside them into the
/// queue; a (generation, ms) sent to it is a seek. It ends when the playback is dropped.
fn spawn_worker(
    file: File,
    total: u64,
    sound: ClipSound,
) -> (mpsc::Sender<(u32, u32)>, mpsc::Receiver<FromWorker>) {
    let (to_worker, commands) = mpsc::channel::<(u32, u32)>();
    let (out, from_worker) = mpsc::sync_channel::<FromWorker>(FRAMES_AHEAD);
    let spawned = std::thread::Builder::new().name("cairn-video".into()).spawn(move || {
        if let Err(reason) = worker(file, total, &sound, &commands, &out) {
            warn!("a video cannot be played: {reason}");
            let _ = out.send(FromWorker::Failed(reason));
        }
    });
    if let Err(e) = spawned {
        warn!("no thread for a video: {e}");
    }
    (to_worker, from_worker)
}

fn worker(
    file: File,
    total: u64,
    sound: &ClipSound,
    commands: &mpsc::Receiver<(u32, u32)>,
    out: &mpsc::SyncSender<FromWorker>,
) -> Result<(), String> {
    // From the client's media cache, where the clip lies decrypted (or is still arriving).
    let mut decoder =
        cairn_video::Decoder::open_arriving(file, total).map_err(|e| e.to_string())?;
    if out.send(FromWorker::Opened { sound: decoder.has_sound() }).is_err() {
        return Ok(());
    }
    let (mut generation, mut wanted) = (0u32, None);
    loop {
        // Seeks asked for since the last frame (only the last one matters).
        if let Some((g, ms)) = wanted.take().or_else(|| commands.try_iter().last()) {
            decoder.seek(ms).map_err(|e| e.to_string())?;
            generation = g;
        }
        let next = decoder.next_frame().map_err(|e| e.to_string())?;
        sound.push(generation, &decoder.take_sound());
        match next {
            Some(f) => {
                if out.send(FromWorker::Frame(f, generation)).is_err() {
                    return Ok(());
                }
            }
            None => {
                sound.end(generation);
                if out.send(FromWorker::End(generation)).is_err() {
                    return Ok(());
                }
                // Wait for a seek (or the end of the playback).
                let Ok(seek) = commands.recv() else { return Ok(()) };
                wanted = Some(seek);
            }
        }
    }
}

/// Each frame, for the clips playing only: the clock moves on, the frame due is shown, the
/// progress bar follows, and a clip that ended or failed says so.
#[allow(clippy::too_many_arguments)]
fn play(
    mut commands: Commands,
    time: Res<Time>,
    voice: Res<Voice>,
    mut videos: ResMut<Videos>,
    mut images: ResMut<Assets<Image>>,
    mut materials: ResMut<Assets<StandardMaterial>>,
    mut sounds: ResMut<Assets<ClipSound>>,
    assets: Option<Res<NoteAssets>>,
    alive: Query<(), (With<Note>, With<Near>)>,
    sinks: Query<&SpatialAudioSink>,
    mut events: MessageWriter<VideoEvent>,
    mut notices: MessageWriter<Notice>,
) {
    if videos.playing.is_empty() {
        return;
    }
    // Notes gone from near (or deleted) stop.
    let gone: Vec<Entity> =
        videos.playing.keys().copied().filter(|e| alive.get(*e).is_err()).collect();
    for e in gone {
        if let Some(p) = videos.playing.remove(&e) {
            despawn_parts(&mut commands, &p);
        }
    }
    let speed = voice.speed();
    let dt = time.delta_secs_f64() * 1000.0;
    let mut failed = Vec::new();
    let mut ended = Vec::new();
    for (&note, p) in videos.playing.iter_mut() {
        if p.speed != speed {
            p.speed = speed;
            if let Some(sink) = p.emitter.and_then(|e| sinks.get(e).ok()) {
                sink.set_speed(speed);
            }
        }
        if p.started && !p.paused && !p.ended {
            // The clock: the sound played while the emitter plays it, else the frame's time.
            let sink = p.emitter.and_then(|e| sinks.get(e).ok());
            match (p.emitter, sink) {
                (Some(_), None) if p.sinkless_frames < SINK_GRACE_FRAMES => p.sinkless_frames += 1,
                (Some(_), Some(_)) if !p.sound.played_out() => {
                    p.position_ms = p.sound.position_ms()
                }
                (emitter, sink) => {
                    if let (Some(emitter), None) = (emitter, sink) {
                        // No audio output here: the clip plays without its sound.
                        p.sound.mute();
                        commands.entity(emitter).try_despawn();
                        p.emitter = None;
                    }
                    p.position_ms += dt * f64::from(speed);
                }
            }
        }
        // Take what the worker has, up to the frame due now.
        let mut due: Option<cairn_video::Frame> = None;
        let mut failure = None;
        loop {
            if let Some(f) = &p.next {
                if f64::from(f.ms) > p.position_ms {
                    break;
                }
                due = p.next.take();
                continue;
            }
            if p.decoded_all {
                break;
            }
            let from_worker = p.from_worker.get_mut().unwrap_or_else(|e| e.into_inner());
            match from_worker.try_recv() {
                Ok(FromWorker::Opened { sound }) => {
                    p.started = true;
                    if sound {
                        let handle = sounds.add(p.sound.clone());
                        p.emitter = Some(spawn_emitter(&mut commands, note, handle, speed));
                    } else {
                        p.sound.mute();
                    }
                }
                Ok(FromWorker::Frame(f, g)) => {
                    if g == p.generation {
                        p.next = Some(f);
                    }
                }
                Ok(FromWorker::End(g)) => {
                    if g == p.generation {
                        p.decoded_all = true;
                    }
                }
                Ok(FromWorker::Failed(reason)) => {
                    failure = Some(reason);
                    break;
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    failure = Some("the decoder stopped".to_owned());
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            failed.push((note, reason));
            continue;
        }
        if let Some(f) = due {
            p.shown_ms = Some(f.ms);
            let image = Image::new(
                Extent3d { width: f.width, height: f.height, depth_or_array_layers: 1 },
                TextureDimension::D2,
                f.rgba,
                TextureFormat::Rgba8UnormSrgb,
                RenderAssetUsages::RENDER_WORLD,
            );
            match &p.texture {
                Some(t) => {
                    let _ = images.insert(t.id(), image);
                }
                None => {
                    let t = images.add(image);
                    if let Some(mut m) = p.material.as_ref().and_then(|h| materials.get_mut(h)) {
                        m.base_color_texture = Some(t.clone());
                    }
                    p.texture = Some(t);
                }
            }
        }
        // The progress bar: a thin strip along the bottom of the picture.
        if p.bar.is_none()
            && let Some(assets) = &assets
        {
            let bar_material = materials.add(StandardMaterial {
                base_color: Color::srgb(0.95, 0.55, 0.15),
                unlit: true,
                ..default()
            });
            p.bar = Some(
                commands
                    .spawn((
                        Mesh3d(assets.quad.clone()),
                        MeshMaterial3d(bar_material),
                        Transform::from_scale(Vec3::ZERO),
                        ChildOf(note),
                    ))
                    .id(),
            );
        }
        let fraction = (p.position_ms / f64::from(p.duration_ms.max(1))).clamp(0.0, 1.0) as f32;
        if let Some(bar) = p.bar {
            let (w, h) = (p.size.x * fraction, 0.012);
            commands.entity(bar).try_insert(
                Transform::from_xyz(-p.size.x / 2.0 + w / 2.0, -p.size.y / 2.0 + h / 2.0, 0.004)
                    .with_scale(Vec3::new(w.max(0.0001), h, 1.0)),
            );
        }
        if !p.ended && p.decoded_all && p.next.is_none() && p.started {
            p.ended = true;
            p.position_ms = f64::from(p.duration_ms);
            ended.push(note);
        }
    }
    for (note, reason) in failed {
        let Some(p) = videos.playing.remove(&note) else { continue };
        despawn_parts(&mut commands, &p);
        videos.settled.insert(note);
        // A grey frame in place of the clip; the reason is said.
        show_broken(&mut materials, p.material.as_ref());
        notices.write(Notice::problem(format!("this video cannot be played: {reason}")));
        events.write(VideoEvent { note, what: VideoEventKind::Failed(reason) });
    }
    for note in ended {
        if let Some(p) = videos.playing.get_mut(&note)
            && let Some(emitter) = p.emitter.take()
            && let Ok(mut e) = commands.get_entity(emitter)
        {
            e.despawn();
        }
        if videos.playing.get(&note).is_some_and(|p| p.autoplay) {
            videos.settled.insert(note);
        }
        events.write(VideoEvent { note, what: VideoEventKind::Ended });
    }
}

fn despawn_parts(commands: &mut Commands, p: &Playback) {
    for part in [p.emitter, p.bar].into_iter().flatten() {
        if let Ok(mut c) = commands.get_entity(part) {
            c.despawn();
        }
    }
}
