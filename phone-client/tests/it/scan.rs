//! The scan loop over a virtual camera (a folder of recorded frames): the first frame
//! holding a pay link wins; other QR codes and unreadable files are skipped.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use image::{GrayImage, Luma};
use phone_client::frames::{self, FrameError, ScanError};
use phone_client::{Decoder, FolderSource, MemorySource, ScanOptions, accept_pay_link};

use crate::support::{Rng, Shot, draw_qr, photograph, test_link, tv_screen};

fn options() -> ScanOptions {
    ScanOptions {
        timeout: Duration::from_secs(60),
        workers: 2,
    }
}

#[test]
fn virtual_camera_finds_the_pay_link_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let link = test_link("http://127.0.0.1:8080").to_string();
    let mut rng = Rng::new(11);
    // Frames 0-2: the room without a QR code, an unrelated QR code, a corrupt file.
    let empty = GrayImage::from_fn(640, 480, |x, y| Luma([((x * 7 + y * 3) % 200) as u8]));
    empty.save(dir.path().join("frame-000.png")).unwrap();
    let mut other = GrayImage::from_pixel(640, 480, Luma([200]));
    draw_qr(
        &mut other,
        "https://example.com/not-a-pay-link",
        150,
        80,
        6,
        0,
        255,
    );
    other.save(dir.path().join("frame-001.png")).unwrap();
    std::fs::write(dir.path().join("frame-002.jpg"), b"\xff\xd8\xff broken").unwrap();
    // Frame 3: the TV, photographed.
    let screen = tv_screen(&link, &mut rng);
    let shot = Shot::random(&mut rng, 640, 480);
    photograph(&screen, &shot, &mut rng)
        .save(dir.path().join("frame-003.png"))
        .unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a frame").unwrap();

    let source = FolderSource::open(dir.path()).unwrap();
    assert_eq!(source.len(), 4);
    let mut progress_calls = 0;
    let hit = frames::scan(
        Box::new(source),
        &Decoder::for_camera(),
        accept_pay_link(),
        &options(),
        &AtomicBool::new(false),
        |_| progress_calls += 1,
    )
    .unwrap();
    assert_eq!(hit.text, link);
    assert_eq!(
        hit.frame, 2,
        "the corrupt file is skipped, so the TV is the third frame decoded"
    );
    assert!(hit.report.seen.iter().all(|t| t == &link));
    assert!(progress_calls >= 1, "progress is reported at least once");
}

#[test]
fn a_source_without_pay_links_ends_not_found() {
    let frames: Vec<GrayImage> = (0..5u8)
        .map(|i| GrayImage::from_pixel(320, 240, Luma([i * 40])))
        .collect();
    let err = frames::scan(
        Box::new(MemorySource::new(frames, false)),
        &Decoder::for_camera(),
        accept_pay_link(),
        &options(),
        &AtomicBool::new(false),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ScanError::NotFound { frames: 5 }), "{err}");
}

#[test]
fn a_cancelled_scan_stops() {
    let frames: Vec<GrayImage> = (0..50).map(|_| GrayImage::new(640, 480)).collect();
    let err = frames::scan(
        Box::new(MemorySource::new(frames, true)),
        &Decoder::for_camera(),
        accept_pay_link(),
        &options(),
        &AtomicBool::new(true),
        |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, ScanError::Cancelled), "{err}");
}

#[test]
fn an_empty_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = FolderSource::open(dir.path()).unwrap_err();
    assert!(matches!(err, FrameError::EmptyFolder(_)));
    assert!(err.to_string().contains("no PNG, JPEG or WebP"));
}

fn any_video_device() -> bool {
    std::fs::read_dir("/dev")
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(false)
}

#[cfg(not(feature = "camera"))]
#[test]
fn camera_without_the_feature_says_how_to_get_it() {
    let Err(err) = frames::open_camera(0) else {
        panic!("a camera opened in a build without camera support");
    };
    assert!(matches!(err, FrameError::CameraNotBuilt));
    assert!(err.to_string().contains("--features camera"));
    let _ = any_video_device;
}

#[cfg(feature = "camera")]
#[test]
fn camera_reports_no_camera_clearly() {
    // Hermetic on machines without a camera (CI); on one with a camera it must open.
    match frames::open_camera(0) {
        Ok(source) => assert!(any_video_device(), "opened {}", source.describe()),
        Err(e) => {
            assert!(!any_video_device(), "a camera exists but failed: {e}");
            assert!(matches!(e, FrameError::NoCamera(_)), "{e}");
            assert!(e.to_string().starts_with("no camera found"));
        }
    }
}
