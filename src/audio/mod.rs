//! Voice notes in the app: playback as spatial audio from the note's position, with progress
//! drawn on the orb, seek by clicking the waveform, and speed 1x / 1.5x / 2x; recording from
//! the default microphone while V is held.

mod record;

use crate::CairnSet;
use crate::common::Notice;
use crate::compose::placement;
use crate::interact::{NoteActivated, Pointer};
use crate::net::{CurrentSpace, MediaReady, NetCommand, PostNote};
use crate::notes::{Note, NoteAt};
use crate::render::{NoteVisual, VoiceOrbMaterial};
use bevy::audio::{
    AudioPlayer, AudioSinkPlayback, AudioSource, Decodable, PlaybackSettings, SpatialAudioSink,
    Volume,
};
use bevy::prelude::*;
use cairn_client::{ClientCommand, Content, Draft, VoiceClip};
use cairn_proto::{MediaHash, NoteKind};
use std::collections::HashMap;
use std::time::Duration;

/// Playback speeds offered, cycled with X.
pub const SPEEDS: [f32; 3] = [1.0, 1.5, 2.0];

/// The camera's right vector: the waveform runs left to right across the orb's face.
#[derive(Resource, Debug, Clone, Copy)]
pub struct ViewerRight(pub Vec3);

impl Default for ViewerRight {
    fn default() -> Self {
        ViewerRight(Vec3::X)
    }
}

/// Decoded voice notes, by media hash.
#[derive(Resource, Default)]
struct Decoded(HashMap<MediaHash, (Handle<AudioSource>, Duration)>);

/// What plays, and what waits for its audio.
#[derive(Resource, Default)]
pub struct Voice {
    pub speed_index: usize,
    /// Note entity -> the playing emitter.
    playing: HashMap<Entity, (Entity, Duration)>,
    /// Media hash -> notes waiting for it.
    waiting: HashMap<MediaHash, Vec<Entity>>,
}

impl Voice {
    pub fn speed(&self) -> f32 {
        SPEEDS[self.speed_index % SPEEDS.len()]
    }
    pub fn is_playing(&self, note: Entity) -> bool {
        self.playing.contains_key(&note)
    }
}

/// Hold to record, release to post; cycle the playback speed.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceInput {
    StartRecording,
    StopRecording,
    /// Stop recording and post nothing (the headset stopped tracking mid-recording).
    CancelRecording,
    CycleSpeed,
}

pub fn plugin(app: &mut App) {
    app.init_resource::<Decoded>()
        .init_resource::<Voice>()
        .init_resource::<ViewerRight>()
        .add_message::<VoiceInput>()
        .init_resource::<record::Recorder>()
        .add_systems(
            Update,
            (activate, receive_media, progress, handle_voice_input).in_set(CairnSet::Apply),
        );
}

/// Where on the orb's face a point lies, 0 (left) to 1 (right), as the shader draws it.
pub fn face_fraction(hit: Vec3, center: Vec3, right: Vec3) -> f32 {
    let n = (hit - center).normalize_or_zero();
    (0.5 + n.dot(right.normalize_or_zero()).clamp(-1.0, 1.0).asin() / std::f32::consts::PI)
        .clamp(0.0, 1.0)
}

/// 16-bit mono WAV bytes, for Bevy's audio decoder.
pub(crate) fn wav_bytes(pcm: &[f32]) -> Vec<u8> {
    let data = (pcm.len() * 2) as u32;
    let mut w = Vec::with_capacity(44 + pcm.len() * 2);
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&cairn_voice::SAMPLE_RATE.to_le_bytes());
    w.extend_from_slice(&(cairn_voice::SAMPLE_RATE * 2).to_le_bytes());
    w.extend_from_slice(&2u16.to_le_bytes());
    w.extend_from_slice(&16u16.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&data.to_le_bytes());
    for s in pcm {
        w.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0) as i16).to_le_bytes());
    }
    w
}

