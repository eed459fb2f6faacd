//! Benchmark: from OK on "Buy" to the QR on screen (order creation on the real stub
//! server + QR encoding + a full software-rendered frame at 1080p), and the render time
//! of the order screen alone. Prints p50/p99; not a pass/fail test.
//!
//! Run: `cargo bench -p tv-client --bench buy_to_qr` (add `-- --quick` for fewer rounds).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use i_slint_backend_testing::{TestingBackend, TestingBackendOptions};
use slint::ComponentHandle;
use slint::platform::{Key, WindowEvent};
use tv_client::runtime::{HttpBackend, Runtime, Sink};
use tv_client::slint_ui::AppWindow;
use tv_client::state::{App, Identity, Input, Screen};
use tv_client::ui::Shell;

/// Rounds of buy → QR measured (and cancelled again).
const BUY_ROUNDS: usize = 200;
/// Frames of the order screen rendered.
const RENDER_ROUNDS: usize = 60;
/// Rounds with `--quick`.
const QUICK_ROUNDS: usize = 20;
/// Longest wait for one server answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<44} n={:<4} p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms",
        samples.len(),
        ms(percentile(&samples, 0.50)),
        ms(percentile(&samples, 0.99)),
        ms(samples[samples.len() - 1]),
    );
}

struct Bench {
    shell: Rc<RefCell<Shell<HttpBackend>>>,
    window: AppWindow,
    rx: mpsc::Receiver<Input>,
}

impl Bench {
    fn press(&self, key: Key) {
        let w = self.window.window();
        w.dispatch_event(WindowEvent::KeyPressed { text: key.into() });
        w.dispatch_event(WindowEvent::KeyReleased { text: key.into() });
    }

    fn wait(&self, what: &str, done: impl Fn(&App) -> bool) {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        while !done(&self.shell.borrow().app) {
            let left = deadline.saturating_duration_since(Instant::now());
            let input = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            self.shell.borrow_mut().dispatch(input);
        }
    }

    /// Feeds whatever answers have already arrived, without waiting.
    fn drain(&self) {
        while let Ok(input) = self.rx.try_recv() {
            self.shell.borrow_mut().dispatch(input);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let (buy_rounds, render_rounds) = if quick {
        (QUICK_ROUNDS, QUICK_ROUNDS)
    } else {
        (BUY_ROUNDS, RENDER_ROUNDS)
    };

    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let server = io.block_on(server_stub::testing::TestServer::start());

    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: true,
        threading: false,
        renderer_name: Some("software".into()),
    })))
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let window = AppWindow::new()?;
    window
        .window()
        .set_size(slint::PhysicalSize::new(1920, 1080));
    window.show()?;

    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let sink: Sink = Arc::new(move |input| {
        if let Ok(t) = tx.lock() {
            // The receiver is gone only once the benchmark is over.
            let _ = t.send(input);
        }
    });
    let identity = Identity {
        device_id: protocol::DeviceId::parse("SN-BENCH-0001")?,
        tv_name: "Bench TV".into(),
    };
    let (app, initial) = App::init(identity, 0);
    // No mDNS in the benchmark: it measures the path to the QR, and tests must not multicast.
    let runtime = Runtime::new(
        HttpBackend::new(server.url.clone()),
        io.handle().clone(),
        sink,
        Err("off in the benchmark".into()),
    );
    let shell = Shell::start(window.clone_strong(), app, initial, runtime);
    let b = Bench {
        shell,
        window: window.clone_strong(),
        rx,
    };
    b.wait("the catalog", |a| {
        matches!(a.screen, Screen::Catalog { .. })
    });
    b.wait("the posters", |a| a.posters.len() == a.items().len());
    b.press(Key::Return);
    let _ = window.window().take_snapshot()?;

    let mut buy = Vec::with_capacity(buy_rounds);
    for _ in 0..buy_rounds {
        assert!(matches!(b.shell.borrow().app.screen, Screen::Item { .. }));
        let t0 = Instant::now();
        b.press(Key::Return);
        b.wait("the order", |a| a.order_screen().is_some());
        let frame = window.window().take_snapshot()?;
        buy.push(t0.elapsed());
        assert_eq!(frame.width(), 1920);
        // Back cancels the order on the server; let that finish outside the timing.
        b.press(Key::Escape);
        b.drain();
    }

    b.press(Key::Return);
    b.wait("the order", |a| a.order_screen().is_some());
    let mut render = Vec::with_capacity(render_rounds);
    for _ in 0..render_rounds {
        // A countdown tick changes the screen, as it does every second on a real TV,
        // and the snapshot renders the whole frame.
        let now_ms = b.shell.borrow().app.now_ms + 1_000;
        b.shell.borrow_mut().dispatch(Input::Tick { now_ms });
        let t0 = Instant::now();
        let frame = window.window().take_snapshot()?;
        render.push(t0.elapsed());
        assert_eq!(frame.height(), 1080);
    }
    b.press(Key::Escape);

    println!("couchpay-tv benchmark (software renderer, 1920×1080, stub server on loopback)");
    report("OK on Buy → QR on screen (create+QR+frame)", buy);
    report("order screen full frame render", render);
    drop(b);
    io.block_on(server.stop());
    Ok(())
}
