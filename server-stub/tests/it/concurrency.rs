//! Races: many payers on one order, one payer on many orders. Money is never created or lost.

use std::sync::Arc;

use protocol::{AccountId, CreateAccount, Currency, ErrorCode, Money, Pin, TopUp};
use server_stub::testing::TestServer;

use crate::*;

async fn make_payers(srv: &TestServer, n: usize, balance_minor: u64) -> Vec<AccountId> {
    let c = srv.client();
    let eur = Currency::parse("EUR").unwrap();
    let mut ids = Vec::new();
    for i in 0..n {
        let id = AccountId::parse(&format!("payer-{i}")).unwrap();
        c.create_account(
            &srv.admin_token,
            &CreateAccount {
                id: id.clone(),
                name: format!("Payer {i}"),
                pin: Pin::parse("4321").unwrap(),
                currency: eur,
            },
        )
        .await
        .unwrap();
        c.top_up(
            &srv.admin_token,
            &TopUp {
                account: id.clone(),
                amount: Money::new(balance_minor, eur),
            },
        )
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn hundred_payers_race_for_one_order_exactly_one_wins() {
    let srv = TestServer::start().await;
    let c = Arc::new(srv.client());
    let payers = make_payers(&srv, 100, 10_00).await;
    let o = order(&c, "film-night-train").await.order;
    let mut tasks = Vec::new();
    for p in payers {
        let c = c.clone();
        let id = o.id.clone();
        tasks.push(tokio::spawn(async move {
            c.pay(
                &id,
                &key(),
                &protocol::PayRequest {
                    account: p,
                    auth: pin("4321"),
                    delivery_address: None,
                },
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::AlreadyPaid), "{e}"),
        }
    }
    assert_eq!(ok, 1);
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    let eur = &audit.currencies[0];
    // Seeded demo money (the payers', and Dana's for the demo box she bought) plus
    // 100 × 10.00: nothing created or lost.
    let catalog = c.catalog().await.unwrap();
    let box_price = catalog
        .items
        .iter()
        .find(|i| i.device_product.is_some())
        .map_or(0, |i| i.price.minor);
    let demo: u64 = server_stub::seed::DEMO_PAYERS
        .iter()
        .map(|p| p.3 + p.4)
        .sum::<u64>()
        + box_price;
    assert_eq!(eur.topped_up_minor, demo + 100 * 10_00);
    assert_eq!(eur.balances_minor, eur.topped_up_minor);
    srv.stop().await;
}

#[tokio::test]
async fn concurrent_double_spend_of_one_balance_pays_only_what_it_covers() {
    let srv = TestServer::start().await;
    let c = Arc::new(srv.client());
    // 10.00 covers two films at 4.99, not three or more.
    let payer = make_payers(&srv, 1, 10_00).await.remove(0);
    let session = c
        .login(&protocol::LoginRequest {
            account: payer.clone(),
            pin: Pin::parse("4321").unwrap(),
        })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        let payer = payer.clone();
        let token = session.token.clone();
        tasks.push(tokio::spawn(async move {
            // One TV each: a device that owns the film is not sold it again.
            let o = order_on(&c, "film-night-train", &format!("SN-SPEND-{i:02}"))
                .await
                .order;
            c.pay(
                &o.id,
                &key(),
                &protocol::PayRequest {
                    account: payer,
                    auth: protocol::PayerAuth::Session(token),
                    delivery_address: None,
                },
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code(), Some(ErrorCode::InsufficientFunds), "{e}"),
        }
    }
    assert_eq!(ok, 2);
    let v = c.account(&payer, &session.token).await.unwrap();
    assert_eq!(v.balance.minor, 10_00 - 2 * 4_99);
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}
