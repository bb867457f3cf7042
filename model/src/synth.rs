//! The synthetic two-class data set (`synth`): a real, shape-only learning problem for tests and
//! the local demo. Both classes draw background and object colours from the same palette with
//! the same brightness, noise and object-area distributions, so per-channel means and colour
//! histograms carry (almost) no signal; the class is in the geometry. Organic objects are
//! irregular curved blobs (optionally with wavy blotches), Recyclable ones straight-edged
//! rectangles, bottles and cans (optionally with straight stripes), at random position, scale
//! and rotation. Files are written in the Kaggle `TRAIN/` + `TEST/` layout with a
//! `SYNTHETIC.json` marker that the trainer records in the data set fingerprint.

use std::path::Path;

use image::{Rgb, RgbImage};
use serde::Serialize;

use crate::imageio::encode_jpeg;
use crate::rng::Rng;

/// Name of the marker file that labels a directory tree as synthetic.
pub const MARKER: &str = "SYNTHETIC.json";

/// Shared by both classes on purpose.
const PALETTE: [[f32; 3]; 8] = [
    [200.0, 60.0, 50.0],
    [60.0, 160.0, 70.0],
    [50.0, 90.0, 190.0],
    [210.0, 190.0, 70.0],
    [140.0, 90.0, 50.0],
    [190.0, 190.0, 190.0],
    [90.0, 90.0, 100.0],
    [160.0, 80.0, 170.0],
];

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("failed to write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to encode a synthetic JPEG: {0}")]
    Encode(#[from] image::ImageError),
    #[error("--count must be at least 10 (got {0}) so that both splits hold both classes")]
    Count(usize),
}

#[derive(Debug, Serialize)]
pub struct SynthSummary {
    pub synthetic: bool,
    pub generator: String,
    pub seed: u64,
    pub count: usize,
    pub train: usize,
    pub test: usize,
    pub organic: usize,
    pub recyclable: usize,
}

fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// A palette colour at a random brightness, different from `not` and at least 35 luma levels
/// away from `contrast_with` (an object must be visible against what it is drawn on).
fn pick_colour(
    rng: &mut Rng,
    not: Option<usize>,
    contrast_with: Option<[f32; 3]>,
) -> (usize, [f32; 3]) {
    loop {
        let i = rng.below(PALETTE.len());
        let b = rng.range(0.75, 1.15);
        let c = PALETTE[i];
        let c = [c[0] * b, c[1] * b, c[2] * b];
        let visible = contrast_with.is_none_or(|o| (luma(o) - luma(c)).abs() >= 35.0);
        if Some(i) != not && visible {
            return (i, c);
        }
    }
}

/// One object's geometry in its own (rotated, centred) frame.
enum Shape {
    Blob {
        r0: f32,
        stretch: f32,
        harmonics: [(f32, f32, f32); 3],
    },
    Rect {
        hw: f32,
        hh: f32,
    },
    Bottle {
        hw: f32,
        hh: f32,
    },
}

impl Shape {
    fn contains(&self, u: f32, v: f32) -> bool {
        match *self {
            Shape::Blob {
                r0,
                stretch,
                harmonics,
            } => {
                let u = u / stretch;
                let r = (u * u + v * v).sqrt();
                let a = v.atan2(u);
                let wobble: f32 = harmonics
                    .iter()
                    .map(|&(k, amp, ph)| amp * (k * a + ph).sin())
                    .sum();
                r < r0 * (1.0 + wobble)
            }
            Shape::Rect { hw, hh } => u.abs() < hw && v.abs() < hh,
            Shape::Bottle { hw, hh } => {
                let shoulder = hh * 0.35;
                (u.abs() < hw && v > -hh && v < shoulder)
                    || (u.abs() < hw * 0.4 && v >= shoulder && v < hh)
            }
        }
    }
}

/// Renders one image of class `recyclable` (false = Organic).
pub fn render(rng: &mut Rng, recyclable: bool) -> RgbImage {
    let w = 72 + rng.below(57) as u32;
    let h = 72 + rng.below(57) as u32;
    render_sized(rng, recyclable, w, h)
}

