//! Several codes in one camera frame (a poster wall, a screen beside a printed code):
//! the decoder reads them all and picks the one that is a Couchpay link.

use image::{GrayImage, Luma, imageops};
use phone_client::Decoder;
use protocol::PayLink;

use crate::support::{Rng, fill, qr_modules, test_link};

/// Frames in the generated set.
const FRAMES: usize = 60;
/// The bar: the Couchpay link is found in at least this share of frames.
const MIN_FOUND_RATE: f64 = 0.95;
const FRAME_W: u32 = 1280;
const FRAME_H: u32 = 720;

/// `text` as a light-on-dark-free QR image of `side` px (quiet zone included), resized
/// from one pixel per module so modules land off the pixel grid, as in a photo.
fn code_image(text: &str, side: u32) -> GrayImage {
    let (w, bits) = qr_modules(text);
    let n = w as u32 + 8;
    let small = GrayImage::from_fn(n, n, |x, y| {
        let (mx, my) = (x as i64 - 4, y as i64 - 4);
        let dark = mx >= 0
            && my >= 0
            && (mx as usize) < w
            && (my as usize) < w
            && bits[my as usize * w + mx as usize];
        Luma([if dark { 20 } else { 235 }])
    });
    imageops::resize(&small, side, side, imageops::FilterType::Triangle)
}

/// Text of a code that is not Couchpay's: other sites' links and plain text.
fn decoy(rng: &mut Rng, i: usize) -> String {
    match rng.below(3) {
        0 => format!(
            "https://example.com/posters/{}?ref={i}",
            rng.next_u64() % 100_000
        ),
        1 => format!(
            "WIFI:S:Guest-{i};T:WPA;P:{};;",
            rng.next_u64() % 1_000_000_000
        ),
        _ => format!(
            "Concert on Friday, doors at 19:{:02}. Table {i}",
            rng.below(60)
        ),
    }
}

/// A wall with 3 to 6 codes of sides 1/12 to 1/3 of the frame width, one of them
/// `link`, not overlapping, with sensor noise and a little blur.
fn wall(link: &str, rng: &mut Rng) -> GrayImage {
    let mut frame = GrayImage::from_fn(FRAME_W, FRAME_H, |x, y| {
        Luma([(110.0
            + 60.0 * f64::from(x) / f64::from(FRAME_W)
            + 20.0 * f64::from(y) / f64::from(FRAME_H)) as u8])
    });
    for _ in 0..12 {
        let (w, h) = (rng.below(300) + 20, rng.below(200) + 20);
        let (x, y) = (rng.below(FRAME_W), rng.below(FRAME_H));
        let v = rng.below(256) as u8;
        fill(&mut frame, x, y, w, h, v);
    }
    let count = 3 + rng.below(4) as usize;
    let couchpay = rng.below(count as u32) as usize;
    let mut placed: Vec<(u32, u32, u32)> = Vec::new();
    let mut tries = 0;
    while placed.len() < count && tries < 500 {
        tries += 1;
        let side = (f64::from(FRAME_W) / rng.range(3.0, 12.0)) as u32;
        if side >= FRAME_H {
            continue;
        }
        let (x, y) = (rng.below(FRAME_W - side), rng.below(FRAME_H - side));
        let clear = placed.iter().all(|&(px, py, ps)| {
            x + side + 8 <= px || px + ps + 8 <= x || y + side + 8 <= py || py + ps + 8 <= y
        });
        if !clear {
            continue;
        }
        let i = placed.len();
        let text = if i == couchpay {
            link.to_owned()
        } else {
            decoy(rng, i)
        };
        imageops::overlay(&mut frame, &code_image(&text, side), x.into(), y.into());
        placed.push((x, y, side));
    }
    assert_eq!(placed.len(), count, "the wall has room for {count} codes");
    let mut frame = imageops::blur(&frame, rng.range(0.3, 0.9) as f32);
    for p in frame.pixels_mut() {
        let v = f64::from(p[0]) + rng.gauss() * rng.range(0.0, 8.0);
        p[0] = v.clamp(0.0, 255.0) as u8;
    }
    frame
}

#[test]
fn the_couchpay_link_is_found_among_several_codes() {
    let mut rng = Rng::new(0x5EED_C0DE);
    let decoder = Decoder::for_camera();
    let mut found = 0;
    let mut others_seen = 0;
    let mut misses = Vec::new();
    for i in 0..FRAMES {
        let link = test_link("http://192.168.1.20:8080").to_string();
        let frame = wall(&link, &mut rng);
        let report = decoder.decode(&frame, &|t| PayLink::parse(t).is_ok());
        others_seen += report.seen.iter().filter(|t| **t != link).count();
        if report.text.as_deref() == Some(link.as_str()) {
            found += 1;
        } else {
            assert!(
                report.text.is_none(),
                "frame {i}: accepted {:?}",
                report.text
            );
            misses.push(i);
        }
    }
    let rate = found as f64 / FRAMES as f64;
    println!(
        "multi-code frames: Couchpay link found in {found} of {FRAMES} ({:.1}%); \
         {others_seen} other codes read on the way; missed {misses:?}",
        rate * 100.0
    );
    assert!(
        rate >= MIN_FOUND_RATE,
        "Couchpay link found in {:.1}% of multi-code frames, below {:.0}%",
        rate * 100.0,
        MIN_FOUND_RATE * 100.0
    );
}
