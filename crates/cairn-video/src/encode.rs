//! Encoding and muxing: one video stream and, optionally, one audio stream into a container
//! file. Used by the transcoder (VP9 + Opus in WebM) and by the synthetic test clips (any
//! codec and container FFmpeg writes).

use crate::scale::Scaler;
use crate::{VideoError, ffmpeg};
use ffmpeg::format::{Pixel, Sample, sample};
use ffmpeg::util::channel_layout::ChannelLayout;
use ffmpeg::{Dictionary, Packet, Rational, codec, encoder, format, frame};
use std::path::Path;

/// What to encode with.
pub struct Settings<'a> {
    pub container: &'a str,
    pub video_codec: &'static str,
    pub video_options: &'a [(&'a str, &'a str)],
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub video_bits_per_second: usize,
    /// Codec name, channels, sample rate; none for a silent clip.
    pub audio: Option<(&'static str, u16, u32)>,
    pub audio_bits_per_second: usize,
    /// Container tags (only the synthetic clips have any: a canonical clip carries none).
    pub metadata: &'a [(&'a str, &'a str)],
}

/// The milliseconds time base the video encoder works in (frames carry their time in ms).
const MS: Rational = Rational(1, 1000);

pub struct Muxer {
    out: format::context::Output,
    video: encoder::Video,
    video_index: usize,
    scaler: Scaler,
    audio: Option<AudioOut>,
    header_written: bool,
}

struct AudioOut {
    encoder: encoder::Audio,
    index: usize,
    channels: usize,
    rate: u32,
    frame_size: usize,
    /// Interleaved samples waiting for a whole encoder frame.
    fifo: Vec<f32>,
    /// Samples sent so far (the next frame's pts, in 1/rate).
    sent: i64,
}

