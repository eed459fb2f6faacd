//! Test helpers: a deterministic random source, a TV-like order screen with a QR code,
//! and the camera effects (perspective, rotation, blur, noise, moiré, clutter) that turn
//! it into the frames a phone would capture.

use image::{GrayImage, Luma, imageops};
use protocol::{OrderId, PayLink, ServerUrl};

/// SplitMix64: tiny, deterministic, good enough to vary test frames reproducibly.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(crate) fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % u64::from(n)) as u32
    }
    /// Roughly normal (sum of uniforms), mean 0, standard deviation 1.
    pub(crate) fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.range(0.0, 1.0)).sum::<f64>() - 6.0
    }
}

pub(crate) fn test_link(server: &str) -> PayLink {
    PayLink::new(ServerUrl::parse(server).unwrap(), OrderId::random())
}

/// The QR modules of `text` at error-correction level M (what the TV renders).
pub(crate) fn qr_modules(text: &str) -> (usize, Vec<bool>) {
    let code =
        qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M).unwrap();
    let w = code.width();
    let dark = code
        .to_colors()
        .into_iter()
        .map(|c| c == qrcode::Color::Dark)
        .collect();
    (w, dark)
}

/// Draws `text` as a QR code at (`x`, `y`) with `module` px per module and a 4-module
/// light quiet zone.
pub(crate) fn draw_qr(
    img: &mut GrayImage,
    text: &str,
    x: u32,
    y: u32,
    module: u32,
    dark: u8,
    light: u8,
) {
    let (w, bits) = qr_modules(text);
    let side = (w as u32 + 8) * module;
    fill(img, x, y, side, side, light);
    for my in 0..w {
        for mx in 0..w {
            if bits[my * w + mx] {
                fill(
                    img,
                    x + (mx as u32 + 4) * module,
                    y + (my as u32 + 4) * module,
                    module,
                    module,
                    dark,
                );
            }
        }
    }
}

pub(crate) fn fill(img: &mut GrayImage, x: u32, y: u32, w: u32, h: u32, v: u8) {
    for yy in y..(y + h).min(img.height()) {
        for xx in x..(x + w).min(img.width()) {
            img.put_pixel(xx, yy, Luma([v]));
        }
    }
}

/// A 1280×720 TV order screen: dark UI, poster, title and code "text", and the QR code
/// on a white card (as the TV client lays it out).
pub(crate) fn tv_screen(link: &str, rng: &mut Rng) -> GrayImage {
    let mut img = GrayImage::from_pixel(1280, 720, Luma([28]));
    // Top bar and a poster.
    fill(&mut img, 0, 0, 1280, 70, 45);
    fill(&mut img, 60, 120, 300, 450, 90);
    fill(&mut img, 80, 140, 260, 200, 150);
    // Text-like rows: titles, price, the big short code.
    for row in 0..6 {
        let y = 130 + row * 60;
        let mut x = 400;
        let glyph_h = if row == 4 { 40 } else { 18 };
        while x < 700 {
            let gw = 8 + rng.below(18);
            fill(&mut img, x, y, gw, glyph_h, 200 + rng.below(50) as u8);
            x += gw + 6 + rng.below(10);
        }
    }
    // The QR code: 8 px modules on a white card (a v3 code is 37 modules with quiet zone).
    let module = 8;
    draw_qr(&mut img, link, 840, 150, module, 0, 255);
    img
}

/// A 3×3 homography mapping destination pixels to source pixels.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Homography([f64; 9]);

impl Homography {
    /// The projective map taking `from[i]` to `to[i]` (solved by Gaussian elimination).
    pub(crate) fn from_points(from: [(f64, f64); 4], to: [(f64, f64); 4]) -> Self {
        let mut a = [[0.0f64; 9]; 8];
        for i in 0..4 {
            let (x, y) = from[i];
            let (u, v) = to[i];
            a[2 * i] = [x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y, u];
            a[2 * i + 1] = [0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y, v];
        }
        for col in 0..8 {
            let pivot = (col..8)
                .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
                .unwrap();
            a.swap(col, pivot);
            for row in 0..8 {
                if row != col {
                    let f = a[row][col] / a[col][col];
                    let pivot_row = a[col];
                    for (cell, p) in a[row].iter_mut().zip(pivot_row).skip(col) {
                        *cell -= f * p;
                    }
                }
            }
        }
        let mut h = [0.0; 9];
        for (i, hi) in h.iter_mut().take(8).enumerate() {
            *hi = a[i][8] / a[i][i];
        }
        h[8] = 1.0;
        Self(h)
    }

