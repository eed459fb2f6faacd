//! QR decoding that survives photos of a TV screen: several pre-processed views of
//! each frame are tried with rqrr first and rxing as fallback, within a budget of work.
//!
//! Why several views: rqrr binarises with one running-average threshold, which fails on
//! inverted codes, low contrast, blur, sensor noise and screen moiré. Each extra view
//! (local-mean threshold, Otsu after contrast stretch, blur, down- and up-scaling,
//! inversion) fixes one of those cases; rxing (a zxing port with its hybrid binariser
//! and `TryHarder`) catches most of what rqrr's own view leaves. The views are ordered
//! by what each reads on the real-photo set for its time: rqrr's own view first, rxing
//! second, then the other rqrr views, which together read two pictures of the set. Those
//! run in two halves on two threads, so a picture nothing reads (the slowest case, as
//! it goes through every view) costs about half the time.

use std::cell::Cell;
use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, Limits, imageops};

/// Wall-clock cap for decoding one live camera frame, in milliseconds: a camera has a
/// next frame, so a frame that needs more is not worth waiting for. No new attempt
/// starts after it; one attempt already running may finish (each is bounded by
/// [`WORKING_MAX_SIDE_PX`], the size of every view rxing included).
pub const FRAME_DECODE_BUDGET_MS: u64 = 600;
/// Work allowed for one live camera frame, in [work units](Budget): every rqrr view of a
/// 1280×720 frame (9.7 M units) and the first rxing pass (3.7 M), not the second.
pub const FRAME_DECODE_WORK: u64 = 14_000_000;
/// Wall-clock cap for one saved picture, in milliseconds. A picture the person chose
/// has no next frame, so every view is tried ([`Budget::picture`] sets no work limit);
/// this cap only bounds a hostile file, and a busy machine never reaches it with a real
/// photo (the slowest of the real-photo set took 0.84 s with both cores busy).
pub const PICTURE_DECODE_BUDGET_MS: u64 = 10_000;
/// Work units per pixel of one rqrr attempt (binarisation and finder search).
const RQRR_UNITS_PER_PX: u64 = 1;
/// Work units per pixel of one rxing attempt (hybrid binariser, `TryHarder`, both
/// polarities): it measured about four times rqrr's cost per pixel.
const RXING_UNITS_PER_PX: u64 = 4;
/// Frames larger than this on their longest side are downscaled first, in pixels: a
/// TV QR code scanned from a sofa is never so small that 1280 px loses it, and the
/// cost of every attempt grows with the pixel count.
pub const WORKING_MAX_SIDE_PX: u32 = 1280;
/// Frames longer than this on their longest side are first shrunk by averaging whole
/// blocks of pixels to two or three times [`WORKING_MAX_SIDE_PX`], in pixels: the
/// Triangle resize costs in proportion to the source, and on a frame at
/// [`MAX_PICTURE_SIDE_PX`] it alone took seconds, far over [`FRAME_DECODE_BUDGET_MS`].
pub const BOX_SHRINK_ABOVE_SIDE_PX: u32 = 4 * WORKING_MAX_SIDE_PX;
/// Frames smaller than this on their longest side also get an upscaled view, in pixels
/// (a QR code in a 640×480 frame may have modules under 3 px, below rqrr's comfort).
pub const UPSCALE_BELOW_SIDE_PX: u32 = 900;
/// Largest picture file accepted, in bytes.
pub const MAX_PICTURE_BYTES: usize = 40 * 1024 * 1024;
/// Largest picture accepted, in pixels per side.
pub const MAX_PICTURE_SIDE_PX: u32 = 12_000;
/// Most memory an image decoder may allocate for one picture, in bytes.
pub const MAX_PICTURE_ALLOC_BYTES: u64 = 512 * 1024 * 1024;
/// Smallest frame worth looking at, in pixels per side (a QR code has 21 modules).
pub const MIN_FRAME_SIDE_PX: u32 = 21;

