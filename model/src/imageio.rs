//! Image bytes to network input: format sniffing, a dimension check before any pixel is decoded
//! (decompression bombs), JPEG/PNG decoding of any colour type with EXIF orientation applied,
//! area-average resizing to the model's square input, and per-channel normalisation to CHW f32.
//! Training, `predict`, `evaluate` and the server all go through here, so they see identical
//! pixels.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

/// Largest accepted width or height, checked from the header before decoding.
pub const MAX_SIDE: u32 = 12_000;
/// Largest accepted pixel count (a 4 MB JPEG of a 40-megapixel photo is plausible; more is not).
pub const MAX_PIXELS: u64 = 50_000_000;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "not a JPEG or PNG image (unrecognised file signature); send image/jpeg or image/png bytes"
    )]
    NotAnImage,
    #[error("image declares {width}x{height} pixels, more than the {MAX_SIDE} px side / {MAX_PIXELS} pixel limit; refused before decoding (resize it first)")]
    TooLarge { width: u32, height: u32 },
    #[error("corrupt or truncated image: {0}")]
    Corrupt(String),
}

/// Per-channel normalisation applied after scaling pixels to [0, 1].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Normalization {
    /// ImageNet statistics: a neutral choice for photos that keeps inputs roughly unit-scale.
    fn default() -> Self {
        Self {
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }
}

/// Decodes JPEG or PNG bytes to 8-bit RGB, upright.
pub fn decode(bytes: &[u8]) -> Result<RgbImage, ImageError> {
    decode_for(bytes, 0)
}

/// [`decode`] for a model input of `size`x`size`: a JPEG whose shorter side is at least four
/// times `size` is decoded at reduced scale in the IDCT (1/2, 1/4 or 1/8, whatever keeps the
/// shorter side at least twice `size`, so the area-average resize still has pixels to
/// average). Training and serving both decode this way, so they see the same pixels.
pub fn decode_for(bytes: &[u8], size: usize) -> Result<RgbImage, ImageError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let is_jpeg = reader.format() == Some(ImageFormat::Jpeg);
    match reader.format() {
        Some(ImageFormat::Jpeg) => check_jpeg_complete(bytes)?,
        Some(ImageFormat::Png) => {}
        _ => return Err(ImageError::NotAnImage),
    }
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| ImageError::Corrupt(e.to_string()))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_SIDE || height > MAX_SIDE || u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImageError::TooLarge { width, height });
    }
    if width == 0 || height == 0 {
        return Err(ImageError::Corrupt("image has zero width or height".into()));
    }
    // Phone photos are often stored sideways with an EXIF tag; a missing or bad tag is not fatal.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let short = width.min(height) as usize;
    if is_jpeg && size > 0 && short >= 4 * size {
        if let Some(small) = decode_jpeg_scaled(bytes, width, height, 2 * size) {
            let mut img = DynamicImage::ImageRgb8(small);
            img.apply_orientation(orientation);
            return Ok(img.into_rgb8());
        }
    }
    let mut img =
        DynamicImage::from_decoder(decoder).map_err(|e| ImageError::Corrupt(e.to_string()))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

/// A JPEG decoded at the smallest IDCT scale whose shorter side is still at least `min_short`;
/// `None` (decode at full size instead) for what this path does not handle (16-bit grey).
fn decode_jpeg_scaled(bytes: &[u8], width: u32, height: u32, min_short: usize) -> Option<RgbImage> {
    let short = width.min(height) as f64;
    let f = short / min_short as f64;
    let (rw, rh) = (
        (f64::from(width) / f).ceil() as u16,
        (f64::from(height) / f).ceil() as u16,
    );
    let mut d = jpeg_decoder::Decoder::new(Cursor::new(bytes));
    let (w, h) = d.scale(rw, rh).ok()?;
    let pixels = d.decode().ok()?;
    let format = d.info()?.pixel_format;
    let rgb: Vec<u8> = match format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&v| [v, v, v]).collect(),
        // Adobe's inverted CMYK, as JPEG files carry it.
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                [0, 1, 2].map(|c| (u16::from(p[c]) * k / 255) as u8)
            })
            .collect(),
        jpeg_decoder::PixelFormat::L16 => return None,
    };
    RgbImage::from_raw(u32::from(w), u32::from(h), rgb)
}

