//! Device services under load (SPEC D4): update checks per second from C concurrent
//! devices, each with its own credential, and the download throughput of one large
//! package over loopback (read in chunks as the TV reads it, SHA-256 checked).
//!
//! `cargo bench -p server-stub --bench device_load -- [SECONDS] [C] [MB]` (defaults 5, 64
//! and 100).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use protocol::{HardwareId, OsVersion, RegisterDevice, UpdateCheck, UpdateKey, VendorKey};
use server_stub::testing::TestServer;
use sha2::{Digest, Sha256};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let secs: u64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(5);
    let devices: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(64);
    let mb: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);

    // A package of `mb` MB, signed with a fresh vendor key, in its own updates directory.
    let dir = tempfile::tempdir().unwrap();
    let key = VendorKey::random();
    let file = dir.path().join("bench-2.0.0.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
        let mut block = [0u8; 1 << 16];
        for i in 0..(mb << 20) / block.len() as u64 {
            block[..8].copy_from_slice(&i.to_be_bytes());
            f.write_all(&block).unwrap();
        }
    }
    let version = OsVersion::parse("2.0.0").unwrap();
    let entry = server_stub::devices::sign(&key, "couchpay-box", &version, &file).unwrap();
    std::fs::write(
        dir.path().join("index.json"),
        serde_json::to_string(&server_stub::devices::Index {
            packages: vec![entry],
        })
        .unwrap(),
    )
    .unwrap();
    let updates = dir.path().to_owned();
    let srv = TestServer::start_with(|c| c.updates = Some(updates)).await;
    let c = srv.client();

    // C devices, each registered and provisioned.
    let mut creds = Vec::with_capacity(devices);
    for i in 0..devices {
        let id = HardwareId::parse(&format!("BENCH-{i:06}")).unwrap();
        c.register_device(
            &srv.admin_token,
            &RegisterDevice {
                id: id.clone(),
                product: "couchpay-box".into(),
                os_version: OsVersion::parse("1.0.0").unwrap(),
            },
        )
        .await
        .unwrap();
        let cred = c
            .issue_device_credential(&srv.admin_token, &id)
            .await
            .unwrap();
        creds.push((id, cred.credential));
    }

    // Update checks: every device asks again as soon as it has its answer.
    let done = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = creds
        .iter()
        .cloned()
        .map(|(id, cred)| {
            let (c, done, count) = (c.clone(), done.clone(), count.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while !done.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match c.check_update(&id, &cred).await.unwrap() {
                        UpdateCheck::Available { .. } => {}
                        other => panic!("expected a package, got {other:?}"),
                    }
                    lat.push(t.elapsed());
                    count.fetch_add(1, Ordering::Relaxed);
                }
                lat
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    done.store(true, Ordering::Relaxed);
    let mut lat: Vec<Duration> = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
    println!(
        "update checks: {} devices, {:.0}/s ({} in {elapsed:.1} s), p50 {:.2} ms, p99 {:.2} ms",
        devices,
        count.load(Ordering::Relaxed) as f64 / elapsed,
        count.load(Ordering::Relaxed),
        p(0.5),
        p(0.99)
    );

    // Download: the whole package in chunks, hashed as it arrives, then verified.
    let (id, cred) = &creds[0];
    let UpdateCheck::Available { package } = c.check_update(id, cred).await.unwrap() else {
        unreachable!("checked above");
    };
    let started = Instant::now();
    let resp = c.download_from(&package.url, 0).await.unwrap();
    let mut body = resp.bytes_stream();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        size += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let secs = started.elapsed().as_secs_f64();
    let sha: [u8; 32] = hasher.finalize().into();
    UpdateKey::parse(&key.public_hex())
        .unwrap()
        .verify_download(&package, size, &sha)
        .expect("the download verifies");
    println!(
        "download: {:.1} MB in {secs:.2} s = {:.0} MB/s (with SHA-256), verified",
        size as f64 / 1e6,
        size as f64 / 1e6 / secs
    );
    srv.stop().await;
}
