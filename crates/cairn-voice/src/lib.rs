//! Voice notes: mono 48 kHz PCM encoded as Opus (VoIP mode, about 24 kbit/s, 20 ms frames)
//! in an Ogg container with RFC 7845 headers, so other players accept the files; decoding
//! back to PCM; the waveform (64 peaks) and duration that travel inside the encrypted note;
//! and decoding of audio files (WAV, FLAC, MP3, Ogg/Vorbis, Ogg/Opus) at any sample rate.
//! No I/O beyond the bytes it is given; every malformed input is an error, never a panic.

mod input;
mod ogg_opus;

pub use input::{decode_file, resample};
pub use ogg_opus::{decode_ogg_opus, encode_pcm};

/// The sample rate of every PCM buffer here.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per Opus frame (20 ms).
pub const FRAME: usize = 960;
/// Target bitrate, bits per second.
pub const BITRATE: i32 = 24_000;
/// Longest voice note.
pub const MAX_DURATION_MS: u32 = 5 * 60 * 1000;
/// Largest input file accepted.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// Bars in a waveform.
pub const WAVEFORM_BARS: usize = 64;

/// An encoded voice note.
#[derive(Clone, Debug)]
pub struct VoiceNote {
    pub ogg_opus: Vec<u8>,
    /// `WAVEFORM_BARS` peaks, 0..=255, scaled to the loudest.
    pub waveform: Vec<u8>,
    pub duration_ms: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum VoiceError {
    #[error("the audio is empty")]
    Empty,
    #[error("the voice note is {0} s long; the limit is {limit} s", limit = MAX_DURATION_MS / 1000)]
    TooLong(u32),
    #[error("the file is over {} MiB", MAX_INPUT_BYTES >> 20)]
    TooLarge,
    #[error("not a valid Ogg/Opus stream: {0}")]
    BadOggOpus(String),
    #[error("unsupported or damaged audio file: {0}")]
    BadInput(String),
    #[error("Opus: {0}")]
    Codec(String),
}

/// Encodes an audio file of any supported kind into a voice note.
pub fn encode_file(bytes: &[u8]) -> Result<VoiceNote, VoiceError> {
    let pcm = decode_file(bytes)?;
    encode_pcm(&pcm)
}

/// Peaks of `samples` in `WAVEFORM_BARS` equal spans, scaled so the loudest is 255.
pub fn waveform(samples: &[f32]) -> Vec<u8> {
    if samples.is_empty() {
        return vec![0; WAVEFORM_BARS];
    }
    let span = samples.len().div_ceil(WAVEFORM_BARS);
    let peaks: Vec<f32> = (0..WAVEFORM_BARS)
        .map(|i| samples.iter().skip(i * span).take(span).fold(0f32, |m, s| m.max(s.abs())))
        .collect();
    let loudest = peaks.iter().copied().fold(0f32, f32::max).max(1e-6);
    peaks.iter().map(|p| (p / loudest * 255.0).round().clamp(0.0, 255.0) as u8).collect()
}

/// Duration of `samples` at 48 kHz, in milliseconds.
pub fn duration_ms(samples: usize) -> u32 {
    (samples as u64 * 1000 / u64::from(SAMPLE_RATE)) as u32
}