/// Renders one image of the given size (benchmarks use 256x256).
pub fn render_sized(rng: &mut Rng, recyclable: bool, w: u32, h: u32) -> RgbImage {
    let m = w.min(h) as f32;
    let (bg_i, bg) = pick_colour(rng, None, None);
    // Low-frequency shading, identical in distribution for both classes.
    let (gx, gy) = (rng.range(-0.25, 0.25), rng.range(-0.25, 0.25));
    let mut img = RgbImage::new(w, h);
    let mut buf: Vec<[f32; 3]> = (0..w * h)
        .map(|i| {
            let (x, y) = (
                (i % w) as f32 / w as f32 - 0.5,
                (i / w) as f32 / h as f32 - 0.5,
            );
            let s = 1.0 + gx * x + gy * y;
            [bg[0] * s, bg[1] * s, bg[2] * s]
        })
        .collect();
    let objects = 1 + rng.below(2);
    for _ in 0..objects {
        let (fg_i, fg) = pick_colour(rng, Some(bg_i), Some(bg));
        let textured = true;
        let (_, fg2) = pick_colour(rng, Some(fg_i), Some(fg));
        let scale = if objects == 2 { 0.8 } else { 1.0 };
        let shape = if recyclable {
            let hw = rng.range(0.12, 0.32) * m * scale;
            let hh = rng.range(0.12, 0.32) * m * scale;
            if rng.bool() {
                Shape::Rect { hw, hh }
            } else {
                Shape::Bottle {
                    hw: hw * 0.8,
                    hh: hh * 1.25,
                }
            }
        } else {
            let mut harmonics = [(0.0, 0.0, 0.0); 3];
            for (slot, k) in harmonics.iter_mut().zip([2.0, 3.0, 5.0]) {
                *slot = (
                    k,
                    rng.range(0.04, 0.2),
                    rng.range(0.0, std::f32::consts::TAU),
                );
            }
            Shape::Blob {
                r0: rng.range(0.16, 0.32) * m * scale,
                stretch: rng.range(0.6, 1.0),
                harmonics,
            }
        };
        let (cx, cy) = (
            rng.range(0.3, 0.7) * w as f32,
            rng.range(0.3, 0.7) * h as f32,
        );
        let theta = rng.range(0.0, std::f32::consts::PI);
        let (sn, cs) = theta.sin_cos();
        // Texture: straight stripes for Recyclable, wavy blotches for Organic, each covering
        // about 45% of the object with the second colour so that colour proportions match.
        let period = rng.range(0.08, 0.16) * m;
        let waves: Vec<(f32, f32, f32)> = (0..3)
            .map(|_| {
                let a = rng.range(0.0, std::f32::consts::TAU);
                (a.cos() / period, a.sin() / period, rng.range(0.0, 6.3))
            })
            .collect();
        for y in 0..h {
            for x in 0..w {
                let (dx, dy) = (x as f32 - cx, y as f32 - cy);
                let (u, v) = (dx * cs + dy * sn, -dx * sn + dy * cs);
                if !shape.contains(u, v) {
                    continue;
                }
                let second = textured
                    && if recyclable {
                        (u / period).rem_euclid(1.0) < 0.45
                    } else {
                        waves
                            .iter()
                            .map(|&(a, b, p)| (a * u + b * v + p).sin())
                            .sum::<f32>()
                            > 0.15
                    };
                buf[(y * w + x) as usize] = if second { fg2 } else { fg };
            }
        }
    }
    for (px, v) in img.pixels_mut().zip(&buf) {
        let n = rng.normal() * 8.0;
        *px = Rgb(std::array::from_fn(|c| (v[c] + n).clamp(0.0, 255.0) as u8));
    }
    img
}

/// How photo-like the images are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Style {
    /// 72 to 128 px JPEGs under even light: the tests' quick set.
    #[default]
    Plain,
    /// What real photos vary in: 180 to 320 px (one in ten 400 to 800 px, not square),
    /// uneven light (a brightness ramp across the picture), a colour cast, one in ten grey,
    /// one in five saved as PNG.
    Realistic,
}

