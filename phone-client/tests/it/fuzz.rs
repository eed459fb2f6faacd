//! Property tests of the companion's parsers of untrusted input: picture loading
//! (`picture_from_bytes`, then QR decoding to a pay link) and the BLE GATT record
//! (`ble::parse_record`). Inputs are real PNG, JPEG and WebP pictures of a pay-link QR
//! code, mutated (bytes, header dimensions with checksums fixed, EXIF orientation), and
//! random bytes. None may panic, each call stays within its time limit, the process
//! within its memory limit, and whatever parses re-encodes to the same value.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use image::{DynamicImage, GrayImage, ImageFormat, Luma};
use phone_client::ble::{MAX_RECORD_BYTES, parse_record};
use phone_client::decode::{
    MAX_PICTURE_SIDE_PX, MIN_FRAME_SIDE_PX, PictureError, picture_from_bytes,
};
use phone_client::{Decoder, accept_pay_link};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use protocol::discovery::MAX_NAME_CHARS;
use protocol::{
    Announcement, Currency, DeviceId, DiscoveryRecord, Money, OrderId, PayLink,
    SHORT_CODE_ALPHABET, ServerUrl, ShortCode,
};

use crate::support::{draw_qr, png_bytes, qr_modules, test_link};

/// Pictures (seeds, mutated seeds, random bytes) fed to `picture_from_bytes`.
const PICTURE_CASES: u32 = 20_000;
/// Mutated QR pictures that also go through the full QR decoder.
const DECODE_CASES: u32 = 1_000;
/// GATT record values (well-formed, mutated, random, oversized) fed to `parse_record`.
const GATT_CASES: u32 = 100_000;

/// Time one picture may take to load: a base plus a share per pixel it declares, in
/// milliseconds and nanoseconds per pixel. A few-kilobyte JPEG may declare 12000×12000
/// pixels (the limit) and decode to that, at about 13 ns a pixel on an idle machine
/// (1.9 s) and up to 40 next to the other tests on 2 cores; the margin over that is
/// for a loaded CI machine, while a decoder looping or allocating past the limits
/// would still fail.
const PICTURE_BASE_MS: u64 = 250;
const PICTURE_NS_PER_PIXEL: u64 = 100;
/// Largest frame re-encoded as PNG to check that it loads back the same, in pixels:
/// encoding a frame at the size limit takes seconds, and the few such frames (a
/// mutated header declaring 12000 pixels a side) are checked for time and size only.
const ROUND_TRIP_MAX_PIXELS: u64 = 4_000_000;
/// Slack over the decoder's budget for the one attempt running when it runs out, in
/// milliseconds (as in the `hostile` tests).
const DECODE_SLACK_MS: u64 = 900;
/// Longest TXT string DNS allows (one length byte), in bytes.
const MAX_TXT_STRING_BYTES: usize = 255;
/// Longest one `parse_record` call may take, in milliseconds.
const PARSE_LIMIT_MS: u64 = 50;
/// Highest resident memory the test process may reach, in bytes: one picture at the
/// decoder's allocation limit, its grey copy and a rotated copy, plus the other tests.
const MAX_PROCESS_RSS_BYTES: u64 = 3 * 1024 * 1024 * 1024;
/// Highest address space the test process may reserve, in bytes. Unlike resident
/// memory it also counts an allocation that was never touched, such as a zeroed
/// buffer for a picture that fails to decode; a 100000×100000 grey buffer is 10 GB.
const MAX_PROCESS_VM_BYTES: u64 = 8 * 1024 * 1024 * 1024;
/// How much the reserved address space may grow while huge headers are refused, in
/// bytes: a buffer for any of them would be more than twice this.
const MAX_VM_GROWTH_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Runs `test` on `cases` inputs from `strategy` (nothing written to disk on failure),
/// then checks the process's memory.
#[track_caller]
fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let start = Instant::now();
    if let Err(e) = TestRunner::new(config).run(&strategy, test) {
        panic!("{e}");
    }
    // Shown with `--nocapture`: what each property costs in CI time.
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    println!("{test}: {cases} cases in {:?}", start.elapsed());
    check_memory();
}

