use std::cmp;

use crate::identify::match_capstones::CapStoneGroup;
use crate::identify::Point;

/// An black-and-white image that can be mutated on search for QR codes
///
/// During search for QR codes, some black zones will be recolored in
/// 'different' shades of black. This is done to speed up the search and
/// mitigate the impact of a huge zones.
pub struct PreparedImage<S> {
    buffer: S,
    cache: RegionCache,
    /// Couchpay patch: the flood fill's work list, kept between fills so that each
    /// fill does not allocate one.
    fill_queue: Vec<(usize, usize)>,
}

impl<S> Clone for PreparedImage<S>
where
    S: Clone,
{
    fn clone(&self) -> Self {
        PreparedImage {
            buffer: self.buffer.clone(),
            cache: self.cache.clone(),
            fill_queue: Vec::new(),
        }
    }
}

/// How many regions can be painted in their own colour at once (the colours of a
/// `u8` pixel left after the five fixed ones).
const REGION_SLOTS: usize = 251;

/// Couchpay patch: the painted regions, least recently used evicted first, in a
/// table indexed by colour in place of `lru::LruCache` (a hash map and a linked
/// list): a camera frame's noise makes thousands of small regions, and the cache's
/// bookkeeping was a tenth of the capstone search. Which region is evicted changes
/// no result: an evicted region is painted black again and measured afresh.
#[derive(Clone, Debug)]
struct RegionCache {
    /// Each colour's region and when it was last used.
    slots: Vec<Option<(ColoredRegion, u64)>>,
    len: usize,
    clock: u64,
}

impl RegionCache {
    fn new() -> Self {
        Self {
            slots: vec![None; REGION_SLOTS],
            len: 0,
            clock: 0,
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn get(&mut self, key: u8) -> Option<ColoredRegion> {
        self.clock += 1;
        let (region, used) = self.slots[usize::from(key)].as_mut()?;
        *used = self.clock;
        Some(*region)
    }

    fn put(&mut self, key: u8, region: ColoredRegion) {
        self.clock += 1;
        let slot = &mut self.slots[usize::from(key)];
        if slot.is_none() {
            self.len += 1;
        }
        *slot = Some((region, self.clock));
    }

    fn pop_lru(&mut self) -> Option<(u8, ColoredRegion)> {
        let (key, _) = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(key, slot)| slot.map(|(_, used)| (key, used)))
            .min_by_key(|&(_, used)| used)?;
        let (region, _) = self.slots[key].take()?;
        self.len -= 1;
        Some((key as u8, region))
    }
}

pub trait ImageBuffer {
    fn width(&self) -> usize;
    fn height(&self) -> usize;

    fn get_pixel(&self, x: usize, y: usize) -> u8;
    fn set_pixel(&mut self, x: usize, y: usize, val: u8);

    /// Couchpay patch: copies row `y` into `out` (one value per column).
    fn load_row(&self, y: usize, out: &mut [u8]) {
        for (x, px) in out.iter_mut().enumerate() {
            *px = self.get_pixel(x, y);
        }
    }

    /// Couchpay patch: sets row `y` to `row` (one value per column).
    fn store_row(&mut self, y: usize, row: &[u8]) {
        for (x, &px) in row.iter().enumerate() {
            self.set_pixel(x, y, px);
        }
    }
}

#[cfg(feature = "img")]
impl<
        T: image::GenericImage<Pixel = image::Luma<u8>>
            + image::GenericImageView<Pixel = image::Luma<u8>>,
    > ImageBuffer for T
{
    fn width(&self) -> usize {
        self.width() as usize
    }

    fn height(&self) -> usize {
        self.height() as usize
    }

    fn get_pixel(&self, x: usize, y: usize) -> u8 {
        self.get_pixel(x as u32, y as u32).0[0]
    }

    fn set_pixel(&mut self, x: usize, y: usize, val: u8) {
        let pixel = image::Luma::<u8>::from([val; 1]);

        self.put_pixel(x as u32, y as u32, pixel);
    }
}

#[derive(Clone, Debug)]
pub struct BasicImageBuffer {
    w: usize,
    h: usize,
    pixels: Box<[u8]>,
}

impl ImageBuffer for BasicImageBuffer {
    fn width(&self) -> usize {
        self.w
    }

