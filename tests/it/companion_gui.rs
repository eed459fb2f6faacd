//! The companion's real window, headless (Slint testing backend, software renderer),
//! driven as a person would: the TV's order appears under Nearby (mDNS on `lo`) → tap it
//! → the confirmation sheet shows the server's order → a wrong PIN is refused with the
//! server's count of tries and the sheet stays → the right PIN pays → the Wallet opens
//! signed in, with the balance and only this account's receipts, and the TV sees it
//! paid. Typing the same code afterwards is refused. Then the TV sends a new order to
//! the account's phone number and the SMS code, paid from the Wallet's messages,
//! completes it. In the Vouchers tab she makes, shows, saves, lists and voids a voucher,
//! and takes vouchers Bob sent as pictures (see [`vouchers_in_the_window`]); she sends
//! red packets that Bob and Carol open, and opens one Bob sent from its picture (see
//! [`packets_in_the_window`]). Every screen is checked for developer text and saved as a
//! PNG.
//!
//! This is the only test in the binary that gives Slint an event loop (the companion
//! posts results from its I/O threads with `upgrade_in_event_loop`); Slint allows one
//! such platform per process.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use couchpay_e2e::{TV_NAME, tv_order, tv_sees_paid};
use futures_util::StreamExt;
use i_slint_backend_testing::{ElementHandle, TestingBackend, TestingBackendOptions};
use phone_client::Decoder;
use phone_client::companion::packets::{PacketsToSend, save_packets_png};
use phone_client::companion::vouchers::{save_voucher_png, voucher_in_picture};
use phone_client::gui::ui::{CompanionWindow, Packets, Phone, ReceiptRow, Vouchers};
use phone_client::gui::{self, GuiOptions};
use phone_client::{Announcer, Credentials, Interfaces, OrderRef};
use protocol::{
    AccountId, Announcement, ClaimPacket, Currency, DeviceEvent, DeviceId, Money, OrderStatus,
    PacketLink, PacketSplit, PacketsRecord, PayerAuth, PhoneNumber, PhonePayKind, PhonePayRequest,
    Pin, TvPresence, VoucherLink, VoucherState,
};
use server_stub::testing::TestServer;
use slint::{ComponentHandle, Model};

/// Longest wait for the window to reach a state, in seconds.
const GUI_TIMEOUT_S: u64 = 15;

