//! Playing a canonical clip: frames as RGBA with their times, seeking, and its sound.
//!
//! A clip is opened from a file (the app plays from the client's media cache), from a file
//! still being written (a clip that plays while it downloads: FFmpeg reads it through a pipe
//! that a thread fills as the file grows), or from bytes in memory, which FFmpeg reads
//! through a `memfd` (an anonymous file that lives in memory and goes with its last
//! descriptor), so those bytes reach no disk.

use crate::scale::{Scaler, packed_rows};
use crate::transcode::{is_again, open_decoder, to_ms};
use crate::{
    AUDIO_RATE, MAX_DURATION_MS, MAX_FPS, MAX_LONG_SIDE, MAX_SHORT_SIDE, VideoError, ffmpeg,
};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::software::resampling;
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Packet, Rational, codec, decoder, format, frame, media};
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    /// A file FFmpeg reads through `/proc/self/fd` (a memfd holding a clip from memory, or a
    /// clip that has all arrived), kept open while it does.
    _held: Option<File>,
    /// A clip still arriving, which FFmpeg reads from a pipe.
    feed: Option<Feed>,
    input: format::context::Input,
}

impl Source {
    /// A clip in a file; anything but WebM is refused.
    fn file(path: &Path) -> Result<Source, VideoError> {
        Source::open(path, ffmpeg::Dictionary::new())
    }

    fn open(path: &Path, options: ffmpeg::Dictionary) -> Result<Source, VideoError> {
        crate::init();
        let input = format::input_with_dictionary(path, options)
            .map_err(|e| VideoError::Unreadable(e.to_string()))?;
        let name = input.format().name().to_owned();
        if !name.split(',').any(|n| n == "matroska" || n == "webm") {
            return Err(VideoError::NotCanonical(format!("a {name} file, not WebM")));
        }
        Ok(Source { _held: None, feed: None, input })
    }

    /// A clip in an open file, read through its descriptor.
    fn held(file: File) -> Result<Source, VideoError> {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let source = Source::file(Path::new(&path))?;
        Ok(Source { _held: Some(file), ..source })
    }