/// The JPEG decoder is lenient and pads a truncated scan with grey, which would classify a
/// half-uploaded photo as if it were whole. A complete JPEG has an end-of-image marker after its
/// last start-of-scan (0xFF bytes inside entropy-coded data are stuffed, so the pair cannot occur
/// there; an EXIF thumbnail's own markers come before the main scan).
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), ImageError> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    match (last_sos, eoi) {
        (Some(s), Some(e)) if e > s => Ok(()),
        _ => Err(ImageError::Corrupt(
            "truncated JPEG: no end-of-image marker after the image data; upload the whole file"
                .into(),
        )),
    }
}

/// Area-average (box filter) resize to `size`×`size`. Averaging over each output pixel's source
/// rectangle avoids the aliasing of point sampling when shrinking photos; the aspect ratio is
/// not kept (the same squash is applied in training and serving).
pub fn resize_square(img: &RgbImage, size: usize) -> Vec<u8> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let bounds = |out: usize, n: usize| -> Vec<(usize, usize)> {
        (0..out)
            .map(|o| {
                let a = o * n / out;
                let b = ((o + 1) * n / out).max(a + 1).min(n);
                (a, b)
            })
            .collect()
    };
    let xs = bounds(size, w);
    let ys = bounds(size, h);
    // Horizontal pass first into a (h × size) buffer of sums, then vertical.
    let mut rows = vec![0u32; h * size * 3];
    for y in 0..h {
        let line = &src[y * w * 3..(y + 1) * w * 3];
        for (ox, &(a, b)) in xs.iter().enumerate() {
            let mut acc = [0u32; 3];
            for x in a..b {
                for c in 0..3 {
                    acc[c] += u32::from(line[x * 3 + c]);
                }
            }
            let n = (b - a) as u32;
            for c in 0..3 {
                rows[(y * size + ox) * 3 + c] = (acc[c] * 16 + n / 2) / n;
            }
        }
    }
    let mut out = vec![0u8; size * size * 3];
    for (oy, &(a, b)) in ys.iter().enumerate() {
        let n = (b - a) as u32;
        for ox in 0..size {
            for c in 0..3 {
                let mut acc = 0u32;
                for y in a..b {
                    acc += rows[(y * size + ox) * 3 + c];
                }
                // Values carry 4 extra fractional bits from the first pass.
                out[(oy * size + ox) * 3 + c] = ((acc + n * 8) / (n * 16)).min(255) as u8;
            }
        }
    }
    out
}

/// Interleaved RGB8 (`size`×`size`) to normalised planar CHW f32.
pub fn to_tensor(rgb: &[u8], size: usize, norm: &Normalization) -> Vec<f32> {
    let plane = size * size;
    let mut out = vec![0.0f32; 3 * plane];
    let scale: [f32; 3] = std::array::from_fn(|c| 1.0 / (255.0 * norm.std[c]));
    let shift: [f32; 3] = std::array::from_fn(|c| norm.mean[c] / norm.std[c]);
    for (i, px) in rgb.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * plane + i] = f32::from(px[c]) * scale[c] - shift[c];
        }
    }
    out
}

/// Bytes to model input in one call.
pub fn prepare(bytes: &[u8], size: usize, norm: &Normalization) -> Result<Vec<f32>, ImageError> {
    let img = decode_for(bytes, size)?;
    Ok(to_tensor(&resize_square(&img, size), size, norm))
}

/// Encodes RGB8 as JPEG (synthetic data, tests, benchmarks).
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality);
    img.write_with_encoder(enc)?;
    Ok(out)
}

