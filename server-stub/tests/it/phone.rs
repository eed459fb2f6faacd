//! Pay by phone number with an SMS code (SPEC W2–W6).

use std::time::Duration;

use futures_util::StreamExt;
use protocol::{
    CreatedOrder, DeviceId, ErrorCode, FundingSource, OrderEvent, PhoneConfirm, PhoneNumber,
    PhonePayKind, PhonePayRequest, Token,
};
use server_stub::testing::TestServer;

use crate::*;

const ALICE: &str = "+15550100001";
const BOB: &str = "+15550100002";
const CAROL: &str = "+15550100003";
const UNBOUND: &str = "+15550199999";

fn phone(p: &str) -> PhoneNumber {
    PhoneNumber::parse(p).unwrap()
}

async fn start(srv: &TestServer, o: &CreatedOrder, number: &str) -> protocol::PhonePayStarted {
    srv.client()
        .pay_by_phone(
            &o.order.id,
            &PhonePayRequest {
                tv_token: o.tv_token.clone(),
                phone: phone(number),
            },
        )
        .await
        .unwrap()
}

/// The 6-digit code in the newest SMS to `number`, read from the stub's outbox.
async fn code_from_sms(srv: &TestServer, number: &str) -> String {
    let msgs = srv
        .client()
        .sms_outbox(&srv.admin_token, &phone(number))
        .await
        .unwrap();
    let body = &msgs.first().expect("an SMS was sent").body;
    let at = body.find("code is ").expect("SMS names the code") + "code is ".len();
    body[at..at + 6].to_owned()
}

fn confirm(number: &str, code: &str) -> PhoneConfirm {
    PhoneConfirm {
        phone: phone(number),
        code: code.into(),
    }
}

#[tokio::test]
async fn bound_number_with_funds_pays_by_sms_code_and_unlocks_the_tv() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await;
    let mut tv = Box::pin(c.order_events(&o.order.id).await.unwrap());
    tv.next().await.unwrap().unwrap();

    let started = start(&srv, &o, ALICE).await;
    assert_eq!(started.kind, PhonePayKind::CodeSent);
    assert_eq!(started.phone_masked, "+••••••••001");
    let sms = &c.sms_outbox(&srv.admin_token, &phone(ALICE)).await.unwrap()[0];
    assert!(
        sms.body.contains("Night Train") && sms.body.contains("4.99 EUR"),
        "{}",
        sms.body
    );

    // The companion sees the same SMS in its wallet view for its own number.
    let s = login(&c, "alice", "1234").await;
    let mine = c.account_sms(&s.account, &s.token).await.unwrap();
    assert_eq!(&mine[0], sms);

    let code = code_from_sms(&srv, ALICE).await;
    let receipt = c
        .confirm_phone_code(&o.order.id, &confirm(ALICE, &code))
        .await
        .unwrap();
    assert_eq!(receipt.payer.as_str(), "alice");
    assert_eq!(receipt.funding, FundingSource::Wallet);
    // Replaying the same reply returns the same receipt, not a second charge.
    let again = c
        .confirm_phone_code(&o.order.id, &confirm(ALICE, &code))
        .await
        .unwrap();
    assert_eq!(again, receipt);

    let ev = tokio::time::timeout(Duration::from_secs(5), tv.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(ev, OrderEvent::Paid { .. }));
    let ents = c
        .entitlements(&DeviceId::parse(DEVICE).unwrap())
        .await
        .unwrap();
    assert_eq!(ents.entitlements[0].order_id, o.order.id);
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn wallet_short_uses_the_card_and_neither_covering_fails_clearly() {
    let srv = TestServer::start().await;
    let c = srv.client();
    // bob: wallet 20.00 < 59.00, card 500.00 covers; his bound address is used.
    let lamp = order(&c, "lamp-aurora").await;
    start(&srv, &lamp, BOB).await;
    let code = code_from_sms(&srv, BOB).await;
    let r = c
        .confirm_phone_code(&lamp.order.id, &confirm(BOB, &code))
        .await
        .unwrap();
    assert_eq!(r.funding, FundingSource::Card);
    assert_eq!(
        srv.delivery_address(&lamp.order.id).await.as_deref(),
        Some("7 Harbour Road, Portsmouth")
    );

    // carol: wallet 5.00, no card.
    let lamp2 = order(&c, "lamp-aurora").await;
    start(&srv, &lamp2, CAROL).await;
    let code = code_from_sms(&srv, CAROL).await;
    let err = c
        .confirm_phone_code(&lamp2.order.id, &confirm(CAROL, &code))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InsufficientFunds));
    assert!(err.to_string().contains("59.00 EUR needed"), "{err}");
    assert_eq!(
        c.order(&lamp2.order.id).await.unwrap().status,
        protocol::OrderStatus::Pending
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}

#[tokio::test]
async fn unbound_number_gets_the_pay_link() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "plus-monthly").await;
    let started = start(&srv, &o, UNBOUND).await;
    assert_eq!(started.kind, PhonePayKind::LinkSent);
    assert_eq!(started.code_expires_at_ms, None);
    let msgs = c
        .sms_outbox(&srv.admin_token, &phone(UNBOUND))
        .await
        .unwrap();
    let body = &msgs[0].body;
    assert!(body.contains(&o.order.pay_link.to_string()), "{body}");
    assert!(body.contains("9.99 EUR"), "{body}");
    // No code exists for an unbound number.
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(UNBOUND, "123456"))
            .await,
        ErrorCode::CodeExpired,
    );
    srv.stop().await;
}

#[tokio::test]
async fn wrong_expired_and_exhausted_codes() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let o = order(&c, "film-night-train").await;
    start(&srv, &o, ALICE).await;
    let code = code_from_sms(&srv, ALICE).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    let err = c
        .confirm_phone_code(&o.order.id, &confirm(ALICE, wrong))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::WrongCode));
    assert!(err.to_string().contains("2 tries left"), "{err}");
    // The code of another number does not work.
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(BOB, &code))
            .await,
        ErrorCode::CodeExpired,
    );
    // Expiry after five minutes (clock moved, not slept).
    srv.advance_clock(Duration::from_secs(5 * 60));
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, &code))
            .await,
        ErrorCode::CodeExpired,
    );

    // A new request sends a new code; three wrong tries use it up.
    start(&srv, &o, ALICE).await;
    let code = code_from_sms(&srv, ALICE).await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, wrong))
            .await,
        ErrorCode::WrongCode,
    );
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, wrong))
            .await,
        ErrorCode::WrongCode,
    );
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, wrong))
            .await,
        ErrorCode::TooManyAttempts,
    );
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, &code))
            .await,
        ErrorCode::TooManyAttempts,
    );
    assert_code(
        c.confirm_phone_code(&o.order.id, &confirm(ALICE, "12ab56"))
            .await,
        ErrorCode::InvalidRequest,
    );

    // Only the TV may send SMS for its order, and only a few per order.
    assert_code(
        c.pay_by_phone(
            &o.order.id,
            &PhonePayRequest {
                tv_token: Token::random(),
                phone: phone(ALICE),
            },
        )
        .await,
        ErrorCode::Unauthorized,
    );
    start(&srv, &o, UNBOUND).await;
    assert_code(
        c.pay_by_phone(
            &o.order.id,
            &PhonePayRequest {
                tv_token: o.tv_token.clone(),
                phone: phone(ALICE),
            },
        )
        .await,
        ErrorCode::TooManyAttempts,
    );
    assert_eq!(
        c.order(&o.order.id).await.unwrap().status,
        protocol::OrderStatus::Pending
    );
    assert!(c.audit().await.unwrap().ok);
    srv.stop().await;
}