/// Why a picture could not be turned into a frame.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PictureError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("picture is {size} bytes; the limit is {MAX_PICTURE_BYTES}")]
    TooManyBytes { size: u64 },
    #[error("not a readable PNG, JPEG or WebP picture: {0}")]
    Format(String),
    #[error("picture is {width}×{height} pixels; the limit is {MAX_PICTURE_SIDE_PX} per side")]
    TooLarge { width: u32, height: u32 },
    #[error("picture is {width}×{height} pixels, too small to hold a QR code")]
    TooSmall { width: u32, height: u32 },
}

/// What one decode found and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// The first accepted QR text, if any.
    pub text: Option<String>,
    /// Every QR text read (accepted or not), in the order found, without repeats.
    pub seen: Vec<String>,
    /// Which view and decoder produced `text`, e.g. `rqrr/adaptive`.
    pub method: Option<&'static str>,
    /// How many views were tried.
    pub attempts: u32,
    /// Work done, in [`Budget`] units.
    pub work: u64,
    pub elapsed: Duration,
    /// True when the budget ran out before every view was tried.
    pub budget_exhausted: bool,
}

/// How much one decode may do: work, counted in units of pixels visited by the views
/// tried (so the same frame gets the same attempts on an idle and on a busy machine),
/// and a wall-clock cap as the last safety net.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Most work units; no attempt starts that would go over it.
    pub work: u64,
    /// No attempt starts after this much time.
    pub wall: Duration,
}

impl Budget {
    /// A live camera frame: the cheap views, then the next frame.
    pub fn camera_frame() -> Self {
        Self {
            work: FRAME_DECODE_WORK,
            wall: Duration::from_millis(FRAME_DECODE_BUDGET_MS),
        }
    }

    /// A saved picture the person chose: every view, however busy the machine.
    pub fn picture() -> Self {
        Self {
            work: u64::MAX,
            wall: Duration::from_millis(PICTURE_DECODE_BUDGET_MS),
        }
    }
}

/// A reusable decoder with a per-frame budget.
#[derive(Clone, Debug)]
pub struct Decoder {
    budget: Budget,
    use_rxing: bool,
}

impl Default for Decoder {
    /// The decoder for a saved picture ([`Budget::picture`]).
    fn default() -> Self {
        Self::with_budget(Budget::picture())
    }
}

/// A grey frame as a plain buffer, row-major, one byte per pixel.
#[derive(Clone)]
struct Luma {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Luma {
    fn from_gray(img: &GrayImage) -> Self {
        Self {
            w: img.width() as usize,
            h: img.height() as usize,
            px: img.as_raw().clone(),
        }
    }

    fn to_gray(&self) -> GrayImage {
        GrayImage::from_raw(self.w as u32, self.h as u32, self.px.clone())
            .expect("buffer length matches its dimensions")
    }

    fn resized(&self, w: u32, h: u32, filter: imageops::FilterType) -> Self {
        Self::from_gray(&imageops::resize(&self.to_gray(), w, h, filter))
    }
}

/// A binary view: `true` is a dark module.
struct Bits {
    w: usize,
    h: usize,
    dark: Vec<bool>,
}

impl Bits {
    fn inverted(&self) -> Self {
        Self {
            w: self.w,
            h: self.h,
            dark: self.dark.iter().map(|d| !d).collect(),
        }
    }
}

impl Decoder {
    /// A decoder with only a wall-clock budget (no work limit).
    pub fn new(wall: Duration) -> Self {
        Self::with_budget(Budget {
            work: u64::MAX,
            wall,
        })
    }

    pub fn with_budget(budget: Budget) -> Self {
        Self {
            budget,
            use_rxing: true,
        }
    }

    /// The decoder for live camera frames ([`Budget::camera_frame`]).
    pub fn for_camera() -> Self {
        Self::with_budget(Budget::camera_frame())
    }

    /// The same decoder without the rxing fallback (for measuring what rqrr alone does).
    pub fn rqrr_only(mut self) -> Self {
        self.use_rxing = false;
        self
    }

    /// The wall-clock cap of one decode.
    pub fn budget(&self) -> Duration {
        self.budget.wall
    }

