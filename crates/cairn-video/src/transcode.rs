//! Any common clip to the canonical one (VP9 + Opus in WebM), under the limits, with a poster.

use crate::encode::{Muxer, Settings};
use crate::scale::{Scaler, packed_rows};
use crate::{
    AUDIO_BITS_PER_SECOND, AUDIO_RATE, MAX_CLIP_BYTES, MAX_DURATION_MS, MAX_FPS, MAX_INPUT_BYTES,
    MAX_INPUT_SIDE, VIDEO_BITS_PER_SECOND, VideoError, ffmpeg, fit,
};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::software::resampling;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Packet, Rational, codec, decoder, format, frame, media};
use std::path::Path;

/// The canonical clip and what travels inside the note beside it.
pub struct Clip {
    /// VP9 + Opus in WebM.
    pub webm: Vec<u8>,
    pub poster: Poster,
    pub duration_ms: u32,
    pub width: u32,
    pub height: u32,
    pub has_audio: bool,
}

/// A frame of the clip as 8-bit RGB, at the clip's size.
#[derive(Clone)]
pub struct Poster {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// libvpx's VP9 at its real-time setting: measured in docs/BENCHMARKS.md (a 30 s 720p clip
/// in well under 30 s on two cores).
pub(crate) const VP9_OPTIONS: &[(&str, &str)] =
    &[("deadline", "realtime"), ("cpu-used", "8"), ("row-mt", "1"), ("tile-columns", "2")];

/// FFmpeg's bound on an input picture (both sides at the limit).
const INPUT_PIXELS: u64 = MAX_INPUT_SIDE as u64 * MAX_INPUT_SIDE as u64;

/// The poster is the frame at this time (or the first frame of a shorter clip): past a fade
/// in, still near the start.
const POSTER_AT_MS: i64 = 1000;

/// Re-encodes the file at `input` into a canonical clip, or says why it cannot.
pub fn transcode(input: &Path) -> Result<Clip, VideoError> {
    crate::init();
    let len = std::fs::metadata(input)?.len();
    if len > MAX_INPUT_BYTES {
        return Err(VideoError::InputTooBig);
    }
    if len == 0 {
        return Err(VideoError::Unreadable("the file is empty".into()));
    }
    let mut ictx = format::input(input).map_err(|e| VideoError::Unreadable(e.to_string()))?;
    let claimed_ms = (ictx.duration() > 0).then(|| ictx.duration() as u64 / 1000);
    if let Some(ms) = claimed_ms
        && ms > MAX_DURATION_MS as u64 + 500
    {
        return Err(VideoError::TooLong(ms));
    }

    // The video stream and its decoder.
    let vst = ictx.streams().best(media::Type::Video).ok_or(VideoError::NoVideo)?;
    let v_index = vst.index();
    let v_tb = vst.time_base();
    let claimed_frames = vst.frames().max(0) as u64;
    let mut vdec = open_decoder(vst.parameters(), "video", INPUT_PIXELS)?
        .video()
        .map_err(VideoError::ffmpeg("video decoder"))?;
    let (w, h) = (vdec.width(), vdec.height());
    if w == 0 || h == 0 {
        return Err(VideoError::Unreadable("the video has no picture size".into()));
    }
    if w > MAX_INPUT_SIDE || h > MAX_INPUT_SIDE {
        return Err(VideoError::TooLarge(w, h));
    }

    // The sound, if any: mono stays mono, anything wider becomes stereo.
    let mut audio = match ictx.streams().best(media::Type::Audio) {
        None => None,
        Some(ast) => {
            let index = ast.index();
            let dec = open_decoder(ast.parameters(), "audio", INPUT_PIXELS)?
                .audio()
                .map_err(VideoError::ffmpeg("audio decoder"))?;
            let channels = dec.channels().clamp(1, 2);
            Some(AudioIn { index, dec, channels, resampler: None, samples: 0 })
        }
    };

    let (ow, oh) = fit(w, h);
    let dir = tempfile::tempdir()?;
    let out_path = dir.path().join("clip.webm");
    let mut muxer = Muxer::create(
        &out_path,
        &Settings {
            container: "webm",
            video_codec: "libvpx-vp9",
            video_options: VP9_OPTIONS,
            width: ow,
            height: oh,
            fps: MAX_FPS,
            video_bits_per_second: VIDEO_BITS_PER_SECOND,
            audio: audio.as_ref().map(|a| ("libopus", a.channels, AUDIO_RATE)),
            audio_bits_per_second: AUDIO_BITS_PER_SECOND,
            metadata: &[],
        },
    )?;

    // Bounds on what decoding may produce: a file that claims little and holds much stops here.
    let frame_limit = if claimed_frames > 0 {
        claimed_frames * 3 / 2 + 60
    } else {
        (MAX_DURATION_MS as u64 / 1000 + 2) * 240
    };
    let time_limit_ms = claimed_ms
        .map_or(MAX_DURATION_MS as u64 + 1000, |c| c + 500 + c / 4)
        .min(MAX_DURATION_MS as u64 + 1000) as i64;
    let period_ms = 1000.0 / MAX_FPS as f64;

    let mut v = VideoState {
        claimed_ms,
        first_ts: None,
        last_out_ms: None,
        frames: 0,
        poster: None,
        poster_taken_at: None,
    };
    let mut packet = Packet::empty();
    loop {
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(e) => return Err(VideoError::Corrupt(format!("reading the file: {e}"))),
        }
        if packet.stream() == v_index {
            vdec.send_packet(&packet).map_err(VideoError::ffmpeg("decoding video"))?;
            v.drain(&mut vdec, &mut muxer, v_tb, frame_limit, time_limit_ms, period_ms, (ow, oh))?;
        } else if let Some(a) = audio.as_mut()
            && packet.stream() == a.index
        {
            a.dec.send_packet(&packet).map_err(VideoError::ffmpeg("decoding audio"))?;
            a.drain(&mut muxer, time_limit_ms)?;
        }
    }
    vdec.send_eof().map_err(VideoError::ffmpeg("decoding video"))?;
    v.drain(&mut vdec, &mut muxer, v_tb, frame_limit, time_limit_ms, period_ms, (ow, oh))?;
    if let Some(a) = audio.as_mut() {
        a.dec.send_eof().map_err(VideoError::ffmpeg("decoding audio"))?;
        a.drain(&mut muxer, time_limit_ms)?;
        a.flush(&mut muxer)?;
    }
    let Some(last_ms) = v.last_out_ms else {
        return Err(VideoError::Corrupt("no picture in it decodes".into()));
    };
    let audio_ms = audio.as_ref().map_or(0, |a| a.samples * 1000 / AUDIO_RATE as u64) as i64;
    let duration_ms = (last_ms + period_ms.round() as i64).max(audio_ms) as u64;
    if duration_ms > MAX_DURATION_MS as u64 + 500 {
        return Err(VideoError::TooLong(duration_ms));
    }
    if let Some(claimed) = claimed_ms
        && duration_ms + 1500 < claimed
    {
        return Err(VideoError::Corrupt(format!(
            "it ends at {:.1} s of the {:.1} s it claims (truncated?)",
            duration_ms as f64 / 1000.0,
            claimed as f64 / 1000.0
        )));
    }
    muxer.finish()?;
    let webm = std::fs::read(&out_path)?;
    if webm.len() > MAX_CLIP_BYTES {
        return Err(VideoError::ClipTooBig(webm.len()));
    }
    Ok(Clip {
        webm,
        poster: v.poster.expect("a poster is taken with the first frame"),
        duration_ms: duration_ms as u32,
        width: ow,
        height: oh,
        has_audio: audio.is_some(),
    })
}

