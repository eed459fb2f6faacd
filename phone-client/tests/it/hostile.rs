//! Hostile input: random bytes, truncated and huge pictures, pathological frames. None
//! may panic, and each decode stays within its time budget.

use std::time::{Duration, Instant};

use image::{GrayImage, Luma};
use phone_client::Decoder;
use phone_client::decode::{PictureError, picture_from_bytes};

use crate::support::{Rng, png_bytes, test_link, tv_screen};

/// Slack over the decoder's budget for the one attempt that may be running when the
/// budget runs out, in milliseconds.
const BUDGET_SLACK_MS: u64 = 900;

fn within_budget(elapsed: Duration, decoder: &Decoder) -> bool {
    elapsed <= decoder.budget() + Duration::from_millis(BUDGET_SLACK_MS)
}

#[test]
fn random_bytes_are_refused_without_panic() {
    let mut rng = Rng::new(1);
    for len in [0usize, 1, 7, 64, 1024, 100_000] {
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        assert!(
            picture_from_bytes(&bytes).is_err(),
            "{len} random bytes accepted"
        );
    }
    // Random bytes behind real magic numbers reach the format decoders themselves.
    for magic in [
        &b"\x89PNG\r\n\x1a\n"[..],
        b"\xff\xd8\xff\xe0",
        b"RIFF\0\0\0\0WEBPVP8 ",
    ] {
        let mut bytes = magic.to_vec();
        bytes.extend((0..5000).map(|_| rng.next_u64() as u8));
        assert!(picture_from_bytes(&bytes).is_err());
    }
}

#[test]
fn truncated_pictures_never_panic() {
    let link = test_link("http://127.0.0.1:8080").to_string();
    let screen = tv_screen(&link, &mut Rng::new(2));
    let png = png_bytes(&screen);
    let mut jpeg = std::io::Cursor::new(Vec::new());
    screen
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .unwrap();
    let decoder = Decoder::default();
    for bytes in [png, jpeg.into_inner()] {
        for cut in [8, 100, bytes.len() / 3, bytes.len() / 2, bytes.len() - 10] {
            let start = Instant::now();
            // A truncated picture may be refused or decoded partially; either way the
            // decode that follows must stay in budget.
            if let Ok(frame) = picture_from_bytes(&bytes[..cut]) {
                let _ = decoder.decode(&frame, &|_| true);
            }
            assert!(
                within_budget(start.elapsed(), &decoder),
                "cut {cut}: {:?}",
                start.elapsed()
            );
        }
    }
}

#[test]
fn huge_pictures_are_refused_before_decoding() {
    // A PNG header claiming 60000×60000 pixels (3.6 GB): refused from the header alone.
    let mut png = png_bytes(&GrayImage::new(32, 32));
    png[16..20].copy_from_slice(&60_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&60_000u32.to_be_bytes());
    let start = Instant::now();
    let err = picture_from_bytes(&png).unwrap_err();
    assert!(
        matches!(err, PictureError::TooLarge { .. } | PictureError::Format(_)),
        "{err}"
    );
    assert!(start.elapsed() < Duration::from_secs(1));
    // Over the byte limit.
    let big = vec![0u8; phone_client::decode::MAX_PICTURE_BYTES + 1];
    assert!(matches!(
        picture_from_bytes(&big),
        Err(PictureError::TooManyBytes { .. })
    ));
}

#[test]
fn a_large_real_frame_decodes_within_budget() {
    // A 4000×3000 photo is downscaled first, so even the worst case stays in budget.
    let decoder = Decoder::default();
    let mut rng = Rng::new(3);
    let noise = GrayImage::from_fn(4000, 3000, |_, _| Luma([rng.next_u64() as u8]));
    let start = Instant::now();
    let report = decoder.decode(&noise, &|_| true);
    assert!(report.text.is_none());
    assert!(
        within_budget(start.elapsed(), &decoder),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn pathological_frames_stay_in_budget() {
    let decoder = Decoder::default();
    let mut rng = Rng::new(4);
    let frames = [
        GrayImage::new(1280, 720),
        GrayImage::from_pixel(1280, 720, Luma([255])),
        // A checkerboard is a forest of would-be finder patterns.
        GrayImage::from_fn(1280, 720, |x, y| {
            Luma([if (x / 3 + y / 3) % 2 == 0 { 0 } else { 255 }])
        }),
        GrayImage::from_fn(1280, 720, |_, _| Luma([rng.next_u64() as u8])),
        GrayImage::new(21, 5000),
    ];
    for f in frames {
        let start = Instant::now();
        let r = decoder.decode(&f, &|_| true);
        assert!(r.text.is_none(), "{:?}", r.text);
        assert!(
            within_budget(start.elapsed(), &decoder),
            "{}x{}: {:?}",
            f.width(),
            f.height(),
            start.elapsed()
        );
    }
}