    pub fn work_budget(&self) -> u64 {
        self.budget.work
    }

    /// Decodes any QR code in `frame`; the first text that `accept` likes wins.
    pub fn decode(
        &self,
        frame: &GrayImage,
        accept: &(dyn Fn(&str) -> bool + Sync),
    ) -> DecodeReport {
        let start = Instant::now();
        let shared = Shared::default();
        let mut run = Run {
            start,
            budget: self.budget,
            shared: &shared,
            accept,
            report: DecodeReport::default(),
        };
        if frame.width() >= MIN_FRAME_SIDE_PX && frame.height() >= MIN_FRAME_SIDE_PX {
            self.views(&mut run, frame);
        }
        run.report.elapsed = start.elapsed();
        run.report
    }

    /// Runs the views from cheapest to most expensive until one yields an accepted text.
    fn views(&self, run: &mut Run<'_>, frame: &GrayImage) {
        let (w, h) = (frame.width(), frame.height());
        let longest = w.max(h);
        let work = if longest > WORKING_MAX_SIDE_PX {
            let shrunk;
            let source = if longest > BOX_SHRINK_ABOVE_SIDE_PX {
                shrunk = box_shrink(frame, longest / (2 * WORKING_MAX_SIDE_PX));
                &shrunk
            } else {
                frame
            };
            let (sw, sh) = scaled(source.width(), source.height(), WORKING_MAX_SIDE_PX);
            // Triangle averages neighbouring pixels, which also removes sensor noise
            // and fine moiré when shrinking a large photo.
            Luma::from_gray(&imageops::resize(
                source,
                sw,
                sh,
                imageops::FilterType::Triangle,
            ))
        } else {
            Luma::from_gray(frame)
        };

        // 1. rqrr's own binarisation: fast and good on clean, upright captures.
        if run.rqrr_native("rqrr/native", &work) {
            return;
        }
        // 2. rxing: hybrid binariser, TryHarder, also inverted. Measured on the
        // real-photo set (see `real_photos`), it reads every picture rqrr's adaptive
        // views read after the native one and twice as many more, and where nothing is
        // found it gives up in under a millisecond, where each rqrr view takes about
        // seven (rqrr's time goes into fitting grids to candidate finder patterns, not
        // into pixels): so it runs second.
        if self.use_rxing && run.rxing("rxing/tryharder", &work) {
            return;
        }
        // The other rqrr views each read a picture in a hundred, so most pictures that
        // get this far are read by none: two halves run side by side, on this thread
        // and one more, and the first accepted text stops both (at their next view).
        // Every rqrr view fits in a camera frame's work budget after the two above, so
        // the same views run as they would one after the other.
        let smooth = box_blur(&work, 1);
        // 7. Unsharp masking: defocus and hand shake smear modules into each other.
        let sharp = unsharp(&work, &box_blur(&work, 2));
        std::thread::scope(|scope| {
            let mut other = run.fork();
            let (work, smooth, sharp) = (&work, &smooth, &sharp);
            let second = scope.spawn(move || {
                Self::sharpened_and_scaled_views(&mut other, work, smooth, sharp);
                other.report
            });
            Self::threshold_views(run, work, smooth);
            // A panic in the other half (outside `guarded`) only loses its views.
            run.merge(second.join().unwrap_or_default());
        });
        // 9. rxing on the sharpened view, with what is left of the budget once both
        // halves are done (a camera frame's budget has no room for it).
        if self.use_rxing && run.report.text.is_none() {
            run.rxing("rxing/sharpened", &sharp);
        }
    }