/// The realistic style's changes to a rendered image (see [`Style::Realistic`]).
fn photo_like(rng: &mut Rng, img: &mut RgbImage) {
    let (w, h) = img.dimensions();
    let angle = rng.f32() * std::f32::consts::TAU;
    let (dx, dy) = (angle.cos(), angle.sin());
    let (lo, hi) = (0.55 + 0.3 * rng.f32(), 1.05 + 0.3 * rng.f32());
    let cast = [
        0.85 + 0.3 * rng.f32(),
        0.85 + 0.3 * rng.f32(),
        0.85 + 0.3 * rng.f32(),
    ];
    let grey = rng.f32() < 0.1;
    let diag = ((w * w + h * h) as f32).sqrt().max(1.0);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let t = (((x as f32 - w as f32 / 2.0) * dx + (y as f32 - h as f32 / 2.0) * dy) / diag)
            .clamp(-0.5, 0.5)
            + 0.5;
        let light = lo + (hi - lo) * t;
        let mut v = [0.0f32; 3];
        for c in 0..3 {
            v[c] = f32::from(px[c]) * light * cast[c];
        }
        if grey {
            let l = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2];
            v = [l; 3];
        }
        for c in 0..3 {
            px[c] = v[c].clamp(0.0, 255.0) as u8;
        }
    }
}

/// Writes `count` images (about 56% Organic, 80% in `TRAIN/`) under `out` in the Kaggle layout.
pub fn write_dataset(out: &Path, count: usize, seed: u64) -> Result<SynthSummary, SynthError> {
    write_dataset_styled(out, count, seed, Style::Plain)
}

/// [`write_dataset`] in a chosen [`Style`].
pub fn write_dataset_styled(
    out: &Path,
    count: usize,
    seed: u64,
    style: Style,
) -> Result<SynthSummary, SynthError> {
    if count < 10 {
        return Err(SynthError::Count(count));
    }
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| SynthError::Io { path, source }
    };
    let mut rng = Rng::new(seed);
    let n_organic = (count * 56).div_ceil(100);
    let mut labels: Vec<bool> = (0..count).map(|i| i >= n_organic).collect();
    rng.shuffle(&mut labels);
    let n_test = count / 5;
    let mut summary = SynthSummary {
        synthetic: true,
        generator: match style {
            Style::Plain => "waste-model synth v1 (shape-only, shared palette)",
            Style::Realistic => "waste-model synth v1 realistic (shape-only, shared palette, photo-like sizes, light, grey, PNG)",
        }
        .into(),
        seed,
        count,
        train: count - n_test,
        test: n_test,
        organic: n_organic,
        recyclable: count - n_organic,
    };
    for split in ["TRAIN", "TEST"] {
        for class in ["O", "R"] {
            let dir = out.join(split).join(class);
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
    }
    for (i, &recyclable) in labels.iter().enumerate() {
        let split = if i < count - n_test { "TRAIN" } else { "TEST" };
        let class = if recyclable { "R" } else { "O" };
        let (bytes, ext) = match style {
            Style::Plain => (encode_jpeg(&render(&mut rng, recyclable), 90)?, "jpg"),
            Style::Realistic => {
                let (w, h) = if rng.f32() < 0.1 {
                    (400 + rng.below(401) as u32, 300 + rng.below(301) as u32)
                } else {
                    let side = 180 + rng.below(141) as u32;
                    (side, side)
                };
                let mut img = render_sized(&mut rng, recyclable, w, h);
                photo_like(&mut rng, &mut img);
                if rng.f32() < 0.2 {
                    (crate::imageio::encode_png(&img)?, "png")
                } else {
                    (encode_jpeg(&img, 70 + rng.below(26) as u8)?, "jpg")
                }
            }
        };
        let path = out
            .join(split)
            .join(class)
            .join(format!("{class}_{i:06}.{ext}"));
        std::fs::write(&path, bytes).map_err(io(&path))?;
    }
    summary.synthetic = true;
    let marker = serde_json::to_vec_pretty(&summary).unwrap_or_default();
    for dir in [out.to_path_buf(), out.join("TRAIN"), out.join("TEST")] {
        let path = dir.join(MARKER);
        std::fs::write(&path, &marker).map_err(io(&path))?;
    }
    Ok(summary)
}