/// Fails when the process's peak resident memory or address space is over its limit.
#[track_caller]
fn check_memory() {
    if let Some(rss) = status_bytes("VmHWM") {
        assert!(
            rss <= MAX_PROCESS_RSS_BYTES,
            "peak resident memory {rss} bytes is over {MAX_PROCESS_RSS_BYTES}"
        );
    }
    if let Some(vm) = status_bytes("VmPeak") {
        assert!(
            vm <= MAX_PROCESS_VM_BYTES,
            "peak address space {vm} bytes is over {MAX_PROCESS_VM_BYTES}"
        );
    }
}

/// A size the system reports for this process in `/proc/self/status` (Linux), such as
/// `VmHWM` (peak resident memory) or `VmPeak` (peak address space), in bytes.
fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `f` and fails if it took longer than `limit`. A slow call is timed once more, so
/// only a call that is slow twice fails, not one descheduled on a loaded machine.
#[track_caller]
fn timed<T>(limit: Duration, f: impl Fn() -> T) -> T {
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    if took > limit {
        let again = Instant::now();
        drop(f());
        let retook = again.elapsed();
        assert!(
            retook <= limit,
            "the call took {took:?}, then {retook:?}; the limit is {limit:?}"
        );
    }
    out
}

// ---------------------------------------------------------------------------------------
// Pictures.

/// The pay link in every seed picture.
static LINK: LazyLock<String> = LazyLock::new(|| test_link("http://192.168.1.20:8080").to_string());

/// A QR code of [`LINK`] at 3 px per module with a light margin, wider than high so an
/// EXIF rotation changes its shape.
fn qr_frame() -> GrayImage {
    let (modules, _) = qr_modules(&LINK);
    let side = (modules as u32 + 8) * 3;
    let mut img = GrayImage::from_pixel(side + 40, side, Luma([255]));
    draw_qr(&mut img, &LINK, 20, 0, 3, 0, 255);
    img
}

fn encoded(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("the picture encodes");
    out.into_inner()
}

/// Real pictures of the QR code: PNG in four pixel formats, JPEG, lossless WebP.
static SEEDS: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    let gray = qr_frame();
    let img = DynamicImage::ImageLuma8(gray.clone());
    vec![
        png_bytes(&gray),
        encoded(&DynamicImage::ImageRgb8(img.to_rgb8()), ImageFormat::Png),
        encoded(&DynamicImage::ImageRgba8(img.to_rgba8()), ImageFormat::Png),
        encoded(
            &DynamicImage::ImageLuma16(img.to_luma16()),
            ImageFormat::Png,
        ),
        encoded(&DynamicImage::ImageRgb8(img.to_rgb8()), ImageFormat::Jpeg),
        encoded(&DynamicImage::ImageRgb8(img.to_rgb8()), ImageFormat::WebP),
    ]
});

/// Index of the JPEG seed, which may get an EXIF orientation.
const JPEG_SEED: usize = 4;

/// `jpeg` with an EXIF APP1 segment carrying `orientation` right after its SOI marker.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut app1 = b"Exif\0\0MM\0\x2a\0\0\0\x08".to_vec();
    app1.extend(1u16.to_be_bytes()); // One IFD entry:
    app1.extend(0x0112u16.to_be_bytes()); // Orientation,
    app1.extend(3u16.to_be_bytes()); // SHORT,
    app1.extend(1u32.to_be_bytes()); // one value,
    app1.extend(orientation.to_be_bytes());
    app1.extend([0, 0]);
    app1.extend(0u32.to_be_bytes()); // No next IFD.
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(
        u16::try_from(app1.len() + 2)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    out.extend(app1);
    out.extend(&jpeg[2..]);
    out
}

/// CRC-32 (ISO-HDLC, as PNG uses), bit by bit: chunks here are small.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Recomputes the CRC of every whole PNG chunk, so that edits inside a chunk reach the
/// decoder instead of stopping at the checksum.
fn fix_png_crcs(bytes: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= bytes.len() {
        let len = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
        let Some(end) = usize::try_from(len)
            .ok()
            .and_then(|len| (at + 8).checked_add(len))
            .filter(|end| end + 4 <= bytes.len())
        else {
            break;
        };
        let crc = crc32(&bytes[at + 4..end]);
        bytes[end..end + 4].copy_from_slice(&crc.to_be_bytes());
        at = end + 4;
    }
}