#[allow(clippy::too_many_arguments)]
fn activate(
    mut commands: Commands,
    mut activated: MessageReader<NoteActivated>,
    mut voice: ResMut<Voice>,
    decoded: Res<Decoded>,
    pointer: Res<Pointer>,
    right: Res<ViewerRight>,
    notes: Query<(&Note, &NoteAt)>,
    sinks: Query<&mut SpatialAudioSink>,
    mut net: MessageWriter<NetCommand>,
) {
    for a in activated.read() {
        let Ok((note, t)) = notes.get(a.entity) else { continue };
        if note.kind() != Some(NoteKind::Voice) {
            continue;
        }
        let Some(media) = note.body.as_ref().and_then(|b| b.media.first()) else { continue };
        let at = pointer.note_hit.map(|hit| face_fraction(hit, t.0, right.0)).unwrap_or(0.0);
        // Playing already: the click seeks.
        if let Some((emitter, duration)) = voice.playing.get(&a.entity) {
            if let Ok(sink) = sinks.get(*emitter) {
                let _ = sink.try_seek(duration.mul_f32(at));
            }
            continue;
        }
        match decoded.0.get(&media.hash) {
            Some((handle, duration)) => {
                let speed = voice.speed();
                let emitter = spawn_emitter(&mut commands, a.entity, handle.clone(), speed);
                voice.playing.insert(a.entity, (emitter, *duration));
            }
            None => {
                voice.waiting.entry(media.hash).or_default().push(a.entity);
                net.write(NetCommand(ClientCommand::FetchMedia { media: media.clone() }));
            }
        }
    }
}

/// A spatial emitter at `note` playing `handle` (a voice note's sound, or a clip's).
pub(crate) fn spawn_emitter<S: Asset + Decodable>(
    commands: &mut Commands,
    note: Entity,
    handle: Handle<S>,
    speed: f32,
) -> Entity {
    commands
        .spawn((
            AudioPlayer(handle),
            PlaybackSettings::ONCE
                .with_spatial(true)
                .with_speed(speed)
                .with_volume(Volume::Linear(1.0)),
            Transform::default(),
            ChildOf(note),
        ))
        .id()
}

fn receive_media(
    mut commands: Commands,
    mut ready: MessageReader<MediaReady>,
    mut voice: ResMut<Voice>,
    mut decoded: ResMut<Decoded>,
    mut sources: ResMut<Assets<AudioSource>>,
    mut notices: MessageWriter<Notice>,
) {
    for r in ready.read() {
        let Some(waiting) = voice.waiting.remove(&r.hash) else { continue };
        let pcm = std::fs::read(&r.path)
            .map_err(|e| e.to_string())
            .and_then(|b| cairn_voice::decode_ogg_opus(&b).map_err(|e| e.to_string()));
        let pcm = match pcm {
            Ok(p) => p,
            Err(e) => {
                notices.write(Notice::problem(format!("this voice note cannot be played: {e}")));
                continue;
            }
        };
        let duration = Duration::from_millis(u64::from(cairn_voice::duration_ms(pcm.len())));
        let handle = sources.add(AudioSource { bytes: wav_bytes(&pcm).into() });
        decoded.0.insert(r.hash, (handle.clone(), duration));
        let speed = voice.speed();
        for note in waiting {
            let emitter = spawn_emitter(&mut commands, note, handle.clone(), speed);
            voice.playing.insert(note, (emitter, duration));
        }
    }
}

