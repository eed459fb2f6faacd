//! The patched rqrr in `third_party/rqrr` (see its PATCHES.md) must find exactly what
//! rqrr 0.11.0 found where a patch only makes it faster: here, its threshold.

use rqrr::PreparedImage;

use crate::support::Rng;

/// rqrr 0.11.0's threshold, as it was: a running average along each row in both
/// directions, snaking from row to row, with a division per pixel. Dark is `true`.
fn prepare_0_11(w: usize, h: usize, grey: &[u8]) -> Vec<bool> {
    let mut out = vec![false; w * h];
    let mut row_average = vec![0; w];
    let mut avg_v = 0;
    let mut avg_u = 0;
    let threshold_s = (w / 8).max(1);
    for y in 0..h {
        row_average.fill(0);
        for x in 0..w {
            let (v, u) = if y % 2 == 0 {
                (w - 1 - x, x)
            } else {
                (x, w - 1 - x)
            };
            avg_v = avg_v * (threshold_s - 1) / threshold_s + grey[y * w + v] as usize;
            avg_u = avg_u * (threshold_s - 1) / threshold_s + grey[y * w + u] as usize;
            row_average[v] += avg_v;
            row_average[u] += avg_u;
        }
        for x in 0..w {
            out[y * w + x] =
                (grey[y * w + x] as usize) < row_average[x] * (100 - 5) / (200 * threshold_s);
        }
    }
    out
}

#[test]
fn prepare_matches_rqrr_0_11() {
    let mut rng = Rng::new(0x2545_f491);
    let sizes = [
        (1, 1),
        (3, 7),
        (15, 4),
        (16, 9),
        (17, 17),
        (240, 240),
        (333, 101),
        (1280, 48),
        (4000, 3),
        // Tall enough to be thresholded in bands.
        (64, 64),
        (97, 300),
        (640, 480),
        (1280, 720),
    ];
    for (w, h) in sizes {
        for kind in 0..4 {
            let grey: Vec<u8> = (0..w * h)
                .map(|i| match kind {
                    0 => rng.below(256) as u8,
                    // Flat areas, edges and extremes: where a rounding slip would show.
                    1 => [0u8, 255, 128, 127][rng.below(4) as usize],
                    2 => ((i % w) * 255 / w.max(2) + rng.below(3) as usize).min(255) as u8,
                    // All white: the bounds of a band's averages never meet.
                    _ => 255,
                })
                .collect();
            let prepared = PreparedImage::prepare_from_greyscale(w, h, |x, y| grey[y * w + x]);
            let got: Vec<bool> = (0..w * h)
                .map(|i| prepared.get_pixel_at(i % w, i / w) != 0u8)
                .collect();
            assert!(
                got == prepare_0_11(w, h, &grey),
                "{w}×{h}, kind {kind}: the threshold differs from rqrr 0.11.0's"
            );
        }
    }
}