/// Encodes RGB8 as PNG (tests).
pub fn encode_png(img: &RgbImage) -> Result<Vec<u8>, image::ImageError> {
    let mut out = Vec::new();
    img.write_with_encoder(image::codecs::png::PngEncoder::new(&mut out))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 128]))
    }

    #[test]
    fn decodes_jpeg_and_png_and_rejects_other_bytes() {
        let img = gradient(40, 30);
        let png = encode_png(&img).unwrap();
        assert_eq!(decode(&png).unwrap(), img);
        let jpg = encode_jpeg(&img, 95).unwrap();
        assert_eq!(decode(&jpg).unwrap().dimensions(), (40, 30));
        assert!(matches!(
            decode(b"hello world"),
            Err(ImageError::NotAnImage)
        ));
        assert!(matches!(
            decode(&jpg[..jpg.len() / 2]),
            Err(ImageError::Corrupt(_))
        ));
    }

    #[test]
    fn resize_averages_areas_and_keeps_flat_colours() {
        let flat = RgbImage::from_pixel(37, 91, image::Rgb([10, 200, 77]));
        let out = resize_square(&flat, 16);
        assert!(out.chunks_exact(3).all(|p| p == [10, 200, 77]));
        // 2x2 checkerboard of 0/255 averaged down to one pixel is mid-grey.
        let checker = RgbImage::from_fn(2, 2, |x, y| {
            let v = if (x + y) % 2 == 0 { 0 } else { 255 };
            image::Rgb([v, v, v])
        });
        assert_eq!(resize_square(&checker, 1), vec![128, 128, 128]);
        // Upscaling repeats pixels.
        assert_eq!(resize_square(&checker, 4).len(), 48);
    }

    /// A JPEG stored sideways with EXIF orientation 6 ("rotate 90° clockwise") comes out upright.
    #[test]
    fn exif_orientation_is_applied() {
        let img = gradient(40, 30);
        let jpg = encode_jpeg(&img, 95).unwrap();
        // APP1 "Exif": little-endian TIFF header, one IFD entry 0x0112 (SHORT, 1) = 6.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0".to_vec();
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let len = (app1.len() + 2) as u16;
        let mut with_exif = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_exif.extend_from_slice(&len.to_be_bytes());
        with_exif.extend_from_slice(&app1);
        with_exif.extend_from_slice(&jpg[2..]);
        assert_eq!(decode(&jpg).unwrap().dimensions(), (40, 30));
        let upright = decode(&with_exif).unwrap();
        assert_eq!(upright.dimensions(), (30, 40));
        // Rotating clockwise moves the original top-left pixel to the top-right corner.
        let orig = img.get_pixel(0, 0).0;
        let moved = upright.get_pixel(29, 0).0;
        assert!(
            orig.iter().zip(moved).all(|(a, b)| a.abs_diff(b) < 12),
            "{orig:?} vs {moved:?}"
        );
    }

    #[test]
    fn grey_and_rgba_pngs_become_rgb() {
        let grey = image::GrayImage::from_pixel(5, 5, image::Luma([9]));
        let mut bytes = Vec::new();
        grey.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
            .unwrap();
        assert_eq!(decode(&bytes).unwrap().get_pixel(2, 2).0, [9, 9, 9]);
        let rgba = image::RgbaImage::from_pixel(3, 4, image::Rgba([1, 2, 3, 255]));
        let mut bytes = Vec::new();
        rgba.write_with_encoder(image::codecs::png::PngEncoder::new(&mut bytes))
            .unwrap();
        assert_eq!(decode(&bytes).unwrap().get_pixel(1, 1).0, [1, 2, 3]);
    }

    /// A large JPEG decodes at reduced scale for a small input, and the model sees nearly the
    /// same pixels as from the full decode (JPEG's own scaled IDCT against an area average).
    #[test]
    fn large_jpegs_decode_at_reduced_scale_to_nearly_the_same_input() {
        let mut rng = crate::rng::Rng::new(4);
        let img = crate::synth::render_sized(&mut rng, true, 1024, 768);
        let jpg = encode_jpeg(&img, 90).unwrap();
        let small = decode_for(&jpg, 64).unwrap();
        assert!(
            small.width() < 1024 && small.height() >= 128,
            "{:?}",
            small.dimensions()
        );
        assert_eq!(decode(&jpg).unwrap().dimensions(), (1024, 768));
        let a = resize_square(&small, 64);
        let b = resize_square(&decode(&jpg).unwrap(), 64);
        let mean_diff = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(x.abs_diff(*y)))
            .sum::<f64>()
            / a.len() as f64;
        assert!(mean_diff < 2.0, "mean difference {mean_diff} levels");
        // Small images and PNGs take the full decode.
        let little =
            encode_jpeg(&crate::synth::render_sized(&mut rng, false, 200, 200), 90).unwrap();
        assert_eq!(decode_for(&little, 64).unwrap().dimensions(), (200, 200));
    }
}
