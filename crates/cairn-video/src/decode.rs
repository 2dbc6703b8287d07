//! Playing a canonical clip: frames as RGBA with their times, seeking, and its sound.
//!
//! A clip is opened from a file (the app plays from the client's media cache) or from bytes
//! in memory, which FFmpeg reads through a `memfd` (an anonymous file that lives in memory and
//! goes with its last descriptor), so those bytes reach no disk.

use crate::scale::{Scaler, packed_rows};
use crate::transcode::{is_again, open_decoder, to_ms};
use crate::{AUDIO_RATE, MAX_DURATION_MS, MAX_LONG_SIDE, MAX_SHORT_SIDE, VideoError, ffmpeg};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::software::resampling;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Packet, Rational, codec, decoder, format, frame, media};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::Path;

/// One picture, RGBA8 rows without padding, shown from `ms`.
pub struct Frame {
    pub ms: u32,
    pub width: u32,
    pub height: u32,
    pub rgba: Vec<u8>,
}

/// Sound as interleaved samples.
pub struct Pcm {
    pub rate: u32,
    pub channels: u16,
    pub samples: Vec<f32>,
}

/// An open clip.
struct Source {
    /// For a clip from memory: keeps the memfd (and so the bytes) alive while FFmpeg reads it.
    _memory: Option<File>,
    input: format::context::Input,
}

impl Source {
    /// A clip in a file; anything but WebM is refused.
    fn file(path: &Path) -> Result<Source, VideoError> {
        crate::init();
        let input = format::input(path).map_err(|e| VideoError::Unreadable(e.to_string()))?;
        let name = input.format().name().to_owned();
        if !name.split(',').any(|n| n == "matroska" || n == "webm") {
            return Err(VideoError::NotCanonical(format!("a {name} file, not WebM")));
        }
        Ok(Source { _memory: None, input })
    }

    /// A clip in memory, read by FFmpeg through a memfd.
    fn bytes(bytes: &[u8]) -> Result<Source, VideoError> {
        let fd = rustix::fs::memfd_create("cairn-clip", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(std::io::Error::from)?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let source = Source::file(Path::new(&path))?;
        Ok(Source { _memory: Some(file), ..source })
    }
}

/// Decodes a canonical clip's pictures in order, each converted to RGBA.
pub struct Decoder {
    src: Source,
    index: usize,
    tb: Rational,
    dec: decoder::Video,
    scaler: Scaler,
    /// The stream's first timestamp (a clip's time 0).
    first_ts: i64,
    /// Frames before this time are decoded and dropped (after a seek).
    skip_until_ms: i64,
    eof_sent: bool,
    duration_ms: u32,
    width: u32,
    height: u32,
}

impl Decoder {
    /// Opens a clip, refusing anything that is not VP9 in WebM within the limits (a clip from
    /// the network is hostile until it decodes).
    pub fn new(bytes: &[u8]) -> Result<Self, VideoError> {
        Self::from_source(Source::bytes(bytes)?)
    }

    /// Opens a clip in a file, as [`Decoder::new`].
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        Self::from_source(Source::file(path)?)
    }

    fn from_source(src: Source) -> Result<Self, VideoError> {
        let st = src.input.streams().best(media::Type::Video).ok_or(VideoError::NoVideo)?;
        let id = st.parameters().id();
        if id != codec::Id::VP9 {
            return Err(VideoError::NotCanonical(format!("{id:?} video, not VP9")));
        }
        let (index, tb) = (st.index(), st.time_base());
        let first_ts =
            if st.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE { 0 } else { st.start_time() };
        let pixels = MAX_LONG_SIDE as u64 * MAX_SHORT_SIDE as u64;
        let dec = open_decoder(st.parameters(), "video", pixels)?
            .video()
            .map_err(VideoError::ffmpeg("video decoder"))?;
        let (width, height) = (dec.width(), dec.height());
        check_size(width, height)?;
        let duration = src.input.duration();
        let duration_ms = if duration > 0 { (duration / 1000) as u64 } else { 0 };
        if duration_ms > MAX_DURATION_MS as u64 + 1000 {
            return Err(VideoError::TooLong(duration_ms));
        }
        Ok(Decoder {
            src,
            index,
            tb,
            dec,
            scaler: Scaler::new(Pixel::RGBA),
            first_ts,
            skip_until_ms: 0,
            eof_sent: false,
            duration_ms: duration_ms as u32,
            width,
            height,
        })
    }

