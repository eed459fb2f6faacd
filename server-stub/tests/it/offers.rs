//! Red packets on a TV: the sender offers a set to a TV by its device id, the TV hears it
//! on its device stream; the screen showing the set follows its stream (snapshot, each
//! claim, then finished, after which the stream ends); a phone finds the set by the
//! short code the TV shows; refusals for anyone but the sender and for closed sets.

use std::time::Duration;

use futures_util::StreamExt;
use protocol::{
    ClaimPacket, DeviceEvent, DeviceId, ErrorCode, OfferPackets, PacketSetState, PacketsEvent,
};
use server_stub::testing::TestServer;

use crate::packetpage::alices_packets;
use crate::*;

const WAIT: Duration = Duration::from_secs(10);

fn offer_by(who: &str, p: &str, tv: &DeviceId) -> OfferPackets {
    OfferPackets {
        account: account(who),
        auth: pin(p),
        device_id: tv.clone(),
    }
}

#[tokio::test]
async fn a_tv_hears_the_senders_offer_and_follows_the_claims_until_finished() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let tv = DeviceId::parse("living-room-tv").unwrap();
    let mut device = Box::pin(c.device_events(&tv).await.unwrap());
    let hello = tokio::time::timeout(WAIT, device.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(hello, DeviceEvent::Hello { device: tv.clone() });

    let set = alices_packets(&c, 2).await;
    let code = set.short_code.clone().expect("a new set has a short code");
    // Only the sender may put it on a TV.
    let refused = c
        .offer_packets(&set.id, &offer_by("bob", "2468", &tv))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NotAllowed), "{refused}");
    let offered = c
        .offer_packets(&set.id, &offer_by("alice", "1234", &tv))
        .await
        .unwrap();
    assert_eq!(offered.id, set.id);
    match tokio::time::timeout(WAIT, device.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        DeviceEvent::PacketsOffered { set: s } => {
            assert_eq!(s.id, set.id);
            assert_eq!(s.sender_name, "Alice Martin");
            assert_eq!(s.short_code.as_ref(), Some(&code));
        }
        other => panic!("expected the offer, got {other:?}"),
    }

    // The TV follows the set; a phone finds it by the code on screen.
    let mut events = Box::pin(c.packets_events(&set.id).await.unwrap());
    let first = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&first, PacketsEvent::Snapshot { set: s } if s.remaining == 2),
        "{first:?}"
    );
    let found = c.packets_by_code(&code).await.unwrap();
    assert_eq!(found.id, set.id);
    for (who, p) in [("bob", "2468"), ("carol", "1357")] {
        c.claim_packet(
            &set.id,
            &ClaimPacket {
                account: account(who),
                auth: pin(p),
            },
        )
        .await
        .unwrap();
    }
    let claimed = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match &claimed {
        PacketsEvent::Claimed { set: s } => {
            assert_eq!(s.remaining, 1);
            assert_eq!(s.claims[0].recipient_name, "Bob Chen");
        }
        other => panic!("expected a claim, got {other:?}"),
    }
    let finished = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(finished.is_final(), "{finished:?}");
    assert!(matches!(&finished, PacketsEvent::Finished { set: s }
        if s.state == PacketSetState::Finished && s.claims.len() == 2));
    assert!(
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .is_none(),
        "the stream ends with the set"
    );

    // Closed: no longer found by its code, and cannot be offered again.
    let gone = c.packets_by_code(&code).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::UnknownPackets), "{gone}");
    let closed = c
        .offer_packets(&set.id, &offer_by("alice", "1234", &tv))
        .await
        .unwrap_err();
    assert_eq!(closed.code(), Some(ErrorCode::PacketsExpired), "{closed}");
    let audit = c.audit().await.unwrap();
    assert!(audit.ok, "{:?}", audit.problems);
    srv.stop().await;
}

#[tokio::test]
async fn the_set_stream_of_an_expired_set_says_refunded_and_ends() {
    let srv = TestServer::start().await;
    let c = srv.client();
    let set = alices_packets(&c, 3).await;
    let mut events = Box::pin(c.packets_events(&set.id).await.unwrap());
    let _snapshot = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    srv.advance_clock(Duration::from_secs(86_400 + 1));
    srv.sweep_expired().await;
    let refunded = tokio::time::timeout(WAIT, events.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(&refunded, PacketsEvent::Refunded { set: s }
        if s.state == PacketSetState::Refunded && s.refunded.minor == 6_00),
        "{refunded:?}"
    );
    assert!(
        tokio::time::timeout(WAIT, events.next())
            .await
            .unwrap()
            .is_none()
    );
    srv.stop().await;
}