    /// Local-mean, Otsu and fine thresholds, each in both polarities where it matters.
    fn threshold_views(run: &mut Run<'_>, work: &Luma, smooth: &Luma) {
        let work_long = work.w.max(work.h);
        // 3. Local-mean threshold in both polarities: uneven lighting and inverted codes.
        let adaptive = adaptive_threshold(work, work_long / 24, 8);
        if run.rqrr_bits("rqrr/adaptive", &adaptive) {
            return;
        }
        if run.rqrr_bits("rqrr/adaptive-inverted", &adaptive.inverted()) {
            return;
        }
        drop(adaptive);
        // 4. A smoothed view: noise and screen moiré break finder-pattern runs.
        if run.rqrr_bits(
            "rqrr/smooth-adaptive",
            &adaptive_threshold(smooth, work_long / 24, 6),
        ) {
            return;
        }
        // 5. Contrast stretch + Otsu: washed-out or dark photos of the screen.
        let stretched = stretch(smooth);
        let otsu = global_threshold(&stretched, otsu_level(&stretched));
        if run.rqrr_bits("rqrr/otsu", &otsu) {
            return;
        }
        if run.rqrr_bits("rqrr/otsu-inverted", &otsu.inverted()) {
            return;
        }
        drop(otsu);
        // 6. Low contrast: a finer threshold on the stretched picture, both polarities.
        let fine = adaptive_threshold(&stretched, work_long / 16, 3);
        if run.rqrr_bits("rqrr/fine-adaptive", &fine) {
            return;
        }
        run.rqrr_bits("rqrr/fine-adaptive-inverted", &fine.inverted());
    }

    /// Sharpened and rescaled views.
    fn sharpened_and_scaled_views(run: &mut Run<'_>, work: &Luma, smooth: &Luma, sharp: &Luma) {
        let work_long = work.w.max(work.h);
        if run.rqrr_native("rqrr/sharpened-native", sharp) {
            return;
        }
        if run.rqrr_bits(
            "rqrr/sharpened-adaptive",
            &adaptive_threshold(sharp, work_long / 24, 6),
        ) {
            return;
        }
        // 8. Scale: a small code gains from upscaling, a huge blurry one from halving.
        if work_long < UPSCALE_BELOW_SIDE_PX as usize {
            let up = smooth.resized(
                (smooth.w * 2) as u32,
                (smooth.h * 2) as u32,
                imageops::FilterType::Triangle,
            );
            let up_long = up.w.max(up.h);
            run.rqrr_bits(
                "rqrr/upscaled-adaptive",
                &adaptive_threshold(&up, up_long / 24, 6),
            );
        } else {
            let half = work.resized(
                (work.w / 2).max(1) as u32,
                (work.h / 2).max(1) as u32,
                imageops::FilterType::Triangle,
            );
            let half_long = half.w.max(half.h);
            if run.rqrr_native("rqrr/half-native", &half) {
                return;
            }
            run.rqrr_bits(
                "rqrr/half-adaptive",
                &adaptive_threshold(&half, half_long / 24, 8),
            );
        }
    }
}

/// The texts of every QR grid rqrr finds (its buffer type is private, hence the macro).
macro_rules! grids_text {
    ($prepared:expr) => {
        $prepared
            .detect_grids()
            .into_iter()
            .filter_map(|g| g.decode().ok().map(|(_, text)| text))
            .collect::<Vec<String>>()
    };
}

/// One decode in progress: budget, acceptance rule and what was seen so far.
struct Run<'a> {
    start: Instant,
    budget: Budget,
    /// What the halves of this decode running side by side share.
    shared: &'a Shared,
    accept: &'a (dyn Fn(&str) -> bool + Sync),
    report: DecodeReport,
}

/// Shared by the halves of one decode that run side by side.
#[derive(Debug, Default)]
struct Shared {
    /// Work units booked so far, by either half.
    work: AtomicU64,
    /// A half found an accepted text: the other starts no further view.
    found: AtomicBool,
}