    fn height(&self) -> usize {
        self.h
    }

    fn get_pixel(&self, x: usize, y: usize) -> u8 {
        let w = self.width();
        self.pixels[(y * w) + x]
    }

    fn set_pixel(&mut self, x: usize, y: usize, val: u8) {
        let w = self.width();
        self.pixels[(y * w) + x] = val
    }

    fn load_row(&self, y: usize, out: &mut [u8]) {
        out.copy_from_slice(&self.pixels[y * self.w..(y + 1) * self.w]);
    }

    fn store_row(&mut self, y: usize, row: &[u8]) {
        self.pixels[y * self.w..(y + 1) * self.w].copy_from_slice(row);
    }
}

#[derive(Debug, Clone, Copy, Eq, PartialEq)]
pub struct Row {
    pub left: usize,
    pub right: usize,
    pub y: usize,
}

#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum PixelColor {
    White,
    Black,
    CapStone,
    Alignment,
    Tmp1,
    Discarded(u8),
}

#[derive(Copy, Clone, Debug, Eq, PartialEq)]
pub enum ColoredRegion {
    Unclaimed {
        color: PixelColor,
        src_x: usize,
        src_y: usize,
        pixel_count: usize,
    },
    CapStone,
    Alignment,
    Tmp1,
}

impl From<u8> for PixelColor {
    fn from(x: u8) -> Self {
        match x {
            0 => PixelColor::White,
            1 => PixelColor::Black,
            2 => PixelColor::CapStone,
            3 => PixelColor::Alignment,
            4 => PixelColor::Tmp1,
            x => PixelColor::Discarded(x - 5),
        }
    }
}

impl From<PixelColor> for u8 {
    fn from(c: PixelColor) -> Self {
        match c {
            PixelColor::White => 0,
            PixelColor::Black => 1,
            PixelColor::CapStone => 2,
            PixelColor::Alignment => 3,
            PixelColor::Tmp1 => 4,
            PixelColor::Discarded(x) => x + 5,
        }
    }
}

impl PartialEq<u8> for PixelColor {
    fn eq(&self, other: &u8) -> bool {
        let rep: u8 = (*self).into();
        rep == *other
    }
}

pub trait AreaFiller {
    fn update(&mut self, row: Row);
}

impl<F> AreaFiller for F
where
    F: FnMut(Row),
{
    fn update(&mut self, row: Row) {
        self(row)
    }
}

struct AreaCounter(usize);

impl AreaFiller for AreaCounter {
    fn update(&mut self, row: Row) {
        self.0 += row.right - row.left + 1;
    }
}

/// Couchpay patch: `avg * (s - 1) / s` rounded down, as rqrr computes it, by one
/// multiplication with an exact fixed-point factor in place of a multiplication and a
/// division.
#[derive(Clone, Copy, Debug)]
struct Decay {
    /// `ceil(2^64 * (s - 1) / s)`.
    factor: u64,
}

impl Decay {
    fn new(s: usize) -> Self {
        let s = s as u128;
        Self {
            factor: (((s - 1) << 64).div_ceil(s)) as u64,
        }
    }

    /// `floor(avg * (s - 1) / s)`. Exact: `factor = (2^64 * (s - 1) + e) / s` with
    /// `e < s`, so `avg * factor / 2^64` exceeds `avg * (s - 1) / s` by
    /// `avg * e / (s * 2^64)`, under `1 / s` for any `avg < 2^64`, which is less
    /// than the distance from `avg * (s - 1) / s` up to the next integer.
    #[inline(always)]
    fn apply(self, avg: u64) -> u64 {
        ((u128::from(avg) * u128::from(self.factor)) >> 64) as u64
    }
}

