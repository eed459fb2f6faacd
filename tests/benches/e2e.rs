//! End-to-end latency (run once, print figures): from decoding the TV's order screen to
//! the TV seeing "paid" over its event stream, excluding the human confirmation.
//! `cargo bench -p couchpay-e2e --bench e2e`.

use std::time::{Duration, Instant};

use couchpay_e2e::{companion, tv_order};
use futures_util::StreamExt;
use image::{GrayImage, Luma};
use phone_client::{Credentials, Decoder, OrderRef};
use protocol::{AccountId, OrderEvent, PayLink, Pin};
use server_stub::testing::TestServer;

/// Payments measured.
const ROUNDS: usize = 100;

fn screen(link: &str) -> GrayImage {
    let code =
        qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M).unwrap();
    let w = i64::from(code.width() as u32);
    let colors = code.to_colors();
    let (x0, y0, m) = (840i64, 150i64, 8i64);
    GrayImage::from_fn(1280, 720, |x, y| {
        let (mx, my) = ((i64::from(x) - x0) / m - 4, (i64::from(y) - y0) / m - 4);
        let on_card = i64::from(x) >= x0 && i64::from(y) >= y0 && mx < w + 4 && my < w + 4;
        if !on_card {
            return Luma([28]);
        }
        let dark = (0..w).contains(&mx)
            && (0..w).contains(&my)
            && colors[(my * w + mx) as usize] == qrcode::Color::Dark;
        Luma([if dark { 0 } else { 255 }])
    })
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("run with `cargo bench -p couchpay-e2e --bench e2e`");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let server = TestServer::start().await;
        let tv = server.client();
        let (mut phone, _dir) = companion(&server);
        let creds = Credentials::Pin {
            account: AccountId::parse("alice").unwrap(),
            pin: Pin::parse("1234").unwrap(),
        };
        let decoder = Decoder::default();
        let (mut total, mut decode, mut fetch, mut pay) = (vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let order = tv_order(&tv, "film-night-train").await.order;
            let frame = screen(&order.pay_link.to_string());
            // The TV is already listening while it shows the order.
            let events = tv.order_events(&order.id).await.unwrap();
            let mut events = Box::pin(events);
            let _snapshot = events.next().await;

            let t0 = Instant::now();
            let report = decoder.decode(&frame, &|t| PayLink::parse(t).is_ok());
            let link = PayLink::parse(&report.text.unwrap()).unwrap();
            let t1 = Instant::now();
            let c = phone.fetch(&OrderRef::Link(link)).await.unwrap();
            let t2 = Instant::now();
            phone.pay(&c, &creds, None).await.unwrap();
            let t3 = Instant::now();
            loop {
                match events.next().await {
                    Some(Ok(OrderEvent::Paid { .. })) => break,
                    Some(Ok(_)) => continue,
                    other => panic!("TV stream ended without paid: {other:?}"),
                }
            }
            let t4 = Instant::now();
            decode.push(t1 - t0);
            fetch.push(t2 - t1);
            pay.push(t3 - t2);
            total.push(t4 - t0);
        }
        for (name, mut v) in [
            ("decode", decode),
            ("fetch order", fetch),
            ("pay (argon2 PIN check + ledger)", pay),
            ("decode -> TV sees paid", total),
        ] {
            v.sort();
            println!(
                "{name}: n={} p50={:.1} ms p95={:.1} ms p99={:.1} ms",
                v.len(),
                pct(&v, 0.5),
                pct(&v, 0.95),
                pct(&v, 0.99)
            );
        }
        server.stop().await;
    });
}
