//! `couchpay packets …` against a real server: send (quote, link, saved PNG), claim from
//! the saved picture and with the short code on other devices, one packet per account, the
//! sender's history, and plain-words refusals.

use server_stub::testing::TestServer;

use crate::vouchers_cli::couchpay;

#[tokio::test(flavor = "multi_thread")]
async fn packets_sent_on_one_cli_are_claimed_from_the_picture_and_the_link_on_others() {
    let server = TestServer::start().await;
    let url = server.url.clone();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (alice, bob, carol) = (dirs[0].path(), dirs[1].path(), dirs[2].path());
    let png = alice.join("packets.png");
    let png_arg = png.to_str().unwrap().to_owned();
    tokio::task::block_in_place(|| {
        let (ok, out, err) = couchpay(
            &url,
            alice,
            &[
                "packets",
                "send",
                "--count",
                "3",
                "--total",
                "6.00",
                "--message",
                "Enjoy!",
                "--png",
                &png_arg,
                "--yes",
                "--account",
                "alice",
                "--pin",
                "1234",
            ],
        );
        assert!(ok, "{err}");
        assert!(
            out.contains("3 packets: 6.00 EUR leaves your wallet now (about 2.00 EUR each)."),
            "{out}"
        );
        assert!(out.contains("SENT 6.00 EUR as 3 red packets."), "{out}");
        assert!(out.contains("message   Enjoy!"), "{out}");
        assert!(png.exists());
        let link = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("link"))
            .map(|l| l.trim().to_owned())
            .expect("the claim link is printed");
        assert!(link.contains("/R/"), "{link}");

        let code = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("code"))
            .map(|l| l.trim().to_owned())
            .expect("the short code is printed");

        // Bob claims from the picture, Carol with the code (as a TV shows it).
        let (ok, out, err) = couchpay(
            &url,
            bob,
            &[
                "packets",
                "claim",
                &png_arg,
                "--account",
                "bob",
                "--pin",
                "2468",
            ],
        );
        assert!(ok, "{err}");
        assert!(out.contains("CLAIMED "), "{out}");
        assert!(out.contains("from Alice Martin."), "{out}");
        assert!(out.contains("2 of 3 left"), "{out}");
        let (ok, out, err) = couchpay(
            &url,
            carol,
            &[
                "packets",
                "claim",
                &code,
                "--account",
                "carol",
                "--pin",
                "1357",
            ],
        );
        assert!(ok, "{err}");
        assert!(out.contains("1 of 3 left"), "{out}");
        assert!(
            out.contains("Bob Chen") && out.contains("Carol Diaz"),
            "{out}"
        );
        assert!(out.contains("★ largest"), "{out}");

        // Bob again: one packet per account, said in plain words.
        let (ok, _, err) = couchpay(
            &url,
            bob,
            &[
                "packets",
                "claim",
                &link,
                "--account",
                "bob",
                "--pin",
                "2468",
            ],
        );
        assert!(!ok);
        assert!(err.contains("already"), "{err}");
        assert!(!err.contains("Caused by"), "{err}");

        // Alice's history (after signing in) shows the set with two claims.
        let (ok, _, err) = couchpay(
            &url,
            alice,
            &["login", "--account", "alice", "--pin", "1234"],
        );
        assert!(ok, "{err}");
        let (ok, out, err) = couchpay(&url, alice, &["packets", "list"]);
        assert!(ok, "{err}");
        assert!(out.contains("open") && out.contains("2/3 claimed"), "{out}");
        assert!(out.contains("6.00 EUR"), "{out}");

        // Too few packets: refused before anything moves.
        let (ok, _, err) = couchpay(
            &url,
            alice,
            &["packets", "send", "--count", "1", "--each", "1.00", "--yes"],
        );
        assert!(!ok);
        assert!(err.contains("A set has 2 to 10000 packets."), "{err}");
    });
    let audit = server.client().audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    server.stop().await;
}