/// Couchpay patch: rqrr 0.11's threshold, computed faster with the same result.
///
/// rqrr keeps two running averages, `avg = avg * (s - 1) / s + pixel` with
/// `s = width / 8`, one moving left to right and one right to left along each row,
/// each snaking on into the next row; a pixel is dark when it is under 95% of the
/// mean of the two averages there. Three things make it faster:
/// * `avg * (s - 1) / s` is one multiplication by an exact fixed-point factor
///   ([`Decay`]) and the comparison is cross-multiplied, so no pixel divides;
/// * the averages are a chain, each step waiting for the last, so the rows are cut
///   into [`BANDS`] bands whose chains run side by side. A band's averages at its
///   start are not known until the band above is done; but a step is monotonic in
///   the average, so the band is first run from the lowest (0) and the highest
///   (`255 * s`) possible averages at once: once the two agree, every start agrees
///   with them, and the band runs on from there. The rows before that point (a row
///   or two) are done last, from the band above's true averages.
struct Threshold {
    w: usize,
    decay: Decay,
    /// `200 * s`: dark when `(pixel + 1) * scale <= (forward + backward) * 95`.
    scale: u64,
    /// The highest average possible: `255 * s`.
    max_avg: u64,
    /// `scale`, when the comparison fits in `u32` (`s <= 4096`).
    scale_u32: Option<u32>,
}

/// Bands of rows whose averages run side by side ([`Threshold`]).
const BANDS: usize = 4;
/// Images with fewer rows than this per band are done in one band.
const MIN_BAND_ROWS: usize = 16;

/// The two running averages at a row boundary: `u` moves left to right on even rows
/// and right to left on odd ones, `v` the other way (rqrr's names).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Averages {
    u: u64,
    v: u64,
}

impl Averages {
    /// The averages as (left to right, right to left) on row `y`.
    fn directions(self, y: usize) -> (u64, u64) {
        if y % 2 == 0 {
            (self.u, self.v)
        } else {
            (self.v, self.u)
        }
    }

    fn from_directions(y: usize, ltr: u64, rtl: u64) -> Self {
        if y % 2 == 0 {
            Self { u: ltr, v: rtl }
        } else {
            Self { u: rtl, v: ltr }
        }
    }
}

/// One row being thresholded: its grey pixels and both averages at each pixel (an
/// average is at most `255 * s`, well within `u32` for any width [`Threshold`] takes).
struct RowWork {
    grey: Vec<u8>,
    forward: Vec<u32>,
    backward: Vec<u32>,
    /// The thresholded row.
    out: Vec<u8>,
}

impl RowWork {
    fn new(w: usize) -> Self {
        Self {
            grey: vec![0; w],
            forward: vec![0; w],
            backward: vec![0; w],
            out: vec![0; w],
        }
    }

    fn load<S: ImageBuffer>(&mut self, buf: &S, y: usize) {
        buf.load_row(y, &mut self.grey);
    }
}

impl Threshold {
    fn new(w: usize) -> Self {
        let s = cmp::max(w / 8, 1) as u64;
        Self {
            w,
            decay: Decay::new(s as usize),
            scale: 200 * s,
            max_avg: 255 * s,
            scale_u32: (s <= 4096).then_some(200 * s as u32),
        }
    }