fn find(bytes: &[u8], needle: &[u8]) -> Option<usize> {
    bytes.windows(needle.len()).position(|w| w == needle)
}

/// Writes `w`×`h` into whichever header `bytes` has (PNG IHDR, JPEG SOF, WebP VP8L),
/// truncated to what the header can hold, and fixes a PNG's checksum.
fn set_dimensions(bytes: &mut [u8], w: u32, h: u32) {
    if let Some(at) = find(bytes, b"IHDR").filter(|at| at + 12 <= bytes.len()) {
        bytes[at + 4..at + 8].copy_from_slice(&w.to_be_bytes());
        bytes[at + 8..at + 12].copy_from_slice(&h.to_be_bytes());
        fix_png_crcs(bytes);
    } else if let Some(at) = [&[0xff, 0xc0][..], &[0xff, 0xc2]]
        .iter()
        .find_map(|m| find(bytes, m))
        .filter(|at| at + 9 <= bytes.len())
    {
        let clip = |v: u32| u16::try_from(v).unwrap_or(u16::MAX).to_be_bytes();
        bytes[at + 5..at + 7].copy_from_slice(&clip(h));
        bytes[at + 7..at + 9].copy_from_slice(&clip(w));
    } else if let Some(at) = find(bytes, b"VP8L").filter(|at| at + 13 <= bytes.len()) {
        // 14 bits each of width − 1 and height − 1, little-endian, after the signature.
        let side = |v: u32| v.clamp(1, 1 << 14) - 1;
        let packed = side(w) | side(h) << 14 | (u32::from(bytes[at + 12]) >> 4 & 0xf) << 28;
        bytes[at + 9..at + 13].copy_from_slice(&packed.to_le_bytes());
    }
}

/// One edit of a picture file.
#[derive(Clone, Debug)]
enum Edit {
    /// Flips one bit (position modulo the length).
    FlipBit(usize, u8),
    /// Overwrites one byte.
    SetByte(usize, u8),
    /// Cuts the file short.
    Truncate(usize),
    /// Removes up to `n` bytes.
    Remove(usize, usize),
    /// Inserts a byte repeated `n` times.
    Repeat(usize, u8, usize),
    /// Copies a slice of the file to another place in it.
    Duplicate(usize, usize, usize),
    /// Declares other dimensions in the header.
    Dimensions(u32, u32),
    /// Recomputes PNG checksums after the edits so far.
    FixCrcs,
}

/// Dimensions worth declaring: tiny, the limits and just past them, huge. Sizes near
/// the limit are drawn rarely: a JPEG declaring them decodes for seconds.
fn dimension() -> impl Strategy<Value = u32> {
    prop_oneof![
        2 => proptest::sample::select(
            &[
                0,
                1,
                MIN_FRAME_SIDE_PX - 1,
                MIN_FRAME_SIDE_PX,
                MAX_PICTURE_SIDE_PX,
                MAX_PICTURE_SIDE_PX + 1,
                16_384,
                65_535,
                100_000,
                1 << 31,
                u32::MAX,
            ][..]
        ),
        3 => 1u32..1_000,
        1 => any::<u32>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Edit::FlipBit(i, b)),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::SetByte(i, b)),
        2 => any::<usize>().prop_map(Edit::Truncate),
        1 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Remove(i, n)),
        1 => (any::<usize>(), any::<u8>(), 1usize..100_000)
            .prop_map(|(i, b, n)| Edit::Repeat(i, b, n)),
        1 => (any::<usize>(), any::<usize>(), 1usize..256)
            .prop_map(|(a, b, n)| Edit::Duplicate(a, b, n)),
        2 => (dimension(), dimension()).prop_map(|(w, h)| Edit::Dimensions(w, h)),
        2 => Just(Edit::FixCrcs),
    ]
}