/// Opens a decoder for a stream, with FFmpeg's own bound on a picture's size (`max_pixels`)
/// so that a bitstream claiming vast pictures fails before anything is allocated for them.
pub(crate) fn open_decoder(
    params: codec::Parameters,
    what: &str,
    max_pixels: u64,
) -> Result<decoder::Opened, VideoError> {
    let Some(codec) = decoder::find(params.id()) else {
        return Err(VideoError::Unsupported(format!(
            "no decoder for its {what} ({:?})",
            params.id()
        )));
    };
    let mut ctx = codec::context::Context::from_parameters(params)
        .map_err(|e| VideoError::Unsupported(format!("{what}: {e}")))?;
    ctx.set_threading(codec::threading::Config {
        kind: codec::threading::Type::Frame,
        ..Default::default()
    });
    let mut options = ffmpeg::Dictionary::new();
    options.set("max_pixels", &max_pixels.to_string());
    ctx.decoder()
        .open_as_with(codec, options)
        .map_err(|e| VideoError::Unsupported(format!("{what}: {e}")))
}

/// The time of a decoded frame in milliseconds, from its stream's time base.
pub(crate) fn to_ms(ts: i64, tb: Rational) -> i64 {
    (ts as i128 * 1000 * tb.numerator() as i128 / tb.denominator().max(1) as i128) as i64
}

/// Whether a decoder has nothing more for now (not an error).
pub(crate) fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Eof)
        || matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::util::error::EAGAIN)
}

struct VideoState {
    claimed_ms: Option<u64>,
    first_ts: Option<i64>,
    last_out_ms: Option<i64>,
    frames: u64,
    poster: Option<Poster>,
    poster_taken_at: Option<i64>,
}