    fn apply<S: ImageBuffer>(&self, buf: &mut S) {
        let h = buf.height();
        let bands = if h >= BANDS * MIN_BAND_ROWS { BANDS } else { 1 };
        let band_start = |k: usize| k * h / bands;
        let mut work: Vec<RowWork> = (0..bands).map(|_| RowWork::new(self.w)).collect();

        // Where each band's own run starts (its first row whose averages on entry
        // are known without the band above), and the averages there.
        let mut run_from = vec![0; bands];
        let mut entry = vec![Averages::default(); bands];
        // Whether the band's bounds agreed before its end.
        let mut joined = vec![true; bands];
        for k in 1..bands {
            let mut low = Averages::default();
            let mut high = Averages {
                u: self.max_avg,
                v: self.max_avg,
            };
            let mut y = band_start(k);
            while y < band_start(k + 1) && low != high {
                work[0].load(buf, y);
                low = self.row(&mut work[0], y, low);
                high = self.row(&mut work[0], y, high);
                y += 1;
            }
            run_from[k] = y;
            entry[k] = low;
            joined[k] = low == high;
        }

        // The bands side by side while all have rows left, then each alone.
        let mut exit = entry.clone();
        let common = if bands == BANDS {
            (0..bands)
                .map(|k| band_start(k + 1) - run_from[k])
                .min()
                .unwrap_or(0)
        } else {
            0
        };
        for i in 0..common {
            let rows: [usize; BANDS] = std::array::from_fn(|k| run_from[k] + i);
            for (k, &y) in rows.iter().enumerate() {
                work[k].load(buf, y);
            }
            let mut averages: [Averages; BANDS] = std::array::from_fn(|k| exit[k]);
            self.rows(&mut work, rows, &mut averages);
            for (k, &y) in rows.iter().enumerate() {
                exit[k] = averages[k];
                self.write_row(buf, y, &mut work[k]);
            }
        }
        for k in 0..bands {
            for y in run_from[k] + common..band_start(k + 1) {
                work[0].load(buf, y);
                exit[k] = self.row(&mut work[0], y, exit[k]);
                self.write_row(buf, y, &mut work[0]);
            }
        }

        // The first rows of each band, from the true averages of the band above.
        for k in 1..bands {
            let mut averages = exit[k - 1];
            for y in band_start(k)..run_from[k] {
                work[0].load(buf, y);
                averages = self.row(&mut work[0], y, averages);
                self.write_row(buf, y, &mut work[0]);
            }
            if joined[k] {
                debug_assert_eq!(averages, entry[k], "band {k} joins its true averages");
            } else {
                // The band's two bounds never agreed: it was all done here.
                exit[k] = averages;
            }
        }
    }

    /// Both averages at each pixel of row `rows[k]` (loaded in `work[k]`), for `N`
    /// rows at once: `2 * N` independent chains. `averages` are those on entry to
    /// each row and become those after it.
    fn rows<const N: usize>(
        &self,
        work: &mut [RowWork],
        rows: [usize; N],
        averages: &mut [Averages; N],
    ) {
        let w = self.w;
        let mut ltr = [0u64; N];
        let mut rtl = [0u64; N];
        for k in 0..N {
            (ltr[k], rtl[k]) = averages[k].directions(rows[k]);
        }
        let mut rows_work = work.iter_mut();
        let mut bands: [_; N] = std::array::from_fn(|_| {
            let r = rows_work.next().expect("one row of work per row");
            (&r.grey[..w], &mut r.forward[..w], &mut r.backward[..w])
        });
        for x in 0..w {
            let back = w - 1 - x;
            for (k, (grey, forward, backward)) in bands.iter_mut().enumerate() {
                ltr[k] = self.decay.apply(ltr[k]) + u64::from(grey[x]);
                rtl[k] = self.decay.apply(rtl[k]) + u64::from(grey[back]);
                forward[x] = ltr[k] as u32;
                backward[back] = rtl[k] as u32;
            }
        }
        for k in 0..N {
            averages[k] = Averages::from_directions(rows[k], ltr[k], rtl[k]);
        }
    }

    /// [`Self::rows`] for one row.
    fn row(&self, work: &mut RowWork, y: usize, on_entry: Averages) -> Averages {
        let mut averages = [on_entry];
        self.rows(std::slice::from_mut(work), [y], &mut averages);
        averages[0]
    }

    fn write_row<S: ImageBuffer>(&self, buf: &mut S, y: usize, work: &mut RowWork) {
        let w = self.w;
        let (grey, forward, backward) = (&work.grey[..w], &work.forward[..w], &work.backward[..w]);
        // px < floor(row_average * 95 / scale)  <=>  (px + 1) * scale <= row_average * 95,
        // in `u32` (which vectorises) for any image narrower than 8 × 4096 pixels.
        let (black, white) = (u8::from(PixelColor::Black), u8::from(PixelColor::White));
        if let Some(scale) = self.scale_u32 {
            for (x, out) in work.out[..w].iter_mut().enumerate() {
                let row_average = forward[x] + backward[x];
                let dark = (u32::from(grey[x]) + 1) * scale <= row_average * (100 - 5);
                *out = if dark { black } else { white };
            }
        } else {
            for (x, out) in work.out[..w].iter_mut().enumerate() {
                let row_average = u64::from(forward[x]) + u64::from(backward[x]);
                let dark = (u64::from(grey[x]) + 1) * self.scale <= row_average * (100 - 5);
                *out = if dark { black } else { white };
            }
        }
        buf.store_row(y, &work.out);
    }
}

