//! State-machine tests: every flow driven by inputs alone, with the clock as an input.

use protocol::{Announcement, ErrorCode, OrderId, OrderStatus, ServerUrl};
use tv_client::state::*;

use crate::support::*;

fn server() -> ServerUrl {
    ServerUrl::parse("http://127.0.0.1:8080").unwrap()
}

/// An app with the catalog loaded and the catalog screen up, at local time 0.
fn app_on_catalog() -> App {
    let (mut app, fx) = App::init(identity(), 0);
    assert_eq!(
        fx,
        vec![
            Effect::LoadCatalog,
            Effect::ListenForOffers(app.identity.device_id.clone())
        ]
    );
    assert_eq!(app.screen, Screen::Starting);
    let fx = app.handle(Input::CatalogLoaded(Ok(catalog())));
    assert_eq!(
        fx.iter()
            .filter(|e| matches!(e, Effect::LoadPoster { .. }))
            .count(),
        catalog().items.len(),
        "every poster is requested"
    );
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Item(0)
        }
    );
    app
}

/// Walks from the catalog to the order screen for item 1; returns the order shown.
fn app_on_order() -> (App, protocol::CreatedOrder) {
    let mut app = app_on_catalog();
    assert!(app.handle(Input::Key(Key::Right)).is_empty());
    assert!(app.handle(Input::Key(Key::Ok)).is_empty());
    assert!(matches!(
        app.screen,
        Screen::Item {
            index: 1,
            busy: false,
            ..
        }
    ));
    let fx = app.handle(Input::Key(Key::Ok));
    let item = catalog().items[1].clone();
    assert_eq!(
        fx,
        vec![Effect::CreateOrder(protocol::CreateOrder {
            item_id: item.id.clone(),
            device_id: identity().device_id,
            device_name: identity().tv_name,
        })]
    );
    assert!(matches!(app.screen, Screen::Item { busy: true, .. }));
    // OK again while the order is being created does not create a second one.
    assert!(app.handle(Input::Key(Key::Ok)).is_empty());

    let c = created(order_for(&item, &server(), 1_700_000_000_000));
    let fx = app.handle(Input::OrderCreated {
        item: item.id.clone(),
        result: Ok(c.clone()),
    });
    assert_eq!(fx.len(), 2, "{fx:?}");
    assert!(matches!(&fx[0], Effect::FollowOrder { order, .. } if *order == c.order.id));
    let Effect::Announce(Announcement::Order(record)) = &fx[1] else {
        panic!("expected an announcement, got {fx:?}")
    };
    assert_eq!(record.order, c.order.id);
    assert_eq!(record.short_code, c.order.short_code);
    assert_eq!(record.amount, c.order.amount);
    assert_eq!(record.tv_name, identity().tv_name);
    assert_eq!(record.tv_id, identity().device_id);
    let o = app.order_screen().expect("order screen");
    assert_eq!(o.order, c.order);
    assert_eq!(
        o.deadline_ms, FIXTURE_TTL_MS as u64,
        "TTL measured on the local clock"
    );
    app.handle(Input::Announced {
        offer: Offer::Order(c.order.id.clone()),
        result: Ok(()),
    });
    assert_eq!(app.order_screen().unwrap().announce, AnnounceState::Live);
    (app, c)
}

#[test]
fn ble_status_is_shown_for_the_order_on_screen_only() {
    let (mut app, c) = app_on_order();
    assert_eq!(app.order_screen().unwrap().ble, AnnounceState::Pending);
    // A late answer about another order changes nothing.
    app.handle(Input::BleAnnounced {
        offer: Offer::Order(OrderId::random()),
        result: Ok(()),
    });
    assert_eq!(app.order_screen().unwrap().ble, AnnounceState::Pending);
    let off = "Bluetooth LE is off: no Bluetooth adapter found".to_owned();
    app.handle(Input::BleAnnounced {
        offer: Offer::Order(c.order.id.clone()),
        result: Err(off.clone()),
    });
    let o = app.order_screen().unwrap();
    assert_eq!(o.ble, AnnounceState::Failed(off));
    // mDNS is independent of the radio.
    assert_eq!(o.announce, AnnounceState::Live);
    app.handle(Input::BleAnnounced {
        offer: Offer::Order(c.order.id.clone()),
        result: Ok(()),
    });
    assert_eq!(app.order_screen().unwrap().ble, AnnounceState::Live);
}

fn generation(app: &App) -> u64 {
    app.order_screen().unwrap().stream.generation
}

#[test]
fn paid_order_withdraws_the_announcement_and_unlocks() {
    let (mut app, c) = app_on_order();
    let generation = generation(&app);
    app.handle(Input::StreamOpened {
        order: c.order.id.clone(),
        generation,
    });
    assert_eq!(app.order_screen().unwrap().stream.phase, StreamPhase::Live);
    // A live stream means no polling.
    assert!(app.handle(Input::Tick { now_ms: 10_000 }).is_empty());

    let fx = app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert_eq!(fx, vec![Effect::Withdraw, Effect::StopFollowing]);
    let Screen::Paid {
        order, since_ms, ..
    } = &app.screen
    else {
        panic!("expected the paid screen, got {:?}", app.screen)
    };
    assert_eq!(order.id, c.order.id);
    assert_eq!(*since_ms, 10_000);
    // A duplicate "paid" (stream and poll both report it) changes nothing.
    assert!(
        app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)))
            .is_empty()
    );
    // Back leads home; OK on "My purchases" loads the device's entitlements.
    app.handle(Input::Key(Key::Right));
    let fx = app.handle(Input::Key(Key::Ok));
    assert_eq!(fx, vec![Effect::LoadEntitlements(identity().device_id)]);
}