    /// A clip in memory, read by FFmpeg through a memfd.
    fn bytes(bytes: &[u8]) -> Result<Source, VideoError> {
        let fd = rustix::fs::memfd_create("cairn-clip", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(std::io::Error::from)?;
        let mut file = File::from(fd);
        file.write_all(bytes)?;
        Source::held(file)
    }

    /// A clip whose file is still growing toward `total` bytes, read as a stream (from its
    /// start; FFmpeg cannot seek in it until it is whole).
    fn arriving(file: File, total: u64) -> Result<Source, VideoError> {
        let feed = Feed::start(file, total)?;
        // Opening reads ahead to learn about the streams; by default until it has timed 40
        // pictures (to guess a frame rate the player does not use), which may be more than
        // has arrived. The headers and a first picture and sound are enough.
        let mut options = ffmpeg::Dictionary::new();
        options.set("fpsprobesize", "0");
        options.set("analyzeduration", "200000");
        let path = format!("pipe:{}", feed.reader.as_raw_fd());
        let source = Source::open(Path::new(&path), options);
        // The feed goes with the source; if the source could not open, the feed's thread
        // stops when its end of the pipe is gone.
        Ok(Source { feed: Some(feed), ..source? })
    }
}

/// How long a growing clip may stay still before it counts as cut off.
const STALL: Duration = Duration::from_secs(30);

/// Copies a growing file into a pipe on a thread of its own, waiting at the end of what is
/// there until `total` bytes have come (the client appends each chunk as it opens it).
struct Feed {
    file: File,
    total: u64,
    /// FFmpeg's end (`pipe:N` reads this descriptor and leaves it open).
    reader: std::io::PipeReader,
    /// Bytes given to FFmpeg so far; `u64::MAX` when the file stopped growing for [`STALL`].
    copied: Arc<AtomicU64>,
    /// The thread stops when this goes.
    _alive: Arc<()>,
}

impl Feed {
    fn start(file: File, total: u64) -> Result<Feed, VideoError> {
        let (reader, mut writer) = std::io::pipe()?;
        let copied = Arc::new(AtomicU64::new(0));
        let alive = Arc::new(());
        let (from, progress, watch) = (file.try_clone()?, copied.clone(), Arc::downgrade(&alive));
        std::thread::Builder::new().name("cairn-clip-feed".into()).spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            let (mut at, mut still) = (0u64, Duration::ZERO);
            while at < total && watch.strong_count() > 0 {
                let want = buf.len().min((total - at) as usize);
                match from.read_at(&mut buf[..want], at) {
                    Ok(0) if still >= STALL => {
                        progress.store(u64::MAX, Ordering::Release);
                        return;
                    }
                    Ok(0) => {
                        let pause = Duration::from_millis(10);
                        std::thread::sleep(pause);
                        still += pause;
                    }
                    Ok(n) => {
                        // Fails when FFmpeg's end is closed: the clip is no longer played.
                        if writer.write_all(&buf[..n]).is_err() {
                            return;
                        }
                        at += n as u64;
                        still = Duration::ZERO;
                        progress.store(at, Ordering::Release);
                    }
                    Err(_) => {
                        progress.store(u64::MAX, Ordering::Release);
                        return;
                    }
                }
            }
        })?;
        Ok(Feed { file, total, reader, copied, _alive: alive })
    }

    /// Whether the file holds the whole clip (it can be read as a file, with seeking).
    fn whole(&self) -> bool {
        self.file.metadata().is_ok_and(|m| m.len() >= self.total)
    }

    /// Why the stream ended before the clip did, if it did.
    fn cut_off(&self) -> Option<VideoError> {
        // The thread ends the stream at `total` bytes, or when the file stopped growing.
        (self.copied.load(Ordering::Acquire) == u64::MAX)
            .then(|| VideoError::Corrupt("the clip stopped arriving".into()))
    }
}

/// Decodes a canonical clip in order: its pictures, each converted to RGBA, and its sound
/// (read in the same pass; [`Decoder::take_sound`] gives what has been decoded).
pub struct Decoder {
    src: Source,
    index: usize,
    tb: Rational,
    dec: decoder::Video,
    sound: Option<Sound>,
    scaler: Scaler,
    /// The stream's first timestamp (a clip's time 0).
    first_ts: i64,
    /// Frames before this time are decoded and dropped (after a seek).
    skip_until_ms: i64,
    /// Pictures decoded since the start or the last seek, and the time of the first.
    pictures: u64,
    first_ms: Option<i64>,
    eof_sent: bool,
    duration_ms: u32,
    width: u32,
    height: u32,
}

impl Decoder {
    /// Opens a clip, refusing anything that is not VP9 (and Opus) in WebM within the limits
    /// (a clip from the network is hostile until it decodes).
    pub fn new(bytes: &[u8]) -> Result<Self, VideoError> {
        Self::from_source(Source::bytes(bytes)?)
    }

    /// Opens a clip in a file, as [`Decoder::new`].
    pub fn open(path: &Path) -> Result<Self, VideoError> {
        Self::from_source(Source::file(path)?)
    }

