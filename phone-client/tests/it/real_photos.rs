//! Decode rate on real-world QR photos: ZXing's public "blackbox" QR sets (phone and
//! webcam photos of printed codes: blur, glare, tilt, rotation, low resolution).
//!
//! The pictures are not committed; `tools/fetch-qr-photos.sh` downloads them into
//! `target/qr-photos/zxing-blackbox`, and CI runs this test with `--ignored`. It prints
//! the rate of plain rqrr (one `PreparedImage` pass, what a naive companion would do),
//! of our pipeline with rqrr alone, and of the full decoder (rqrr first, rxing
//! fallback), per set and overall, and fails if the full decoder falls below the bar.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use phone_client::Decoder;
use phone_client::decode::picture_from_path;

/// The best reference decoder on this very set: zxing-cpp 2.x reads 168 of the 182
/// pictures (92.3%; zbar 82.4%), measured with `tools/qr_photo_rate_reference.py`.
/// The companion must do at least as well.
const MIN_REAL_PHOTO_RATE: f64 = 0.923;

fn photo_root() -> PathBuf {
    match std::env::var_os("COUCHPAY_QR_PHOTOS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/qr-photos/zxing-blackbox"),
    }
}

/// The text a picture encodes, as ZXing stores it next to the picture.
fn expected_text(txt: &Path) -> Option<String> {
    let bytes = std::fs::read(txt).ok()?;
    let text = match String::from_utf8(bytes) {
        Ok(s) => s,
        // A few ZXing expectations are ISO-8859-1.
        Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
    };
    Some(normalise(&text))
}

fn normalise(text: &str) -> String {
    text.replace("\r\n", "\n")
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

/// One plain rqrr pass, as a naive companion would run it. rqrr panics on some real
/// photos (a perspective overflow); that counts as "not decoded", as the companion's own
/// decoder turns it into.
fn plain_rqrr(img: &image::GrayImage) -> Vec<String> {
    phone_client::decode::contained(|| plain_rqrr_pass(img)).unwrap_or_default()
}

fn plain_rqrr_pass(img: &image::GrayImage) -> Vec<String> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        img.get_pixel(x as u32, y as u32).0[0]
    });
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|g| {
            g.decode()
                .ok()
                .map(|(_, text): (_, String)| normalise(&text))
        })
        .collect()
}

#[derive(Default)]
struct Tally {
    total: usize,
    plain: usize,
    rqrr_pipeline: usize,
    full: usize,
    other: usize,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.total += other.total;
        self.plain += other.plain;
        self.rqrr_pipeline += other.rqrr_pipeline;
        self.full += other.full;
        self.other += other.other;
    }
    fn pct(&self, n: usize) -> f64 {
        100.0 * n as f64 / self.total.max(1) as f64
    }
    fn line(&self, name: &str) -> String {
        format!(
            "{name:<10} {:>4} {:>7.1}% {:>9.1}% {:>7.1}% {:>6}",
            self.total,
            self.pct(self.plain),
            self.pct(self.rqrr_pipeline),
            self.pct(self.full),
            self.other
        )
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "needs the real-photo set: run tools/fetch-qr-photos.sh, then --ignored"]
fn real_world_photos_decode_like_zxing_cpp() {
    let root = photo_root();
    let photos = load_set(&root);
    assert!(!photos.is_empty(), "{} holds no photo sets", root.display());

    let full = Decoder::default();
    let rqrr_pipeline = Decoder::default().rqrr_only();
    let mut overall = Tally::default();
    let mut times = Vec::new();
    let mut misses = Vec::new();
    // Which view read each picture, and how long those decodes took: the payoff by which
    // the views are ordered.
    let mut by_view = std::collections::BTreeMap::new();
    let mut view_time = std::collections::BTreeMap::new();
    println!(
        "{:<10} {:>4} {:>8} {:>10} {:>8} {:>6}",
        "set", "n", "rqrr", "rqrr+prep", "full", "other"
    );
    for set in photos.chunk_by(|a, b| a.set == b.set) {
        let mut tally = Tally::default();
        for Photo {
            name,
            img,
            expected,
            ..
        } in set
        {
            tally.total += 1;
            if plain_rqrr(img).contains(expected) {
                tally.plain += 1;
            }
            let accept = |t: &str| normalise(t) == *expected;
            if rqrr_pipeline.decode(img, &accept).text.is_some() {
                tally.rqrr_pipeline += 1;
            }
            let started = Instant::now();
            let report = full.decode(img, &accept);
            times.push(started.elapsed());
            if let Some(method) = report.method {
                *by_view.entry(method).or_insert(0usize) += 1;
                view_time
                    .entry(method)
                    .or_insert_with(Vec::new)
                    .push(report.elapsed);
            }
            if report.text.is_some() {
                tally.full += 1;
            } else {
                misses.push(name.clone());
            }
            // Another text than ZXing's expectation: in this set, the second code of a
            // "double QR" picture, or a designed code whose text differs by a word
            // (Reed-Solomon checked, so read as printed). Shown, not counted as a read.
            for t in report.seen.iter().filter(|t| normalise(t) != *expected) {
                tally.other += 1;
                println!("other text in {name}: {t:?}");
            }
        }
        println!("{}", tally.line(&set[0].set));
        overall.add(&tally);
    }
    println!("{}", overall.line("all"));
    times.sort();
    println!(
        "full decoder time per picture: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(&times, 0.50).as_secs_f64() * 1e3,
        percentile(&times, 0.95).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    );
    println!("not decoded: {misses:?}");
    for (view, n) in &by_view {
        let mut t: Vec<Duration> = view_time.remove(view).unwrap_or_default();
        t.sort();
        println!(
            "read by {view:<28} {n:>4}  (p50 {:.1} ms)",
            percentile(&t, 0.5).as_secs_f64() * 1e3
        );
    }

    assert!(
        overall.total >= 150,
        "only {} pictures found",
        overall.total
    );
    let rate = overall.full as f64 / overall.total as f64;
    assert!(
        rate >= MIN_REAL_PHOTO_RATE,
        "full decoder read {:.1}% of real photos, below {:.0}%",
        rate * 100.0,
        MIN_REAL_PHOTO_RATE * 100.0
    );
}

