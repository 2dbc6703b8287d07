//! Video notes through FFmpeg (Debian's libavformat, libavcodec, libswscale, libswresample):
//!
//! - [`transcode`]: any common clip (MP4/H.264, MOV, WebM/VP9 or AV1, Matroska, …) becomes the
//!   one canonical format every Cairn device decodes — VP9 video and Opus audio in WebM — bounded
//!   by [`MAX_DURATION_MS`], [`MAX_LONG_SIDE`]×[`MAX_SHORT_SIDE`], [`MAX_FPS`] and the bitrates
//!   below, with no metadata from the source (location, device, titles), plus a poster frame.
//!   A file that is truncated, corrupt, of a codec FFmpeg cannot decode, absurdly large or long,
//!   or that decodes to more than it claims, is an error before anything is made.
//! - [`Decoder`]: plays a canonical clip from memory (a sealed `memfd`, never a file on disk),
//!   frame by frame as RGBA with its time, with seeking; [`decode_audio`] gives its sound as
//!   mono samples for spatial playback. A clip that is not canonical is refused.
//! - [`synthetic`]: test clips made by the library (moving colour bars and a tone), in any
//!   container and codec FFmpeg encodes, so no media file is committed to the repository.
//!
//! The reasons for VP9 + Opus in WebM, with the measurements, are in ARCHITECTURE.md.

mod decode;
mod encode;
mod scale;
pub mod synthetic;
mod transcode;

pub use decode::{Decoder, Frame, Pcm, decode_audio, decode_audio_file};
pub use transcode::{Clip, Poster, transcode};

use ffmpeg_next as ffmpeg;

/// The longest clip a video note carries, in milliseconds.
pub const MAX_DURATION_MS: u32 = 60_000;
/// The canonical clip fits in a 1280×720 box (either way up: a portrait clip is 720×1280).
pub const MAX_LONG_SIDE: u32 = 1280;
pub const MAX_SHORT_SIDE: u32 = 720;
/// Frames per second at most (a faster source has frames dropped evenly).
pub const MAX_FPS: u32 = 30;
/// VP9's target bitrate: with the audio, a minute is about 8 MB.
pub const VIDEO_BITS_PER_SECOND: usize = 1_000_000;
/// Opus's bitrate (mono or stereo).
pub const AUDIO_BITS_PER_SECOND: usize = 64_000;
/// The canonical clip's sample rate (Opus's own).
pub const AUDIO_RATE: u32 = 48_000;
/// A canonical clip larger than this is refused (the encoder overshot badly).
pub const MAX_CLIP_BYTES: usize = 12 * 1024 * 1024;
/// An input file larger than this is refused before it is opened.
pub const MAX_INPUT_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// An input whose pictures are larger than this on a side is refused before decoding.
pub const MAX_INPUT_SIDE: u32 = 8192;
/// The canonical clip's MIME type.
pub const MIME: &str = "video/webm";

/// Why a clip could not be made or played. Each says what a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum VideoError {
    #[error("unreadable video: {0}")]
    Unreadable(String),
    #[error("the file has no video")]
    NoVideo,
    #[error("unsupported video: {0}")]
    Unsupported(String),
    #[error("the video is {0}×{1}; at most {MAX_INPUT_SIDE} on a side")]
    TooLarge(u32, u32),
    #[error("the clip is {:.1} s long; a video note is at most {} s", *.0 as f64 / 1000.0, MAX_DURATION_MS / 1000)]
    TooLong(u64),
    #[error("the file is over {} MiB", MAX_INPUT_BYTES >> 20)]
    InputTooBig,
    #[error("corrupt video: {0}")]
    Corrupt(String),
    #[error("the re-encoded clip is {} KiB, over the limit of {} KiB", .0 >> 10, MAX_CLIP_BYTES >> 10)]
    ClipTooBig(usize),
    #[error("not a Cairn video clip: {0}")]
    NotCanonical(String),
    #[error("FFmpeg cannot encode {0} here (is Debian's libavcodec installed with it?)")]
    MissingEncoder(&'static str),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl VideoError {
    pub(crate) fn ffmpeg(what: &str) -> impl Fn(ffmpeg::Error) -> VideoError + '_ {
        move |e| VideoError::Corrupt(format!("{what}: {e}"))
    }
}

/// FFmpeg's global set-up (codec registration is automatic since 4.0; its log goes quiet: the
/// errors come back as [`VideoError`]s).
pub(crate) fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ffmpeg::init();
        ffmpeg::util::log::set_level(ffmpeg::util::log::Level::Fatal);
    });
}

/// The canonical size for a source of `w`×`h`: within the box either way up, never enlarged,
/// aspect kept, even sides (4:2:0 chroma).
pub fn fit(w: u32, h: u32) -> (u32, u32) {
    let (long, short) = if w >= h { (w, h) } else { (h, w) };
    let scale =
        (MAX_LONG_SIDE as f64 / long as f64).min(MAX_SHORT_SIDE as f64 / short as f64).min(1.0);
    let even = |v: f64| ((v.round() as u32) / 2 * 2).max(2);
    (even(w as f64 * scale), even(h as f64 * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_aspect_within_the_box() {
        assert_eq!(fit(1920, 1080), (1280, 720));
        assert_eq!(fit(1080, 1920), (720, 1280));
        assert_eq!(fit(640, 480), (640, 480));
        assert_eq!(fit(3840, 1600), (1280, 532));
        assert_eq!(fit(1000, 1000), (720, 720));
        assert_eq!(fit(321, 241), (320, 240));
        assert_eq!(fit(1, 1), (2, 2));
    }
}