/// Progress and pulse on the orb while it plays; cleanup when it ends.
fn progress(
    mut commands: Commands,
    time: Res<Time>,
    mut voice: ResMut<Voice>,
    sinks: Query<&SpatialAudioSink>,
    visuals: Query<&NoteVisual>,
    mut orbs: ResMut<Assets<VoiceOrbMaterial>>,
) {
    let mut finished = Vec::new();
    for (note, (emitter, duration)) in &voice.playing {
        let (fraction, done) = match sinks.get(*emitter) {
            Ok(sink) => {
                (sink.position().as_secs_f32() / duration.as_secs_f32().max(0.001), sink.empty())
            }
            // Not started yet (the sink appears a frame later) or already despawned.
            Err(_) => (0.0, commands.get_entity(*emitter).is_err()),
        };
        if let Some(mut m) = visuals
            .get(*note)
            .ok()
            .and_then(|v| v.orb_material.as_ref())
            .and_then(|h| orbs.get_mut(h))
        {
            m.data.params.x = if done { 0.0 } else { fraction.clamp(0.0, 1.0) };
            m.data.params.y =
                if done { 0.0 } else { 0.5 + 0.5 * (time.elapsed_secs() * 6.0).sin() };
        }
        if done {
            finished.push(*note);
        }
    }
    for note in finished {
        if let Some((emitter, _)) = voice.playing.remove(&note)
            && let Ok(mut e) = commands.get_entity(emitter)
        {
            e.despawn();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn handle_voice_input(
    mut inputs: MessageReader<VoiceInput>,
    mut voice: ResMut<Voice>,
    sinks: Query<&mut SpatialAudioSink>,
    mut recorder: ResMut<record::Recorder>,
    pointer: Res<Pointer>,
    current: Res<CurrentSpace>,
    mut posts: MessageWriter<PostNote>,
    mut notices: MessageWriter<Notice>,
) {
    for input in inputs.read() {
        match input {
            VoiceInput::CycleSpeed => {
                voice.speed_index = (voice.speed_index + 1) % SPEEDS.len();
                let speed = voice.speed();
                for (emitter, _) in voice.playing.values() {
                    if let Ok(sink) = sinks.get(*emitter) {
                        sink.set_speed(speed);
                    }
                }
                notices.write(Notice::info(format!("voice notes play at {speed}×")));
            }
            VoiceInput::StartRecording => {
                if let Err(e) = recorder.start() {
                    notices.write(Notice::problem(format!("{e} — you can still post an audio file with cairn-cli note post --voice FILE")));
                }
            }
            VoiceInput::CancelRecording => {
                if recorder.stop().is_some() {
                    notices.write(Notice::problem(
                        "the recording was discarded: the headset stopped tracking before the \
                         grip was let go",
                    ));
                }
            }
            VoiceInput::StopRecording => {
                let Some(pcm) = recorder.stop() else { continue };
                let Some(space) = current.0 else { continue };
                match cairn_voice::encode_pcm(&pcm) {
                    Ok(note) => {
                        let at = placement(&pointer).unwrap_or(Vec3::new(
                            0.0,
                            crate::compose::NOTE_HEIGHT,
                            -1.5,
                        ));
                        let draft = Draft {
                            content: Content::Voice(VoiceClip {
                                ogg_opus: note.ogg_opus,
                                waveform: note.waveform,
                                duration_ms: note.duration_ms,
                            }),
                            pose: cairn_crypto::Pose {
                                position: at.to_array(),
                                ..Default::default()
                            },
                            ..Draft::default()
                        };
                        posts.write(PostNote { space, draft });
                    }
                    Err(e) => {
                        notices
                            .write(Notice::problem(format!("the recording was not posted: {e}")));
                    }
                }
            }
        }
    }
}

/// A short three-note chime, so the welcome space has a voice note to play.
pub fn welcome_voice() -> Option<VoiceClip> {
    let rate = cairn_voice::SAMPLE_RATE as f32;
    let notes = [(523.25f32, 0.0f32), (659.25, 0.28), (783.99, 0.56), (1046.5, 0.84)];
    let len = (rate * 2.2) as usize;
    let mut pcm = vec![0f32; len];
    for (hz, start) in notes {
        let s0 = (start * rate) as usize;
        for (i, sample) in pcm.iter_mut().enumerate().skip(s0) {
            let t = (i - s0) as f32 / rate;
            let env = (-t * 3.0).exp() * (t * 200.0).min(1.0);
            *sample += 0.22
                * env
                * ((t * hz * std::f32::consts::TAU).sin()
                    + 0.3 * (t * hz * 2.0 * std::f32::consts::TAU).sin());
        }
    }
    let note = cairn_voice::encode_pcm(&pcm).ok()?;
    Some(VoiceClip {
        ogg_opus: note.ogg_opus,
        waveform: note.waveform,
        duration_ms: note.duration_ms,
    })
}

pub use record::Recorder;