impl Run<'_> {
    /// Another run of the same decode, for views on another thread; its report is
    /// [merged](Self::merge) back.
    fn fork(&self) -> Self {
        Self {
            start: self.start,
            budget: self.budget,
            shared: self.shared,
            accept: self.accept,
            report: DecodeReport::default(),
        }
    }

    /// Adds what a [forked](Self::fork) run found and did. This run's text wins if
    /// both found one.
    fn merge(&mut self, other: DecodeReport) {
        self.report.attempts += other.attempts;
        for t in other.seen {
            if !self.report.seen.contains(&t) {
                self.report.seen.push(t);
            }
        }
        if self.report.text.is_none() {
            self.report.text = other.text;
            self.report.method = other.method;
        }
        self.report.budget_exhausted |= other.budget_exhausted;
        self.report.work = self.shared.work.load(Ordering::Relaxed);
    }

    /// True when no further attempt may start: the other half found a text, or the
    /// budget is spent.
    fn out_of_time(&mut self) -> bool {
        if self.shared.found.load(Ordering::Relaxed) {
            return true;
        }
        let spent = self.shared.work.load(Ordering::Relaxed);
        if self.start.elapsed() >= self.budget.wall || spent >= self.budget.work {
            self.report.budget_exhausted = true;
            true
        } else {
            false
        }
    }

    /// Books an attempt of `units`; false (and the budget marked exhausted) when it
    /// does not fit in the time or the work left.
    fn afford(&mut self, units: u64) -> bool {
        if self.out_of_time() {
            return false;
        }
        let limit = self.budget.work;
        let booked = self
            .shared
            .work
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let after = w.saturating_add(units);
                (after <= limit).then_some(after)
            });
        match booked {
            Ok(before) => {
                self.report.work = before.saturating_add(units);
                true
            }
            Err(_) => {
                self.report.budget_exhausted = true;
                false
            }
        }
    }

    /// Records texts; returns true (stop) when one is accepted or time is up.
    fn take(&mut self, method: &'static str, texts: Vec<String>) -> bool {
        self.report.attempts += 1;
        for t in texts {
            if !self.report.seen.contains(&t) {
                self.report.seen.push(t.clone());
            }
            if self.report.text.is_none() && (self.accept)(&t) {
                self.report.text = Some(t);
                self.report.method = Some(method);
                self.shared.found.store(true, Ordering::Relaxed);
            }
        }
        self.report.text.is_some() || self.out_of_time()
    }

    fn rqrr_native(&mut self, method: &'static str, img: &Luma) -> bool {
        if !self.afford((img.w * img.h) as u64 * RQRR_UNITS_PER_PX) {
            return true;
        }
        let texts = guarded(|| {
            let mut prepared = rqrr::PreparedImage::prepare_from_luma(img.w, img.h, img.px.clone());
            grids_text!(prepared)
        });
        self.take(method, texts)
    }

    fn rqrr_bits(&mut self, method: &'static str, bits: &Bits) -> bool {
        if !self.afford((bits.w * bits.h) as u64 * RQRR_UNITS_PER_PX) {
            return true;
        }
        let texts = guarded(|| {
            let mut prepared = rqrr::PreparedImage::prepare_from_bitmap(bits.w, bits.h, |x, y| {
                bits.dark[y * bits.w + x]
            });
            grids_text!(prepared)
        });
        self.take(method, texts)
    }

    fn rxing(&mut self, method: &'static str, img: &Luma) -> bool {
        if !self.afford((img.w * img.h) as u64 * RXING_UNITS_PER_PX) {
            return true;
        }
        let texts = guarded(|| {
            let mut hints = rxing::DecodeHints {
                TryHarder: Some(true),
                AlsoInverted: Some(true),
                ..Default::default()
            };
            rxing::helpers::detect_in_luma_slice_with_hints(
                &img.px,
                img.w as u32,
                img.h as u32,
                Some(rxing::BarcodeFormat::QR_CODE),
                &mut hints,
            )
            .map(|r| vec![r.getText().to_owned()])
            .unwrap_or_default()
        });
        self.take(method, texts)
    }
}

/// Runs a third-party decoder step, turning a panic on malformed input into "nothing
/// found": a hostile picture must never take the companion down.
fn guarded(f: impl FnOnce() -> Vec<String>) -> Vec<String> {
    contained(f).unwrap_or_default()
}

thread_local! {
    /// Set while this thread runs third-party decoder code under [`contained`].
    static CONTAINED: Cell<bool> = const { Cell::new(false) };
}