impl<S> PreparedImage<S>
where
    S: ImageBuffer,
{
    pub fn prepare(mut buf: S) -> Self {
        // Couchpay patch: the same threshold as rqrr 0.11, bit for bit (the
        // companion's test `rqrr_patch::prepare_matches_rqrr_0_11`), at a third of
        // its cost on a 1280×720 frame; see `Threshold`.
        Threshold::new(buf.width()).apply(&mut buf);
        PreparedImage {
            buffer: buf,
            cache: RegionCache::new(),
            fill_queue: Vec::new(),
        }
    }

    /// Group [CapStones](struct.CapStone.html) into [Grids](struct.Grid.html)
    /// that are likely QR codes
    ///
    /// Return a vector of Grids
    pub fn detect_grids<'a>(
        &'a mut self,
    ) -> Vec<crate::Grid<crate::identify::grid::RefGridImage<'a, S>>>
    where
        S: Clone,
    {
        let mut res = Vec::new();
        let stones = crate::capstones_from_image(self);
        let groups = self.find_groupings(stones);
        let locations: Vec<_> = groups
            .into_iter()
            .filter_map(|v| crate::SkewedGridLocation::from_group(self, v))
            .collect();
        for grid_location in locations {
            // Couchpay patch: fitting the perspective costs ~5 ms a grid, far more than
            // the rest of detection and a decode together. A grid that decodes (its
            // Reed-Solomon blocks check) as set up from the capstone corners needs no
            // fitting; any other is fitted as before, so every grid that decoded before
            // still does.
            let unfitted = crate::identify::grid::RefGridImage::new(grid_location.clone(), self);
            let grid_location = if crate::decode::decode(&unfitted, std::io::sink()).is_ok() {
                grid_location
            } else {
                grid_location.refined(self)
            };
            let bounds = [
                grid_location.c.map(0.0, 0.0),
                grid_location
                    .c
                    .map(grid_location.grid_size as f64 + 1.0, 0.0),
                grid_location.c.map(
                    grid_location.grid_size as f64 + 1.0,
                    grid_location.grid_size as f64 + 1.0,
                ),
                grid_location
                    .c
                    .map(0.0, grid_location.grid_size as f64 + 1.0),
            ];
            let grid = grid_location.into_grid_image(self);
            res.push(crate::Grid { grid, bounds });
        }

        res
    }

    /// Find CapStones that form a grid
    ///
    /// By trying to match up the relative perspective of 3
    /// [CapStones](struct.CapStone.html) along with other criteria we can find the
    /// CapStones that corner the same QR code.
    fn find_groupings(&mut self, capstones: Vec<crate::CapStone>) -> Vec<CapStoneGroup>
    where
        S: Clone,
    {
        let mut used_capstones = Vec::new();
        let mut groups = Vec::new();
        for idx in 0..capstones.len() {
            if used_capstones.contains(&idx) {
                continue;
            }
            let pairs = crate::identify::find_and_rank_possible_neighbors(&capstones, idx);
            for pair in pairs {
                if used_capstones.contains(&pair.0) || used_capstones.contains(&pair.1) {
                    continue;
                }
                let group_under_test = CapStoneGroup(
                    capstones[pair.0].clone(),
                    capstones[idx].clone(),
                    capstones[pair.1].clone(),
                );
                // Confirm that this group has the other requirements of a QR code.
                // A copy of the input image is used to not contaminate the
                // original on an incorrect set of CapStones
                let mut image_copy = self.clone();
                if crate::SkewedGridLocation::from_group(&mut image_copy, group_under_test.clone())
                    .is_none()
                {
                    continue;
                }
                // This is a viable set, save this grouping
                groups.push(group_under_test);
                used_capstones.push(pair.0);
                used_capstones.push(idx);
                used_capstones.push(pair.1);
            }
        }
        groups
    }

    pub fn without_preparation(buf: S) -> Self {
        for y in 0..buf.height() {
            for x in 0..buf.width() {
                assert!(buf.get_pixel(x, y) < 2);
            }
        }

        PreparedImage {
            buffer: buf,
            cache: RegionCache::new(),
            fill_queue: Vec::new(),
        }
    }

    /// Return the width of the image
    pub fn width(&self) -> usize {
        self.buffer.width()
    }

    /// Return the height of the image
    pub fn height(&self) -> usize {
        self.buffer.height()
    }

    pub(crate) fn get_region(&mut self, (x, y): (usize, usize)) -> ColoredRegion {
        let color: PixelColor = self.buffer.get_pixel(x, y).into();
        match color {
            PixelColor::Discarded(r) => self.cache.get(r).unwrap(),
            PixelColor::Black => {
                let cache_fill = self.cache.len();
                let reg_idx = if cache_fill == REGION_SLOTS {
                    let (c, reg) = self.cache.pop_lru().expect("fill is at capacity (251)");
                    #[allow(clippy::single_match)]
                    match reg {
                        ColoredRegion::Unclaimed {
                            src_x,
                            src_y,
                            color,
                            ..
                        } => {
                            let _ = self.flood_fill(
                                src_x,
                                src_y,
                                color.into(),
                                PixelColor::Black.into(),
                                |_| (),
                            );
                        }
                        _ => (),
                    }
                    c
                } else {
                    cache_fill as u8
                };
                let next_reg_color = PixelColor::Discarded(reg_idx);
                let counter = self.repaint_and_apply((x, y), next_reg_color, AreaCounter(0));
                let new_reg = ColoredRegion::Unclaimed {
                    color: next_reg_color,
                    src_x: x,
                    src_y: y,
                    pixel_count: counter.0,
                };
                self.cache.put(reg_idx, new_reg);
                new_reg
            }
            PixelColor::Tmp1 => ColoredRegion::Tmp1,
            PixelColor::Alignment => ColoredRegion::Alignment,
            PixelColor::CapStone => ColoredRegion::CapStone,
            PixelColor::White => panic!("Tried to color white patch"),
        }
    }

    pub(crate) fn repaint_and_apply<F>(
        &mut self,
        (x, y): (usize, usize),
        target_color: PixelColor,
        fill: F,
    ) -> F
    where
        F: AreaFiller,
    {
        let src = self.buffer.get_pixel(x, y);
        if PixelColor::White == src || target_color == src {
            panic!("Cannot repaint with white or same color");
        }

        self.flood_fill(x, y, src, target_color.into(), fill)
    }

    pub fn get_pixel_at_point(&self, p: Point) -> PixelColor {
        let x = cmp::max(0, cmp::min((self.width() - 1) as i32, p.x));
        let y = cmp::max(0, cmp::min((self.height() - 1) as i32, p.y));
        self.buffer.get_pixel(x as usize, y as usize).into()
    }

    /// Couchpay patch: a pixel as stored, for scans that compare colours.
    #[inline(always)]
    pub(crate) fn raw_pixel(&self, x: usize, y: usize) -> u8 {
        self.buffer.get_pixel(x, y)
    }

    pub fn get_pixel_at(&self, x: usize, y: usize) -> PixelColor {
        self.buffer.get_pixel(x, y).into()
    }

    #[cfg(feature = "img")]
    pub fn write_state_to(&self, p: &str) {
        let mut dyn_img = image::RgbImage::new(self.width() as u32, self.height() as u32);
        const COLORS: [[u8; 3]; 8] = [
            [255, 0, 0],
            [0, 255, 0],
            [0, 0, 255],
            [255, 255, 0],
            [255, 0, 255],
            [0, 255, 255],
            [128, 128, 128],
            [128, 0, 128],
        ];
        for y in 0..self.height() {
            for x in 0..self.width() {
                let px = self.buffer.get_pixel(x, y);
                dyn_img.get_pixel_mut(x as u32, y as u32).0 = if px == 0 {
                    [255, 255, 255]
                } else if px == 1 {
                    [0, 0, 0]
                } else {
                    let i = self.buffer.get_pixel(x, y) - 2;
                    COLORS[(i % 8) as usize]
                }
            }
        }
        dyn_img.save(p).unwrap();
    }

    fn flood_fill<F>(&mut self, x: usize, y: usize, from: u8, to: u8, mut fill: F) -> F
    where
        F: AreaFiller,
    {
        assert_ne!(from, to);
        let w = self.width();
        let mut queue = std::mem::take(&mut self.fill_queue);
        queue.clear();
        queue.push((x, y));

        while let Some((x, y)) = queue.pop() {
            // Bail early in case there is nothing to fill
            if self.buffer.get_pixel(x, y) == to || self.buffer.get_pixel(x, y) != from {
                continue;
            }

            let mut left = x;
            let mut right = x;

            while left > 0 && self.buffer.get_pixel(left - 1, y) == from {
                left -= 1;
            }
            while right < w - 1 && self.buffer.get_pixel(right + 1, y) == from {
                right += 1
            }

            /* Fill the extent */
            for idx in left..=right {
                self.buffer.set_pixel(idx, y, to);
            }

            fill.update(Row { left, right, y });

            /* Seed new flood-fills */
            if y > 0 {
                let mut seeded_previous = false;
                for x in left..=right {
                    let p = self.buffer.get_pixel(x, y - 1);
                    if p == from {
                        if !seeded_previous {
                            queue.push((x, y - 1));
                        }
                        seeded_previous = true;
                    } else {
                        seeded_previous = false;
                    }
                }
            }
            if y < self.height() - 1 {
                let mut seeded_previous = false;
                for x in left..=right {
                    let p = self.buffer.get_pixel(x, y + 1);
                    if p == from {
                        if !seeded_previous {
                            queue.push((x, y + 1));
                        }
                        seeded_previous = true;
                    } else {
                        seeded_previous = false;
                    }
                }
            }
        }
        self.fill_queue = queue;
        fill
    }
}