    pub(crate) fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let h = &self.0;
        let w = h[6] * x + h[7] * y + h[8];
        (
            (h[0] * x + h[1] * y + h[2]) / w,
            (h[3] * x + h[4] * y + h[5]) / w,
        )
    }
}

fn bilinear(img: &GrayImage, x: f64, y: f64) -> Option<f64> {
    let (w, h) = (img.width() as f64, img.height() as f64);
    if x < 0.0 || y < 0.0 || x > w - 1.0 || y > h - 1.0 {
        return None;
    }
    let (x0, y0) = (x.floor() as u32, y.floor() as u32);
    let (x1, y1) = (
        (x0 + 1).min(img.width() - 1),
        (y0 + 1).min(img.height() - 1),
    );
    let (fx, fy) = (x - x0 as f64, y - y0 as f64);
    let p = |xx, yy| f64::from(img.get_pixel(xx, yy)[0]);
    Some(
        p(x0, y0) * (1.0 - fx) * (1.0 - fy)
            + p(x1, y0) * fx * (1.0 - fy)
            + p(x0, y1) * (1.0 - fx) * fy
            + p(x1, y1) * fx * fy,
    )
}

/// Module pitch of the TV's QR code on the 1280-px-wide screen, in pixels.
pub(crate) const SCREEN_MODULE_PX: f64 = 8.0;
/// Width of the TV (screen plus bezel) in screen pixels.
const TV_WIDTH_PX: f64 = 1280.0 + 2.0 * BEZEL_PX;
const BEZEL_PX: f64 = 24.0;
/// Smallest QR module pitch in a test frame, in frame pixels: below ~2.5 px no decoder
/// (zxing, zbar, rqrr) reads a blurred code; a phone's user moves closer or zooms.
pub(crate) const MIN_FRAME_MODULE_PX: f64 = 2.6;
/// Largest QR module pitch sampled, in frame pixels.
pub(crate) const MAX_FRAME_MODULE_PX: f64 = 6.0;

/// Camera conditions for one frame.
#[derive(Debug, Clone)]
pub(crate) struct Shot {
    pub(crate) frame_w: u32,
    pub(crate) frame_h: u32,
    /// Width of the TV in the frame as a fraction of the frame width.
    pub(crate) screen_frac: f64,
    pub(crate) rotation_deg: f64,
    /// Keystone: how much the far edge shrinks (0 = square-on), per axis.
    pub(crate) tilt_x: f64,
    pub(crate) tilt_y: f64,
    /// Gaussian blur (defocus, shake) in frame pixels.
    pub(crate) blur_sigma: f64,
    pub(crate) noise_sigma: f64,
    pub(crate) contrast: f64,
    pub(crate) brightness: f64,
    pub(crate) moire_amplitude: f64,
    /// Rendered at this multiple of the frame size, then downscaled (a phone sensor
    /// larger than the preview, e.g. 1920×1080 → 640×480).
    pub(crate) supersample: f64,
}

impl Shot {
    /// Random but plausible conditions for a phone aimed at the TV from a sofa. The
    /// distance is expressed as the QR module pitch it yields in the frame; at 1280×720
    /// the smallest pitch leaves the TV about a third of the frame wide.
    pub(crate) fn random(rng: &mut Rng, frame_w: u32, frame_h: u32) -> Self {
        let module_px = rng.range(MIN_FRAME_MODULE_PX, MAX_FRAME_MODULE_PX);
        let screen_frac =
            (module_px * TV_WIDTH_PX / (SCREEN_MODULE_PX * f64::from(frame_w))).min(0.95);
        let module_px = screen_frac * f64::from(frame_w) * SCREEN_MODULE_PX / TV_WIDTH_PX;
        Self {
            frame_w,
            frame_h,
            screen_frac,
            rotation_deg: rng.range(-25.0, 25.0),
            tilt_x: rng.range(-0.25, 0.25),
            tilt_y: rng.range(-0.15, 0.15),
            blur_sigma: rng.range(0.0, (0.4 * module_px).min(1.2)),
            noise_sigma: rng.range(0.0, 14.0),
            contrast: rng.range(0.45, 1.15),
            brightness: rng.range(-45.0, 45.0),
            moire_amplitude: rng.range(0.0, 22.0),
            supersample: if rng.below(2) == 0 {
                1.0
            } else {
                rng.range(1.5, 3.0)
            },
        }
    }
}

