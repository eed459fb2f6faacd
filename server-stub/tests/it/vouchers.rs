//! QR e-cash vouchers (SPEC V): every state transition and refusal, partial redemption,
//! settings, expiry with the manual clock, and races; money is conserved after each.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use protocol::client::Client;
use protocol::{
    AccountEvent, AccountId, CreateAccount, CreateVoucher, Currency, ErrorCode, Money, PayerAuth,
    Pin, RedeemMode, RedeemVoucher, Session, TopUp, VoidVoucher, Voucher, VoucherFilter,
    VoucherKind, VoucherLink, VoucherSettings, VoucherState,
};
use server_stub::testing::TestServer;
use server_stub::vouchers::{DEFAULT_VALIDITY_S, MAX_LIVE_VOUCHERS, MAX_VOUCHER_MINOR};

use crate::*;

const EVENT_WAIT: Duration = Duration::from_secs(5);

fn eur(minor: u64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn create_req(payer: &str, p: &str, minor: u64) -> CreateVoucher {
    CreateVoucher {
        account: account(payer),
        auth: pin(p),
        amount: eur(minor),
        valid_for_s: None,
        restrict_to: None,
    }
}

fn redeem_req(s: &Session, amount: Option<Money>) -> RedeemVoucher {
    RedeemVoucher {
        account: s.account.clone(),
        auth: PayerAuth::Session(s.token.clone()),
        amount,
    }
}

async fn balance(c: &Client, s: &Session) -> (u64, u64) {
    let v = c.account(&s.account, &s.token).await.unwrap();
    (v.balance.minor, v.held.minor)
}

async fn audit_clean(c: &Client) {
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}

/// A wallet `id` with PIN 4321 and `minor` EUR in it.
async fn payer(srv: &TestServer, id: &str, minor: u64) -> AccountId {
    let c = srv.client();
    let id = account(id);
    c.create_account(
        &srv.admin_token,
        &CreateAccount {
            id: id.clone(),
            name: format!("Payee {id}"),
            pin: Pin::parse("4321").unwrap(),
            currency: Currency::parse("EUR").unwrap(),
        },
    )
    .await
    .unwrap();
    if minor > 0 {
        c.top_up(
            &srv.admin_token,
            &TopUp {
                account: id.clone(),
                amount: eur(minor),
            },
        )
        .await
        .unwrap();
    }
    id
}

#[tokio::test]
async fn create_freeze_redeem_in_part_and_the_rest_goes_back_at_once() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    let bob = login(&c, "bob", "2468").await;
    let mut stream = Box::pin(
        c.account_events(&alice.account, &alice.token)
            .await
            .unwrap(),
    );
    assert!(matches!(
        stream.next().await.unwrap().unwrap(),
        AccountEvent::Hello { .. }
    ));
    let (a0, _) = balance(&c, &alice).await;
    let (b0, _) = balance(&c, &bob).await;

    let v = c
        .create_voucher(&create_req("alice", "1234", 30_00))
        .await
        .unwrap();
    assert_eq!(v.state, VoucherState::Unused);
    assert_eq!(v.face_value, eur(30_00));
    assert_eq!(v.used, eur(0));
    assert_eq!(v.payer_name, "Alice Martin");
    assert_eq!(
        v.expires_at_ms - v.created_at_ms,
        DEFAULT_VALIDITY_S as i64 * 1000
    );
    assert_eq!(v.link, VoucherLink::new(srv.url.clone(), v.id.clone()));
    assert_eq!(VoucherLink::parse(&v.link.to_string()).unwrap(), v.link);
    // Frozen, not moved.
    assert_eq!(balance(&c, &alice).await, (a0, 30_00));

    // The payee sees what the server has before confirming.
    assert_eq!(c.voucher(&v.id).await.unwrap(), v);

    let k = key();
    let r = c
        .redeem_voucher(&v.id, &k, &redeem_req(&bob, Some(eur(12_50))))
        .await
        .unwrap();
    assert_eq!(r.amount, eur(12_50));
    assert_eq!(r.released, eur(17_50));
    assert_eq!(r.voucher.state, VoucherState::Redeemed);
    assert_eq!(r.voucher.used, eur(12_50));
    assert_eq!(r.voucher.payee.as_ref(), Some(&bob.account));
    assert_eq!(balance(&c, &alice).await, (a0 - 12_50, 0));
    assert_eq!(balance(&c, &bob).await, (b0 + 12_50, 0));

    // A replay with the same key is the same answer; money moved once.
    let again = c
        .redeem_voucher(&v.id, &k, &redeem_req(&bob, Some(eur(12_50))))
        .await
        .unwrap();
    assert_eq!(again, r);
    assert_eq!(balance(&c, &bob).await, (b0 + 12_50, 0));
    // Any other redemption is refused.
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
            .await,
        ErrorCode::VoucherRedeemed,
    );

    // The payer's stream heard of it.
    let ev = tokio::time::timeout(EVENT_WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        ev,
        AccountEvent::VoucherRedeemed {
            voucher: r.voucher.clone()
        }
    );

    // Details and lists (V5).
    let issued = c
        .vouchers(&alice.account, &alice.token, &VoucherFilter::default())
        .await
        .unwrap();
    assert_eq!(issued.items, vec![r.voucher.clone()]);
    let received = c
        .vouchers(
            &bob.account,
            &bob.token,
            &VoucherFilter {
                kind: Some(VoucherKind::Redeemed),
                ..VoucherFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(received.items, vec![r.voucher.clone()]);
    let unused = c
        .vouchers(
            &alice.account,
            &alice.token,
            &VoucherFilter {
                state: Some(VoucherState::Unused),
                ..VoucherFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(unused.items.is_empty());
    let later = c
        .vouchers(
            &alice.account,
            &alice.token,
            &VoucherFilter {
                from_ms: Some(v.created_at_ms + 1),
                ..VoucherFilter::default()
            },
        )
        .await
        .unwrap();
    assert!(later.items.is_empty());
    // Someone else's session sees nothing of alice's.
    assert_code(
        c.vouchers(&alice.account, &bob.token, &VoucherFilter::default())
            .await,
        ErrorCode::Unauthorized,
    );
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn bad_vouchers_are_refused_with_clear_codes_and_nothing_frozen() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    let before = balance(&c, &alice).await;
    let cases: Vec<(CreateVoucher, ErrorCode)> = vec![
        (create_req("alice", "1234", 0), ErrorCode::InvalidRequest),
        (
            create_req("alice", "1234", MAX_VOUCHER_MINOR + 1),
            ErrorCode::LimitExceeded,
        ),
        // Alice's wallet has 500.00: a 600.00 voucher cannot be frozen.
        (
            create_req("alice", "1234", 600_00),
            ErrorCode::InsufficientFunds,
        ),
        (
            CreateVoucher {
                amount: Money::new(10_00, Currency::parse("USD").unwrap()),
                ..create_req("alice", "1234", 0)
            },
            ErrorCode::CurrencyMismatch,
        ),
        (
            CreateVoucher {
                valid_for_s: Some(10),
                ..create_req("alice", "1234", 10_00)
            },
            ErrorCode::InvalidRequest,
        ),
        (
            CreateVoucher {
                restrict_to: Some(account("alice")),
                ..create_req("alice", "1234", 10_00)
            },
            ErrorCode::InvalidRequest,
        ),
        (create_req("alice", "9999", 10_00), ErrorCode::WrongPin),
        (create_req("nobody", "1234", 10_00), ErrorCode::WrongPin),
        // The default settings ask for the PIN on every voucher.
        (
            CreateVoucher {
                auth: PayerAuth::Session(alice.token.clone()),
                ..create_req("alice", "1234", 10_00)
            },
            ErrorCode::PinRequired,
        ),
    ];
    for (req, code) in cases {
        let got = c.create_voucher(&req).await;
        match got {
            Err(e) if e.code() == Some(code) => {}
            Err(e)
                if code == ErrorCode::WrongPin && e.code() == Some(ErrorCode::UnknownAccount) => {}
            other => panic!("{req:?}: expected {code}, got {other:?}"),
        }
    }
    assert_eq!(balance(&c, &alice).await, before, "nothing was frozen");
    assert_code(
        c.voucher(&protocol::VoucherId::random()).await,
        ErrorCode::UnknownVoucher,
    );
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn every_transition_and_refusal_of_redeem_and_void() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    let bob = login(&c, "bob", "2468").await;
    let void_req = |s: &Session| VoidVoucher {
        account: s.account.clone(),
        auth: PayerAuth::Session(s.token.clone()),
    };

    // unused → voided: the hold goes back; redeem and void again refused.
    let v = c
        .create_voucher(&create_req("alice", "1234", 10_00))
        .await
        .unwrap();
    assert_code(
        c.void_voucher(&v.id, &void_req(&bob)).await,
        ErrorCode::UnknownVoucher,
    );
    let voided = c.void_voucher(&v.id, &void_req(&alice)).await.unwrap();
    assert_eq!(voided.state, VoucherState::Voided);
    assert_eq!(balance(&c, &alice).await.1, 0);
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
            .await,
        ErrorCode::VoucherVoided,
    );
    assert_code(
        c.void_voucher(&v.id, &void_req(&alice)).await,
        ErrorCode::VoucherVoided,
    );

    // unused → redeemed (whole): void refused afterwards.
    let v = c
        .create_voucher(&create_req("alice", "1234", 10_00))
        .await
        .unwrap();
    // Refusals that leave it unused.
    for (amount, code) in [
        (Some(eur(10_01)), ErrorCode::InvalidRequest),
        (Some(eur(0)), ErrorCode::InvalidRequest),
        (
            Some(Money::new(5_00, Currency::parse("USD").unwrap())),
            ErrorCode::CurrencyMismatch,
        ),
    ] {
        assert_code(
            c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, amount))
                .await,
            code,
        );
    }
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&alice, None))
            .await,
        ErrorCode::NotAllowed,
    );
    let mut stranger = redeem_req(&bob, None);
    stranger.auth = PayerAuth::Session(alice.token.clone());
    assert_code(
        c.redeem_voucher(&v.id, &key(), &stranger).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(c.voucher(&v.id).await.unwrap().state, VoucherState::Unused);
    let r = c
        .redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
        .await
        .unwrap();
    assert_eq!((r.amount, r.released), (eur(10_00), eur(0)));
    assert_code(
        c.void_voucher(&v.id, &void_req(&alice)).await,
        ErrorCode::VoucherRedeemed,
    );

    // Restricted to one payee: anyone else is refused.
    let carol = login(&c, "carol", "1357").await;
    let v = c
        .create_voucher(&CreateVoucher {
            restrict_to: Some(bob.account.clone()),
            ..create_req("alice", "1234", 5_00)
        })
        .await
        .unwrap();
    assert_eq!(v.restricted_to.as_ref(), Some(&bob.account));
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&carol, None))
            .await,
        ErrorCode::NotAllowed,
    );
    c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
        .await
        .unwrap();

    // unused → expired (read as expired at once, before any sweep): refused.
    let v = c
        .create_voucher(&create_req("alice", "1234", 5_00))
        .await
        .unwrap();
    srv.advance_clock(Duration::from_secs(DEFAULT_VALIDITY_S));
    // Sessions do not last a day: log in again.
    let alice = login(&c, "alice", "1234").await;
    let bob = login(&c, "bob", "2468").await;
    assert_eq!(c.voucher(&v.id).await.unwrap().state, VoucherState::Expired);
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
            .await,
        ErrorCode::VoucherExpired,
    );
    assert_code(
        c.void_voucher(&v.id, &void_req(&alice)).await,
        ErrorCode::VoucherExpired,
    );
    srv.sweep_expired().await;
    assert_eq!(
        balance(&c, &alice).await.1,
        0,
        "the sweep released the hold"
    );
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn a_redemption_that_cannot_move_the_money_fails_the_voucher_and_returns_it() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    // A payee wallet at the largest balance allowed: any credit is refused.
    let full = payer(&srv, "full-wallet", 0).await;
    let max = server_stub::ledger::MAX_BALANCE_MINOR as u64;
    let mut left = max;
    while left > 0 {
        let step = left.min(server_stub::ledger::MAX_AMOUNT_MINOR);
        c.top_up(
            &srv.admin_token,
            &TopUp {
                account: full.clone(),
                amount: eur(step),
            },
        )
        .await
        .unwrap();
        left -= step;
    }
    let payee = login(&c, "full-wallet", "4321").await;
    let (a0, _) = balance(&c, &alice).await;
    let mut stream = Box::pin(
        c.account_events(&alice.account, &alice.token)
            .await
            .unwrap(),
    );
    stream.next().await.unwrap().unwrap();

    let v = c
        .create_voucher(&create_req("alice", "1234", 10_00))
        .await
        .unwrap();
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&payee, None))
            .await,
        ErrorCode::VoucherFailed,
    );
    let failed = c.voucher(&v.id).await.unwrap();
    assert_eq!(failed.state, VoucherState::Failed);
    assert_eq!(failed.used, eur(0));
    assert_eq!(balance(&c, &alice).await, (a0, 0), "the money is back");
    assert_eq!(balance(&c, &payee).await, (max, 0));
    let ev = tokio::time::timeout(EVENT_WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, AccountEvent::VoucherFailed { voucher } if voucher.id == v.id));
    let bob = login(&c, "bob", "2468").await;
    assert_code(
        c.redeem_voucher(&v.id, &key(), &redeem_req(&bob, None))
            .await,
        ErrorCode::VoucherFailed,
    );
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn too_many_live_vouchers_are_refused_until_one_is_voided() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    // PIN only for the first voucher: the rest need only the session (V6).
    c.set_voucher_settings(
        &alice.account,
        &alice.token,
        &VoucherSettings {
            pin_every_voucher: false,
            redeem_mode: RedeemMode::RedeemOnScan,
        },
    )
    .await
    .unwrap();
    let by_session = CreateVoucher {
        auth: PayerAuth::Session(alice.token.clone()),
        ..create_req("alice", "1234", 1_00)
    };
    assert_code(c.create_voucher(&by_session).await, ErrorCode::PinRequired);
    let mut made: Vec<Voucher> = vec![
        c.create_voucher(&create_req("alice", "1234", 1_00))
            .await
            .unwrap(),
    ];
    for _ in 1..MAX_LIVE_VOUCHERS {
        made.push(c.create_voucher(&by_session).await.unwrap());
    }
    assert_code(
        c.create_voucher(&by_session).await,
        ErrorCode::LimitExceeded,
    );
    assert_eq!(balance(&c, &alice).await.1, MAX_LIVE_VOUCHERS as u64 * 1_00);
    c.void_voucher(
        &made[0].id,
        &VoidVoucher {
            account: alice.account.clone(),
            auth: PayerAuth::Session(alice.token.clone()),
        },
    )
    .await
    .unwrap();
    c.create_voucher(&by_session).await.unwrap();
    let settings = c
        .voucher_settings(&alice.account, &alice.token)
        .await
        .unwrap();
    assert_eq!(settings.redeem_mode, RedeemMode::RedeemOnScan);
    assert!(!settings.pin_every_voucher);
    // Pages: 20 live + 1 voided, newest first, in pages of 8.
    let mut seen = 0;
    let mut cursor = None;
    loop {
        let page = c
            .vouchers(
                &alice.account,
                &alice.token,
                &VoucherFilter {
                    limit: Some(8),
                    cursor: cursor.clone(),
                    ..VoucherFilter::default()
                },
            )
            .await
            .unwrap();
        seen += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, MAX_LIVE_VOUCHERS as usize + 1);
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test]
async fn expiry_releases_the_hold_once_and_tells_the_payer_once() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let alice = login(&c, "alice", "1234").await;
    let (a0, _) = balance(&c, &alice).await;
    let v = c
        .create_voucher(&CreateVoucher {
            valid_for_s: Some(3_600),
            ..create_req("alice", "1234", 40_00)
        })
        .await
        .unwrap();
    let mut stream = Box::pin(
        c.account_events(&alice.account, &alice.token)
            .await
            .unwrap(),
    );
    stream.next().await.unwrap().unwrap();
    srv.advance_clock(Duration::from_secs(3_599));
    srv.sweep_expired().await;
    assert_eq!(c.voucher(&v.id).await.unwrap().state, VoucherState::Unused);
    srv.advance_clock(Duration::from_secs(1));
    srv.sweep_expired().await;
    srv.sweep_expired().await;
    let ev = tokio::time::timeout(EVENT_WAIT, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, AccountEvent::VoucherExpired { ref voucher } if voucher.id == v.id));
    // Exactly one event: nothing else arrives.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err()
    );
    let expired = c.voucher(&v.id).await.unwrap();
    assert_eq!(expired.state, VoucherState::Expired);
    assert!(expired.closed_at_ms.is_some());
    let alice = login(&c, "alice", "1234").await;
    assert_eq!(balance(&c, &alice).await, (a0, 0));
    audit_clean(&c).await;
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_payees_race_for_one_voucher_and_exactly_one_gets_it() {
    let srv = TestServer::start().await;
    let c = Arc::new(srv.client());
    let mut payees = Vec::new();
    for i in 0..50 {
        payer(&srv, &format!("payee-{i}"), 0).await;
        payees.push(login(&c, &format!("payee-{i}"), "4321").await);
    }
    let alice = login(&c, "alice", "1234").await;
    let (a0, _) = balance(&c, &alice).await;
    let v = c
        .create_voucher(&create_req("alice", "1234", 25_00))
        .await
        .unwrap();
    let tasks: Vec<_> = payees
        .into_iter()
        .map(|p| {
            let c = c.clone();
            let id = v.id.clone();
            tokio::spawn(async move { c.redeem_voucher(&id, &key(), &redeem_req(&p, None)).await })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::VoucherRedeemed), "{e}"),
        }
    }
    assert_eq!(won, 1);
    assert_eq!(balance(&c, &alice).await, (a0 - 25_00, 0));
    audit_clean(&c).await;

    // Redeem racing void, many times over: exactly one wins each time.
    let bob = login(&c, "bob", "2468").await;
    for _ in 0..10 {
        let v = c
            .create_voucher(&create_req("alice", "1234", 1_00))
            .await
            .unwrap();
        let (c1, c2) = (c.clone(), c.clone());
        let (id1, id2) = (v.id.clone(), v.id.clone());
        let bob = bob.clone();
        let void = VoidVoucher {
            account: alice.account.clone(),
            auth: PayerAuth::Session(alice.token.clone()),
        };
        let redeem = tokio::spawn(async move {
            c1.redeem_voucher(&id1, &key(), &redeem_req(&bob, None))
                .await
        });
        let voided = tokio::spawn(async move { c2.void_voucher(&id2, &void).await });
        let (r, d) = (redeem.await.unwrap(), voided.await.unwrap());
        assert!(r.is_ok() != d.is_ok(), "exactly one wins: {r:?} / {d:?}");
        let state = c.voucher(&v.id).await.unwrap().state;
        assert_eq!(
            state,
            if r.is_ok() {
                VoucherState::Redeemed
            } else {
                VoucherState::Voided
            }
        );
    }
    assert_eq!(balance(&c, &alice).await.1, 0);
    audit_clean(&c).await;
    srv.stop().await;
}