/// One picture of the set, loaded, with the text it encodes.
struct Photo {
    /// The set's folder, e.g. `qrcode-2`.
    set: String,
    /// `set/file`, as misses are reported.
    name: String,
    img: image::GrayImage,
    expected: String,
}

/// Every picture of every set under `root` with its expected text, set by set.
fn load_set(root: &Path) -> Vec<Photo> {
    let mut out = Vec::new();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| {
            panic!(
                "no photo set at {} ({e}); run tools/fetch-qr-photos.sh first",
                root.display()
            )
        })
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    sets.sort();
    for set in sets {
        let mut pictures: Vec<PathBuf> = std::fs::read_dir(&set)
            .expect("readable set")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "png" || x == "jpg"))
            .collect();
        pictures.sort();
        let set_name = set.file_name().unwrap().to_string_lossy().into_owned();
        for pic in pictures {
            let Some(expected) = expected_text(&pic.with_extension("txt")) else {
                continue;
            };
            let img = picture_from_path(&pic)
                .unwrap_or_else(|e| panic!("{} does not load: {e}", pic.display()));
            let name = pic.strip_prefix(root).unwrap_or(&pic).display().to_string();
            out.push(Photo {
                set: set_name.clone(),
                name,
                img,
                expected,
            });
        }
    }
    out
}

/// The pictures `decoder` reads, and the time each took.
fn read_all(decoder: &Decoder, set: &[Photo]) -> (Vec<String>, Vec<Duration>) {
    let mut read = Vec::new();
    let mut times = Vec::new();
    for Photo {
        name,
        img,
        expected,
        ..
    } in set
    {
        let started = Instant::now();
        let report = decoder.decode(img, &|t| normalise(t) == *expected);
        times.push(started.elapsed());
        if report.text.is_some() {
            read.push(name.clone());
        }
    }
    times.sort();
    (read, times)
}

fn times_line(times: &[Duration]) -> String {
    format!(
        "p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms",
        percentile(times, 0.50).as_secs_f64() * 1e3,
        percentile(times, 0.95).as_secs_f64() * 1e3,
        times.last().unwrap().as_secs_f64() * 1e3
    )
}

/// A saved picture has no next frame: its budget is work, not time, so a machine busy
/// with other work reads exactly the pictures an idle one reads, only slower.
#[test]
#[ignore = "needs the real-photo set: run tools/fetch-qr-photos.sh, then --ignored"]
fn real_photos_read_as_well_on_a_busy_machine() {
    let set = load_set(&photo_root());
    assert!(set.len() >= 150, "only {} pictures found", set.len());
    let picture = Decoder::default();
    let (idle, idle_times) = read_all(&picture, &set);
    println!(
        "idle: {} of {} read; {}",
        idle.len(),
        set.len(),
        times_line(&idle_times)
    );

    // Busy: two spinning threads per core, at the decoder's own priority.
    let spinners = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let handles: Vec<_> = (0..spinners)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            })
        })
        .collect();
    let (busy, busy_times) = read_all(&picture, &set);
    // For comparison: what a budget of wall-clock time alone (150 ms) reads meanwhile.
    let (wall_only, _) = read_all(&Decoder::new(Duration::from_millis(150)), &set);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    println!(
        "busy ({spinners} spinning threads): {} of {} read; {}",
        busy.len(),
        set.len(),
        times_line(&busy_times)
    );
    println!(
        "busy, 150 ms wall-clock budget only: {} of {} read",
        wall_only.len(),
        set.len()
    );
    let lost: Vec<&String> = idle.iter().filter(|n| !busy.contains(n)).collect();
    assert!(
        lost.is_empty() && busy.len() >= idle.len(),
        "read when idle but not when busy: {lost:?}"
    );
}
