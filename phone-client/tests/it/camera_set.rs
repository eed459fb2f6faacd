//! A "camera" set generated from a TV-like order screen: at least 95% of the frames
//! must decode to the pay link.

use phone_client::Decoder;

use crate::support::{Rng, Shot, photograph, test_link, tv_screen};

/// Frames per resolution in the set.
const FRAMES_PER_SIZE: usize = 40;
/// The bar: at least this share of camera frames must decode.
const MIN_DECODE_RATE: f64 = 0.95;

#[test]
fn camera_set_decodes_at_least_95_percent() {
    let link = test_link("http://192.168.1.20:8080").to_string();
    let mut rng = Rng::new(0xC0FFEE);
    let screen = tv_screen(&link, &mut rng);
    let decoder = Decoder::for_camera();
    let (mut ok, mut total, mut rqrr_only_ok) = (0usize, 0usize, 0usize);
    let mut failures = Vec::new();
    let mut slowest = std::time::Duration::ZERO;
    for (w, h) in [(1280, 720), (640, 480)] {
        let mut times = Vec::new();
        let mut work = Vec::new();
        for i in 0..FRAMES_PER_SIZE {
            let shot = Shot::random(&mut rng, w, h);
            let frame = photograph(&screen, &shot, &mut rng);
            let report = decoder.decode(&frame, &|t| t == link);
            total += 1;
            slowest = slowest.max(report.elapsed);
            times.push(report.elapsed);
            work.push(report.work);
            if report.text.as_deref() == Some(link.as_str()) {
                ok += 1;
                if report.method.is_some_and(|m| m.starts_with("rqrr")) {
                    rqrr_only_ok += 1;
                }
            } else {
                failures.push(format!("{w}x{h} #{i}: {shot:?}"));
            }
        }
        times.sort();
        let ms =
            |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
        work.sort();
        let units = |p: f64| work[((work.len() - 1) as f64 * p).round() as usize] as f64 / 1e6;
        println!(
            "{w}x{h} frames: decode p50 {:.1} ms, p95 {:.1} ms; work p50 {:.2} M, p95 {:.2} M units",
            ms(0.5),
            ms(0.95),
            units(0.5),
            units(0.95)
        );
    }
    let rate = ok as f64 / total as f64;
    println!(
        "camera set: {ok}/{total} decoded ({:.1}%), {rqrr_only_ok} by an rqrr view; slowest frame {} ms",
        rate * 100.0,
        slowest.as_millis()
    );
    for f in &failures {
        println!("  not decoded: {f}");
    }
    assert!(
        rate >= MIN_DECODE_RATE,
        "decode rate {rate:.3} below {MIN_DECODE_RATE}"
    );
}

#[test]
fn saved_pictures_decode_the_same_way() {
    // The same frame as PNG, JPEG and WebP (lossless) goes through picture decoding.
    let link = test_link("http://127.0.0.1:8080").to_string();
    let mut rng = Rng::new(7);
    let screen = tv_screen(&link, &mut rng);
    let shot = Shot::random(&mut rng, 1280, 720);
    let frame = photograph(&screen, &shot, &mut rng);
    let rgb = image::DynamicImage::ImageLuma8(frame).to_rgb8();
    for format in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::WebP,
    ] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        rgb.write_to(&mut bytes, format).unwrap();
        let gray = phone_client::decode::picture_from_bytes(bytes.get_ref()).unwrap();
        let report = Decoder::for_camera().decode(&gray, &|t| t == link);
        assert_eq!(report.text.as_deref(), Some(link.as_str()), "{format:?}");
    }
}