    /// The clip's length as its container gives it (0 when it does not say).
    pub fn duration_ms(&self) -> u32 {
        self.duration_ms
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The next picture, or `None` at the end.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, VideoError> {
        let mut f = frame::Video::empty();
        loop {
            match self.dec.receive_frame(&mut f) {
                Ok(()) => {
                    if let Some(frame) = self.convert(&f)? {
                        return Ok(Some(frame));
                    }
                    continue;
                }
                Err(ffmpeg::Error::Eof) => return Ok(None),
                Err(e) if is_again(&e) => {}
                Err(e) => return Err(VideoError::Corrupt(format!("decoding video: {e}"))),
            }
            if self.eof_sent {
                return Ok(None);
            }
            let mut packet = Packet::empty();
            match packet.read(&mut self.src.input) {
                Ok(()) if packet.stream() == self.index => {
                    self.dec.send_packet(&packet).map_err(VideoError::ffmpeg("decoding video"))?
                }
                Ok(()) => {}
                Err(ffmpeg::Error::Eof) => {
                    self.dec.send_eof().map_err(VideoError::ffmpeg("decoding video"))?;
                    self.eof_sent = true;
                }
                Err(e) => return Err(VideoError::Corrupt(format!("reading the clip: {e}"))),
            }
        }
    }

    fn convert(&mut self, f: &frame::Video) -> Result<Option<Frame>, VideoError> {
        check_size(f.width(), f.height())?;
        let ts = f.timestamp().or(f.pts()).unwrap_or(0);
        let ms = to_ms(ts - self.first_ts, self.tb);
        if ms > MAX_DURATION_MS as i64 + 1000 {
            return Err(VideoError::TooLong(ms as u64));
        }
        if ms < self.skip_until_ms {
            return Ok(None);
        }
        let rgba = self.scaler.run(f, f.width(), f.height())?;
        Ok(Some(Frame {
            ms: ms.max(0) as u32,
            width: f.width(),
            height: f.height(),
            rgba: packed_rows(&rgba, 4),
        }))
    }

    /// Goes to `ms`: the next frame is the first at or after it.
    pub fn seek(&mut self, ms: u32) -> Result<(), VideoError> {
        let ts = ms as i64 * 1000; // AV_TIME_BASE (µs)
        self.src.input.seek(ts, ..ts + 1).map_err(VideoError::ffmpeg("seeking"))?;
        self.dec.flush();
        self.eof_sent = false;
        self.skip_until_ms = ms as i64;
        Ok(())
    }
}

fn check_size(w: u32, h: u32) -> Result<(), VideoError> {
    let (long, short) = if w >= h { (w, h) } else { (h, w) };
    if w == 0 || h == 0 || long > MAX_LONG_SIDE || short > MAX_SHORT_SIDE {
        return Err(VideoError::NotCanonical(format!("{w}×{h} pictures")));
    }
    Ok(())
}

/// A canonical clip's sound, down-mixed to mono at 48 kHz (a note is one point of sound), or
/// `None` for a silent clip.
pub fn decode_audio(bytes: &[u8]) -> Result<Option<Pcm>, VideoError> {
    sound(Source::bytes(bytes)?)
}

/// [`decode_audio`] of a clip in a file.
pub fn decode_audio_file(path: &Path) -> Result<Option<Pcm>, VideoError> {
    sound(Source::file(path)?)
}

fn sound(mut src: Source) -> Result<Option<Pcm>, VideoError> {
    let Some(st) = src.input.streams().best(media::Type::Audio) else { return Ok(None) };
    let id = st.parameters().id();
    if id != codec::Id::OPUS {
        return Err(VideoError::NotCanonical(format!("{id:?} sound, not Opus")));
    }
    let index = st.index();
    let mut dec = open_decoder(st.parameters(), "audio", 0)?
        .audio()
        .map_err(VideoError::ffmpeg("audio decoder"))?;
    let limit = (MAX_DURATION_MS as usize / 1000 + 1) * AUDIO_RATE as usize;
    let mono = ChannelLayout::default(1);
    let out_format = Sample::F32(sample::Type::Packed);
    let mut resampler: Option<resampling::Context> = None;
    let mut samples: Vec<f32> = Vec::new();
    let mut f = frame::Audio::empty();
    let mut packet = Packet::empty();
    let mut eof = false;
    while !eof {
        match packet.read(&mut src.input) {
            Ok(()) if packet.stream() == index => {
                dec.send_packet(&packet).map_err(VideoError::ffmpeg("decoding audio"))?
            }
            Ok(()) => continue,
            Err(ffmpeg::Error::Eof) => {
                dec.send_eof().map_err(VideoError::ffmpeg("decoding audio"))?;
                eof = true;
            }
            Err(e) => return Err(VideoError::Corrupt(format!("reading the clip: {e}"))),
        }
        loop {
            match dec.receive_frame(&mut f) {
                Ok(()) => {}
                Err(e) if is_again(&e) => break,
                Err(e) => return Err(VideoError::Corrupt(format!("decoding audio: {e}"))),
            }
            if f.samples() == 0 || f.rate() == 0 {
                continue;
            }
            if f.channel_layout().bits() == 0 {
                f.set_channel_layout(ChannelLayout::default(f.channels() as i32));
            }
            let r = match resampler.as_mut() {
                Some(r) => r,
                None => resampler.insert(
                    resampling::Context::get(
                        f.format(),
                        f.channel_layout(),
                        f.rate(),
                        out_format,
                        mono,
                        AUDIO_RATE,
                    )
                    .map_err(VideoError::ffmpeg("resampling"))?,
                ),
            };
            let mut out = frame::Audio::new(
                out_format,
                f.samples() * AUDIO_RATE as usize / f.rate() as usize + 256,
                mono,
            );
            r.run(&f, &mut out).map_err(VideoError::ffmpeg("resampling"))?;
            samples.extend_from_slice(&out.plane::<f32>(0)[..out.samples()]);
            if samples.len() > limit {
                return Err(VideoError::TooLong(
                    (samples.len() * 1000 / AUDIO_RATE as usize) as u64,
                ));
            }
        }
    }
    Ok(Some(Pcm { rate: AUDIO_RATE, channels: 1, samples }))
}