    /// Opens a clip whose file is still being written, up to `total` bytes (the size the
    /// note gives): it plays as it arrives. Seeking before it is whole starts again from the
    /// beginning and decodes up to the place; once it is whole, seeking is direct.
    pub fn open_arriving(file: File, total: u64) -> Result<Self, VideoError> {
        if file.metadata()?.len() >= total {
            return Self::from_source(Source::held(file)?);
        }
        Self::from_source(Source::arriving(file, total)?)
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
        let sound = Sound::open(&src.input)?;
        Ok(Decoder {
            src,
            index,
            tb,
            dec,
            sound,
            scaler: Scaler::new(Pixel::RGBA),
            first_ts,
            skip_until_ms: 0,
            pictures: 0,
            first_ms: None,
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

    /// Whether the clip has sound.
    pub fn has_sound(&self) -> bool {
        self.sound.is_some()
    }

    /// The sound decoded so far and not yet taken: mono at [`AUDIO_RATE`], following on from
    /// the last take (or from the place of the last seek).
    pub fn take_sound(&mut self) -> Vec<f32> {
        self.sound.as_mut().map(Sound::take).unwrap_or_default()
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
                Ok(()) => {
                    if let Some(sound) = self.sound.as_mut().filter(|s| s.index == packet.stream())
                    {
                        sound.send(&packet)?;
                    }
                }
                Err(ffmpeg::Error::Eof) => {
                    if let Some(e) = self.src.feed.as_ref().and_then(Feed::cut_off) {
                        return Err(e);
                    }
                    self.dec.send_eof().map_err(VideoError::ffmpeg("decoding video"))?;
                    if let Some(sound) = self.sound.as_mut() {
                        sound.finish()?;
                    }
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
        // A canonical clip has at most MAX_FPS pictures a second; twice that (and a second's
        // worth more) is a hostile clip making the player decode without end.
        self.pictures += 1;
        let span = (ms - *self.first_ms.get_or_insert(ms)).max(0) as u64;
        if self.pictures > (span / 1000 + 1) * 2 * u64::from(MAX_FPS) {
            return Err(VideoError::Corrupt(format!(
                "{} pictures in {:.1} s; a clip has at most {MAX_FPS} a second",
                self.pictures,
                span as f64 / 1000.0
            )));
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

    /// Goes to `ms`: the next frame is the first at or after it, and the sound starts there.
    pub fn seek(&mut self, ms: u32) -> Result<(), VideoError> {
        let arriving = match &self.src.feed {
            Some(feed) => Some((feed.file.try_clone()?, feed.total, feed.whole())),
            None => None,
        };
        if let Some((file, total, whole)) = arriving {
            if !whole {
                // Not all here: from the start again, dropping what lies before `ms`.
                *self = Decoder::from_source(Source::arriving(file, total)?)?;
                self.skip_until_ms = i64::from(ms);
                if let Some(sound) = self.sound.as_mut() {
                    sound.skip_until_ms = i64::from(ms);
                }
                return Ok(());
            }
            // All here: read it as a file from now on, which seeks.
            *self = Decoder::from_source(Source::held(file)?)?;
        }
        let ts = ms as i64 * 1000; // AV_TIME_BASE (µs)
        self.src.input.seek(ts, ..ts + 1).map_err(VideoError::ffmpeg("seeking"))?;
        self.dec.flush();
        if let Some(sound) = self.sound.as_mut() {
            sound.reset(ms);
        }
        self.eof_sent = false;
        self.skip_until_ms = ms as i64;
        self.pictures = 0;
        self.first_ms = None;
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
    whole_sound(Source::bytes(bytes)?)
}

/// [`decode_audio`] of a clip in a file.
pub fn decode_audio_file(path: &Path) -> Result<Option<Pcm>, VideoError> {
    whole_sound(Source::file(path)?)
}

fn whole_sound(mut src: Source) -> Result<Option<Pcm>, VideoError> {
    let Some(mut sound) = Sound::open(&src.input)? else { return Ok(None) };
    let mut packet = Packet::empty();
    loop {
        match packet.read(&mut src.input) {
            Ok(()) if packet.stream() == sound.index => sound.send(&packet)?,
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => {
                sound.finish()?;
                break;
            }
            Err(e) => return Err(VideoError::Corrupt(format!("reading the clip: {e}"))),
        }
    }
    Ok(Some(Pcm { rate: AUDIO_RATE, channels: 1, samples: sound.take() }))
}

/// A clip's sound track being decoded, down-mixed to mono and resampled to 48 kHz.
struct Sound {
    index: usize,
    tb: Rational,
    first_ts: i64,
    dec: decoder::Audio,
    resampler: Option<resampling::Context>,
    /// Decoded and not yet taken.
    samples: Vec<f32>,
    /// Samples decoded since the start or the last seek (bounded by the longest clip).
    decoded: usize,
    /// Sound before this time is decoded and dropped (after a seek).
    skip_until_ms: i64,
}

impl Sound {
    /// The clip's sound track, or `None` when it has none; anything but Opus is refused.
    fn open(input: &format::context::Input) -> Result<Option<Sound>, VideoError> {
        let Some(st) = input.streams().best(media::Type::Audio) else { return Ok(None) };
        let id = st.parameters().id();
        if id != codec::Id::OPUS {
            return Err(VideoError::NotCanonical(format!("{id:?} sound, not Opus")));
        }
        let dec = open_decoder(st.parameters(), "audio", 0)?
            .audio()
            .map_err(VideoError::ffmpeg("audio decoder"))?;
        let first_ts =
            if st.start_time() == ffmpeg::ffi::AV_NOPTS_VALUE { 0 } else { st.start_time() };
        Ok(Some(Sound {
            index: st.index(),
            tb: st.time_base(),
            first_ts,
            dec,
            resampler: None,
            samples: Vec::new(),
            decoded: 0,
            skip_until_ms: 0,
        }))
    }

    fn send(&mut self, packet: &Packet) -> Result<(), VideoError> {
        self.dec.send_packet(packet).map_err(VideoError::ffmpeg("decoding audio"))?;
        self.receive()
    }

    fn finish(&mut self) -> Result<(), VideoError> {
        self.dec.send_eof().map_err(VideoError::ffmpeg("decoding audio"))?;
        self.receive()
    }

    fn take(&mut self) -> Vec<f32> {
        std::mem::take(&mut self.samples)
    }

    /// After a seek: what was decoded goes, and the sound starts again at `ms`.
    fn reset(&mut self, ms: u32) {
        self.dec.flush();
        self.resampler = None;
        self.samples.clear();
        self.decoded = 0;
        self.skip_until_ms = i64::from(ms);
    }

    fn receive(&mut self) -> Result<(), VideoError> {
        let limit = (MAX_DURATION_MS as usize / 1000 + 1) * AUDIO_RATE as usize;
        let mono = ChannelLayout::default(1);
        let out_format = Sample::F32(sample::Type::Packed);
        let mut f = frame::Audio::empty();
        loop {
            match self.dec.receive_frame(&mut f) {
                Ok(()) => {}
                Err(e) if is_again(&e) || e == ffmpeg::Error::Eof => return Ok(()),
                Err(e) => return Err(VideoError::Corrupt(format!("decoding audio: {e}"))),
            }
            if f.samples() == 0 || f.rate() == 0 {
                continue;
            }
            if f.channel_layout().bits() == 0 {
                f.set_channel_layout(ChannelLayout::default(f.channels() as i32));
            }
            let r = match self.resampler.as_mut() {
                Some(r) => r,
                None => self.resampler.insert(
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
            let mut got = &out.plane::<f32>(0)[..out.samples()];
            if self.skip_until_ms > 0 {
                // Drop what lies before the place sought.
                let start = to_ms(f.timestamp().or(f.pts()).unwrap_or(0) - self.first_ts, self.tb);
                let before =
                    (self.skip_until_ms - start).max(0) as usize * AUDIO_RATE as usize / 1000;
                got = &got[before.min(got.len())..];
                if !got.is_empty() {
                    self.skip_until_ms = 0;
                }
            }
            self.samples.extend_from_slice(got);
            self.decoded += got.len();
            if self.decoded > limit {
                return Err(VideoError::TooLong(
                    (self.decoded * 1000 / AUDIO_RATE as usize) as u64,
                ));
            }
        }
    }
}