#[test]
fn server_expiry_stops_offering_the_code_and_ok_gets_a_fresh_one() {
    let (mut app, c) = app_on_order();
    let fx = app.handle(Input::OrderUpdate(with_status(
        &c.order,
        OrderStatus::Expired,
    )));
    assert_eq!(fx, vec![Effect::Withdraw, Effect::StopFollowing]);
    assert!(matches!(
        app.screen,
        Screen::Expired {
            index: 1,
            confirmed: true,
            ..
        }
    ));
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(
        matches!(&fx[..], [Effect::CreateOrder(req)] if req.item_id == c.order.item.id),
        "{fx:?}"
    );
    let fresh = created(order_for(&catalog().items[1], &server(), 1_700_000_400_000));
    app.handle(Input::OrderCreated {
        item: c.order.item.id.clone(),
        result: Ok(fresh.clone()),
    });
    let o = app
        .order_screen()
        .expect("order screen with the fresh code");
    assert_ne!(o.order.short_code, c.order.short_code);
    assert_eq!(o.order.id, fresh.order.id);
}

#[test]
fn local_deadline_withdraws_at_once_but_still_sees_a_last_second_payment() {
    let (mut app, c) = app_on_order();
    let deadline = app.order_screen().unwrap().deadline_ms;
    let fx = app.handle(Input::Tick {
        now_ms: deadline - 1,
    });
    assert!(!fx.contains(&Effect::Withdraw));
    let fx = app.handle(Input::Tick { now_ms: deadline });
    assert_eq!(fx, vec![Effect::Withdraw], "withdrawn, stream kept open");
    assert!(matches!(
        app.screen,
        Screen::Expired {
            confirmed: false,
            ..
        }
    ));
    // The payment was accepted by the server just before expiry and arrives late.
    let fx = app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert_eq!(fx, vec![Effect::StopFollowing]);
    assert!(matches!(app.screen, Screen::Paid { .. }));
}

#[test]
fn back_cancels_the_order_on_the_server() {
    let (mut app, c) = app_on_order();
    let fx = app.handle(Input::Key(Key::Back));
    assert_eq!(
        fx,
        vec![
            Effect::Withdraw,
            Effect::StopFollowing,
            Effect::CancelOrder {
                order: c.order.id.clone(),
                tv_token: c.tv_token.clone(),
            },
        ]
    );
    assert!(matches!(
        app.screen,
        Screen::Item {
            index: 1,
            busy: false,
            ..
        }
    ));
    let fx = app.handle(Input::CancelDone {
        order: c.order.id.clone(),
        result: Ok(with_status(&c.order, OrderStatus::Cancelled)),
    });
    assert!(fx.is_empty());
    // A late "paid" for the cancelled order is not shown: the cancel succeeded.
    app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert!(matches!(app.screen, Screen::Item { .. }));
}

#[test]
fn cancel_that_loses_the_race_against_payment_shows_paid() {
    let (mut app, c) = app_on_order();
    app.handle(Input::Key(Key::Back));
    let fx = app.handle(Input::CancelDone {
        order: c.order.id.clone(),
        result: Err(Failure::Refused {
            code: Some(ErrorCode::AlreadyPaid),
            message: "already paid".into(),
        }),
    });
    assert_eq!(fx, vec![Effect::PollOrder(c.order.id.clone())]);
    app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert!(
        matches!(app.screen, Screen::Paid { .. }),
        "{:?}",
        app.screen
    );
}

#[test]
fn cancel_is_retried_while_the_server_is_unreachable() {
    let (mut app, c) = app_on_order();
    app.handle(Input::Key(Key::Back));
    let mut cancels = 1;
    for _ in 1..CANCEL_ATTEMPTS_MAX + 2 {
        app.handle(Input::CancelDone {
            order: c.order.id.clone(),
            result: Err(Failure::Unreachable("down".into())),
        });
        let fx = app.handle(Input::Tick {
            now_ms: app.now_ms + RETRY_MAX_MS,
        });
        cancels += fx
            .iter()
            .filter(|e| matches!(e, Effect::CancelOrder { .. }))
            .count() as u32;
    }
    assert_eq!(cancels, CANCEL_ATTEMPTS_MAX, "bounded retries");
}

#[test]
fn server_down_then_back_retries_with_backoff() {
    let (mut app, _) = App::init(identity(), 0);
    app.handle(Input::CatalogLoaded(Err(Failure::Unreachable(
        "refused".into(),
    ))));
    let Screen::Problem(p) = &app.screen else {
        panic!("expected a problem screen, got {:?}", app.screen)
    };
    assert_eq!((p.attempts, p.next_retry_ms), (1, Some(RETRY_INITIAL_MS)));
    assert!(
        app.handle(Input::Tick {
            now_ms: RETRY_INITIAL_MS - 1
        })
        .is_empty()
    );
    assert_eq!(
        app.handle(Input::Tick {
            now_ms: RETRY_INITIAL_MS
        }),
        vec![Effect::LoadCatalog]
    );
    // While the retry is in flight, ticks do not pile up more requests.
    assert!(
        app.handle(Input::Tick {
            now_ms: 10 * RETRY_INITIAL_MS
        })
        .is_empty()
    );
    let now = app.now_ms;
    app.handle(Input::CatalogLoaded(Err(Failure::Unreachable(
        "refused".into(),
    ))));
    let Screen::Problem(p) = &app.screen else {
        panic!("expected a problem screen")
    };
    assert_eq!(
        (p.attempts, p.next_retry_ms),
        (2, Some(now + 2 * RETRY_INITIAL_MS)),
        "backoff doubles"
    );
    // Back cannot leave: there is nothing behind the first screen, but OK retries now.
    assert!(app.handle(Input::Key(Key::Back)).is_empty());
    assert_eq!(app.handle(Input::Key(Key::Ok)), vec![Effect::LoadCatalog]);
    app.handle(Input::CatalogLoaded(Ok(catalog())));
    assert!(matches!(app.screen, Screen::Catalog { .. }));
}

