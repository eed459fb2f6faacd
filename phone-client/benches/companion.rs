//! Companion benchmarks (run once, print figures): decode time per camera frame at
//! 1280×720 and 640×480 (p50/p95), and mDNS discovery latency on `lo` from browse start
//! to the order listed. `cargo bench -p phone-client --bench companion`.

use std::time::{Duration, Instant};

use phone_client::discovery::IgnoreFn;
use phone_client::{Announcer, Browser, Decoder, Interfaces, NearbyEvent};
use protocol::{Currency, DeviceId, DiscoveryRecord, Money, OrderId, ServerUrl, ShortCode};

#[path = "../tests/it/support.rs"]
#[allow(dead_code, unreachable_pub)]
mod support;

use support::{Rng, Shot, photograph, test_link, tv_screen};

/// Frames decoded per resolution.
const DECODE_FRAMES: usize = 40;
/// Discovery rounds (each starts fresh daemons).
const DISCOVERY_ROUNDS: usize = 10;
/// Time a TV has been announcing before the phone starts browsing, in milliseconds
/// (long enough for RFC 6762 probing to finish, as for a TV already showing its order).
const ANNOUNCE_SETTLE_MS: u64 = 2_000;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name}: n={} p50={:.1} ms p95={:.1} ms max={:.1} ms",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.95).as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
}

fn bench_decode() {
    let link = test_link("http://192.168.1.20:8080").to_string();
    let mut rng = Rng::new(0xBE4C4);
    let screen = tv_screen(&link, &mut rng);
    // Live camera frames: the camera budget (work-based, 600 ms cap).
    let decoder = Decoder::for_camera();
    for (w, h) in [(1280, 720), (640, 480)] {
        let mut times = Vec::new();
        let mut ok = 0;
        for _ in 0..DECODE_FRAMES {
            let shot = Shot::random(&mut rng, w, h);
            let frame = photograph(&screen, &shot, &mut rng);
            let r = decoder.decode(&frame, &|t| t == link);
            ok += usize::from(r.text.is_some());
            times.push(r.elapsed);
        }
        report(
            &format!("decode {w}x{h} camera frames ({ok}/{DECODE_FRAMES} decoded)"),
            times,
        );
        // A clean, square-on capture: the common case once the phone is aimed.
        let clean = image::imageops::resize(&screen, w, h, image::imageops::FilterType::Triangle);
        let times = (0..DECODE_FRAMES)
            .map(|_| decoder.decode(&clean, &|t| t == link).elapsed)
            .collect();
        report(&format!("decode {w}x{h} clean frame"), times);
    }
}

fn bench_discovery() {
    let server = ServerUrl::parse("http://127.0.0.1:18080").unwrap();
    let mut times = Vec::new();
    for i in 0..DISCOVERY_ROUNDS {
        let record = DiscoveryRecord::new(
            OrderId::random(),
            ShortCode::random(),
            Money::new(499, Currency::parse("EUR").unwrap()),
            server.clone(),
            "Bench TV",
            DeviceId::parse(&format!("SN-BENCH-{i}")).unwrap(),
            "Night Train",
        );
        let mut tv = Announcer::start(&Interfaces::loopback()).unwrap();
        tv.announce(&record).unwrap();
        std::thread::sleep(Duration::from_millis(ANNOUNCE_SETTLE_MS));
        let start = Instant::now();
        let ignore: IgnoreFn = Box::new(|_| false);
        let mut browser =
            Browser::start(&Interfaces::loopback(), vec![server.clone()], ignore).unwrap();
        let listed = loop {
            match browser.next_event(Duration::from_secs(10)) {
                Some(NearbyEvent::Listed(n)) if n.record.order == record.order => break true,
                Some(_) => continue,
                None => break false,
            }
        };
        let elapsed = start.elapsed();
        assert!(listed, "round {i}: the order was not listed within 10 s");
        times.push(elapsed);
        browser.stop();
        tv.stop();
    }
    report("mDNS on lo: browse start -> order listed", times);
}

fn main() {
    // `cargo test` runs benches with `--bench`-less args; only measure under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p phone-client --bench companion`");
        return;
    }
    bench_decode();
    bench_discovery();
}