/// Photographs `screen` under `shot`: a cluttered room, the TV with a bezel placed by a
/// perspective transform, moiré, brightness/contrast, blur, noise, then downscaling.
pub(crate) fn photograph(screen: &GrayImage, shot: &Shot, rng: &mut Rng) -> GrayImage {
    let ss = shot.supersample;
    let (fw, fh) = (
        (f64::from(shot.frame_w) * ss) as u32,
        (f64::from(shot.frame_h) * ss) as u32,
    );
    // The room: a lighting gradient and furniture-like boxes.
    let mut frame = GrayImage::from_fn(fw, fh, |x, y| {
        Luma([(60.0 + 80.0 * x as f64 / fw as f64 + 30.0 * y as f64 / fh as f64) as u8])
    });
    for _ in 0..25 {
        let (w, h) = (rng.below(fw / 3) + 10, rng.below(fh / 3) + 10);
        let (x, y) = (rng.below(fw), rng.below(fh));
        let v = rng.below(256) as u8;
        fill(&mut frame, x, y, w, h, v);
    }
    // The TV: screen plus a black bezel, placed with rotation and keystone.
    let bezel = BEZEL_PX;
    let (sw, sh) = (f64::from(screen.width()), f64::from(screen.height()));
    let (tw, th) = (sw + 2.0 * bezel, sh + 2.0 * bezel);
    let out_w = f64::from(fw) * shot.screen_frac;
    let out_h = out_w * th / tw;
    let (cx, cy) = (
        f64::from(fw) / 2.0 + rng.range(-0.1, 0.1) * f64::from(fw),
        f64::from(fh) / 2.0 + rng.range(-0.1, 0.1) * f64::from(fh),
    );
    let (hx, hy) = (out_w / 2.0, out_h / 2.0);
    let corners = [
        (-hx * (1.0 - shot.tilt_y), -hy * (1.0 - shot.tilt_x)),
        (hx * (1.0 - shot.tilt_y), -hy * (1.0 + shot.tilt_x)),
        (hx * (1.0 + shot.tilt_y), hy * (1.0 + shot.tilt_x)),
        (-hx * (1.0 + shot.tilt_y), hy * (1.0 - shot.tilt_x)),
    ];
    let (s, c) = shot.rotation_deg.to_radians().sin_cos();
    let dst = corners.map(|(x, y)| (cx + x * c - y * s, cy + x * s + y * c));
    let src = [(0.0, 0.0), (tw, 0.0), (tw, th), (0.0, th)];
    let h = Homography::from_points(dst, src);
    let (min_x, max_x) = dst
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (min_y, max_y) = dst
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1), b.max(p.1)));
    for y in (min_y.max(0.0) as u32)..(max_y.min(f64::from(fh - 1)) as u32) {
        for x in (min_x.max(0.0) as u32)..(max_x.min(f64::from(fw - 1)) as u32) {
            let (u, v) = h.apply(f64::from(x), f64::from(y));
            if u < 0.0 || v < 0.0 || u >= tw || v >= th {
                continue;
            }
            let value = if u < bezel || v < bezel || u >= bezel + sw || v >= bezel + sh {
                Some(12.0)
            } else {
                bilinear(screen, u - bezel, v - bezel)
            };
            if let Some(val) = value {
                // Moiré: interference between screen pixels and the sensor grid.
                let m =
                    shot.moire_amplitude * ((u * 0.9 + v * 0.35).sin() * (v * 0.8 - u * 0.2).sin());
                frame.put_pixel(x, y, Luma([(val + m).clamp(0.0, 255.0) as u8]));
            }
        }
    }
    // Exposure.
    for p in frame.pixels_mut() {
        let v = (f64::from(p[0]) - 128.0) * shot.contrast + 128.0 + shot.brightness;
        p[0] = v.clamp(0.0, 255.0) as u8;
    }
    // Optics and sensor.
    let mut frame = if shot.blur_sigma > 0.2 {
        imageops::blur(&frame, (shot.blur_sigma * ss) as f32)
    } else {
        frame
    };
    if ss != 1.0 {
        frame = imageops::resize(
            &frame,
            shot.frame_w,
            shot.frame_h,
            imageops::FilterType::Triangle,
        );
    }
    for p in frame.pixels_mut() {
        let v = f64::from(p[0]) + rng.gauss() * shot.noise_sigma;
        p[0] = v.clamp(0.0, 255.0) as u8;
    }
    frame
}

pub(crate) fn png_bytes(img: &GrayImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}