impl PreparedImage<BasicImageBuffer> {
    /// Given a function with binary output, generate a searchable image
    ///
    /// If the given function returns `true` the matching pixel will be 'black'.
    pub fn prepare_from_bitmap<F>(w: usize, h: usize, mut fill: F) -> Self
    where
        F: FnMut(usize, usize) -> bool,
    {
        let capacity = w.checked_mul(h).expect("Image dimensions caused overflow");
        let mut pixels = Vec::with_capacity(capacity);

        for y in 0..h {
            for x in 0..w {
                let col = if fill(x, y) {
                    PixelColor::Black
                } else {
                    PixelColor::White
                };
                pixels.push(col.into())
            }
        }
        let pixels = pixels.into_boxed_slice();
        let buffer = BasicImageBuffer { w, h, pixels };
        PreparedImage::without_preparation(buffer)
    }

    /// Given a byte valued function, generate a searchable image
    ///
    /// The values returned by the function are interpreted as luminance. i.e. a
    /// value of 0 is black, 255 is white.
    pub fn prepare_from_greyscale<F>(w: usize, h: usize, mut fill: F) -> Self
    where
        F: FnMut(usize, usize) -> u8,
    {
        let capacity = w.checked_mul(h).expect("Image dimensions caused overflow");
        let mut data = vec![0; capacity];
        if w > 0 {
            for (y, row) in data.chunks_exact_mut(w).enumerate() {
                for (x, px) in row.iter_mut().enumerate() {
                    *px = fill(x, y);
                }
            }
        }
        Self::prepare_from_luma(w, h, data)
    }

