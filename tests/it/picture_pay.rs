//! (1) The TV's order screen as a picture → the companion decodes it → pays → the TV
//! sees the order paid.

use couchpay_e2e::{companion, tv_order, tv_sees_paid};
use image::{GrayImage, Luma};
use phone_client::{Credentials, Decoder, OrderRef};
use protocol::{AccountId, PayLink, Pin};
use server_stub::testing::TestServer;

/// The order screen's QR code as a picture: 1280×720, dark UI, QR on a white card.
fn order_screen(link: &str) -> GrayImage {
    let code =
        qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M).unwrap();
    let w = code.width() as u32;
    let colors = code.to_colors();
    let module = 8;
    let (x0, y0) = (840, 150);
    GrayImage::from_fn(1280, 720, |x, y| {
        let (mx, my) = ((x as i64 - x0) / module - 4, (y as i64 - y0) / module - 4);
        let card = (x as i64) >= x0
            && (y as i64) >= y0
            && (x as i64) < x0 + (w as i64 + 8) * module
            && (y as i64) < y0 + (w as i64 + 8) * module;
        if !card {
            return Luma([28]);
        }
        let inside = (0..w as i64).contains(&mx) && (0..w as i64).contains(&my);
        let dark = inside && colors[(my as u32 * w + mx as u32) as usize] == qrcode::Color::Dark;
        Luma([if dark { 0 } else { 255 }])
    })
}

#[tokio::test]
async fn decoded_picture_is_paid() {
    let server = TestServer::start().await;
    let tv = server.client();
    let order = tv_order(&tv, "film-night-train").await.order;
    let screen = order_screen(&order.pay_link.to_string());
    let mut png = std::io::Cursor::new(Vec::new());
    screen.write_to(&mut png, image::ImageFormat::Png).unwrap();

    let frame = phone_client::decode::picture_from_bytes(png.get_ref()).unwrap();
    let report = Decoder::default().decode(&frame, &|t| PayLink::parse(t).is_ok());
    let link = PayLink::parse(report.text.as_deref().expect("the QR decodes")).unwrap();
    assert_eq!(link, order.pay_link);

    let (mut phone, _dir) = companion(&server);
    let c = phone.fetch(&OrderRef::Link(link.clone())).await.unwrap();
    let creds = Credentials::Pin {
        account: AccountId::parse("alice").unwrap(),
        pin: Pin::parse("1234").unwrap(),
    };
    phone.pay(&c, &creds, None).await.unwrap();
    assert!(tv_sees_paid(&tv, &order.id).await);
    // Scanning the same screen again is ignored without a request.
    assert!(phone.fetch(&OrderRef::Link(link)).await.is_err());
    server.stop().await;
}
