//! Load generator: pays N orders from C concurrent clients over loopback HTTP and prints
//! payments/s, pay latency p50/p99, pay→TV-event p99 and the ledger audit, for the
//! naive baseline (one transaction per request) and group commit, in one run; then
//! voucher create + redeem pairs and one hot red-packet set of 10,000 packets claimed by
//! 100 concurrent clients.
//!
//! `cargo bench -p server-stub --bench pay_load -- [N] [C]` (defaults 20000 and 64).
//! With `COUCHPAY_BENCH_POSTGRES` set to a `postgres://` URL (see
//! `tools/pg-test-cluster.sh`), the same run adds group commit on PostgreSQL with one
//! node and with two nodes on the same database; with two, each client pays through one
//! node while its TV follows the order on the other, so pay→event crosses nodes; the
//! two nodes have one writer each, as many in all as the one node has.
//! Payers authenticate with session tokens, so argon2 is not part of the figure; the
//! argon2 cost of one PIN check is measured separately at the end.
//!
//! With `COUCHPAY_BENCH_URLS` (comma-separated) and `COUCHPAY_BENCH_ADMIN_TOKEN`, it
//! instead drives servers running in their own processes, one after the other, with the
//! same payment run: e.g. two builds of `couchpay-server` compared in one run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::client::Client;
use protocol::{
    AccountId, CreateAccount, CreateOrder, Currency, DeviceId, IdempotencyKey, ItemId,
    LoginRequest, Money, OrderEvent, OrderId, PayRequest, PayerAuth, Pin, TopUp,
};
use server_stub::store::DEFAULT_PG_WRITERS;
use server_stub::testing::TestServer;

/// Orders whose TV event stream is followed to measure pay→event latency.
const SSE_SAMPLE: usize = 200;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

struct Outcome {
    label: String,
    n: usize,
    secs: f64,
    lat: Vec<Duration>,
    event_lat: Vec<Duration>,
    audit_ok: bool,
    audit_problems: usize,
    sampled: usize,
}

/// `c` wallets `{prefix}-{i}` with `balance` EUR minor units each, signed in.
async fn make_payers(
    client: &Client,
    admin: &str,
    prefix: &str,
    c: usize,
    balance: u64,
) -> Vec<(Pin, protocol::Session)> {
    let eur = Currency::parse("EUR").unwrap();
    let mut out = Vec::with_capacity(c);
    for i in 0..c {
        let id = AccountId::parse(&format!("{prefix}-{i}")).unwrap();
        let pin = Pin::parse("9999").unwrap();
        client
            .create_account(
                admin,
                &CreateAccount {
                    id: id.clone(),
                    name: format!("{prefix} {i}"),
                    pin: pin.clone(),
                    currency: eur,
                },
            )
            .await
            .unwrap();
        client
            .top_up(
                admin,
                &TopUp {
                    account: id.clone(),
                    amount: Money::new(balance, eur),
                },
            )
            .await
            .unwrap();
        let s = client
            .login(&LoginRequest {
                account: id,
                pin: pin.clone(),
            })
            .await
            .unwrap();
        out.push((pin, s));
    }
    out
}

async fn run(
    label: &str,
    max_batch: usize,
    n: usize,
    c: usize,
    pg: Option<(&str, usize)>,
) -> Outcome {
    let nodes = match pg {
        Some((url, nodes)) => {
            TestServer::start_nodes_on(url.to_owned(), nodes, |cfg| {
                cfg.max_batch = max_batch;
                // The nodes share one database and these 2 cores: as many writers in
                // all as one node has (more only queue in PostgreSQL, see README).
                cfg.pg_writers = (DEFAULT_PG_WRITERS / nodes).max(1);
            })
            .await
        }
        None => vec![TestServer::start_with(move |cfg| cfg.max_batch = max_batch).await],
    };
    let clients: Vec<Client> = nodes.iter().map(|n| Client::new(n.url.clone())).collect();
    let admin = nodes[0].admin_token.clone();
    let outcome = drive(label, &clients, &admin, "load", n, c).await;
    for node in nodes {
        node.stop().await;
    }
    outcome
}