fn splice_in(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = out.split_off(at);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&tail);
}

fn edited(input: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut out = input.to_vec();
    for e in edits {
        let len = out.len();
        let at = |i: usize| i.checked_rem(len).unwrap_or(0);
        let gap = |i: usize| i % (len + 1);
        match *e {
            Edit::FlipBit(i, bit) if len > 0 => out[at(i)] ^= 1 << bit,
            Edit::SetByte(i, b) if len > 0 => out[at(i)] = b,
            Edit::Truncate(i) => out.truncate(gap(i)),
            Edit::Remove(i, n) if len > 0 => {
                let a = at(i);
                let tail = out.split_off((a + n).min(len));
                out.truncate(a);
                out.extend_from_slice(&tail);
            }
            Edit::Repeat(i, b, n) => splice_in(&mut out, gap(i), &vec![b; n]),
            Edit::Duplicate(from, to, n) if len > 0 => {
                let a = at(from);
                let piece = out[a..(a + n).min(len)].to_vec();
                splice_in(&mut out, gap(to), &piece);
            }
            Edit::Dimensions(w, h) => set_dimensions(&mut out, w, h),
            Edit::FixCrcs => fix_png_crcs(&mut out),
            // Edits of a byte that an empty file does not have leave it empty.
            _ => {}
        }
    }
    out
}

/// A seed picture (the JPEG maybe with an EXIF orientation, 0 and 9 being invalid ones).
fn seed() -> impl Strategy<Value = Vec<u8>> {
    (0..SEEDS.len(), proptest::option::of(0u16..10)).prop_map(
        |(i, orientation)| match orientation {
            Some(o) if i == JPEG_SEED => with_exif_orientation(&SEEDS[i], o),
            _ => SEEDS[i].clone(),
        },
    )
}

/// The starts of the formats the companion reads.
const MAGIC_NUMBERS: &[&[u8]] = &[
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"RIFF\0\0\0\0WEBPVP8L",
    b"RIFF\0\0\0\0WEBPVP8 ",
];

/// A picture file: a seed as is, a mutated seed, or random bytes (with or without a
/// format's magic number in front).
fn picture() -> impl Strategy<Value = Vec<u8>> {
    let magic = proptest::sample::select(MAGIC_NUMBERS);
    prop_oneof![
        1 => seed(),
        12 => (seed(), proptest::collection::vec(edit(), 1..=4))
            .prop_map(|(s, edits)| edited(&s, &edits)),
        2 => proptest::collection::vec(any::<u8>(), 0..4096),
        2 => (magic, proptest::collection::vec(any::<u8>(), 0..4096))
            .prop_map(|(m, rest)| [m, &rest].concat()),
    ]
}

/// How many pixels the header of `bytes` declares, as the image crate reads it; 0 for
/// no readable header or one over the size limit (refused before decoding).
fn declared_pixels(bytes: &[u8]) -> u64 {
    let dims = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()
        .and_then(|r| r.into_dimensions().ok());
    match dims {
        Some((w, h)) if w.max(h) <= MAX_PICTURE_SIDE_PX => u64::from(w) * u64::from(h),
        _ => 0,
    }
}

/// Loads `bytes` within the time limit; a frame that loads is within the size limits,
/// and (up to [`ROUND_TRIP_MAX_PIXELS`]) loading it again as a lossless PNG gives the
/// same pixels.
fn load_anything(bytes: &[u8]) -> Result<Option<GrayImage>, TestCaseError> {
    let start = Instant::now();
    let result = picture_from_bytes(bytes);
    let took = start.elapsed();
    let pixels = match &result {
        Ok(img) => u64::from(img.width()) * u64::from(img.height()),
        Err(_) => 0,
    };
    let limit = Duration::from_millis(PICTURE_BASE_MS)
        + Duration::from_nanos(PICTURE_NS_PER_PIXEL * pixels.max(declared_pixels(bytes)));
    if took > limit {
        // Timed once more, so a descheduled thread is not a failure.
        let again = Instant::now();
        drop(picture_from_bytes(bytes));
        let retook = again.elapsed();
        prop_assert!(
            retook <= limit,
            "took {took:?}, then {retook:?}; limit {limit:?}"
        );
    }
    let Ok(img) = result else {
        return Ok(None);
    };
    prop_assert!((MIN_FRAME_SIDE_PX..=MAX_PICTURE_SIDE_PX).contains(&img.width()));
    prop_assert!((MIN_FRAME_SIDE_PX..=MAX_PICTURE_SIDE_PX).contains(&img.height()));
    if u64::from(img.width()) * u64::from(img.height()) <= ROUND_TRIP_MAX_PIXELS {
        let again = picture_from_bytes(&png_bytes(&img));
        prop_assert!(
            again.as_ref().is_ok_and(|a| a == &img),
            "re-encoded frame differs"
        );
    }
    Ok(Some(img))
}