    /// Couchpay patch: [`Self::prepare_from_greyscale`] for a grey image already in
    /// one buffer, row by row (`w * h` bytes, 0 black, 255 white), without a copy.
    ///
    /// # Panics
    /// When `pixels` does not hold `w * h` bytes.
    pub fn prepare_from_luma(w: usize, h: usize, pixels: Vec<u8>) -> Self {
        assert_eq!(Some(pixels.len()), w.checked_mul(h), "one byte per pixel");
        let buffer = BasicImageBuffer {
            w,
            h,
            pixels: pixels.into_boxed_slice(),
        };
        PreparedImage::prepare(buffer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img_from_array(array: [[u8; 3]; 3]) -> PreparedImage<BasicImageBuffer> {
        let mut pixels = Vec::new();
        for col in array.iter() {
            for item in col.iter() {
                if *item == 0 {
                    pixels.push(0)
                } else {
                    pixels.push(1)
                }
            }
        }
        let buffer = BasicImageBuffer {
            w: 3,
            h: 3,
            pixels: pixels.into_boxed_slice(),
        };

        PreparedImage {
            buffer,
            cache: RegionCache::new(),
            fill_queue: Vec::new(),
        }
    }

    #[test]
    fn test_flood_fill_full() {
        let mut test_full = img_from_array([[1, 1, 1], [1, 1, 1], [1, 1, 1]]);

        test_full.flood_fill(0, 0, 1, 2, &mut |_| ());

        for x in 0..3 {
            for y in 0..3 {
                assert_eq!(test_full.get_pixel_at(x, y), 2);
            }
        }
    }

    #[test]
    fn test_flood_fill_single() {
        let mut test_single = img_from_array([[1, 0, 1], [0, 1, 0], [1, 0, 1]]);

        test_single.flood_fill(1, 1, 1, 2, &mut |_| ());

        for x in 0..3 {
            for y in 0..3 {
                if x == 1 && y == 1 {
                    assert_eq!(test_single.get_pixel_at(x, y), 2);
                } else {
                    let col = if (x + y) % 2 == 0 { 1 } else { 0 };
                    assert_eq!(test_single.get_pixel_at(x, y), col);
                }
            }
        }
    }

    #[test]
    fn test_flood_fill_ring() {
        let mut test_ring = img_from_array([[1, 1, 1], [1, 0, 1], [1, 1, 1]]);

        test_ring.flood_fill(0, 0, 1, 2, &mut |_| ());

        for x in 0..3 {
            for y in 0..3 {
                if x == 1 && y == 1 {
                    assert_eq!(test_ring.get_pixel_at(x, y), 0);
                } else {
                    assert_eq!(test_ring.get_pixel_at(x, y), 2);
                }
            }
        }
    }

    #[test]
    fn test_flood_fill_u() {
        let mut test_u = img_from_array([[1, 0, 1], [1, 0, 1], [1, 1, 1]]);

        test_u.flood_fill(0, 0, 1, 2, &mut |_| ());

        for x in 0..3 {
            for y in 0..3 {
                if x == 1 && (y == 0 || y == 1) {
                    assert_eq!(test_u.get_pixel_at(x, y), 0);
                } else {
                    assert_eq!(test_u.get_pixel_at(x, y), 2);
                }
            }
        }
    }

    #[test]
    fn test_flood_fill_empty() {
        let mut test_empty = img_from_array([[0, 0, 0], [0, 0, 0], [0, 0, 0]]);

        test_empty.flood_fill(1, 1, 1, 2, &mut |_| ());

        for x in 0..3 {
            for y in 0..3 {
                assert_eq!(test_empty.get_pixel_at(x, y), 0)
            }
        }
    }

    #[test]
    fn test_get_region() {
        let mut test_u = img_from_array([[1, 0, 1], [1, 0, 1], [1, 1, 1]]);

        let reg = test_u.get_region((0, 0));
        let (color, src_x, src_y, pixel_count) = match reg {
            ColoredRegion::Unclaimed {
                color,
                src_x,
                src_y,
                pixel_count,
            } => (color, src_x, src_y, pixel_count),
            x => panic!("Expected Region::Unclaimed, got {:?}", x),
        };
        assert_eq!(0, src_x);
        assert_eq!(0, src_y);
        assert_eq!(7, pixel_count);
        for x in 0..3 {
            for y in 0..3 {
                if x == 1 && (y == 0 || y == 1) {
                    assert_eq!(PixelColor::White, test_u.get_pixel_at(x, y));
                } else {
                    assert_eq!(color, test_u.get_pixel_at(x, y));
                }
            }
        }
    }
}