/// Runs third-party picture or QR decoder code that may panic on malformed input
/// (rqrr does on some real photos): a panic becomes `None`. Such a panic is logged at
/// debug level instead of being printed on the user's terminal; panics anywhere else
/// still reach the previous panic hook unchanged.
pub fn contained<T>(f: impl FnOnce() -> T) -> Option<T> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CONTAINED.with(Cell::get) {
                tracing::debug!(%info, "a decoder gave up on a malformed picture");
            } else {
                previous(info);
            }
        }));
    });
    let outer = CONTAINED.with(|c| c.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    CONTAINED.with(|c| c.set(outer));
    result.ok()
}

/// Dimensions of `w×h` scaled so the longest side is `max` (never upscaled).
fn scaled(w: u32, h: u32, max: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= max {
        return (w, h);
    }
    let f = f64::from(max) / f64::from(long);
    (
        ((f64::from(w) * f).round() as u32).max(1),
        ((f64::from(h) * f).round() as u32).max(1),
    )
}

/// `img` shrunk `k` times on each side, each pixel the mean of a `k`×`k` block (a last
/// partial row or column of blocks is dropped). One pass over the pixels, so a frame at
/// the size limit shrinks in a fraction of the decode budget.
fn box_shrink(img: &GrayImage, k: u32) -> GrayImage {
    let k = k.max(1);
    let (w, h) = ((img.width() / k).max(1), (img.height() / k).max(1));
    let (src_w, k_px) = (img.width() as usize, k as usize);
    let src = img.as_raw();
    let mut out = Vec::with_capacity(w as usize * h as usize);
    let mut sums = vec![0u32; w as usize];
    for by in 0..h as usize {
        sums.fill(0);
        for y in by * k_px..((by + 1) * k_px).min(img.height() as usize) {
            let row = &src[y * src_w..(y + 1) * src_w];
            for (sum, block) in sums.iter_mut().zip(row.chunks_exact(k_px)) {
                *sum += block.iter().map(|&p| u32::from(p)).sum::<u32>();
            }
        }
        out.extend(sums.iter().map(|&s| (s / (k * k)) as u8));
    }
    GrayImage::from_raw(w, h, out).expect("buffer length matches its dimensions")
}

/// Summed-area table with one row and column of zero padding.
fn integral(img: &Luma) -> Vec<u64> {
    let (w, h) = (img.w, img.h);
    let mut sat = vec![0u64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0u64;
        for x in 0..w {
            row += u64::from(img.px[y * w + x]);
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    sat
}

/// Dark where the pixel is more than `percent` % below the mean of its
/// `(2r+1)²` neighbourhood (Bradley–Roth thresholding).
fn adaptive_threshold(img: &Luma, radius: usize, percent: u64) -> Bits {
    let (w, h) = (img.w, img.h);
    let r = radius.max(4);
    let sat = integral(img);
    let mut dark = vec![false; w * h];
    for y in 0..h {
        let y0 = y.saturating_sub(r);
        let y1 = (y + r + 1).min(h);
        for x in 0..w {
            let x0 = x.saturating_sub(r);
            let x1 = (x + r + 1).min(w);
            let count = ((y1 - y0) * (x1 - x0)) as u64;
            let sum = sat[y1 * (w + 1) + x1] + sat[y0 * (w + 1) + x0]
                - sat[y0 * (w + 1) + x1]
                - sat[y1 * (w + 1) + x0];
            dark[y * w + x] = u64::from(img.px[y * w + x]) * count * 100 < sum * (100 - percent);
        }
    }
    Bits { w, h, dark }
}

fn global_threshold(img: &Luma, level: u8) -> Bits {
    Bits {
        w: img.w,
        h: img.h,
        dark: img.px.iter().map(|&p| p <= level).collect(),
    }
}

/// Otsu's threshold: the level that best separates the histogram into two classes.
fn otsu_level(img: &Luma) -> u8 {
    let mut hist = [0u64; 256];
    for &p in &img.px {
        hist[usize::from(p)] += 1;
    }
    let total = img.px.len() as f64;
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &c)| i as f64 * c as f64)
        .sum();
    let (mut sum_b, mut w_b, mut best, mut level) = (0.0, 0.0, -1.0, 127u8);
    for (i, &c) in hist.iter().enumerate() {
        w_b += c as f64;
        if w_b == 0.0 {
            continue;
        }
        let w_f = total - w_b;
        if w_f == 0.0 {
            break;
        }
        sum_b += i as f64 * c as f64;
        let m_b = sum_b / w_b;
        let m_f = (sum_all - sum_b) / w_f;
        let between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
        if between > best {
            best = between;
            level = i as u8;
        }
    }
    level
}