impl VideoState {
    #[allow(clippy::too_many_arguments)]
    fn drain(
        &mut self,
        dec: &mut decoder::Video,
        muxer: &mut Muxer,
        tb: Rational,
        frame_limit: u64,
        time_limit_ms: i64,
        period_ms: f64,
        size: (u32, u32),
    ) -> Result<(), VideoError> {
        let mut f = frame::Video::empty();
        loop {
            match dec.receive_frame(&mut f) {
                Ok(()) => {}
                Err(e) if is_again(&e) => return Ok(()),
                Err(e) => return Err(VideoError::Corrupt(format!("decoding video: {e}"))),
            }
            self.frames += 1;
            if self.frames > frame_limit {
                return Err(VideoError::Corrupt(format!(
                    "it decodes to more than the {} frames it claims",
                    frame_limit.saturating_sub(60) * 2 / 3
                )));
            }
            if f.width() > MAX_INPUT_SIDE || f.height() > MAX_INPUT_SIDE {
                return Err(VideoError::TooLarge(f.width(), f.height()));
            }
            let ts = f.timestamp().or(f.pts()).unwrap_or(0);
            let first = *self.first_ts.get_or_insert(ts);
            let ms = to_ms(ts - first, tb);
            if ms > time_limit_ms {
                return Err(match self.claimed_ms {
                    Some(c) if c <= MAX_DURATION_MS as u64 => VideoError::Corrupt(format!(
                        "it decodes to more than the {:.1} s it claims",
                        c as f64 / 1000.0
                    )),
                    _ => VideoError::TooLong(ms as u64),
                });
            }
            // At most MAX_FPS, in order.
            if let Some(last) = self.last_out_ms
                && (ms <= last || ((ms - last) as f64) < period_ms - 1.0)
            {
                continue;
            }
            let take_poster = match self.poster_taken_at {
                None => true,
                Some(at) => at < POSTER_AT_MS && ms >= POSTER_AT_MS,
            };
            if take_poster {
                self.poster = Some(to_rgb(&f, size)?);
                self.poster_taken_at = Some(ms);
            }
            muxer.push_video(&f, ms)?;
            self.last_out_ms = Some(ms);
        }
    }
}

/// A frame as RGB at `size`.
pub(crate) fn to_rgb(f: &frame::Video, (w, h): (u32, u32)) -> Result<Poster, VideoError> {
    let rgb = Scaler::new(Pixel::RGB24).run(f, w, h)?;
    Ok(Poster { width: w, height: h, rgb: packed_rows(&rgb, 3) })
}

struct AudioIn {
    index: usize,
    dec: decoder::Audio,
    channels: u16,
    resampler: Option<resampling::Context>,
    /// Samples (per channel) handed to the encoder.
    samples: u64,
}

impl AudioIn {
    fn out_format() -> Sample {
        Sample::F32(sample::Type::Packed)
    }

    fn drain(&mut self, muxer: &mut Muxer, time_limit_ms: i64) -> Result<(), VideoError> {
        let mut f = frame::Audio::empty();
        loop {
            match self.dec.receive_frame(&mut f) {
                Ok(()) => {}
                Err(e) if is_again(&e) => return Ok(()),
                Err(e) => return Err(VideoError::Corrupt(format!("decoding audio: {e}"))),
            }
            if f.samples() == 0 || f.rate() == 0 {
                continue;
            }
            let layout = if f.channel_layout().bits() == 0 {
                ChannelLayout::default(f.channels() as i32)
            } else {
                f.channel_layout()
            };
            f.set_channel_layout(layout);
            if self.resampler.is_none() {
                self.resampler = Some(
                    resampling::Context::get(
                        f.format(),
                        layout,
                        f.rate(),
                        Self::out_format(),
                        ChannelLayout::default(self.channels as i32),
                        AUDIO_RATE,
                    )
                    .map_err(VideoError::ffmpeg("resampling"))?,
                );
            }
            let capacity = f.samples() * AUDIO_RATE as usize / f.rate() as usize + 256;
            let mut out = frame::Audio::new(
                Self::out_format(),
                capacity,
                ChannelLayout::default(self.channels as i32),
            );
            self.resampler
                .as_mut()
                .expect("made above")
                .run(&f, &mut out)
                .map_err(VideoError::ffmpeg("resampling"))?;
            self.push(muxer, &out, time_limit_ms)?;
        }
    }

    fn push(
        &mut self,
        muxer: &mut Muxer,
        out: &frame::Audio,
        time_limit_ms: i64,
    ) -> Result<(), VideoError> {
        let n = out.samples();
        if n == 0 {
            return Ok(());
        }
        self.samples += n as u64;
        let ms = (self.samples * 1000 / AUDIO_RATE as u64) as i64;
        if ms > time_limit_ms {
            return Err(VideoError::Corrupt(format!(
                "its sound runs on past {:.1} s",
                time_limit_ms as f64 / 1000.0
            )));
        }
        muxer.push_audio(&out.plane::<f32>(0)[..n * self.channels as usize])
    }

    fn flush(&mut self, muxer: &mut Muxer) -> Result<(), VideoError> {
        let Some(r) = self.resampler.as_mut() else { return Ok(()) };
        loop {
            let mut out = frame::Audio::new(
                Self::out_format(),
                4096,
                ChannelLayout::default(self.channels as i32),
            );
            match r.flush(&mut out) {
                Ok(_) if out.samples() > 0 => {}
                _ => return Ok(()),
            }
            let n = out.samples();
            self.samples += n as u64;
            muxer.push_audio(&out.plane::<f32>(0)[..n * self.channels as usize])?;
        }
    }
}