impl Muxer {
    pub fn create(path: &Path, s: &Settings) -> Result<Self, VideoError> {
        crate::init();
        let mut options = Dictionary::new();
        // No "encoder: Lavf…" tag or other writer-identifying metadata.
        options.set("fflags", "+bitexact");
        let mut out = format::output_as_with(path, s.container, options)
            .map_err(|e| VideoError::Unsupported(format!("container {}: {e}", s.container)))?;
        if !s.metadata.is_empty() {
            let mut tags = Dictionary::new();
            for (k, v) in s.metadata {
                tags.set(k, v);
            }
            out.set_metadata(tags);
        }
        let global_header = out.format().flags().contains(format::Flags::GLOBAL_HEADER);

        let codec = encoder::find_by_name(s.video_codec)
            .ok_or(VideoError::MissingEncoder(s.video_codec))?;
        let mut ctx = codec::context::Context::new_with_codec(codec);
        ctx.set_threading(codec::threading::Config {
            kind: codec::threading::Type::Frame,
            ..Default::default()
        });
        let mut video = ctx.encoder().video().map_err(VideoError::ffmpeg("video encoder"))?;
        video.set_width(s.width);
        video.set_height(s.height);
        video.set_format(Pixel::YUV420P);
        video.set_time_base(MS);
        video.set_frame_rate(Some(Rational(s.fps as i32, 1)));
        video.set_bit_rate(s.video_bits_per_second);
        video.set_max_bit_rate(s.video_bits_per_second * 2);
        video.set_gop(s.fps * 2);
        if global_header {
            video.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        let mut opts = Dictionary::new();
        for (k, v) in s.video_options {
            opts.set(k, v);
        }
        let video =
            video.open_with(opts).map_err(VideoError::ffmpeg("opening the video encoder"))?;
        let video_index = {
            let mut st = out.add_stream(codec).map_err(VideoError::ffmpeg("video stream"))?;
            st.set_parameters(&video);
            st.set_time_base(MS);
            st.index()
        };

        let audio = match s.audio {
            None => None,
            Some((name, channels, rate)) => {
                let codec = encoder::find_by_name(name).ok_or(VideoError::MissingEncoder(name))?;
                let mut enc = codec::context::Context::new_with_codec(codec)
                    .encoder()
                    .audio()
                    .map_err(VideoError::ffmpeg("audio encoder"))?;
                let planar = codec
                    .audio()
                    .ok()
                    .and_then(|a| a.formats())
                    .map(|mut f| !f.any(|f| f == Sample::F32(sample::Type::Packed)))
                    .unwrap_or(false);
                enc.set_format(Sample::F32(if planar {
                    sample::Type::Planar
                } else {
                    sample::Type::Packed
                }));
                enc.set_rate(rate as i32);
                enc.set_channel_layout(ChannelLayout::default(channels as i32));
                enc.set_bit_rate(s.audio_bits_per_second);
                enc.set_time_base(Rational(1, rate as i32));
                if global_header {
                    enc.set_flags(codec::Flags::GLOBAL_HEADER);
                }
                let enc = enc.open().map_err(VideoError::ffmpeg("opening the audio encoder"))?;
                let index = {
                    let mut st =
                        out.add_stream(codec).map_err(VideoError::ffmpeg("audio stream"))?;
                    st.set_parameters(&enc);
                    st.set_time_base(Rational(1, rate as i32));
                    st.index()
                };
                // A codec that takes any frame size says 0: 1024 samples a frame then.
                let frame_size = match enc.frame_size() as usize {
                    0 | 1 => 1024,
                    n => n.min(1 << 16),
                };
                Some(AudioOut {
                    encoder: enc,
                    index,
                    channels: channels as usize,
                    rate,
                    frame_size,
                    fifo: Vec::new(),
                    sent: 0,
                })
            }
        };
        Ok(Muxer {
            out,
            video,
            video_index,
            scaler: Scaler::new(Pixel::YUV420P),
            audio,
            header_written: false,
        })
    }

    fn header(&mut self) -> Result<(), VideoError> {
        if !self.header_written {
            self.out.write_header().map_err(VideoError::ffmpeg("writing the header"))?;
            self.header_written = true;
        }
        Ok(())
    }

    /// One picture (any pixel format and size: it is scaled to the clip's), shown from `ms`.
    pub fn push_video(&mut self, picture: &frame::Video, ms: i64) -> Result<(), VideoError> {
        self.header()?;
        let (w, h) = (self.video.width(), self.video.height());
        let mut scaled = self.scaler.run(picture, w, h)?;
        scaled.set_pts(Some(ms));
        self.video.send_frame(&scaled).map_err(VideoError::ffmpeg("encoding video"))?;
        self.drain_video()
    }

    /// Interleaved samples at the clip's channels and rate.
    pub fn push_audio(&mut self, samples: &[f32]) -> Result<(), VideoError> {
        self.header()?;
        let Some(a) = self.audio.as_mut() else { return Ok(()) };
        a.fifo.extend_from_slice(samples);
        while a.fifo.len() >= a.frame_size * a.channels {
            let chunk: Vec<f32> = a.fifo.drain(..a.frame_size * a.channels).collect();
            a.send(&chunk)?;
            Self::drain_audio(&mut self.out, a)?;
        }
        Ok(())
    }

    fn drain_video(&mut self) -> Result<(), VideoError> {
        let tb = self.out.stream(self.video_index).expect("added").time_base();
        let mut packet = Packet::empty();
        while self.video.receive_packet(&mut packet).is_ok() {
            packet.set_stream(self.video_index);
            packet.rescale_ts(MS, tb);
            packet.write_interleaved(&mut self.out).map_err(VideoError::ffmpeg("writing video"))?;
        }
        Ok(())
    }

    fn drain_audio(out: &mut format::context::Output, a: &mut AudioOut) -> Result<(), VideoError> {
        let tb = out.stream(a.index).expect("added").time_base();
        let mut packet = Packet::empty();
        while a.encoder.receive_packet(&mut packet).is_ok() {
            packet.set_stream(a.index);
            packet.rescale_ts(Rational(1, a.rate as i32), tb);
            packet.write_interleaved(out).map_err(VideoError::ffmpeg("writing audio"))?;
        }
        Ok(())
    }

    /// Flushes the encoders and writes the container's trailer.
    pub fn finish(mut self) -> Result<(), VideoError> {
        self.header()?;
        if let Some(a) = self.audio.as_mut() {
            if !a.fifo.is_empty() {
                let rest = std::mem::take(&mut a.fifo);
                a.send(&rest)?;
            }
            a.encoder.send_eof().map_err(VideoError::ffmpeg("encoding audio"))?;
            Self::drain_audio(&mut self.out, a)?;
        }
        self.video.send_eof().map_err(VideoError::ffmpeg("encoding video"))?;
        self.drain_video()?;
        self.out.write_trailer().map_err(VideoError::ffmpeg("writing the trailer"))?;
        Ok(())
    }
}

impl AudioOut {
    fn send(&mut self, interleaved: &[f32]) -> Result<(), VideoError> {
        let n = interleaved.len() / self.channels;
        let format = self.encoder.format();
        let mut f = frame::Audio::new(format, n, ChannelLayout::default(self.channels as i32));
        f.set_rate(self.rate);
        if f.is_planar() {
            for c in 0..self.channels {
                let plane = f.plane_mut::<f32>(c);
                for (i, s) in plane.iter_mut().enumerate().take(n) {
                    *s = interleaved[i * self.channels + c];
                }
            }
        } else {
            f.plane_mut::<f32>(0)[..interleaved.len()].copy_from_slice(interleaved);
        }
        f.set_pts(Some(self.sent));
        self.sent += n as i64;
        self.encoder.send_frame(&f).map_err(VideoError::ffmpeg("encoding audio"))
    }
}
