//! Property tests of the BLE advert payload codec, `Advert::decode` and `Advert::encode`.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use protocol::ble::{ADVERT_MAGIC, ADVERT_VERSION, Advert, AdvertError, AdvertKind, TvHash};
use protocol::{DeviceId, OrderId, PacketSetId};

use crate::support::{apply, check, mutations, timed};

/// Adverts as a TV builds them.
const VALID_ADVERT_CASES: u32 = 100_000;
/// Well-formed payloads after one to four byte mutations.
const MUTATED_ADVERT_CASES: u32 = 100_000;
/// Random bytes, with and without the magic and version in front.
const RANDOM_ADVERT_CASES: u32 = 300_000;

/// Inputs per run of this module's properties.
pub(crate) const CASES: u32 = VALID_ADVERT_CASES + MUTATED_ADVERT_CASES + RANDOM_ADVERT_CASES;

/// Decodes `bytes` in time; an accepted payload is exactly the encoding of what it
/// decoded to, and a refusal names the right reason.
fn decode_anything(bytes: &[u8]) -> Result<(), TestCaseError> {
    let len = bytes.len();
    let tagged = len >= 3 && bytes[..2] == ADVERT_MAGIC;
    match timed(|| Advert::decode(bytes)) {
        Ok(advert) => {
            prop_assert_eq!(&advert.encode()[..], bytes);
            prop_assert_eq!(Advert::decode(&advert.encode()), Ok(advert));
        }
        Err(AdvertError::Length(n)) => {
            prop_assert_eq!(n, len);
            prop_assert_ne!(n, Advert::LEN);
            prop_assert!(!tagged || bytes[2] == ADVERT_VERSION);
        }
        Err(AdvertError::Magic) => {
            prop_assert_eq!(len, Advert::LEN);
            prop_assert_ne!(&bytes[..2], &ADVERT_MAGIC[..]);
        }
        Err(AdvertError::Kind(k)) => {
            prop_assert_eq!(len, Advert::LEN);
            prop_assert!(tagged && bytes[2] == ADVERT_VERSION);
            prop_assert_eq!(k, bytes[3]);
            prop_assert!(k != AdvertKind::Order as u8 && k != AdvertKind::Packets as u8);
        }
        Err(AdvertError::Version(v)) => {
            prop_assert!(tagged);
            prop_assert_eq!(v, bytes[2]);
            prop_assert_ne!(v, ADVERT_VERSION);
        }
        Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e:?}"))),
    }
    Ok(())
}

fn advert() -> impl Strategy<Value = Advert> {
    prop_oneof![
        (any::<bool>(), any::<[u8; 16]>(), any::<[u8; 4]>()).prop_map(|(order, id, tv)| {
            Advert {
                kind: if order {
                    AdvertKind::Order
                } else {
                    AdvertKind::Packets
                },
                id,
                tv: TvHash(tv),
            }
        }),
        (any::<[u8; 16]>(), "[A-Za-z0-9._:-]{4,64}").prop_map(|(order, tv)| {
            let tv = DeviceId::parse(&tv).expect("a well-formed device id");
            Advert::new(&OrderId::from_bytes(order), &tv)
        }),
        (any::<[u8; 16]>(), "[A-Za-z0-9._:-]{4,64}").prop_map(|(set, tv)| {
            let tv = DeviceId::parse(&tv).expect("a well-formed device id");
            Advert::packets(&PacketSetId::from_bytes(set), &tv)
        }),
    ]
}

#[test]
fn adverts_round_trip() {
    check(VALID_ADVERT_CASES, advert(), |a| {
        let bytes = a.encode();
        prop_assert_eq!(&bytes[..4], &[b'C', b'P', ADVERT_VERSION, a.kind as u8][..]);
        prop_assert_eq!(&timed(|| Advert::decode(&bytes)), &Ok(a.clone()));
        prop_assert_eq!(&bytes[4..20], &a.id[..]);
        prop_assert_eq!(&bytes[20..], &a.tv.0[..]);
        if let Some(order) = a.order() {
            prop_assert_eq!(order.to_bytes(), a.id);
        }
        decode_anything(&bytes)
    });
}

#[test]
fn mutated_adverts_decode_or_are_refused() {
    check(MUTATED_ADVERT_CASES, (advert(), mutations()), |(a, m)| {
        decode_anything(&apply(&a.encode(), &m))
    });
}

#[test]
fn random_bytes_decode_or_are_refused() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        // The magic in front, so that the version and length checks are reached.
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..40))
            .prop_map(|(v, rest)| { [&ADVERT_MAGIC[..], &[v], &rest].concat() }),
        proptest::collection::vec(any::<u8>(), 21)
            .prop_map(|rest| { [&ADVERT_MAGIC[..], &[ADVERT_VERSION], &rest].concat() }),
        (1u8..=2, proptest::collection::vec(any::<u8>(), 20)).prop_map(|(kind, rest)| {
            [&ADVERT_MAGIC[..], &[ADVERT_VERSION, kind], &rest].concat()
        }),
    ];
    check(RANDOM_ADVERT_CASES, strategy, |bytes| {
        decode_anything(&bytes)
    });
}