/// Runs the window's event loop until `done` holds; fails the test after the timeout.
fn pump_until(window: &CompanionWindow, what: &str, done: impl Fn(&Phone<'_>) -> bool + 'static) {
    pump_until_window(window, what, move |w| done(&w.global::<Phone>()));
}

/// As [`pump_until`], for a condition on the whole window (the voucher screens).
fn pump_until_window(
    window: &CompanionWindow,
    what: &str,
    done: impl Fn(&CompanionWindow) -> bool + 'static,
) {
    let met = Rc::new(Cell::new(false));
    let deadline = Instant::now() + Duration::from_secs(GUI_TIMEOUT_S);
    let timer = slint::Timer::default();
    {
        let (met, weak) = (met.clone(), window.as_weak());
        timer.start(
            slint::TimerMode::Repeated,
            Duration::from_millis(10),
            move || {
                let Some(w) = weak.upgrade() else { return };
                if done(&w) {
                    met.set(true);
                    let _ = slint::quit_event_loop();
                } else if Instant::now() > deadline {
                    let _ = slint::quit_event_loop();
                }
            },
        );
    }
    slint::run_event_loop().expect("event loop");
    let p = window.global::<Phone>();
    assert!(
        met.get(),
        "timed out waiting for {what}; status {:?}, error {:?}",
        p.get_status(),
        p.get_error()
    );
}

fn idle_with_error(p: &Phone<'_>) -> bool {
    !p.get_busy() && !p.get_error().is_empty()
}

/// Every text element of the window as it is now (needs the debug element info of
/// debug builds, see phone-client/build.rs).
fn screen_texts(window: &CompanionWindow) -> Vec<String> {
    ElementHandle::find_by_element_type_name(window, "Text")
        .filter_map(|e| e.accessible_label())
        .map(|t| t.to_string())
        .filter(|t| !t.is_empty())
        .collect()
}

/// No developer text on screen: no flags, URL schemes or OS errors; returns the texts.
fn assert_plain_screen(window: &CompanionWindow, screen: &str) -> Vec<String> {
    let texts = screen_texts(window);
    assert!(texts.len() > 3, "{screen}: no texts found ({texts:?})");
    for t in &texts {
        for bad in ["--", "://", "os error"] {
            assert!(!t.contains(bad), "{screen} shows {bad:?}: {t:?}");
        }
    }
    texts
}

/// The window as it is on screen now.
fn snapshot(window: &CompanionWindow) -> image::RgbaImage {
    let shot = window.window().take_snapshot().expect("snapshot");
    let (w, h) = (shot.width(), shot.height());
    image::RgbaImage::from_raw(w, h, shot.as_bytes().to_vec()).unwrap()
}

/// Saves the window as `target/test-artifacts/companion-{name}.png`; checks it is not blank.
fn screenshot(window: &CompanionWindow, name: &str) {
    let rgba = snapshot(window);
    let artifacts =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    rgba.save(artifacts.join(format!("companion-{name}.png")))
        .unwrap();
    let distinct: std::collections::HashSet<_> = rgba.pixels().map(|p| p.0).collect();
    assert!(distinct.len() > 16, "the {name} screen rendered blank");
}

fn receipts(p: &Phone<'_>) -> Vec<ReceiptRow> {
    p.get_receipts().iter().collect()
}

#[test]
fn companion_window_pays_a_nearby_order() {
    let io = tokio::runtime::Runtime::new().unwrap();
    let server = io.block_on(TestServer::start());
    let tv = server.client();
    // Bob bought something earlier on another phone: alice's wallet must not list it.
    io.block_on(async {
        let other = tv_order(&tv, "plus-monthly").await.order;
        let (mut bob, _dir) = couchpay_e2e::companion(&server);
        let c = bob.fetch(&OrderRef::Link(other.pay_link)).await.unwrap();
        let bob_pin = Credentials::Pin {
            account: AccountId::parse("bob").unwrap(),
            pin: Pin::parse("2468").unwrap(),
        };
        bob.pay(&c, &bob_pin, None).await.unwrap();
    });
    let order = io.block_on(tv_order(&tv, "film-night-train")).order;
    let record = couchpay_e2e::tv_record(&server, &order);
    let mut announcer = Announcer::start(&Interfaces::loopback()).unwrap();
    announcer.announce(&record).unwrap();

    slint::platform::set_platform(Box::new(TestingBackend::new(TestingBackendOptions {
        mock_time: false,
        threading: true,
        renderer_name: Some("software".into()),
    })))
    .expect("the only event-loop platform in this test binary");
    let dir = tempfile::tempdir().unwrap();
    let app = gui::open(GuiOptions {
        servers: vec![server.url.clone()],
        state: dir.path().join("companion.json"),
        interfaces: Interfaces::loopback(),
        frames: None,
        pictures: dir.path().join("Pictures"),
    })
    .expect("companion window");
    let window = app.window.clone_strong();
    window.show().unwrap();
    let phone = window.global::<Phone>();

    // Developer text stays in the log: an empty folder field, no camera in this build.
    phone.invoke_scan_folder("".into());
    pump_until(&window, "the empty-folder message", idle_with_error);
    assert_eq!(phone.get_error(), "Type the folder of frames to scan.");
    assert_plain_screen(&window, "scan");
    phone.invoke_scan_folder(
        dir.path()
            .join("no-such-folder")
            .display()
            .to_string()
            .into(),
    );
    pump_until(&window, "the missing-folder message", |p| {
        p.get_error() == "That folder cannot be opened."
    });
    assert_plain_screen(&window, "scan, missing folder");
    screenshot(&window, "scan");

    // A mistyped code says what is wrong with it.
    phone.set_tab(2);
    phone.invoke_lookup_code("ABCD-EFGH".into());
    pump_until(&window, "the bad-code message", idle_with_error);
    assert!(
        phone.get_error().contains("is not a Couchpay code"),
        "{}",
        phone.get_error()
    );
    assert_plain_screen(&window, "code");

    // Nearby lists the TV's order with its name, item and amount.
    phone.set_tab(1);
    pump_until(&window, "the TV under Nearby", |p| {
        p.get_nearby().row_count() > 0
    });
    // The code tab's error stays on the code tab.
    assert!(
        !screen_texts(&window)
            .iter()
            .any(|t| t.contains("Couchpay code"))
    );
    let row = phone.get_nearby().row_data(0).unwrap();
    assert_eq!(row.tv, TV_NAME);
    assert_eq!(row.item, "Night Train");
    assert_eq!(row.amount, order.amount.to_string());
    assert_eq!(row.code, order.short_code.display());

    // Tapping it fetches the order from the server and shows it for confirmation.
    phone.invoke_pick_nearby(0);
    pump_until(&window, "the confirmation sheet", |p| p.get_confirming());
    let c = phone.get_confirm();
    assert_eq!(c.item, "Night Train");
    assert_eq!(c.amount, "4.99 EUR");
    assert_eq!(c.merchant, "Northwind Films");
    assert_eq!(c.tv, TV_NAME);
    assert_eq!(c.code, order.short_code.display());
    assert_eq!(c.server, phone_client::companion::host(&server.url));
    assert_plain_screen(&window, "confirm");
    screenshot(&window, "confirm");

    // A wrong PIN is refused with the server's count of tries; the sheet stays.
    phone.invoke_pay("alice".into(), "9999".into(), "".into());
    pump_until(&window, "the wrong-PIN error", idle_with_error);
    let error = phone.get_error().to_string();
    assert!(
        error.starts_with("Wrong PIN (") && error.contains("tries left"),
        "{error}"
    );
    assert!(error.ends_with("Nothing was charged."), "{error}");
    assert!(phone.get_confirming());
    assert_plain_screen(&window, "wrong PIN");
    screenshot(&window, "wrong-pin");
    let still = io.block_on(tv.order(&order.id)).unwrap();
    assert_eq!(still.status, OrderStatus::Pending);

    // The right PIN pays: the Wallet opens signed in as alice (the same PIN, in the
    // background), with her balance and only her receipts, and the TV sees it paid.
    phone.invoke_pay("alice".into(), "1234".into(), "".into());
    pump_until(&window, "the payment and the wallet", |p| {
        !p.get_busy() && p.get_logged_in() && p.get_receipts().row_count() > 0
    });
    assert_eq!(phone.get_error(), "");
    assert_eq!(phone.get_status(), "Paid 4.99 EUR for Night Train.");
    assert!(!phone.get_confirming());
    assert_eq!(phone.get_tab(), 3);
    assert_eq!(phone.get_account(), "alice");
    assert_eq!(phone.get_balance().wallet, "495.01 EUR");
    assert!(
        phone.get_balance().card.starts_with("Card: "),
        "{}",
        phone.get_balance().card
    );
    let rows = receipts(&phone);
    assert_eq!(rows.len(), 1, "only alice's receipt: {rows:?}");
    assert_eq!(rows[0].title, "Night Train");
    assert_eq!(rows[0].amount, "4.99 EUR");
    assert!(rows[0].detail.contains("Northwind Films"), "{:?}", rows[0]);
    assert!(io.block_on(tv_sees_paid(&tv, &order.id)));
    let texts = assert_plain_screen(&window, "wallet");
    assert!(texts.iter().any(|t| t == "Signed in as alice"), "{texts:?}");
    screenshot(&window, "wallet");

    // The payment's banner belongs to the wallet, not to the other tabs.
    phone.set_tab(0);
    assert!(
        !screen_texts(&window)
            .iter()
            .any(|t| t.contains("Paid 4.99"))
    );
    phone.set_tab(3);

    // The same order typed again is refused on the device, without paying twice.
    phone.set_tab(2);
    phone.invoke_lookup_code(order.short_code.display().into());
    pump_until(&window, "the refusal", idle_with_error);
    assert!(
        phone.get_error().contains("already paid this order"),
        "{}",
        phone.get_error()
    );
    assert!(!phone.get_confirming());

    // The TV moves on to a new order and sends it to alice's phone number; the code
    // arrives in the wallet's messages and paying with it completes the TV's order.
    let second = io.block_on(tv_order(&tv, "film-cloud-atlas-of-birds"));
    announcer.withdraw().unwrap();
    announcer
        .announce(&couchpay_e2e::tv_record(&server, &second.order))
        .unwrap();
    let started = io
        .block_on(tv.pay_by_phone(
            &second.order.id,
            &PhonePayRequest {
                tv_token: second.tv_token.clone(),
                phone: PhoneNumber::parse("+15550100001").unwrap(),
            },
        ))
        .unwrap();
    assert_eq!(started.kind, PhonePayKind::CodeSent);
    phone.set_tab(1);
    let code = second.order.short_code.display();
    pump_until(&window, "the second order under Nearby", move |p| {
        p.get_nearby().iter().any(|r| r.code == code)
    });
    phone.set_tab(3);
    phone.set_wallet_view(1);
    phone.invoke_refresh_receipts();
    pump_until(&window, "the SMS in the wallet", |p| {
        !p.get_busy() && p.get_sms().iter().any(|m| !m.code.is_empty())
    });
    let (i, sms) = phone
        .get_sms()
        .iter()
        .enumerate()
        .find(|(_, m)| !m.code.is_empty())
        .unwrap();
    assert_eq!(sms.amount, second.order.amount.to_string());
    assert!(sms.body.contains(&second.order.item.title), "{sms:?}");
    assert_plain_screen(&window, "messages");
    screenshot(&window, "messages");
    phone.invoke_pay_sms(i as i32);
    pump_until(&window, "the SMS payment", |p| {
        !p.get_busy() && (p.get_status().contains("SMS code") || !p.get_error().is_empty())
    });
    assert_eq!(phone.get_error(), "");
    assert_eq!(
        phone.get_status(),
        format!(
            "Paid {} for {} with the SMS code.",
            second.order.amount, second.order.item.title
        )
    );
    assert!(io.block_on(tv_sees_paid(&tv, &second.order.id)));
    assert!(phone.get_sms().row_data(i).unwrap().paid);
    let rows = receipts(&phone);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].title, second.order.item.title, "newest first");
    assert_plain_screen(&window, "messages, paid");

    vouchers_in_the_window(&io, &server, &window, &dir);
    packets_in_the_window(&io, &server, &window, &dir);

    // Signing out empties the wallet.
    phone.set_wallet_view(0);
    phone.invoke_logout();
    pump_until(&window, "the sign-out", |p| !p.get_logged_in());
    assert_eq!(phone.get_receipts().row_count(), 0);
    assert_plain_screen(&window, "signed out");
    screenshot(&window, "sign-in");

    drop(window);
    app.shutdown();
    announcer.stop();
    io.block_on(server.stop());
}

