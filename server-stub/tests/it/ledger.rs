//! The merchant credit that waits for the end of the writer's batch
//! (`ledger::DeferredCredits`): exact under concurrency, seen by later work in the same
//! transaction, gone with a job that fails, and a refused credit fails only its own
//! payment. On PostgreSQL (`COUCHPAY_TEST_POSTGRES`) several writers run side by side.

use protocol::{Currency, ErrorCode, Money, PayerAuth, TopUp};
use server_stub::ledger::{self, MAX_AMOUNT_MINOR, MAX_BALANCE_MINOR};
use server_stub::testing::TestServer;

use crate::*;

fn eur() -> Currency {
    Currency::parse("EUR").unwrap()
}

async fn balance_of(srv: &TestServer, id: &str) -> i64 {
    let id = id.to_owned();
    srv.server
        .state
        .store
        .read(move |conn| Ok(ledger::get_account(conn, &id)?.unwrap().balance))
        .await
        .unwrap()
}

async fn top_up_alice(srv: &TestServer, minor: u64) {
    srv.client()
        .top_up(
            &srv.admin_token,
            &TopUp {
                account: account("alice"),
                amount: Money::new(minor, eur()),
            },
        )
        .await
        .unwrap();
}

/// Pays `n` orders of `item` at once, each from its own TV so none is already owned;
/// the results in order.
async fn pay_concurrently(
    srv: &TestServer,
    item: &str,
    n: usize,
) -> Vec<Result<protocol::Receipt, protocol::client::ClientError>> {
    let c = srv.client();
    let session = login(&c, "alice", "1234").await;
    let mut orders = Vec::new();
    for i in 0..n {
        orders.push(order_on(&c, item, &format!("SN-LEDGER-{i:04}")).await.order);
    }
    let tasks: Vec<_> = orders
        .into_iter()
        .map(|o| {
            let (c, token) = (c.clone(), session.token.clone());
            tokio::spawn(async move {
                c.pay(&o.id, &key(), &pay_req("alice", PayerAuth::Session(token)))
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    results
}

/// Tops alice up by 1,000.00 and returns a client, the film merchant's account id and
/// the two balances before any payment (merchant, alice).
async fn funded_alice_and_film_merchant(
    srv: &TestServer,
) -> (protocol::client::Client, String, i64, i64) {
    top_up_alice(srv, 1_000_00).await;
    let c = srv.client();
    let merchant = order(&c, "film-night-train").await.order.merchant.id;
    let merchant = merchant.as_str().to_owned();
    let (m0, a0) = (
        balance_of(srv, &merchant).await,
        balance_of(srv, "alice").await,
    );
    (c, merchant, m0, a0)
}

#[tokio::test]
async fn concurrent_payments_credit_the_merchant_exactly() {
    let srv = TestServer::start().await;
    let (c, merchant, m0, a0) = funded_alice_and_film_merchant(&srv).await;

    let results = pay_concurrently(&srv, "film-night-train", 60).await;
    let paid: i64 = results
        .iter()
        .map(|r| r.as_ref().expect("every payment succeeds").amount.minor as i64)
        .sum();
    assert_eq!(paid, 60 * 4_99);
    assert_eq!(balance_of(&srv, &merchant).await, m0 + paid);
    assert_eq!(balance_of(&srv, "alice").await, a0 - paid);
    let report = c.audit().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

#[tokio::test]
async fn a_deferred_credit_is_seen_in_its_transaction_and_dropped_with_a_failed_job() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let merchant = order(&c, "film-night-train").await.order.merchant.id;
    let merchant = merchant.as_str().to_owned();
    let m0 = balance_of(&srv, &merchant).await;
    let one = Money::new(1_00, eur());

    // Seen by a read later in the same job (applied before the read).
    let seen = srv
        .server
        .state
        .store
        .write({
            let m = merchant.clone();
            move |conn, _| {
                ledger::pay_merchant(conn, "alice", &m, one, None, 0)?;
                Ok(ledger::get_account(conn, &m)?.unwrap().balance)
            }
        })
        .await
        .unwrap();
    assert_eq!(seen, m0 + 1_00);
    assert_eq!(balance_of(&srv, &merchant).await, m0 + 1_00);

    // Left pending until the commit: applied then.
    srv.server
        .state
        .store
        .write({
            let m = merchant.clone();
            move |conn, _| ledger::pay_merchant(conn, "alice", &m, one, None, 0)
        })
        .await
        .unwrap();
    assert_eq!(balance_of(&srv, &merchant).await, m0 + 2_00);

    // A job that fails after paying leaves nothing: neither the debit nor the credit.
    let a0 = balance_of(&srv, "alice").await;
    let failed = srv
        .server
        .state
        .store
        .write({
            let m = merchant.clone();
            move |conn, _| {
                ledger::pay_merchant(conn, "alice", &m, one, None, 0)?;
                Err::<(), _>(server_stub::error::ApiError::InvalidRequest(
                    "changed its mind".into(),
                ))
            }
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(balance_of(&srv, &merchant).await, m0 + 2_00);
    assert_eq!(balance_of(&srv, "alice").await, a0);
    assert!(c.audit().await.unwrap().ok);
}

#[tokio::test]
async fn a_payment_over_the_merchants_largest_balance_fails_alone() {
    let srv = TestServer::start().await;
    top_up_alice(&srv, 100_00).await;
    let c = srv.client();
    let merchant = order(&c, "film-night-train").await.order.merchant.id;
    let merchant = merchant.as_str().to_owned();
    // Fill the merchant to one film's price below its largest balance.
    srv.server
        .state
        .store
        .write({
            let m = merchant.clone();
            move |conn, _| {
                let b = ledger::get_account(conn, &m)?.unwrap().balance;
                let mut need = (MAX_BALANCE_MINOR - 4_99 - b) as u64;
                while need > 0 {
                    let step = need.min(MAX_AMOUNT_MINOR);
                    ledger::top_up(conn, &m, Money::new(step, eur()), 0)?;
                    need -= step;
                }
                Ok(())
            }
        })
        .await
        .unwrap();
    let a0 = balance_of(&srv, "alice").await;

    let results = pay_concurrently(&srv, "film-night-train", 8).await;
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "exactly one fits: {results:?}");
    for r in results.into_iter().filter(Result::is_err) {
        assert_code(r, ErrorCode::LimitExceeded);
    }
    assert_eq!(balance_of(&srv, &merchant).await, MAX_BALANCE_MINOR);
    assert_eq!(balance_of(&srv, "alice").await, a0 - 4_99);
    let report = c.audit().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}

/// A batch mixes jobs that succeed, jobs that fail before writing and jobs that fail
/// after paying: on SQLite the writer runs jobs without savepoints and runs the batch
/// again with them when a failed job had written. Either way, only the successes stay.
#[tokio::test]
async fn jobs_failing_after_writing_leave_nothing_while_their_batch_commits() {
    let srv = TestServer::start().await;
    let (c, merchant, m0, a0) = funded_alice_and_film_merchant(&srv).await;
    let one = Money::new(1_00, eur());
    let tasks: Vec<_> = (0..90)
        .map(|i| {
            let (store, m) = (srv.server.state.store.clone(), merchant.clone());
            tokio::spawn(async move {
                store
                    .write(move |conn, _| {
                        let refuse = || {
                            Err(server_stub::error::ApiError::InvalidRequest(
                                "changed its mind".into(),
                            ))
                        };
                        match i % 3 {
                            0 => ledger::pay_merchant(conn, "alice", &m, one, None, 0),
                            1 => refuse(),
                            _ => {
                                ledger::pay_merchant(conn, "alice", &m, one, None, 0)?;
                                refuse()
                            }
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        assert_eq!(r.is_ok(), i % 3 == 0, "job {i}: {r:?}");
        ok += usize::from(r.is_ok());
    }
    assert_eq!(ok, 30);
    assert_eq!(balance_of(&srv, &merchant).await, m0 + 30 * 1_00);
    assert_eq!(balance_of(&srv, "alice").await, a0 - 30 * 1_00);
    let report = c.audit().await.unwrap();
    assert!(report.ok, "{:?}", report.problems);
}
