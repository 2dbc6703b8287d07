//! Test clips made by FFmpeg at test time: four vertical colour bars whose colours move on
//! by one every second, and a sine tone. A test knows what any frame and any moment of sound
//! should be ([`bar_colour`], `tone_hz`), so it can check a clip after any number of
//! re-encodings without a reference file in the repository.

use crate::encode::{Muxer, Settings};
use crate::{VideoError, ffmpeg};
use ffmpeg::format::Pixel;
use ffmpeg::frame;
use std::path::Path;

/// Saturated, well-separated colours (they survive 4:2:0 chroma and a low bitrate).
pub const PALETTE: [[u8; 3]; 6] =
    [[220, 30, 30], [30, 200, 40], [40, 60, 220], [230, 220, 40], [220, 40, 210], [40, 210, 220]];

/// Bars across the picture.
pub const BARS: u32 = 4;

/// The colour of bar `bar` (0 = left) during second `second`.
pub fn bar_colour(bar: u32, second: u32) -> [u8; 3] {
    PALETTE[((bar + second) as usize) % PALETTE.len()]
}

/// What to make.
#[derive(Clone, Debug)]
pub struct Spec<'a> {
    /// FFmpeg's muxer name: "mp4", "mov", "webm", "matroska".
    pub container: &'a str,
    /// FFmpeg's encoder name: "libx264", "libvpx-vp9", "libsvtav1", "libaom-av1", …
    pub video_codec: &'static str,
    pub video_options: &'a [(&'a str, &'a str)],
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub seconds: f32,
    /// Encoder name and tone; none for a silent clip.
    pub audio: Option<(&'static str, f32)>,
    pub audio_rate: u32,
    /// Container tags, as a phone writes them (`location`, `make`, `model`, …).
    pub metadata: &'a [(&'a str, &'a str)],
}

impl Default for Spec<'_> {
    /// An H.264 + AAC MP4 at 1280×720, 30 fps, 3 s, 440 Hz: what a phone hands over.
    fn default() -> Self {
        Spec {
            container: "mp4",
            video_codec: "libx264",
            video_options: &[("preset", "ultrafast")],
            width: 1280,
            height: 720,
            fps: 30,
            seconds: 3.0,
            audio: Some(("aac", 440.0)),
            audio_rate: 44_100,
            metadata: &[],
        }
    }
}

/// Writes the clip to `path`.
pub fn make(path: &Path, spec: &Spec) -> Result<(), VideoError> {
    let mut muxer = Muxer::create(
        path,
        &Settings {
            container: spec.container,
            video_codec: spec.video_codec,
            video_options: spec.video_options,
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            video_bits_per_second: 4_000_000,
            audio: spec.audio.map(|(codec, _)| (codec, 2, spec.audio_rate)),
            audio_bits_per_second: 128_000,
            metadata: spec.metadata,
        },
    )?;
    let frames = (spec.seconds * spec.fps as f32).round() as u32;
    let mut picture = frame::Video::new(Pixel::RGB24, spec.width, spec.height);
    let stride = picture.stride(0);
    let mut samples_done = 0u64;
    for i in 0..frames {
        let ms = i as i64 * 1000 / spec.fps as i64;
        let second = (ms / 1000) as u32;
        let data = picture.data_mut(0);
        for y in 0..spec.height as usize {
            let row = &mut data[y * stride..y * stride + spec.width as usize * 3];
            for x in 0..spec.width as usize {
                let bar = (x as u32 * BARS / spec.width).min(BARS - 1);
                row[x * 3..x * 3 + 3].copy_from_slice(&bar_colour(bar, second));
            }
        }
        muxer.push_video(&picture, ms)?;
        if let Some((_, hz)) = spec.audio {
            // The sound up to the end of this frame.
            let until = (i as u64 + 1) * spec.audio_rate as u64 / spec.fps as u64;
            let mut chunk = Vec::with_capacity(((until - samples_done) * 2) as usize);
            for n in samples_done..until {
                let v = 0.5
                    * (2.0 * std::f64::consts::PI * hz as f64 * n as f64 / spec.audio_rate as f64)
                        .sin() as f32;
                chunk.push(v);
                chunk.push(v);
            }
            samples_done = until;
            muxer.push_audio(&chunk)?;
        }
    }
    muxer.finish()
}