#[test]
fn unreachable_server_when_buying_retries_the_order() {
    let mut app = app_on_catalog();
    app.handle(Input::Key(Key::Ok));
    app.handle(Input::Key(Key::Ok));
    let item = catalog().items[0].clone();
    app.handle(Input::OrderCreated {
        item: item.id.clone(),
        result: Err(Failure::Unreachable("timed out".into())),
    });
    assert!(matches!(
        app.screen,
        Screen::Problem(Problem {
            retry: Some(Retry::Order { index: 0 }),
            ..
        })
    ));
    let fx = app.handle(Input::Tick {
        now_ms: RETRY_INITIAL_MS,
    });
    assert!(
        matches!(&fx[..], [Effect::CreateOrder(r)] if r.item_id == item.id),
        "{fx:?}"
    );
    app.handle(Input::OrderCreated {
        item: item.id.clone(),
        result: Ok(created(order_for(&item, &server(), 1))),
    });
    assert!(app.order_screen().is_some());
}

#[test]
fn order_arriving_after_the_viewer_left_is_cancelled() {
    let mut app = app_on_catalog();
    app.handle(Input::Key(Key::Ok));
    app.handle(Input::Key(Key::Ok));
    app.handle(Input::Key(Key::Back));
    assert!(matches!(app.screen, Screen::Catalog { .. }));
    let item = &catalog().items[0];
    let c = created(order_for(item, &server(), 1));
    let fx = app.handle(Input::OrderCreated {
        item: item.id.clone(),
        result: Ok(c.clone()),
    });
    assert_eq!(
        fx,
        vec![Effect::CancelOrder {
            order: c.order.id,
            tv_token: c.tv_token
        }]
    );
    assert!(matches!(app.screen, Screen::Catalog { .. }));
}

#[test]
fn dropped_event_stream_polls_then_reconnects_and_resumes() {
    let (mut app, c) = app_on_order();
    let first = generation(&app);
    app.handle(Input::StreamOpened {
        order: c.order.id.clone(),
        generation: first,
    });
    let fx = app.handle(Input::StreamEnded {
        order: c.order.id.clone(),
        generation: first,
        reason: "connection reset".into(),
    });
    assert_eq!(
        fx,
        vec![Effect::PollOrder(c.order.id.clone())],
        "poll at once"
    );
    assert_eq!(
        app.order_screen().unwrap().stream.phase,
        StreamPhase::Down {
            retry_at_ms: STREAM_RETRY_INITIAL_MS
        }
    );
    // Reconnect after the first backoff step.
    let fx = app.handle(Input::Tick {
        now_ms: STREAM_RETRY_INITIAL_MS,
    });
    let second = generation(&app);
    assert_ne!(second, first);
    assert_eq!(
        fx,
        vec![Effect::FollowOrder {
            order: c.order.id.clone(),
            generation: second
        }]
    );
    // That attempt fails too: the next wait is longer, and polling goes on meanwhile.
    app.handle(Input::StreamEnded {
        order: c.order.id.clone(),
        generation: second,
        reason: "refused".into(),
    });
    assert_eq!(
        app.order_screen().unwrap().stream.phase,
        StreamPhase::Down {
            retry_at_ms: STREAM_RETRY_INITIAL_MS + 2 * STREAM_RETRY_INITIAL_MS
        }
    );
    let fx = app.handle(Input::Tick {
        now_ms: STREAM_RETRY_INITIAL_MS + POLL_INTERVAL_MS,
    });
    assert!(
        fx.contains(&Effect::PollOrder(c.order.id.clone())),
        "{fx:?}"
    );
    let third = generation(&app);
    assert!(fx.contains(&Effect::FollowOrder {
        order: c.order.id.clone(),
        generation: third
    }));
    // An answer from the stale first stream is ignored.
    app.handle(Input::StreamOpened {
        order: c.order.id.clone(),
        generation: first,
    });
    assert_ne!(app.order_screen().unwrap().stream.phase, StreamPhase::Live);
    app.handle(Input::StreamOpened {
        order: c.order.id.clone(),
        generation: third,
    });
    assert_eq!(app.order_screen().unwrap().stream.phase, StreamPhase::Live);
    // Live again: polling stops, and the resumed stream delivers the payment.
    assert!(app.handle(Input::Tick { now_ms: 60_000 }).is_empty());
    let fx = app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert_eq!(fx, vec![Effect::Withdraw, Effect::StopFollowing]);
    assert!(matches!(app.screen, Screen::Paid { .. }));
}

#[test]
fn purchases_load_and_leave() {
    let mut app = app_on_catalog();
    app.handle(Input::Key(Key::Up));
    let fx = app.handle(Input::Key(Key::Ok));
    assert_eq!(fx, vec![Effect::LoadEntitlements(identity().device_id)]);
    app.handle(Input::EntitlementsLoaded(Err(Failure::Unreachable(
        "down".into(),
    ))));
    assert!(matches!(app.screen, Screen::Problem(_)));
    assert_eq!(
        app.handle(Input::Key(Key::Ok)),
        vec![Effect::LoadEntitlements(identity().device_id)]
    );
    app.handle(Input::EntitlementsLoaded(Ok(protocol::Entitlements {
        device_id: identity().device_id,
        entitlements: vec![],
        next_cursor: None,
    })));
    assert!(matches!(
        app.screen,
        Screen::Purchases { list: Some(_), .. }
    ));
    app.handle(Input::Key(Key::Back));
    assert!(matches!(app.screen, Screen::Catalog { .. }));
}