fn eur(minor: u64) -> Money {
    Money::new(minor, Currency::parse("EUR").unwrap())
}

fn busy(w: &CompanionWindow) -> bool {
    w.global::<Phone>().get_busy()
}

/// Bob makes a voucher of `amount` on his own phone and sends its picture (a PNG in
/// `dir`); returns the picture's path and the voucher's link.
fn bobs_voucher(
    io: &tokio::runtime::Runtime,
    server: &TestServer,
    dir: &tempfile::TempDir,
    amount: u64,
) -> (std::path::PathBuf, VoucherLink) {
    let (bob, _state) = couchpay_e2e::companion(server);
    let bob_pin = Credentials::Pin {
        account: AccountId::parse("bob").unwrap(),
        pin: Pin::parse("2468").unwrap(),
    };
    let v = io
        .block_on(bob.create_voucher(&bob_pin, eur(amount), None, None))
        .unwrap();
    let path = dir
        .path()
        .join(format!("from-bob-{}.png", v.id.log_prefix()));
    save_voucher_png(&v.link, &path).unwrap();
    (path, v.link)
}

/// The Vouchers tab and sheets (SPEC V), with alice signed in: she makes a voucher, its
/// QR code on screen decodes (real decoder, from the rendered window) to a link the
/// server knows, its picture is saved where the sheet says, the list shows it unused,
/// the filter hides it, and voiding frees it. Then she opens a picture of a voucher Bob
/// sent, sees the server's copy, and takes part of it; with "redeem on scan" set, the
/// next one is taken at once.
fn vouchers_in_the_window(
    io: &tokio::runtime::Runtime,
    server: &TestServer,
    window: &CompanionWindow,
    dir: &tempfile::TempDir,
) {
    let phone = window.global::<Phone>();
    let vouchers = window.global::<Vouchers>();
    let (checker, _state) = couchpay_e2e::companion(server);

    phone.set_tab(4);
    vouchers.invoke_refresh();
    pump_until_window(window, "the voucher list", |w| {
        !busy(w) && w.global::<Vouchers>().get_list().row_count() == 0
    });
    assert_plain_screen(window, "vouchers, empty");
    // The PIN is asked for (the default settings), and the amount must be one.
    vouchers.invoke_create("5.00".into(), "".into());
    pump_until(window, "the missing-PIN message", idle_with_error);
    assert_eq!(phone.get_error(), "Type your PIN to make a voucher.");
    vouchers.invoke_create("five".into(), "1234".into());
    pump_until(window, "the bad-amount message", idle_with_error);
    assert_eq!(
        phone.get_error(),
        "five is not an amount like 10.00. No voucher was made."
    );
    vouchers.invoke_create("5.00".into(), "1234".into());
    pump_until_window(window, "the new voucher full-screen", |w| {
        !busy(w) && w.global::<Vouchers>().get_showing()
    });
    assert_eq!(phone.get_error(), "");
    assert!(
        phone.get_status().starts_with("Voucher of 5.00 EUR made"),
        "{}",
        phone.get_status()
    );
    let shown = vouchers.get_shown();
    assert_eq!(shown.amount, "5.00 EUR");
    assert_eq!(shown.state, "Unused");
    assert!(shown.unused && shown.mine);
    assert!(shown.valid.starts_with("Valid until "), "{:?}", shown.valid);
    assert_plain_screen(window, "voucher");
    screenshot(window, "voucher");

    // What another phone's camera would read off this screen.
    let gray = image::DynamicImage::ImageRgba8(snapshot(window)).to_luma8();
    let report = Decoder::default().decode(&gray, &|t| VoucherLink::parse(t).is_ok());
    let link = VoucherLink::parse(report.text.as_deref().expect("the QR on screen decodes"))
        .expect("a voucher link");
    let v = io.block_on(checker.open_voucher(&link)).unwrap();
    assert_eq!(v.payer.as_str(), "alice");
    assert_eq!(v.face_value, eur(500));
    assert_eq!(v.state, VoucherState::Unused);

    // Saved as a picture, where the sheet says; the picture holds the same link.
    vouchers.invoke_save();
    pump_until_window(window, "the saved picture", |w| {
        !w.global::<Vouchers>().get_saved_to().is_empty()
    });
    let saved = std::path::PathBuf::from(vouchers.get_saved_to().as_str());
    assert!(saved.starts_with(dir.path().join("Pictures")), "{saved:?}");
    assert_eq!(voucher_in_picture(&saved).unwrap(), link);
    assert_plain_screen(window, "voucher, saved");

    // The list shows it unused; the Redeemed filter does not.
    vouchers.invoke_close();
    pump_until_window(window, "the list with the voucher", |w| {
        !busy(w) && w.global::<Vouchers>().get_list().row_count() == 1
    });
    let row = vouchers.get_list().row_data(0).unwrap();
    assert_eq!(
        (row.amount.as_str(), row.state.as_str()),
        ("5.00 EUR", "Unused")
    );
    assert!(row.detail.starts_with("Made "), "{row:?}");
    assert_plain_screen(window, "vouchers");
    screenshot(window, "vouchers");
    vouchers.set_filter(2);
    vouchers.invoke_refresh();
    pump_until_window(window, "the empty Redeemed filter", |w| {
        !busy(w) && w.global::<Vouchers>().get_list().row_count() == 0
    });
    vouchers.set_filter(0);
    vouchers.invoke_refresh();
    pump_until_window(window, "the whole list again", |w| {
        !busy(w) && w.global::<Vouchers>().get_list().row_count() == 1
    });

    // Voided from its sheet: the server has it voided, the money is free again.
    vouchers.invoke_open(0);
    pump_until_window(window, "the voucher sheet", |w| {
        w.global::<Vouchers>().get_showing()
    });
    vouchers.invoke_void();
    pump_until_window(window, "the voided voucher", |w| {
        !busy(w) && w.global::<Vouchers>().get_shown().state == "Voided"
    });
    assert_eq!(
        phone.get_status(),
        "Voucher voided: its 5.00 EUR is free to spend again."
    );
    assert_eq!(
        io.block_on(checker.open_voucher(&link)).unwrap().state,
        VoucherState::Voided
    );
    vouchers.invoke_close();

    // A picture of Bob's voucher, opened from the Scan tab: the server's copy is shown,
    // and alice takes 4.00 of its 10.00 (Bob gets the rest back at once).
    let (picture, bobs) = bobs_voucher(io, server, dir, 10_00);
    phone.set_tab(0);
    phone.invoke_decode_picture(picture.display().to_string().into());
    pump_until_window(window, "the scanned voucher", |w| {
        !busy(w) && w.global::<Vouchers>().get_redeeming()
    });
    let scanned = vouchers.get_scanned();
    assert_eq!(scanned.amount, "10.00 EUR");
    assert!(scanned.payer.contains("bob"), "{:?}", scanned.payer);
    assert!(scanned.unused && !scanned.mine);
    assert!(scanned.valid.starts_with("Valid until "));
    assert_plain_screen(window, "voucher redeem");
    screenshot(window, "voucher-redeem");
    vouchers.invoke_redeem("alice".into(), "4.00".into(), "".into());
    pump_until(window, "the redemption", |p| {
        !p.get_busy() && p.get_tab() == 3
    });
    assert_eq!(phone.get_error(), "");
    assert_eq!(
        phone.get_status(),
        "Redeemed 4.00 EUR from Bob Chen into your wallet; 6.00 EUR went back to them."
    );
    let v = io.block_on(checker.open_voucher(&bobs)).unwrap();
    assert_eq!(v.state, VoucherState::Redeemed);
    assert_eq!(v.used, eur(4_00));
    assert_eq!(v.payee.as_ref().map(AccountId::as_str), Some("alice"));

    // "Redeem on scan": the next voucher is taken whole, without the sheet.
    phone.set_tab(4);
    vouchers.invoke_open_settings();
    pump_until_window(window, "the voucher settings", |w| {
        !busy(w) && w.global::<Vouchers>().get_settings_open()
    });
    assert_plain_screen(window, "voucher settings");
    screenshot(window, "voucher-settings");
    vouchers.invoke_save_settings(true, true);
    pump_until_window(window, "the saved settings", |w| {
        !busy(w) && !w.global::<Vouchers>().get_settings_open()
    });
    assert!(vouchers.get_redeem_on_scan());
    let (picture, next) = bobs_voucher(io, server, dir, 3_00);
    phone.set_tab(0);
    phone.invoke_decode_picture(picture.display().to_string().into());
    pump_until(window, "the redemption on scan", |p| {
        !p.get_busy() && p.get_tab() == 3 && p.get_status().starts_with("Redeemed")
    });
    assert_eq!(
        phone.get_status(),
        "Redeemed 3.00 EUR from Bob Chen into your wallet."
    );
    assert!(!vouchers.get_redeeming());
    assert_eq!(
        io.block_on(checker.open_voucher(&next)).unwrap().state,
        VoucherState::Redeemed
    );
    let audit = io.block_on(server.client().audit()).unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}