/// Linear contrast stretch between the 1st and 99th percentiles.
fn stretch(img: &Luma) -> Luma {
    let mut hist = [0usize; 256];
    for &p in &img.px {
        hist[usize::from(p)] += 1;
    }
    let cut = img.px.len() / 100;
    let (mut lo, mut acc) = (0usize, 0usize);
    while lo < 255 && acc + hist[lo] <= cut {
        acc += hist[lo];
        lo += 1;
    }
    let (mut hi, mut acc) = (255usize, 0usize);
    while hi > 0 && acc + hist[hi] <= cut {
        acc += hist[hi];
        hi -= 1;
    }
    if hi <= lo {
        return img.clone();
    }
    let span = (hi - lo) as u32;
    let px = img
        .px
        .iter()
        .map(|&p| {
            let v = u32::from(p).saturating_sub(lo as u32) * 255 / span;
            v.min(255) as u8
        })
        .collect();
    Luma {
        w: img.w,
        h: img.h,
        px,
    }
}

/// `2·img − blurred`, clamped: restores edges softened by defocus.
fn unsharp(img: &Luma, blurred: &Luma) -> Luma {
    let px = img
        .px
        .iter()
        .zip(&blurred.px)
        .map(|(&p, &b)| (2 * i32::from(p) - i32::from(b)).clamp(0, 255) as u8)
        .collect();
    Luma {
        w: img.w,
        h: img.h,
        px,
    }
}

/// Box blur of radius `r` (separable, via running sums).
fn box_blur(img: &Luma, r: usize) -> Luma {
    let (w, h) = (img.w, img.h);
    let mut tmp = vec![0u8; w * h];
    for y in 0..h {
        for x in 0..w {
            let x0 = x.saturating_sub(r);
            let x1 = (x + r + 1).min(w);
            let s: u32 = img.px[y * w + x0..y * w + x1]
                .iter()
                .map(|&p| u32::from(p))
                .sum();
            tmp[y * w + x] = (s / (x1 - x0) as u32) as u8;
        }
    }
    let mut px = vec![0u8; w * h];
    for y in 0..h {
        let y0 = y.saturating_sub(r);
        let y1 = (y + r + 1).min(h);
        for x in 0..w {
            let s: u32 = (y0..y1).map(|yy| u32::from(tmp[yy * w + x])).sum();
            px[y * w + x] = (s / (y1 - y0) as u32) as u8;
        }
    }
    Luma { w, h, px }
}

/// Decodes picture bytes (PNG, JPEG or WebP, guessed from the content) into a grey
/// frame, honouring EXIF orientation and refusing oversized pictures before decoding.
pub fn picture_from_bytes(bytes: &[u8]) -> Result<GrayImage, PictureError> {
    if bytes.len() > MAX_PICTURE_BYTES {
        return Err(PictureError::TooManyBytes {
            size: bytes.len() as u64,
        });
    }
    let img = contained(|| decode_picture(bytes))
        .ok_or_else(|| PictureError::Format("the picture decoder failed".into()))??;
    let (width, height) = (img.width(), img.height());
    if width < MIN_FRAME_SIDE_PX || height < MIN_FRAME_SIDE_PX {
        return Err(PictureError::TooSmall { width, height });
    }
    Ok(img)
}