#[test]
fn digits_jump_to_items_and_purchases() {
    let mut app = app_on_catalog();
    app.handle(Input::Key(Key::Digit(3)));
    assert!(matches!(app.screen, Screen::Item { index: 2, .. }));
    app.handle(Input::Key(Key::Back));
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Item(2)
        }
    );
    app.handle(Input::Key(Key::Digit(9)));
    assert!(matches!(app.screen, Screen::Catalog { .. }), "no item 9");
    app.handle(Input::Key(Key::Digit(0)));
    assert!(matches!(app.screen, Screen::Purchases { .. }));
}

// ---- Pay with phone number (SPEC W2) ----

/// The phone pad over the order screen, or a panic saying what is up instead.
#[track_caller]
fn phone(app: &App) -> &PhoneEntry {
    app.order_screen()
        .and_then(|o| o.phone.as_ref())
        .unwrap_or_else(|| panic!("expected the phone pad, got {:?}", app.screen))
}

fn keys(app: &mut App, keys: &[Key]) -> Vec<Effect> {
    keys.iter()
        .flat_map(|k| app.handle(Input::Key(*k)))
        .collect()
}

fn digits(app: &mut App, number: &str) -> Vec<Effect> {
    let ks: Vec<Key> = number.bytes().map(|b| Key::Digit(b - b'0')).collect();
    keys(app, &ks)
}

/// Order screen → OK ("Pay with phone number" is focused first): the pad, with the
/// default country code (+1) prefilled.
fn app_on_phone_pad() -> (App, protocol::CreatedOrder) {
    let (mut app, c) = app_on_order();
    assert_eq!(app.order_screen().unwrap().focus, Choice::Primary);
    assert!(
        keys(&mut app, &[Key::Ok]).is_empty(),
        "opening the pad sends nothing"
    );
    let p = phone(&app);
    assert_eq!(p.digits, "1");
    assert_eq!(
        PAD[p.pad_focus],
        PadKey::Digit(5),
        "the pad opens on its middle key"
    );
    assert_eq!(p.phase, PhonePhase::Typing { message: None });
    (app, c)
}

/// Deletes the prefilled country code with ⌫ on the pad.
fn clear_pad(app: &mut App) {
    focus_pad(app, PadKey::Delete);
    while !phone(app).digits.is_empty() {
        keys(app, &[Key::Ok]);
    }
}

/// Moves the pad focus to `target` with arrows, the way a viewer would.
fn focus_pad(app: &mut App, target: PadKey) {
    let to = PAD.iter().position(|k| *k == target).unwrap();
    let from = phone(app).pad_focus;
    let (fr, fc) = (from / PAD_COLUMNS, from % PAD_COLUMNS);
    let (tr, tc) = (to / PAD_COLUMNS, to % PAD_COLUMNS);
    let mut ks = Vec::new();
    ks.extend(std::iter::repeat_n(Key::Down, tr.saturating_sub(fr)));
    ks.extend(std::iter::repeat_n(Key::Up, fr.saturating_sub(tr)));
    ks.extend(std::iter::repeat_n(Key::Right, tc.saturating_sub(fc)));
    ks.extend(std::iter::repeat_n(Key::Left, fc.saturating_sub(tc)));
    assert!(keys(app, &ks).is_empty());
    assert_eq!(PAD[phone(app).pad_focus], target);
}

#[test]
fn phone_pad_types_with_digit_keys_and_with_arrows_and_ok() {
    let (mut app, _) = app_on_phone_pad();
    // Digit keys type directly, after the prefilled country code.
    digits(&mut app, "55");
    assert_eq!(phone(&app).digits, "155");
    // Arrows and OK on the pad: 5 is in the middle, 0 at the bottom.
    focus_pad(&mut app, PadKey::Digit(5));
    keys(&mut app, &[Key::Ok]);
    focus_pad(&mut app, PadKey::Digit(0));
    keys(&mut app, &[Key::Ok]);
    assert_eq!(phone(&app).digits, "15550");
    // The focus stops at the pad's edges instead of wrapping.
    keys(
        &mut app,
        &[Key::Down, Key::Down, Key::Left, Key::Left, Key::Left],
    );
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Delete);
    keys(&mut app, &[Key::Up, Key::Up, Key::Up, Key::Up, Key::Up]);
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Digit(1));
    // ⌫ on the pad deletes one digit.
    focus_pad(&mut app, PadKey::Delete);
    keys(&mut app, &[Key::Ok]);
    assert_eq!(phone(&app).digits, "1555");
    // The order is still on screen underneath: followed, announced, payable by QR.
    assert_eq!(app.order_screen().unwrap().announce, AnnounceState::Live);
}

#[test]
fn phone_pad_back_deletes_then_returns_to_the_order() {
    let (mut app, c) = app_on_phone_pad();
    digits(&mut app, "23");
    assert!(keys(&mut app, &[Key::Back]).is_empty());
    assert_eq!(phone(&app).digits, "12");
    assert!(keys(&mut app, &[Key::Back]).is_empty());
    assert_eq!(phone(&app).digits, "1");
    // Back with nothing typed but the prefilled code closes the pad; the order is not
    // cancelled.
    assert!(keys(&mut app, &[Key::Back]).is_empty());
    let o = app.order_screen().expect("still on the order screen");
    assert_eq!(o.phone, None);
    assert_eq!(o.order.id, c.order.id);
    assert_eq!(o.focus, Choice::Primary, "focus stays on the phone button");
    // A digit on the order screen opens the pad with that digit typed after the code.
    assert!(keys(&mut app, &[Key::Digit(4)]).is_empty());
    assert_eq!(phone(&app).digits, "14");
    // With the code deleted (⌫ on the pad), Back on the empty pad closes it too.
    clear_pad(&mut app);
    assert!(keys(&mut app, &[Key::Back]).is_empty());
    assert_eq!(app.order_screen().unwrap().phone, None);
}