/// Red packets in the Gifts tab (SPEC R), with alice signed in: she asks what 3 packets
/// of 6.00 at random take, sends them, and the claim code on screen decodes to a link
/// the server knows; Bob and Carol open one each on their phones; her history and the
/// set's sheet show who got how much, the largest marked. Then a picture of packets Bob
/// sent, opened from the Scan tab, puts one packet in her wallet.
fn packets_in_the_window(
    io: &tokio::runtime::Runtime,
    server: &TestServer,
    window: &CompanionWindow,
    dir: &tempfile::TempDir,
) {
    let phone = window.global::<Phone>();
    let packets = window.global::<Packets>();
    let client = server.client();
    phone.set_tab(4);
    phone.set_gifts_view(1);
    packets.invoke_refresh();
    pump_until_window(window, "the red-packet history", |w| {
        !busy(w) && w.global::<Packets>().get_list().row_count() == 0
    });
    assert_plain_screen(window, "red packets, empty");
    screenshot(window, "packets");
    packets.invoke_ask_quote("three".into(), "6.00".into(), "".into(), "".into());
    pump_until(window, "the bad-count message", idle_with_error);
    assert_eq!(phone.get_error(), "Type how many packets, like 5.");
    packets.invoke_ask_quote("3".into(), "6.00".into(), "Cheers".into(), "".into());
    pump_until_window(window, "the quote", |w| {
        !busy(w) && w.global::<Packets>().get_quoting()
    });
    let quote = packets.get_quote();
    assert_eq!(quote.total, "6.00 EUR");
    assert_eq!(
        quote.each,
        "3 packets of random amounts, about 2.00 EUR each."
    );
    assert_eq!(quote.warning, "");
    assert_plain_screen(window, "red-packet quote");
    screenshot(window, "packets-quote");
    packets.invoke_send("1234".into());
    pump_until_window(window, "the sent set", |w| {
        !busy(w) && w.global::<Packets>().get_showing()
    });
    assert_eq!(phone.get_error(), "");
    assert!(
        phone
            .get_status()
            .starts_with("Sent 6.00 EUR as 3 red packets")
    );
    let shown = packets.get_shown();
    assert!(shown.shareable, "{shown:?}");
    assert_eq!(shown.left, "3 of 3 packets left");
    assert_eq!(shown.message, "Cheers");
    assert_eq!(
        shown.code.len(),
        9,
        "a short code like BCDF-GHJK: {:?}",
        shown.code
    );
    assert_plain_screen(window, "red packets sent");
    screenshot(window, "packets-sent");
    let gray = image::DynamicImage::ImageRgba8(snapshot(window)).to_luma8();
    let report = Decoder::default().decode(&gray, &|t| PacketLink::parse(t).is_ok());
    let link = PacketLink::parse(report.text.as_deref().expect("the claim code decodes"))
        .expect("a claim link");
    packets.invoke_save();
    pump_until_window(window, "the saved claim picture", |w| {
        !w.global::<Packets>().get_saved_to().is_empty()
    });

    // "Show on TV": a TV announces its presence on the network; the sheet offers it,
    // and picking it puts the set on that TV (its device stream hears of it).
    let den = DeviceId::random();
    let den_name = format!("Den TV {}", &den.as_str()[..4]);
    let mut den_tv = Announcer::start(&Interfaces::loopback()).unwrap();
    den_tv
        .announce_any(&Announcement::Tv(TvPresence::new(
            server.url.clone(),
            &den_name,
            den.clone(),
        )))
        .unwrap();
    let mut den_events = io.block_on(async {
        let mut s = Box::pin(client.device_events(&den).await.unwrap());
        let hello = s.next().await.unwrap().unwrap();
        assert_eq!(
            hello,
            DeviceEvent::Hello {
                device: den.clone()
            }
        );
        s
    });
    let wanted = den_name.clone();
    pump_until_window(window, "the TV to show them on", move |w| {
        w.global::<Packets>()
            .get_tvs()
            .iter()
            .any(|t| t == wanted.as_str())
    });
    assert_plain_screen(window, "red packets, a TV nearby");
    screenshot(window, "packets-show-on-tv");
    let i = packets
        .get_tvs()
        .iter()
        .position(|t| t == den_name.as_str())
        .unwrap();
    packets.invoke_show_on_tv(i as i32);
    pump_until(window, "the offer sent", |p| {
        !p.get_busy() && p.get_status().contains("asks the room first")
    });
    let offered = io.block_on(async {
        tokio::time::timeout(Duration::from_secs(10), den_events.next())
            .await
            .expect("the TV hears of the offer")
            .unwrap()
            .unwrap()
    });
    assert!(
        matches!(&offered, DeviceEvent::PacketsOffered { set } if set.id == link.set),
        "{offered:?}"
    );
    den_tv.stop();
    packets.invoke_close();

    // Bob and Carol open one each, on their own phones.
    for (who, pin) in [("bob", "2468"), ("carol", "1357")] {
        io.block_on(client.claim_packet(
            &link.set,
            &ClaimPacket {
                account: AccountId::parse(who).unwrap(),
                auth: PayerAuth::Pin(Pin::parse(pin).unwrap()),
            },
        ))
        .unwrap();
    }
    packets.invoke_refresh();
    pump_until_window(window, "the history with two opened", |w| {
        !busy(w)
            && w.global::<Packets>()
                .get_list()
                .row_data(0)
                .is_some_and(|r| r.detail.ends_with("2 of 3 opened"))
    });
    let row = packets.get_list().row_data(0).unwrap();
    assert_eq!(
        (row.total.as_str(), row.state.as_str()),
        ("6.00 EUR", "Open")
    );
    packets.invoke_open(0);
    pump_until_window(window, "the set's sheet", |w| {
        w.global::<Packets>().get_showing()
    });
    let claims: Vec<_> = packets.get_claims().iter().collect();
    assert_eq!(claims.len(), 2, "{claims:?}");
    assert_eq!(claims[0].who, "Bob Chen");
    assert_eq!(claims[1].who, "Carol Diaz");
    assert!(claims.iter().any(|c| c.largest));
    assert_eq!(packets.get_shown().left, "1 of 3 packets left");
    assert_plain_screen(window, "red packets, two opened");
    screenshot(window, "packets-claims");
    packets.invoke_close();

    // Packets Bob sent, opened from a picture in the Scan tab: one lands in her wallet.
    let (bob, _state) = couchpay_e2e::companion(server);
    let bob_pin = Credentials::Pin {
        account: AccountId::parse("bob").unwrap(),
        pin: Pin::parse("2468").unwrap(),
    };
    let set = io
        .block_on(bob.send_packets(
            &bob_pin,
            &PacketsToSend {
                count: 2,
                split: PacketSplit::Fixed { each: eur(1_50) },
                message: String::new(),
                allowed: None,
                valid_for_s: None,
            },
        ))
        .unwrap();
    let picture = dir.path().join("bobs-packets.png");
    save_packets_png(&set.link, &picture).unwrap();
    phone.set_tab(0);
    phone.invoke_decode_picture(picture.display().to_string().into());
    pump_until(window, "the opened packet", |p| {
        !p.get_busy() && p.get_tab() == 3 && p.get_status().starts_with("You got")
    });
    assert_eq!(phone.get_status(), "You got 1.50 EUR from Bob Chen!");
    let after = io.block_on(client.packets(&set.id)).unwrap();
    assert_eq!(after.claims.len(), 1);
    assert_eq!(after.claims[0].recipient.as_str(), "alice");

    // Bob's next packets: one by the code a TV shows, typed in the Code tab; one picked
    // from Nearby, where a TV announces them.
    // Bob's wallet is nearly empty by now (how empty depends on random packets).
    io.block_on(client.top_up(
        &server.admin_token,
        &protocol::TopUp {
            account: AccountId::parse("bob").unwrap(),
            amount: eur(5_00),
        },
    ))
    .unwrap();
    let send_two = || {
        io.block_on(bob.send_packets(
            &bob_pin,
            &PacketsToSend {
                count: 2,
                split: PacketSplit::Fixed { each: eur(25) },
                message: "Cheers".into(),
                allowed: None,
                valid_for_s: None,
            },
        ))
        .unwrap()
    };
    let by_code = send_two();
    phone.set_tab(2);
    phone.invoke_lookup_code(by_code.short_code.as_ref().unwrap().display().into());
    pump_until(window, "the packet opened by its code", |p| {
        !p.get_busy() && p.get_status().starts_with("You got")
    });
    assert_eq!(phone.get_status(), "You got 0.25 EUR from Bob Chen!");
    let after = io.block_on(client.packets(&by_code.id)).unwrap();
    assert_eq!(after.claims[0].recipient.as_str(), "alice");

    // A claim link pasted into the Code tab opens one too.
    let pasted = send_two();
    phone.invoke_lookup_code(pasted.link.to_string().into());
    pump_until(window, "the packet opened by its pasted link", |p| {
        !p.get_busy() && p.get_status().starts_with("You got")
    });
    let after = io.block_on(client.packets(&pasted.id)).unwrap();
    assert_eq!(after.claims[0].recipient.as_str(), "alice");

    let on_tv = send_two();
    let mut tv = Announcer::start(&Interfaces::loopback()).unwrap();
    tv.announce_any(&Announcement::Packets(PacketsRecord::new(
        on_tv.id.clone(),
        on_tv.short_code.clone().unwrap(),
        server.url.clone(),
        "Kitchen TV",
        DeviceId::random(),
        &on_tv.sender_name,
        &on_tv.message,
    )))
    .unwrap();
    phone.set_tab(1);
    pump_until(window, "the red packets under Nearby", |p| {
        p.get_nearby()
            .iter()
            .any(|r| r.tv == "Kitchen TV" && r.item == "Red packets from Bob Chen")
    });
    assert_plain_screen(window, "nearby red packets");
    screenshot(window, "nearby-packets");
    let row = phone
        .get_nearby()
        .iter()
        .position(|r| r.tv == "Kitchen TV")
        .unwrap();
    phone.invoke_pick_nearby(row as i32);
    pump_until(window, "the packet opened from Nearby", |p| {
        !p.get_busy() && p.get_status().starts_with("You got")
    });
    let after = io.block_on(client.packets(&on_tv.id)).unwrap();
    assert_eq!(after.claims[0].recipient.as_str(), "alice");
    tv.stop();
    let audit = io.block_on(client.audit()).unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
}