/// The payment run against running servers (`clients`, one per node), with accounts
/// and TVs named from `prefix` so that runs against the same database do not collide.
async fn drive(
    label: &str,
    clients: &[Client],
    admin: &str,
    prefix: &str,
    n: usize,
    c: usize,
) -> Outcome {
    let client = clients[0].clone();
    // Client `w` pays through node `pay_node(w)`; its TVs live on the next node.
    let pay_node = |w: usize| w % clients.len();
    let tv_node = |w: usize| (w + 1) % clients.len();
    let per_payer = n.div_ceil(c) as u64;

    // Payers with session tokens.
    let sessions: Vec<_> = make_payers(&client, admin, prefix, c, per_payer * 1_000)
        .await
        .into_iter()
        .map(|(_, s)| s)
        .collect();

    // Orders, created concurrently, one TV each (a TV that owns the film is not sold
    // it again).
    let item = ItemId::parse("film-night-train").unwrap();
    let mut creators = Vec::new();
    for w in 0..c {
        let client = clients[tv_node(w)].clone();
        let item = item.clone();
        let count = n / c + usize::from(w < n % c);
        let prefix = prefix.to_owned();
        creators.push(tokio::spawn(async move {
            let mut ids = Vec::with_capacity(count);
            for i in 0..count {
                let req = CreateOrder {
                    item_id: item.clone(),
                    device_id: DeviceId::parse(&format!("SN-{prefix}-{w:03}-{i:06}")).unwrap(),
                    device_name: "Load TV".into(),
                };
                ids.push(client.create_order(&req).await.unwrap().order.id);
            }
            ids
        }));
    }
    let mut slices: Vec<Vec<OrderId>> = Vec::new();
    for t in creators {
        slices.push(t.await.unwrap());
    }

    // TV subscribers on a sample of orders, each on its TV's node.
    let sent: Arc<Mutex<HashMap<OrderId, Instant>>> = Arc::default();
    let mut watchers = Vec::new();
    let per_client = SSE_SAMPLE.div_ceil(c);
    let sampled = slices.iter().enumerate().flat_map(|(w, ids)| {
        let step = (ids.len() / per_client).max(1);
        ids.iter()
            .step_by(step)
            .take(per_client)
            .map(move |id| (w, id))
    });
    for (w, id) in sampled.take(SSE_SAMPLE) {
        let mut events = Box::pin(clients[tv_node(w)].order_events(id).await.unwrap());
        let first = events.next().await.unwrap().unwrap();
        assert!(matches!(first, OrderEvent::Snapshot { .. }));
        let sent = sent.clone();
        let id = id.clone();
        watchers.push(tokio::spawn(async move {
            while let Some(Ok(ev)) = events.next().await {
                if let OrderEvent::Paid { .. } = ev {
                    let at = Instant::now();
                    let t0 = *sent.lock().unwrap().get(&id).expect("send time recorded");
                    return Some(at - t0);
                }
            }
            None
        }));
    }
    let sampled = watchers.len();

    // The measured phase.
    let start = Instant::now();
    let mut payers = Vec::new();
    for (w, (ids, s)) in slices.into_iter().zip(sessions).enumerate() {
        let client = clients[pay_node(w)].clone();
        let sent = sent.clone();
        payers.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(ids.len());
            let req = PayRequest {
                account: s.account.clone(),
                auth: PayerAuth::Session(s.token.clone()),
                delivery_address: None,
            };
            for id in ids {
                let t0 = Instant::now();
                sent.lock().unwrap().insert(id.clone(), t0);
                client
                    .pay(&id, &IdempotencyKey::random(), &req)
                    .await
                    .expect("payment");
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(n);
    for p in payers {
        lat.extend(p.await.unwrap());
    }
    let secs = start.elapsed().as_secs_f64();
    let mut event_lat = Vec::new();
    for w in watchers {
        if let Ok(Some(d)) = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .unwrap()
        {
            event_lat.push(d);
        }
    }
    lat.sort();
    event_lat.sort();
    let audit = client.audit().await.unwrap();
    Outcome {
        label: label.into(),
        n,
        secs,
        lat,
        event_lat,
        audit_ok: audit.ok,
        audit_problems: audit.problems.len(),
        sampled,
    }
}

/// The voucher scenario: each client's payer makes a voucher and the next client's payer
/// redeems it, `pairs` times in all over `c` clients, on SQLite with group commit.
/// Returns (pairs, seconds, create latencies, redeem latencies, audit clean).
async fn run_vouchers(pairs: usize, c: usize) -> (usize, f64, Vec<Duration>, Vec<Duration>, bool) {
    let srv = TestServer::start().await;
    let client = Client::new(srv.url.clone());
    let eur = Currency::parse("EUR").unwrap();
    let per_client = pairs.div_ceil(c) as u64;
    let mut sessions = Vec::new();
    for (pin, s) in make_payers(
        &client,
        &srv.admin_token,
        "vload",
        c,
        per_client * 100 + 100,
    )
    .await
    {
        let id = s.account.clone();
        // PIN on the first voucher only, so the measured ones take the session (argon2
        // is measured apart).
        client
            .set_voucher_settings(
                &id,
                &s.token,
                &protocol::VoucherSettings {
                    pin_every_voucher: false,
                    redeem_mode: protocol::RedeemMode::ScanThenConfirm,
                },
            )
            .await
            .unwrap();
        let first = client
            .create_voucher(&protocol::CreateVoucher {
                account: id.clone(),
                auth: PayerAuth::Pin(pin),
                amount: Money::new(1, eur),
                valid_for_s: None,
                restrict_to: None,
            })
            .await
            .unwrap();
        client
            .void_voucher(
                &first.id,
                &protocol::VoidVoucher {
                    account: id,
                    auth: PayerAuth::Session(s.token.clone()),
                },
            )
            .await
            .unwrap();
        sessions.push(s);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c {
        let client = client.clone();
        let payer = sessions[w].clone();
        let payee = sessions[(w + 1) % c].clone();
        let count = pairs / c + usize::from(w < pairs % c);
        tasks.push(tokio::spawn(async move {
            let (mut create, mut redeem) = (Vec::new(), Vec::new());
            for _ in 0..count {
                let t0 = Instant::now();
                let v = client
                    .create_voucher(&protocol::CreateVoucher {
                        account: payer.account.clone(),
                        auth: PayerAuth::Session(payer.token.clone()),
                        amount: Money::new(100, eur),
                        valid_for_s: None,
                        restrict_to: None,
                    })
                    .await
                    .expect("create a voucher");
                let t1 = Instant::now();
                client
                    .redeem_voucher(
                        &v.id,
                        &IdempotencyKey::random(),
                        &protocol::RedeemVoucher {
                            account: payee.account.clone(),
                            auth: PayerAuth::Session(payee.token.clone()),
                            amount: Some(Money::new(60, eur)),
                        },
                    )
                    .await
                    .expect("redeem the voucher");
                create.push(t1 - t0);
                redeem.push(t1.elapsed());
            }
            (create, redeem)
        }));
    }
    let (mut create, mut redeem) = (Vec::new(), Vec::new());
    for t in tasks {
        let (a, b) = t.await.unwrap();
        create.extend(a);
        redeem.extend(b);
    }
    let secs = start.elapsed().as_secs_f64();
    create.sort();
    redeem.sort();
    let audit = client.audit().await.unwrap();
    srv.stop().await;
    (pairs, secs, create, redeem, audit.ok)
}

/// The red-packet scenario: one hot set of `n` packets, each claimed by its own
/// recipient, from `c` concurrent clients, on SQLite with group commit. Returns
/// (claims, seconds, claim latencies, every unit paid exactly once, audit clean).
async fn run_packets(n: usize, c: usize) -> (usize, f64, Vec<Duration>, bool, bool) {
    let srv = TestServer::start().await;
    let client = Client::new(srv.url.clone());
    let eur = Currency::parse("EUR").unwrap();
    let total = Money::new(n as u64 * 50, eur);
    let sender = srv.wallets("psend", 1, total.minor).await.remove(0);
    let claimers = Arc::new(srv.wallets("pclaim", n, 0).await);
    let set = client
        .create_packets(&protocol::CreatePackets {
            account: sender.account.clone(),
            auth: PayerAuth::Session(sender.token.clone()),
            count: u32::try_from(n).expect("packet count"),
            split: protocol::PacketSplit::Random { total },
            message: "load".into(),
            allowed: None,
            valid_for_s: None,
        })
        .await
        .expect("send the set");
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..c {
        let (client, claimers, id) = (client.clone(), claimers.clone(), set.id.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for who in claimers.iter().skip(w).step_by(c) {
                let t0 = Instant::now();
                let got = client
                    .claim_packet(
                        &id,
                        &protocol::ClaimPacket {
                            account: who.account.clone(),
                            auth: PayerAuth::Session(who.token.clone()),
                        },
                    )
                    .await
                    .expect("claim a packet");
                out.push((t0.elapsed(), got.amount.minor));
            }
            out
        }));
    }
    let mut lat = Vec::with_capacity(n);
    let mut paid = 0u64;
    for t in tasks {
        for (d, amount) in t.await.unwrap() {
            lat.push(d);
            paid += amount;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    let after = client.packets(&set.id).await.unwrap();
    let mut who: Vec<_> = after.claims.iter().map(|c| c.recipient.clone()).collect();
    who.sort();
    who.dedup();
    let exact = paid == total.minor
        && after.remaining == 0
        && who.len() == n
        && after.claims.iter().map(|c| c.amount.minor).sum::<u64>() == total.minor;
    let audit = client.audit().await.unwrap();
    srv.stop().await;
    (lat.len(), secs, lat, exact, audit.ok)
}

/// Drives servers running in their own processes (`urls`, comma-separated, e.g. one
/// `couchpay-server` per build being compared), so the figure is not only one process's
/// view and an older build can be measured with today's load tool. Each URL gets the
/// same run, in turn; the admin token is `COUCHPAY_BENCH_ADMIN_TOKEN`.
async fn external(urls: &str, n: usize, c: usize) {
    let admin = std::env::var("COUCHPAY_BENCH_ADMIN_TOKEN")
        .expect("COUCHPAY_BENCH_ADMIN_TOKEN: the servers' admin token");
    let mut results = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let server =
            protocol::ServerUrl::parse(url).expect("a server URL like http://127.0.0.1:8080");
        let client = Client::new(server);
        // Fresh names per run: the server's database may hold earlier runs.
        let prefix = format!("ext{}", protocol::hex(&protocol::random_bytes::<3>()));
        results.push(drive(url, &[client], &admin, &prefix, n, c).await);
    }
    println!();
    println!("Couchpay pay load against external servers: {c} concurrent clients, loopback HTTP");
    print_results(&results);
    assert!(results.iter().all(|r| r.audit_ok), "ledger audit failed");
}

fn print_results(results: &[Outcome]) {
    println!(
        "{:<26} {:>8} {:>12} {:>9} {:>9} {:>14} {:>9}",
        "mode", "payments", "payments/s", "p50 ms", "p99 ms", "pay→SSE p99 ms", "audit"
    );
    for r in results {
        println!(
            "{:<26} {:>8} {:>12.0} {:>9.2} {:>9.2} {:>14.2} {:>9}",
            r.label,
            r.n,
            r.n as f64 / r.secs,
            pct(&r.lat, 0.50),
            pct(&r.lat, 0.99),
            pct(&r.event_lat, 0.99),
            if r.audit_ok {
                "clean".to_string()
            } else {
                format!("{} problems", r.audit_problems)
            },
        );
        assert_eq!(
            r.event_lat.len(),
            r.sampled,
            "every sampled TV saw its payment"
        );
    }
}

/// Pays `n` orders on SQLite with group commit; with `receiver_sleep`, the films'
/// merchant has a webhook endpoint that takes that long to answer each delivery.
/// Returns the outcome and how many deliveries the endpoint got meanwhile.
async fn run_webhooks(
    label: &str,
    n: usize,
    c: usize,
    receiver_sleep: Option<Duration>,
) -> (Outcome, usize) {
    let srv = TestServer::start().await;
    let client = Client::new(srv.url.clone());
    let got = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if let Some(sleep) = receiver_sleep {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let counter = got.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move || {
                let counter = counter.clone();
                async move {
                    tokio::time::sleep(sleep).await;
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let merchant = client
            .catalog()
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|i| i.id.as_str() == "film-night-train")
            .unwrap()
            .merchant
            .id;
        client
            .create_webhook(
                &srv.admin_token,
                &protocol::webhook::CreateWebhook { merchant, url },
            )
            .await
            .unwrap();
    }
    let outcome = drive(label, &[client], &srv.admin_token, "hook", n, c).await;
    let delivered = got.load(std::sync::atomic::Ordering::Relaxed);
    srv.stop().await;
    (outcome, delivered)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(20_000);
    let c = args.get(1).copied().unwrap_or(64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Ok(urls) = std::env::var("COUCHPAY_BENCH_URLS") {
        rt.block_on(external(&urls, n, c));
        return;
    }
    rt.block_on(async {
        let naive_n = (n / 5).max(c);
        let batch = server_stub::store::DEFAULT_MAX_BATCH;
        let mut results = vec![
            run("SQLite naive (1 tx/req)", 1, naive_n, c, None).await,
            run("SQLite group commit", batch, n, c, None).await,
        ];
        let pg = std::env::var("COUCHPAY_BENCH_POSTGRES").ok();
        if let Some(url) = pg.as_deref() {
            results.push(run("PostgreSQL 1 node", batch, n, c, Some((url, 1))).await);
            results.push(run("PostgreSQL 2 nodes (sum)", batch, n, c, Some((url, 2))).await);
        }
        println!();
        println!(
            "Couchpay pay load: {c} concurrent clients, loopback HTTP; SQLite WAL synchronous=FULL, \
             PostgreSQL synchronous_commit=on fsync=on"
        );
        print_results(&results);
        let ratio =
            (results[1].n as f64 / results[1].secs) / (results[0].n as f64 / results[0].secs);
        println!("group commit / naive throughput: {ratio:.1}x");

        // Vouchers: create + partial redeem pairs, SQLite group commit.
        let (pairs, secs, create, redeem, voucher_audit) = run_vouchers(n / 2, c).await;
        println!();
        println!(
            "{:<26} {:>8} {:>12} {:>14} {:>14} {:>9}",
            "vouchers", "pairs", "pairs/s", "create p99 ms", "redeem p99 ms", "audit"
        );
        println!(
            "{:<26} {:>8} {:>12.0} {:>14.2} {:>14.2} {:>9}",
            "SQLite group commit",
            pairs,
            pairs as f64 / secs,
            pct(&create, 0.99),
            pct(&redeem, 0.99),
            if voucher_audit { "clean" } else { "PROBLEMS" },
        );
        assert!(voucher_audit, "ledger audit failed after the voucher run");

        // Red packets: one hot set of 10,000 packets, 100 concurrent claimers.
        let (claims, secs, lat, exact, packet_audit) = run_packets(10_000, 100).await;
        println!();
        println!(
            "{:<26} {:>8} {:>12} {:>9} {:>9} {:>9} {:>9}",
            "red packets (1 hot set)", "claims", "claims/s", "p50 ms", "p99 ms", "exact", "audit"
        );
        println!(
            "{:<26} {:>8} {:>12.0} {:>9.2} {:>9.2} {:>9} {:>9}",
            "SQLite group commit",
            claims,
            claims as f64 / secs,
            pct(&lat, 0.50),
            pct(&lat, 0.99),
            if exact { "yes" } else { "NO" },
            if packet_audit { "clean" } else { "PROBLEMS" },
        );
        assert!(exact, "a red packet was lost or paid twice");
        assert!(packet_audit, "ledger audit failed after the red-packet run");

        // Merchant webhooks: a slow endpoint must not slow payments (issue 16).
        let hook_n = 1_000;
        let (plain, _) = run_webhooks("SQLite, no endpoint", hook_n, c, None).await;
        let (fast, fast_got) =
            run_webhooks("SQLite, endpoint at once", hook_n, c, Some(Duration::ZERO)).await;
        let (slow, slow_got) = run_webhooks(
            "SQLite, endpoint sleeps 2 s",
            hook_n,
            c,
            Some(Duration::from_secs(2)),
        )
        .await;
        println!();
        println!(
            "webhooks: {hook_n} payments, {c} clients; no endpoint, one that answers at once, \
             one that answers each delivery after 2 s"
        );
        print_results(&[plain, fast, slow]);
        println!(
            "deliveries answered during the run: {fast_got} (at once), {slow_got} (after 2 s)"
        );

        // argon2 cost of one PIN check (what a PIN payment adds), measured apart.
        let pin = Pin::parse("1234").unwrap();
        let hash = server_stub::pin::hash_pin(&pin).unwrap();
        let t0 = Instant::now();
        let rounds = 10;
        for _ in 0..rounds {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            let h = PasswordHash::new(&hash).unwrap();
            argon2::Argon2::default()
                .verify_password(b"1234", &h)
                .unwrap();
        }
        println!(
            "argon2id PIN check: {:.1} ms each",
            t0.elapsed().as_secs_f64() * 1000.0 / rounds as f64
        );
        assert!(results.iter().all(|r| r.audit_ok), "ledger audit failed");
    });
}