#[test]
fn phone_pad_takes_at_most_15_digits() {
    let (mut app, _) = app_on_phone_pad();
    digits(&mut app, "234567890123456789");
    let p = phone(&app);
    assert_eq!(p.digits, "123456789012345");
    assert_eq!(p.digits.len(), MAX_PHONE_DIGITS);
    assert!(
        matches!(&p.phase, PhonePhase::Typing { message: Some(m) } if m.contains("15 digits")),
        "{:?}",
        p.phase
    );
    // Deleting clears the message.
    keys(&mut app, &[Key::Back]);
    assert_eq!(phone(&app).phase, PhonePhase::Typing { message: None });
}

#[track_caller]
fn check_refused_send(typed: &str, says: &str) {
    let (mut app, _) = app_on_phone_pad();
    clear_pad(&mut app);
    digits(&mut app, typed);
    focus_pad(&mut app, PadKey::Send);
    let fx = keys(&mut app, &[Key::Ok]);
    assert!(fx.is_empty(), "{typed:?} must not be sent: {fx:?}");
    let p = phone(&app);
    assert!(
        matches!(&p.phase, PhonePhase::Typing { message: Some(m) } if m.contains(says)),
        "{typed:?}: {:?}",
        p.phase
    );
    assert_eq!(p.digits, typed, "nothing typed is lost");
}

#[test]
fn send_is_refused_with_a_reason_until_the_number_parses() {
    check_refused_send("", "Type your phone number");
    check_refused_send("1555", "too short");
    check_refused_send("1555010", "too short");
    check_refused_send("05550100001", "country code instead of 0");
}

#[test]
fn sending_a_number_waits_for_the_payment_and_paid_unlocks() {
    let (mut app, c) = app_on_phone_pad();
    digits(&mut app, "5550100001");
    // A whole +1 number: the focus is on ✓ already, one OK sends it.
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Send);
    let fx = keys(&mut app, &[Key::Ok]);
    let phone_number = protocol::PhoneNumber::parse("+15550100001").unwrap();
    assert_eq!(
        fx,
        vec![Effect::PayByPhone {
            order: c.order.id.clone(),
            tv_token: c.tv_token.clone(),
            phone: phone_number.clone(),
        }]
    );
    assert_eq!(phone(&app).phase, PhonePhase::Sending);
    // OK again while sending does not send twice.
    assert!(keys(&mut app, &[Key::Ok, Key::Digit(3)]).is_empty());
    assert_eq!(phone(&app).digits, "15550100001");

    let fx = app.handle(Input::PhonePayDone {
        order: c.order.id.clone(),
        result: Ok(protocol::PhonePayStarted {
            kind: protocol::PhonePayKind::CodeSent,
            phone_masked: phone_number.masked(),
            code_expires_at_ms: Some(1_700_000_300_000),
        }),
    });
    assert!(fx.is_empty());
    assert_eq!(
        phone(&app).phase,
        PhonePhase::Sent {
            kind: protocol::PhonePayKind::CodeSent,
            phone_masked: "+••••••••001".into(),
            focus: Choice::Primary,
        }
    );
    // The order is still followed while waiting: the stream's reconnects and polls go on.
    let generation = generation(&app);
    let fx = app.handle(Input::StreamEnded {
        order: c.order.id.clone(),
        generation,
        reason: "cut".into(),
    });
    assert_eq!(fx, vec![Effect::PollOrder(c.order.id.clone())]);
    // The payer replies with the code; the order's stream (or a poll) says paid.
    let fx = app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    assert_eq!(fx, vec![Effect::Withdraw, Effect::StopFollowing]);
    assert!(
        matches!(&app.screen, Screen::Paid { order, .. } if order.id == c.order.id),
        "{:?}",
        app.screen
    );
}

#[test]
fn waiting_screen_back_returns_to_the_order_and_edit_number_to_the_pad() {
    let (mut app, c) = app_on_phone_pad();
    clear_pad(&mut app);
    digits(&mut app, "4915112345678");
    focus_pad(&mut app, PadKey::Send);
    keys(&mut app, &[Key::Ok]);
    let sent = || Input::PhonePayDone {
        order: c.order.id.clone(),
        result: Ok(protocol::PhonePayStarted {
            kind: protocol::PhonePayKind::LinkSent,
            phone_masked: "+••••••••••678".into(),
            code_expires_at_ms: None,
        }),
    };
    app.handle(sent());
    assert!(matches!(
        phone(&app).phase,
        PhonePhase::Sent {
            kind: protocol::PhonePayKind::LinkSent,
            ..
        }
    ));
    // "Edit number" (right) goes back to the pad with the number kept.
    keys(&mut app, &[Key::Right, Key::Ok]);
    assert_eq!(phone(&app).phase, PhonePhase::Typing { message: None });
    assert_eq!(phone(&app).digits, "4915112345678");
    // Send again; Back on the waiting screen shows the QR code again.
    keys(&mut app, &[Key::Ok]);
    app.handle(sent());
    assert!(
        keys(&mut app, &[Key::Back]).is_empty(),
        "Back does not cancel"
    );
    let o = app.order_screen().unwrap();
    assert_eq!(o.phone, None);
    assert_eq!(o.order.id, c.order.id);
}

#[track_caller]
fn check_send_failure(failure: Failure, says: &str, polls: bool) {
    let (mut app, c) = app_on_phone_pad();
    digits(&mut app, "5550100002");
    focus_pad(&mut app, PadKey::Send);
    keys(&mut app, &[Key::Ok]);
    let fx = app.handle(Input::PhonePayDone {
        order: c.order.id.clone(),
        result: Err(failure.clone()),
    });
    assert_eq!(
        fx.contains(&Effect::PollOrder(c.order.id.clone())),
        polls,
        "{failure:?}: {fx:?}"
    );
    let p = phone(&app);
    assert!(
        matches!(&p.phase, PhonePhase::Typing { message: Some(m) } if m.contains(says)),
        "{failure:?}: {:?}",
        p.phase
    );
    assert_eq!(p.digits, "15550100002", "the number stays to fix or resend");
}

