//! Preparing an image note: decode under explicit limits, downscale to a display size,
//! re-encode as JPEG (which drops metadata such as location), and make a thumbnail.

use crate::error::ClientError;
use image::{ImageReader, Limits};
use std::io::Cursor;

/// Largest side of the image that is uploaded.
pub const DISPLAY_MAX: u32 = 2048;
/// Largest side of the thumbnail carried inside the note.
pub const THUMB_MAX: u32 = 256;
/// Inputs larger than this are refused before decoding.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;

pub struct PreparedImage {
    pub display: Vec<u8>,
    pub thumbnail: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(16_384);
    l.max_image_height = Some(16_384);
    l.max_alloc = Some(512 * 1024 * 1024);
    l
}

/// Decodes any supported image under limits (a decompression bomb is an error, not an
/// allocation), and returns display and thumbnail JPEGs.
pub fn prepare(bytes: &[u8]) -> Result<PreparedImage, ClientError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ClientError::BadImage(format!(
            "the image is over {} MiB",
            MAX_INPUT_BYTES >> 20
        )));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ClientError::BadImage(format!("unreadable image: {e}")))?;
    reader.limits(limits());
    let img =
        reader.decode().map_err(|e| ClientError::BadImage(format!("unreadable image: {e}")))?;
    // Fit within a box, never enlarging.
    let fit = |max: u32| {
        if img.width() > max || img.height() > max {
            img.thumbnail(max, max).into_rgb8()
        } else {
            img.to_rgb8()
        }
    };
    let display = fit(DISPLAY_MAX);
    let thumb = fit(THUMB_MAX);
    Ok(PreparedImage {
        display: jpeg(&display, 85)?,
        thumbnail: jpeg(&thumb, 70)?,
        width: display.width(),
        height: display.height(),
    })
}

fn jpeg(im: &image::RgbImage, quality: u8) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
        .encode_image(im)
        .map_err(|e| ClientError::BadImage(format!("encoding the image: {e}")))?;
    Ok(out)
}

/// A thumbnail JPEG (within [`THUMB_MAX`]) of a picture given as 8-bit RGB rows: a video's
/// poster.
pub fn thumbnail_of_rgb(width: u32, height: u32, rgb: Vec<u8>) -> Result<Vec<u8>, ClientError> {
    let img = image::RgbImage::from_raw(width, height, rgb)
        .ok_or_else(|| ClientError::BadImage("a picture of the wrong size".into()))?;
    let img = image::DynamicImage::ImageRgb8(img);
    let thumb = if width > THUMB_MAX || height > THUMB_MAX {
        img.thumbnail(THUMB_MAX, THUMB_MAX).into_rgb8()
    } else {
        img.into_rgb8()
    };
    jpeg(&thumb, 70)
}

/// The width and height an image's header gives, read without decoding it (cheap enough
/// for a frame); larger than the decoding limits is an error.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ClientError> {
    let bad = |e: &dyn std::fmt::Display| ClientError::BadImage(format!("unreadable image: {e}"));
    let (w, h) = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| bad(&e))?
        .into_dimensions()
        .map_err(|e| bad(&e))?;
    let l = limits();
    if w == 0
        || h == 0
        || l.max_image_width.is_some_and(|m| w > m)
        || l.max_image_height.is_some_and(|m| h > m)
    {
        return Err(ClientError::BadImage(format!("image of {w} × {h} pixels")));
    }
    Ok((w, h))
}

/// Decodes a JPEG or PNG produced by [`prepare`] (or received in a note) under the same
/// limits.
pub fn decode_rgba(bytes: &[u8]) -> Result<image::RgbaImage, ClientError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ClientError::BadImage(format!("unreadable image: {e}")))?;
    reader.limits(limits());
    Ok(reader
        .decode()
        .map_err(|e| ClientError::BadImage(format!("unreadable image: {e}")))?
        .into_rgba8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dimensions_come_from_the_header_and_a_cut_picture_still_has_them_but_does_not_decode() {
        let img = image::RgbImage::from_pixel(40, 30, image::Rgb([10, 200, 30]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 80)
            .encode_image(&img)
            .unwrap();
        assert_eq!(dimensions(&jpeg).unwrap(), (40, 30));
        assert_eq!(decode_rgba(&jpeg).unwrap().dimensions(), (40, 30));
        // A PNG cut inside its pixel data: the size is known, the pixels are not.
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png).unwrap();
        let idat = png.windows(4).position(|w| w == b"IDAT").unwrap();
        let cut = &png[..idat + 10];
        assert_eq!(dimensions(cut).unwrap(), (40, 30));
        assert!(decode_rgba(cut).is_err());
        assert!(dimensions(b"not a picture").is_err());
    }
}
