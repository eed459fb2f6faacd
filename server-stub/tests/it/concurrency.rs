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

/// Payments that land in one writer batch (on PostgreSQL, one set of statements, see
/// `payset`) are each settled as if alone: a payer's money runs out part-way, a retried
/// key is one payment, a second order of something owned is refused, sessions are checked.
#[tokio::test]
async fn payments_arriving_together_are_each_settled_by_the_rules_of_one() {
    let srv = TestServer::start().await;
    let c = Arc::new(srv.client());
    // payer-0 can afford three films at 4.99, not six.
    let payers = make_payers(&srv, 6, 14_97).await;
    let film = "film-night-train";
    let mut orders = Vec::new();
    for i in 0..6 {
        orders.push(order_on(&c, film, &format!("tv-set-{i}")).await.order);
    }
    let twice = order_on(&c, film, "tv-twice").await.order;
    let owned_a = order_on(&c, "film-cloud-atlas-of-birds", "tv-owner")
        .await
        .order;
    let owned_b = order_on(&c, "film-cloud-atlas-of-birds", "tv-owner")
        .await
        .order;
    let member_a = order_on(&c, "plus-monthly", "tv-member").await.order;
    let member_b = order_on(&c, "plus-monthly", "tv-member").await.order;
    let by_session = order_on(&c, film, "tv-session").await.order;
    let stolen = order_on(&c, film, "tv-stolen").await.order;
    // Sessions, not PINs: nothing slow stands between the requests and the writer.
    let mut sessions = Vec::new();
    for p in &payers {
        sessions.push(login(&c, p.as_str(), "4321").await.token);
    }
    let auth = |i: usize| protocol::PayerAuth::Session(sessions[i].clone());

    let pay = |id: protocol::OrderId, payer: AccountId, k: protocol::IdempotencyKey, auth| {
        let c = c.clone();
        tokio::spawn(async move {
            c.pay(
                &id,
                &k,
                &protocol::PayRequest {
                    account: payer,
                    auth,
                    delivery_address: None,
                },
            )
            .await
        })
    };
    let same_key = key();
    let mut runs = Vec::new();
    for o in &orders {
        runs.push((
            "budget",
            pay(o.id.clone(), payers[0].clone(), key(), auth(0)),
        ));
    }
    for _ in 0..2 {
        let (id, k) = (twice.id.clone(), same_key.clone());
        runs.push(("twice", pay(id, payers[1].clone(), k, auth(1))));
    }
    runs.push((
        "owned",
        pay(owned_a.id.clone(), payers[2].clone(), key(), auth(2)),
    ));
    runs.push((
        "owned",
        pay(owned_b.id.clone(), payers[3].clone(), key(), auth(3)),
    ));
    runs.push((
        "member",
        pay(member_a.id.clone(), payers[2].clone(), key(), auth(2)),
    ));
    runs.push((
        "member",
        pay(member_b.id.clone(), payers[3].clone(), key(), auth(3)),
    ));
    runs.push((
        "session",
        pay(by_session.id.clone(), payers[4].clone(), key(), auth(4)),
    ));
    runs.push((
        "stolen",
        pay(stolen.id.clone(), payers[5].clone(), key(), auth(4)),
    ));

    let mut outcomes: std::collections::BTreeMap<&str, Vec<Result<protocol::Receipt, String>>> =
        Default::default();
    for (what, run) in runs {
        let r = run.await.unwrap().map_err(|e| format!("{:?}", e.code()));
        outcomes.entry(what).or_default().push(r);
    }
    let oks = |what: &str| outcomes[what].iter().filter(|r| r.is_ok()).count();
    let errs = |what: &str| -> Vec<String> {
        outcomes[what]
            .iter()
            .filter_map(|r| r.clone().err())
            .collect()
    };
    assert_eq!(oks("budget"), 3, "{:?}", outcomes["budget"]);
    assert!(
        errs("budget")
            .iter()
            .all(|e| e.contains("InsufficientFunds")),
        "{:?}",
        errs("budget")
    );
    let twice_ids: Vec<_> = outcomes["twice"]
        .iter()
        .map(|r| {
            r.as_ref()
                .expect("a retried key is answered")
                .payment_id
                .clone()
        })
        .collect();
    assert_eq!(twice_ids, vec![same_key.clone(), same_key]);
    for what in ["owned", "member"] {
        assert_eq!(oks(what), 1, "{what}: {:?}", outcomes[what]);
        assert!(
            errs(what)[0].contains("AlreadyOwned"),
            "{what}: {:?}",
            errs(what)
        );
    }
    assert_eq!(oks("session"), 1, "{:?}", outcomes["session"]);
    assert!(
        errs("stolen")[0].contains("Unauthorized"),
        "{:?}",
        errs("stolen")
    );

    // What each payer has left says who paid what, once.
    let left = |i: usize| {
        let c = c.clone();
        let (id, token) = (payers[i].clone(), sessions[i].clone());
        async move { c.account(&id, &token).await.unwrap().balance.minor }
    };
    assert_eq!(left(0).await, 0);
    assert_eq!(left(1).await, 14_97 - 4_99);
    assert_eq!(left(2).await + left(3).await, 2 * 14_97 - 3_49 - 9_99);
    assert_eq!(left(4).await, 14_97 - 4_99);
    assert_eq!(left(5).await, 14_97);
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}