fn refused(code: ErrorCode) -> Failure {
    Failure::Refused {
        code: Some(code),
        message: code.to_string(),
    }
}

#[test]
fn send_failures_are_shown_on_the_pad_in_words() {
    check_send_failure(refused(ErrorCode::TooManyAttempts), "3 times", false);
    check_send_failure(
        refused(ErrorCode::InvalidRequest),
        "did not accept that number",
        false,
    );
    check_send_failure(
        refused(ErrorCode::Unauthorized),
        "did not recognise this TV",
        false,
    );
    check_send_failure(Failure::Unreachable("refused".into()), "Can't reach", false);
    check_send_failure(refused(ErrorCode::RateLimited), "busy", false);
    check_send_failure(refused(ErrorCode::AlreadyPaid), "already paid", true);
    check_send_failure(refused(ErrorCode::OrderExpired), "expired", true);
    check_send_failure(refused(ErrorCode::OrderCancelled), "cancelled", true);
}

#[test]
fn expiry_while_the_pad_is_up_shows_expired() {
    let (mut app, c) = app_on_phone_pad();
    digits(&mut app, "555");
    let deadline = app.order_screen().unwrap().deadline_ms;
    let fx = app.handle(Input::Tick { now_ms: deadline });
    assert_eq!(fx, vec![Effect::Withdraw]);
    assert!(matches!(app.screen, Screen::Expired { .. }));
    // An answer for the dead order arriving now is ignored.
    let fx = app.handle(Input::PhonePayDone {
        order: c.order.id.clone(),
        result: Err(refused(ErrorCode::OrderExpired)),
    });
    assert!(fx.is_empty());
    assert!(matches!(app.screen, Screen::Expired { .. }));
}

#[test]
fn answer_after_leaving_the_pad_is_ignored() {
    let (mut app, c) = app_on_phone_pad();
    digits(&mut app, "5550100003");
    focus_pad(&mut app, PadKey::Send);
    keys(&mut app, &[Key::Ok]);
    keys(&mut app, &[Key::Back]);
    assert_eq!(app.order_screen().unwrap().phone, None);
    app.handle(Input::PhonePayDone {
        order: c.order.id.clone(),
        result: Err(refused(ErrorCode::TooManyAttempts)),
    });
    assert_eq!(app.order_screen().unwrap().phone, None);
}

// ---- What the TV owns (films, memberships) ----

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;
/// A wall-clock time for the tests (Unix ms): 15 Jan 2027.
const NOW_UNIX_MS: i64 = 1_800_000_000_000;

/// The catalog with the device's purchases loaded, the wall clock at `NOW_UNIX_MS`.
fn app_owning(list: Vec<protocol::Entitlement>) -> App {
    let mut app = app_on_catalog();
    app.handle(Input::WallClock {
        unix_ms: NOW_UNIX_MS,
    });
    app.handle(Input::EntitlementsLoaded(Ok(protocol::Entitlements {
        device_id: identity().device_id,
        entitlements: list,
        next_cursor: None,
    })));
    app
}

#[test]
fn the_catalog_load_also_loads_what_the_tv_owns() {
    let (mut app, _) = App::init(identity(), 0);
    let fx = app.handle(Input::CatalogLoaded(Ok(catalog())));
    assert!(
        fx.contains(&Effect::LoadEntitlements(identity().device_id)),
        "{fx:?}"
    );
}

#[test]
fn an_owned_film_shows_play_and_plays_without_a_second_order() {
    let film = &catalog().items[0];
    let mut app = app_owning(vec![entitlement(film, NOW_UNIX_MS - DAY_MS, None)]);
    assert_eq!(app.ownership(&film.id), Ownership::Film);
    app.handle(Input::Key(Key::Ok));
    assert_eq!(app.item_action(0), ItemAction::Play);
    assert!(matches!(
        app.screen,
        Screen::Item {
            focus: Choice::Primary,
            ..
        }
    ));
    // OK plays it: no order, the player is up.
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(
        matches!(&app.screen, Screen::Playing { item, .. } if item.id == film.id),
        "{:?}",
        app.screen
    );
    // Back stops it and shows the film's page again.
    app.handle(Input::Key(Key::Back));
    assert!(matches!(app.screen, Screen::Item { index: 0, .. }));
}

#[test]
fn already_owned_from_the_server_shows_the_owned_state_not_an_error() {
    let mut app = app_on_catalog();
    // The TV did not know yet (its list was still loading) and asked for an order.
    app.handle(Input::Key(Key::Ok));
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(matches!(&fx[..], [Effect::CreateOrder(_)]), "{fx:?}");
    let film = catalog().items[0].clone();
    let fx = app.handle(Input::OrderCreated {
        item: film.id.clone(),
        result: Err(refused(ErrorCode::AlreadyOwned)),
    });
    assert_eq!(fx, vec![Effect::LoadEntitlements(identity().device_id)]);
    assert!(
        matches!(
            app.screen,
            Screen::Item {
                index: 0,
                busy: false,
                ..
            }
        ),
        "{:?}",
        app.screen
    );
    assert_eq!(app.item_action(0), ItemAction::Play);
    // OK now plays instead of ordering again.
    assert!(app.handle(Input::Key(Key::Ok)).is_empty());
    assert!(matches!(app.screen, Screen::Playing { .. }));
}

