//! `couchpay voucher …` against a real server: create (link + saved PNG), redeem part of it
//! from the saved picture on another device, lists, and plain-words refusals.

use std::process::Command;

use protocol::ServerUrl;
use server_stub::testing::TestServer;

/// Runs the CLI with its own state file in `dir`: (success, stdout, stderr).
pub(crate) fn couchpay(
    server: &ServerUrl,
    dir: &std::path::Path,
    args: &[&str],
) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_couchpay"))
        .arg("--server")
        .arg(server.as_str())
        .arg("--state")
        .arg(dir.join("cli.json"))
        .args(args)
        .env("COUCHPAY_NO_BLE", "1")
        .env_remove("COUCHPAY_ACCOUNT")
        .env_remove("COUCHPAY_PIN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_voucher_made_on_one_cli_is_redeemed_from_its_picture_on_another() {
    let server = TestServer::start().await;
    let url = server.url.clone();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let png = a.path().join("for-bob.png");
    let png_arg = png.to_str().unwrap().to_owned();
    let (ap, bp) = (a.path().to_owned(), b.path().to_owned());
    tokio::task::block_in_place(|| {
        let (ok, out, err) = couchpay(
            &url,
            &ap,
            &[
                "voucher",
                "create",
                "10.00",
                "--account",
                "alice",
                "--pin",
                "1234",
                "--png",
                &png_arg,
            ],
        );
        assert!(ok, "{err}");
        assert!(out.contains("VOUCHER 10.00 EUR made"), "{out}");
        assert!(out.contains("Anyone who has this QR code"), "{out}");
        assert!(png.exists());

        let (ok, out, err) = couchpay(
            &url,
            &bp,
            &[
                "voucher",
                "redeem",
                &png_arg,
                "--amount",
                "3.00",
                "--yes",
                "--account",
                "bob",
                "--pin",
                "2468",
            ],
        );
        assert!(ok, "{err}");
        assert!(out.contains("Voucher from Alice Martin"), "{out}");
        assert!(out.contains("REDEEMED 3.00 EUR into your wallet."), "{out}");
        assert!(out.contains("7.00 EUR went back to Alice Martin."), "{out}");

        // Again: refused in plain words, no Rust error chain.
        let (ok, _, err) = couchpay(
            &url,
            &bp,
            &[
                "voucher",
                "redeem",
                &png_arg,
                "--yes",
                "--account",
                "bob",
                "--pin",
                "2468",
            ],
        );
        assert!(!ok);
        assert!(err.contains("redeemed"), "{err}");
        assert!(!err.contains("Caused by"), "{err}");

        // Alice's list (after signing in) shows it redeemed.
        let (ok, _, err) = couchpay(&url, &ap, &["login", "--account", "alice", "--pin", "1234"]);
        assert!(ok, "{err}");
        let (ok, out, err) = couchpay(&url, &ap, &["voucher", "list"]);
        assert!(ok, "{err}");
        assert!(out.contains("redeemed"), "{out}");
        assert!(out.contains("3.00 EUR"), "{out}");

        // Bad amounts are refused before anything is frozen.
        let (ok, _, err) = couchpay(
            &url,
            &ap,
            &[
                "voucher",
                "create",
                "5000.00",
                "--account",
                "alice",
                "--pin",
                "1234",
            ],
        );
        assert!(!ok);
        assert!(err.contains("at most 1000.00 EUR"), "{err}");
    });
    let audit = server.client().audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    server.stop().await;
}