/// New orders that land in one writer batch (on PostgreSQL, one set of statements, see
/// `orderset`) are each made as if alone: what a device owns is refused, every order is
/// stored whole with a short code of its own, and its TV token cancels it.
#[tokio::test]
async fn orders_arriving_together_are_each_made_by_the_rules_of_one() {
    let srv = TestServer::start().await;
    let c = Arc::new(srv.client());
    let payers = make_payers(&srv, 1, 100_00).await;
    let session = login(&c, payers[0].as_str(), "4321").await.token;
    let pay = |id: protocol::OrderId| {
        let c = c.clone();
        let req = protocol::PayRequest {
            account: payers[0].clone(),
            auth: protocol::PayerAuth::Session(session.clone()),
            delivery_address: None,
        };
        async move { c.pay(&id, &key(), &req).await.unwrap() }
    };
    for (item, device) in [
        ("film-cloud-atlas-of-birds", "tv-owner"),
        ("plus-monthly", "tv-member"),
    ] {
        pay(order_on(&c, item, device).await.order.id).await;
    }

    let mut asks = Vec::new();
    for i in 0..6 {
        asks.push(("new", "film-night-train", format!("tv-new-{i}")));
    }
    asks.push(("new", "plus-monthly", "tv-member-2".into()));
    asks.push(("new", "lamp-aurora", "tv-owner".into()));
    asks.push(("new", "box-couchpay", "tv-owner".into()));
    asks.push(("new", "film-night-train", "tv-owner".into()));
    for _ in 0..2 {
        asks.push(("owned", "film-cloud-atlas-of-birds", "tv-owner".into()));
    }
    asks.push(("owned", "plus-monthly", "tv-member".into()));
    let runs: Vec<_> = asks
        .iter()
        .map(|(_, item, device)| {
            let c = c.clone();
            let req = protocol::CreateOrder {
                item_id: protocol::ItemId::parse(item).unwrap(),
                device_id: protocol::DeviceId::parse(device).unwrap(),
                device_name: format!("TV {device}"),
            };
            tokio::spawn(async move { c.create_order(&req).await })
        })
        .collect();

    let mut made = Vec::new();
    let mut codes = std::collections::HashSet::new();
    for ((what, item, device), run) in asks.iter().zip(runs) {
        let answer = run.await.unwrap();
        if *what == "owned" {
            assert_code(answer, ErrorCode::AlreadyOwned);
            continue;
        }
        let created = answer.unwrap_or_else(|e| panic!("{item} on {device}: {e}"));
        let o = &created.order;
        assert_eq!(
            (o.item.id.as_str(), o.device.id.as_str()),
            (*item, device.as_str())
        );
        assert_eq!(o.device.name, format!("TV {device}"));
        assert_eq!(o.status, protocol::OrderStatus::Pending);
        assert!(codes.insert(o.short_code.clone()), "a short code twice");
        assert_eq!(c.order(&o.id).await.unwrap(), *o);
        assert_eq!(c.order_by_code(&o.short_code).await.unwrap().id, o.id);
        made.push(created);
    }
    assert_eq!(made.len(), 10);

    // The membership made in the set lasts its 30 days once paid.
    let member = made
        .iter()
        .find(|m| m.order.item.id.as_str() == "plus-monthly")
        .unwrap();
    let receipt = pay(member.order.id.clone()).await;
    assert_eq!(receipt.amount.minor, 9_99);
    let owned = c.entitlements(&member.order.device.id).await.unwrap();
    let e = &owned.entitlements[0];
    assert_eq!(
        e.valid_until_ms,
        Some(e.granted_at_ms + 30 * 24 * 3600 * 1000)
    );
    // Every other order's TV token cancels it, and only its own.
    for m in made.iter().filter(|m| m.order.id != member.order.id) {
        assert_code(
            c.cancel(&m.order.id, &member.tv_token).await,
            ErrorCode::Unauthorized,
        );
        let cancelled = c.cancel(&m.order.id, &m.tv_token).await.unwrap();
        assert_eq!(cancelled.status, protocol::OrderStatus::Cancelled);
    }
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}