#[test]
fn seed_pictures_load_and_decode_to_the_pay_link() {
    let decoder = Decoder::default();
    let accept = accept_pay_link();
    for (i, bytes) in SEEDS.iter().enumerate() {
        let img = picture_from_bytes(bytes).unwrap_or_else(|e| panic!("seed {i}: {e}"));
        let report = decoder.decode(&img, &*accept);
        assert_eq!(report.text.as_deref(), Some(LINK.as_str()), "seed {i}");
    }
}

#[test]
fn fuzz_picture_loading() {
    check(PICTURE_CASES, picture(), |bytes| {
        load_anything(&bytes).map(drop)
    });
}

#[test]
fn fuzz_decoding_pictures_to_pay_links() {
    let decoder = Decoder::default();
    let accept = accept_pay_link();
    let budget = decoder.budget() + Duration::from_millis(DECODE_SLACK_MS);
    check(DECODE_CASES, picture(), |bytes| {
        let Some(img) = load_anything(&bytes)? else {
            return Ok(());
        };
        let start = Instant::now();
        let report = decoder.decode(&img, &*accept);
        prop_assert!(start.elapsed() <= budget, "{:?}", start.elapsed());
        if let Some(text) = report.text {
            let link = PayLink::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(PayLink::parse(&link.to_string()), Ok(link));
        }
        Ok(())
    });
}

/// Regression test: a 5.7 KB JPEG whose header declares 12000×12000 pixels (the size
/// limit) loads as a 144-megapixel frame, and decoding it took 3.5 s against the 600 ms
/// budget: the first downscale to the working size ran a Triangle filter over the whole
/// frame before the budget was first checked. Found by `fuzz_decoding_pictures_to_pay_links`.
#[test]
fn a_frame_at_the_size_limit_decodes_within_budget() {
    let decoder = Decoder::default();
    let side = MAX_PICTURE_SIDE_PX;
    let frame = GrayImage::from_fn(side, side, |x, y| Luma([((x ^ y) & 0xff) as u8]));
    let start = Instant::now();
    let report = decoder.decode(&frame, &*accept_pay_link());
    let took = start.elapsed();
    assert!(report.text.is_none());
    assert!(
        took <= decoder.budget() + Duration::from_millis(DECODE_SLACK_MS),
        "{took:?}"
    );
}

