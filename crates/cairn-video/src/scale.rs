//! Pictures converted between pixel formats and sizes by FFmpeg's scaler, kept while the
//! source's format and the sizes stay the same.

use crate::{VideoError, ffmpeg};
use ffmpeg::format::Pixel;
use ffmpeg::frame;
use ffmpeg::software::scaling;

type Key = (Pixel, u32, u32, u32, u32);

pub(crate) struct Scaler {
    to: Pixel,
    cached: Option<(Key, scaling::Context)>,
}

impl Scaler {
    pub(crate) fn new(to: Pixel) -> Self {
        Scaler { to, cached: None }
    }

    /// `f` as a `w`×`h` picture in this scaler's pixel format.
    pub(crate) fn run(
        &mut self,
        f: &frame::Video,
        w: u32,
        h: u32,
    ) -> Result<frame::Video, VideoError> {
        let key = (f.format(), f.width(), f.height(), w, h);
        let ctx = match &mut self.cached {
            Some((k, ctx)) if *k == key => ctx,
            cached => {
                let ctx = scaling::Context::get(
                    key.0,
                    key.1,
                    key.2,
                    self.to,
                    w,
                    h,
                    scaling::Flags::BILINEAR,
                )
                .map_err(VideoError::ffmpeg("scaling"))?;
                &mut cached.insert((key, ctx)).1
            }
        };
        let mut out = frame::Video::new(self.to, w, h);
        ctx.run(f, &mut out).map_err(VideoError::ffmpeg("scaling"))?;
        Ok(out)
    }
}

/// A packed picture's rows (`bytes_per_pixel` each) without the row padding FFmpeg adds.
pub(crate) fn packed_rows(f: &frame::Video, bytes_per_pixel: usize) -> Vec<u8> {
    let (w, h) = (f.width() as usize, f.height() as usize);
    let stride = f.stride(0);
    let data = f.data(0);
    let mut out = Vec::with_capacity(w * h * bytes_per_pixel);
    for row in 0..h {
        out.extend_from_slice(&data[row * stride..row * stride + w * bytes_per_pixel]);
    }
    out
}
