//! The router driven in-process with `oneshot`, no socket: body limits, unknown routes,
//! rejection bodies, and the ledger's own refusal to let balances go negative.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use protocol::{ErrorBody, ErrorCode, ServerUrl};
use server_stub::{AppState, Config, ManualClock, app};
use tower::ServiceExt;

async fn state(dir: &tempfile::TempDir) -> AppState {
    let config = Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        assets: server_stub::testing::assets_dir(),
        max_batch: 64,
        ..Config::with_database(dir.path().join("db.sqlite"))
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    AppState::open(
        config,
        ServerUrl::parse("http://127.0.0.1:1").unwrap(),
        Arc::new(ManualClock::new()),
        rx,
    )
    .await
    .unwrap()
}

async fn error_of(resp: axum::response::Response) -> (StatusCode, ErrorCode) {
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
    (status, body.error.code)
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(state(&dir).await);
    let big = vec![b'{'; 1024 * 1024];
    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/orders")
                .header("content-type", "application/json")
                .body(Body::from(big))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        error_of(resp).await,
        (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge)
    );

    let resp = app
        .clone()
        .oneshot(
            Request::post("/v1/orders")
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        error_of(resp).await,
        (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest)
    );

    let resp = app
        .clone()
        .oneshot(Request::get("/v1/nothing").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        error_of(resp).await,
        (StatusCode::NOT_FOUND, ErrorCode::NotFound)
    );

    // Developer endpoints are off without an admin token.
    let resp = app
        .oneshot(
            Request::post("/v1/admin/topups")
                .header("content-type", "application/json")
                .body(Body::from(
                    r#"{"account":"alice","amount":{"minor":100,"currency":"EUR"}}"#,
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        error_of(resp).await,
        (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized)
    );
}

#[tokio::test]
async fn ledger_refuses_overdraft_and_keeps_holds_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let s = state(&dir).await;
    let eur = protocol::Currency::parse("EUR").unwrap();
    let m = move |minor| protocol::Money::new(minor, eur);
    let r = s
        .store
        .write(move |conn, _| {
            use server_stub::ledger::*;
            // carol has 5.00: a 6.00 transfer fails, leaving everything as it was.
            assert!(transfer(conn, "carol", "alice", m(6_00), "test", None, 0).is_err());
            let h = hold(conn, "carol", m(4_00), "voucher", 0)?;
            // Only 1.00 is available now.
            assert!(transfer(conn, "carol", "alice", m(2_00), "test", None, 0).is_err());
            assert!(hold(conn, "carol", m(2_00), "voucher", 0).is_err());
            transfer(conn, "carol", "alice", m(1_00), "test", None, 0)?;
            release_hold(conn, h, false)?;
            assert!(release_hold(conn, h, false).is_err(), "a hold ends once");
            let a = get_account(conn, "carol")?.unwrap();
            assert_eq!((a.balance, a.held), (4_00, 0));
            audit(conn)
        })
        .await
        .unwrap();
    assert!(r.ok, "{:?}", r.problems);
}