#[test]
fn huge_declared_dimensions_are_refused_from_the_header() {
    // PNG, JPEG and WebP headers claiming 100000×100000 pixels (10 GB as grey, 40 GB
    // as RGBA), or as much as each format can hold, are refused before a pixel buffer
    // is allocated: quickly, and without the process reserving that much memory.
    let before = status_bytes("VmPeak");
    for (i, seed) in SEEDS.iter().enumerate() {
        let mut bytes = seed.clone();
        set_dimensions(&mut bytes, 100_000, 100_000);
        let start = Instant::now();
        let err = picture_from_bytes(&bytes).expect_err("a huge picture is refused");
        assert!(
            matches!(err, PictureError::TooLarge { .. } | PictureError::Format(_)),
            "seed {i}: {err}"
        );
        assert!(
            start.elapsed() < Duration::from_millis(PICTURE_BASE_MS),
            "seed {i}"
        );
    }
    if let (Some(before), Some(after)) = (before, status_bytes("VmPeak")) {
        assert!(
            after - before < MAX_VM_GROWTH_BYTES,
            "address space grew from {before} to {after} bytes"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The GATT record.

/// A record as a TV builds it, with names of any characters and lengths.
fn record() -> impl Strategy<Value = DiscoveryRecord> {
    let name = || prop_oneof!["[ -~]{0,40}", "(?s).{0,100}"];
    (
        any::<[u8; 16]>(),
        proptest::collection::vec(proptest::sample::select(&SHORT_CODE_ALPHABET[..]), 8),
        any::<u64>(),
        "[A-Z]{3}",
        "(http|https)://[a-z0-9.-]{1,40}(:[0-9]{1,5})?",
        name(),
        "[A-Za-z0-9._:-]{4,64}",
        name(),
    )
        .prop_filter_map(
            "a server or code the protocol refuses",
            |(order, code, minor, cur, server, tv_name, tv_id, item)| {
                Some(DiscoveryRecord::new(
                    OrderId::from_bytes(order),
                    ShortCode::parse(std::str::from_utf8(&code).ok()?).ok()?,
                    Money::new(minor, Currency::parse(&cur).ok()?),
                    ServerUrl::parse(&server).ok()?,
                    &tv_name,
                    DeviceId::parse(&tv_id).ok()?,
                    &item,
                ))
            },
        )
}

/// A characteristic value: a record's JSON (maybe with names over the limit, maybe
/// mutated), random bytes, or an oversized value.
fn gatt_value() -> impl Strategy<Value = Vec<u8>> {
    let json = |r: &DiscoveryRecord| serde_json::to_vec(r).expect("a record serialises");
    prop_oneof![
        2 => record().prop_map(move |r| json(&r)),
        1 => (record(), "(?s).{61,300}").prop_map(move |(mut r, name)| {
            // Names a conforming TV would have clipped.
            r.tv_name = name.clone();
            r.item = name;
            json(&r)
        }),
        6 => (record(), proptest::collection::vec(edit(), 1..=4))
            .prop_map(move |(r, edits)| edited(&json(&r), &edits)),
        2 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => (record(), MAX_RECORD_BYTES - 600..MAX_RECORD_BYTES + 600).prop_map(
            move |(r, len)| {
                // Valid JSON padded with whitespace around the size limit.
                let mut bytes = json(&r);
                bytes.resize(len.max(bytes.len()), b' ');
                bytes
            }
        ),
    ]
}

#[test]
fn fuzz_gatt_record() {
    check(GATT_CASES, gatt_value(), |bytes| {
        let limit = Duration::from_millis(PARSE_LIMIT_MS);
        let Ok(r) = timed(limit, || parse_record(&bytes)) else {
            return Ok(());
        };
        prop_assert!(bytes.len() <= MAX_RECORD_BYTES);
        let names: Vec<&str> = match &r {
            Announcement::Order(o) => vec![&o.tv_name, &o.item],
            Announcement::Packets(p) => vec![&p.tv_name, &p.sender_name, &p.message],
            Announcement::Tv(t) => vec![&t.tv_name],
        };
        for name in names {
            prop_assert!(name.chars().count() <= MAX_NAME_CHARS, "{name:?}");
            prop_assert!(!name.chars().any(char::is_control), "{name:?}");
        }
        // What the TV would serve for this record fits, and reads back the same.
        let json = serde_json::to_vec(&r).expect("a record serialises");
        prop_assert!(json.len() <= MAX_RECORD_BYTES, "{} bytes", json.len());
        prop_assert_eq!(parse_record(&json).ok(), Some(r.clone()));
        // The same TV's mDNS announcement of it parses to the same record.
        for (k, v) in r.to_txt() {
            let len = k.len() + 1 + v.len();
            prop_assert!(len <= MAX_TXT_STRING_BYTES, "{k}={v:?} is {len} bytes");
        }
        let txt: HashMap<String, String> = r.to_txt().into_iter().collect();
        prop_assert_eq!(Announcement::from_txt(&txt), Ok(r));
        Ok(())
    });
}