#[test]
fn a_paid_film_is_owned_at_once() {
    let (mut app, c) = app_on_order();
    app.handle(Input::OrderUpdate(with_status(&c.order, OrderStatus::Paid)));
    app.handle(Input::Key(Key::Back));
    assert_eq!(
        app.screen,
        Screen::Catalog {
            focus: CatalogFocus::Item(1)
        }
    );
    app.handle(Input::Key(Key::Ok));
    assert_eq!(app.item_action(1), ItemAction::Play);
    assert!(
        app.handle(Input::Key(Key::Ok)).is_empty(),
        "no second order"
    );
    assert!(matches!(app.screen, Screen::Playing { .. }));
}

#[test]
fn an_active_membership_shows_until_when_and_cannot_be_bought_again() {
    let plus = &catalog().items[2];
    let until = NOW_UNIX_MS + 10 * DAY_MS;
    let mut app = app_owning(vec![entitlement(
        plus,
        NOW_UNIX_MS - 20 * DAY_MS,
        Some(until),
    )]);
    app.handle(Input::Key(Key::Digit(3)));
    assert_eq!(
        app.item_action(2),
        ItemAction::Active {
            until_ms: Some(until)
        }
    );
    // Only Back is on the page, and it is focused: OK leaves, nothing is bought.
    assert!(matches!(
        app.screen,
        Screen::Item {
            focus: Choice::Secondary,
            ..
        }
    ));
    assert!(app.handle(Input::Key(Key::Left)).is_empty());
    assert!(matches!(
        app.screen,
        Screen::Item {
            focus: Choice::Secondary,
            ..
        }
    ));
    assert!(app.handle(Input::Key(Key::Ok)).is_empty());
    assert!(matches!(app.screen, Screen::Catalog { .. }));
    // Once it has ended, it can be bought again.
    app.handle(Input::WallClock { unix_ms: until + 1 });
    assert_eq!(app.item_action(2), ItemAction::Buy);
    app.handle(Input::Key(Key::Digit(3)));
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(
        matches!(&fx[..], [Effect::CreateOrder(r)] if r.item_id == plus.id),
        "{fx:?}"
    );
}

#[test]
fn goods_can_be_ordered_again() {
    let lamp = &catalog().items[3];
    let mut app = app_owning(vec![entitlement(lamp, NOW_UNIX_MS - DAY_MS, None)]);
    assert_eq!(app.item_action(3), ItemAction::Buy);
    app.handle(Input::Key(Key::Digit(4)));
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(matches!(&fx[..], [Effect::CreateOrder(_)]), "{fx:?}");
}

#[test]
fn my_purchases_lists_each_item_once_and_ok_plays_or_shows_it() {
    let items = catalog().items;
    let (film, plus, lamp) = (&items[0], &items[2], &items[3]);
    let t = NOW_UNIX_MS - 40 * DAY_MS;
    let mut app = app_owning(vec![
        entitlement(film, t, None),
        entitlement(film, t + DAY_MS, None),
        entitlement(plus, t + 2 * DAY_MS, Some(t + 32 * DAY_MS)),
        entitlement(plus, t + 3 * DAY_MS, Some(t + 62 * DAY_MS)),
        entitlement(lamp, t + 4 * DAY_MS, None),
        entitlement(lamp, t + 5 * DAY_MS, None),
    ]);
    app.handle(Input::Key(Key::Digit(0)));
    let Screen::Purchases {
        list: Some(list), ..
    } = &app.screen
    else {
        panic!("expected the purchases list at once, got {:?}", app.screen)
    };
    let titles: Vec<&str> = list.iter().map(|e| e.item.title.as_str()).collect();
    assert_eq!(
        titles,
        [
            "Aurora Reading Lamp",
            "Couchpay Plus — 1 month",
            "Night Train"
        ]
    );
    assert_eq!(
        list[1].valid_until_ms,
        Some(t + 62 * DAY_MS),
        "the latest end date"
    );
    // OK on the film plays it; Back from the player comes back to the list.
    app.handle(Input::Key(Key::Down));
    app.handle(Input::Key(Key::Down));
    assert!(app.handle(Input::Key(Key::Ok)).is_empty());
    assert!(matches!(&app.screen, Screen::Playing { item, .. } if item.id == film.id));
    let fx = app.handle(Input::Key(Key::Back));
    assert_eq!(fx, vec![Effect::LoadEntitlements(identity().device_id)]);
    assert!(matches!(
        app.screen,
        Screen::Purchases { list: Some(_), .. }
    ));
    // OK on the membership shows it (until when it is active); Back returns to the list.
    app.handle(Input::Key(Key::Down));
    app.handle(Input::Key(Key::Ok));
    assert!(
        matches!(
            app.screen,
            Screen::Item {
                index: 2,
                back: Back::Purchases,
                ..
            }
        ),
        "{:?}",
        app.screen
    );
    app.handle(Input::Key(Key::Back));
    assert!(matches!(app.screen, Screen::Purchases { .. }));
}

#[test]
fn the_order_screen_focuses_a_harmless_button_first() {
    let (mut app, c) = app_on_order();
    assert_eq!(app.order_screen().unwrap().focus, Choice::Primary);
    // A stray OK opens the phone pad; the order lives on.
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(fx.is_empty(), "{fx:?}");
    assert!(app.order_screen().unwrap().phone.is_some());
    // Cancelling is the secondary button (and Back).
    app.handle(Input::Key(Key::Back));
    app.handle(Input::Key(Key::Right));
    let fx = app.handle(Input::Key(Key::Ok));
    assert!(
        fx.contains(&Effect::CancelOrder {
            order: c.order.id.clone(),
            tv_token: c.tv_token.clone()
        }),
        "{fx:?}"
    );
}