fn decode_picture(bytes: &[u8]) -> Result<GrayImage, PictureError> {
    let fmt = |e: &dyn std::fmt::Display| PictureError::Format(e.to_string());
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fmt(&e))?;
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg | image::ImageFormat::WebP) => {}
        _ => return Err(PictureError::Format("unknown format".into())),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_PICTURE_SIDE_PX);
    limits.max_image_height = Some(MAX_PICTURE_SIDE_PX);
    limits.max_alloc = Some(MAX_PICTURE_ALLOC_BYTES);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(|e| fmt(&e))?;
    let (width, height) = decoder.dimensions();
    if width > MAX_PICTURE_SIDE_PX || height > MAX_PICTURE_SIDE_PX {
        return Err(PictureError::TooLarge { width, height });
    }
    let orientation = decoder.orientation().ok();
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(_) => PictureError::TooLarge { width, height },
        other => fmt(&other),
    })?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img.into_luma8())
}

/// Reads and decodes a picture file into a grey frame.
pub fn picture_from_path(path: &Path) -> Result<GrayImage, PictureError> {
    let io = |source| PictureError::Io {
        path: path.display().to_string(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > MAX_PICTURE_BYTES as u64 {
        return Err(PictureError::TooManyBytes { size });
    }
    let bytes = std::fs::read(path).map_err(io)?;
    picture_from_bytes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn luma(w: usize, h: usize, f: impl Fn(usize, usize) -> u8) -> Luma {
        let mut px = Vec::with_capacity(w * h);
        for y in 0..h {
            for x in 0..w {
                px.push(f(x, y));
            }
        }
        Luma { w, h, px }
    }

    #[test]
    fn otsu_splits_two_levels() {
        let img = luma(10, 10, |x, _| if x < 5 { 40 } else { 200 });
        let level = otsu_level(&img);
        assert!((40..200).contains(&level), "{level}");
    }

    #[test]
    fn stretch_expands_low_contrast() {
        let img = luma(100, 1, |x, _| 100 + (x as u8 % 20));
        let s = stretch(&img);
        assert!(s.px.iter().copied().max().unwrap() >= 240);
        assert!(s.px.iter().copied().min().unwrap() <= 15);
    }

    #[test]
    fn adaptive_threshold_follows_lighting() {
        // A dark dot on a bright-to-dim gradient is dark; the gradient itself is not.
        let img = luma(64, 64, |x, y| {
            let base = 250 - (x as u8) * 2;
            if (30..34).contains(&x) && (30..34).contains(&y) {
                base / 3
            } else {
                base
            }
        });
        let bits = adaptive_threshold(&img, 8, 8);
        assert!(bits.dark[31 * 64 + 31]);
        assert!(!bits.dark[10 * 64 + 60]);
    }

    #[test]
    fn box_shrink_averages_blocks() {
        let img = GrayImage::from_fn(7, 4, |x, _| image::Luma([if x % 2 == 0 { 0 } else { 200 }]));
        let small = box_shrink(&img, 2);
        assert_eq!(small.dimensions(), (3, 2));
        assert!(small.pixels().all(|p| p[0] == 100));
    }

    #[test]
    fn scaled_keeps_aspect() {
        assert_eq!(scaled(4000, 3000, 1280), (1280, 960));
        assert_eq!(scaled(640, 480, 1280), (640, 480));
    }

    #[test]
    fn tiny_frames_are_not_decoded() {
        let img = GrayImage::new(10, 10);
        let r = Decoder::default().decode(&img, &|_| true);
        assert_eq!(r.attempts, 0);
        assert!(r.text.is_none());
    }

    #[test]
    fn a_contained_panic_is_none_and_leaves_the_thread_as_it_was() {
        assert_eq!(contained(|| 7), Some(7));
        let panicked: Option<()> = contained(|| panic!("decoder bug"));
        assert_eq!(panicked, None);
        assert!(!CONTAINED.with(Cell::get), "flag reset after a panic");
        // Outside `contained`, a panic is still a panic.
        assert!(catch_unwind(|| panic!("outside")).is_err());
    }
}