#[test]
fn the_pad_prefills_the_country_code_and_moves_to_send_after_a_full_number() {
    let (mut app, _) = app_on_phone_pad();
    // Digit keys: the focus follows the digit typed (so OK would type it again).
    digits(&mut app, "555");
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Digit(5));
    digits(&mut app, "010000");
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Digit(0));
    digits(&mut app, "2");
    assert_eq!(phone(&app).digits, "15550100002");
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Send, "complete: on ✓");

    // A configured country code: the UK's numbers have 12 digits with it.
    let (mut app, _) = app_on_order();
    app.set_phone_country_code("+44").unwrap();
    keys(&mut app, &[Key::Ok]);
    assert_eq!(phone(&app).digits, "44");
    digits(&mut app, "770090012");
    assert_ne!(PAD[phone(&app).pad_focus], PadKey::Send);
    digits(&mut app, "3");
    assert_eq!(PAD[phone(&app).pad_focus], PadKey::Send);
}

/// An open red-packet set of `count` packets from Alice, none claimed.
fn packet_set(count: u32) -> protocol::PacketSet {
    let id = protocol::PacketSetId::random();
    let eur = protocol::Currency::parse("EUR").unwrap();
    protocol::PacketSet {
        link: protocol::PacketLink::new(server(), id.clone()),
        id,
        short_code: Some(protocol::ShortCode::random()),
        sender: protocol::AccountId::parse("alice").unwrap(),
        sender_name: "Alice Martin".into(),
        message: String::new(),
        count,
        total: protocol::Money::new(u64::from(count) * 100, eur),
        fixed: true,
        state: protocol::PacketSetState::Open,
        claims: Vec::new(),
        remaining: count,
        refunded: protocol::Money::new(0, eur),
        created_at_ms: 1_800_000_000_000,
        expires_at_ms: 1_800_086_400_000,
        allowed: None,
    }
}

#[test]
fn a_red_packet_offer_waits_while_an_order_is_on_screen_then_asks() {
    let (mut app, _) = app_on_order();
    let set = packet_set(3);
    assert!(app.handle(Input::PacketsOffered(set.clone())).is_empty());
    assert!(
        app.order_screen().is_some(),
        "an order on screen is never covered"
    );
    // Back cancels the order; the item page is a quiet screen, so the TV asks now.
    app.handle(Input::Key(Key::Back));
    assert!(
        matches!(&app.screen, Screen::PacketsPrompt { set: s, focus: Choice::Primary, .. } if s.id == set.id),
        "{:?}",
        app.screen
    );
    // The same offer again changes nothing; Back refuses and goes back.
    assert!(app.handle(Input::PacketsOffered(set)).is_empty());
    assert!(app.handle(Input::Key(Key::Back)).is_empty());
    assert!(
        matches!(app.screen, Screen::Item { .. }),
        "{:?}",
        app.screen
    );
}

#[test]
fn shown_red_packets_follow_their_stream_reconnect_and_close_once() {
    let mut app = app_on_catalog();
    let set = packet_set(2);
    app.handle(Input::PacketsOffered(set.clone()));
    let fx = app.handle(Input::Key(Key::Ok));
    // Shown, it is followed and offered on the network like an order.
    let (generation, record) = match fx.as_slice() {
        [
            Effect::FollowPackets { set: s, generation },
            Effect::Announce(Announcement::Packets(record)),
        ] if *s == set.id => (*generation, record.clone()),
        other => panic!("expected to follow and announce the set, got {other:?}"),
    };
    assert_eq!(record.set, set.id);
    assert_eq!(Some(&record.short_code), set.short_code.as_ref());
    assert_eq!(record.server, set.link.server);
    assert_eq!(record.tv_id, identity().device_id);
    assert_eq!(record.tv_name, identity().tv_name);
    assert_eq!(record.sender_name, set.sender_name);
    app.handle(Input::PacketsStreamOpened {
        set: set.id.clone(),
        generation,
    });
    assert!(matches!(&app.screen, Screen::Packets(p) if p.live));
    // What mDNS and the radio made of it is shown for this set only.
    app.handle(Input::Announced {
        offer: Offer::Packets(protocol::PacketSetId::random()),
        result: Ok(()),
    });
    app.handle(Input::BleAnnounced {
        offer: Offer::Packets(set.id.clone()),
        result: Err("turned off".into()),
    });
    assert!(matches!(&app.screen, Screen::Packets(p)
        if p.announce == AnnounceState::Pending && p.ble == AnnounceState::Failed("turned off".into())));
    app.handle(Input::Announced {
        offer: Offer::Packets(set.id.clone()),
        result: Ok(()),
    });
    assert!(matches!(&app.screen, Screen::Packets(p) if p.announce == AnnounceState::Live));
    // The stream drops: it is reopened after the backoff, with a new generation.
    app.handle(Input::PacketsStreamEnded {
        set: set.id.clone(),
        generation,
    });
    assert!(app.handle(Input::Tick { now_ms: 100 }).is_empty());
    let fx = app.handle(Input::Tick {
        now_ms: STREAM_RETRY_INITIAL_MS + 1,
    });
    assert!(
        matches!(fx.as_slice(), [Effect::FollowPackets { generation: g, .. }] if *g > generation),
        "{fx:?}"
    );
    // Finished: the stream is closed; a late "open" update cannot reopen it.
    let mut finished = set.clone();
    finished.state = protocol::PacketSetState::Finished;
    finished.remaining = 0;
    assert_eq!(
        app.handle(Input::PacketsUpdate(finished)),
        vec![Effect::StopFollowingPackets, Effect::Withdraw]
    );
    assert!(app.handle(Input::PacketsUpdate(set)).is_empty());
    assert!(matches!(&app.screen, Screen::Packets(p) if !p.is_open()));
    // OK closes the final list and goes back to the catalog.
    assert_eq!(
        app.handle(Input::Key(Key::Ok)),
        vec![Effect::StopFollowingPackets, Effect::Withdraw]
    );
    assert!(matches!(app.screen, Screen::Catalog { .. }));
}
