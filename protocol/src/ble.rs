//! The Bluetooth LE advertisement payload and GATT identifiers (SPEC P2, P4).
//!
//! A TV with a pending order advertises one *Service Data* AD structure keyed by
//! [`ADVERT_SERVICE_UUID16`]. Its payload ([`Advert`]) names the order and a short hash of
//! the TV id; the full [`DiscoveryRecord`](crate::DiscoveryRecord) (short code, amount,
//! server, names) is the value of the [`RECORD_CHARACTERISTIC_UUID`] characteristic of the
//! [`GATT_SERVICE_UUID`] service, JSON-encoded: the companion's explicit "which order?"
//! request.
//!
//! # Byte budget (legacy advertising PDU: 31 bytes of AD structures)
//!
//! | AD structure                           | bytes |
//! |----------------------------------------|-------|
//! | Flags (len, type 0x01, flags) — BlueZ  | 3     |
//! | Service Data 16-bit: len, type 0x16    | 2     |
//! | — 16-bit service UUID                  | 2     |
//! | — payload ([`Advert::LEN`])            | 24    |
//! | **total**                              | **31**|
//!
//! A 128-bit service UUID list alone would take 18 bytes and a 128-bit *Service Data* AD
//! 18 bytes of overhead before any payload, leaving at most 10 bytes: too few for a
//! 16-byte id. So the advert uses the 16-bit form and the 128-bit UUIDs only name
//! the GATT service and characteristic, which have no size limit that matters here.
//!
//! Payload layout, all fixed-size:
//!
//! | offset | len | field                                                   |
//! |--------|-----|---------------------------------------------------------|
//! | 0      | 2   | magic `b"CP"`: filters out other users of the 16-bit id |
//! | 2      | 1   | version ([`ADVERT_VERSION`])                            |
//! | 3      | 1   | what is offered ([`AdvertKind`]): 1 order, 2 red packets |
//! | 4      | 16  | its id, raw bytes ([`OrderId::to_bytes`])               |
//! | 20     | 4   | TV hash: first 4 bytes of SHA-256 of the TV id          |
//!
//! Version 1 had no kind byte (orders only, 23 bytes); version 2 fills the legacy PDU
//! to exactly 31 bytes. A TV advertises only an offer, never its bare presence (that is
//! on mDNS), so a TV with nothing on screen is silent on the air.
//!
//! The 16-bit UUID `0xFCF5` is a placeholder in the Bluetooth SIG's member range: a
//! product shipping Couchpay must register its own and change [`ADVERT_SERVICE_UUID16`].
//! Nothing in an advert is trusted: the companion re-fetches the order from its own server.

use sha2::{Digest, Sha256};

use crate::{Announcement, DeviceId, OrderId, PacketSetId};

/// Longest wait for one BlueZ call (D-Bus round trip) before BLE is reported off.
pub const BLUEZ_CALL_TIMEOUT_MS: u64 = 3_000;

/// Why BLE is unavailable on the TV or the companion. Each message is the one line
/// shown to the person; the other channels (QR, code, mDNS) keep working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BleError {
    #[error("Bluetooth LE is off: no D-Bus system bus ({0})")]
    NoBus(String),
    #[error("Bluetooth LE is off: BlueZ (bluetoothd) is not running")]
    NoBluez,
    #[error("Bluetooth LE is off: no Bluetooth adapter found")]
    NoAdapter,
    #[error("Bluetooth LE is off: BlueZ did not answer within {BLUEZ_CALL_TIMEOUT_MS} ms")]
    Timeout,
    #[error("Bluetooth LE is off: this platform has no BLE peripheral support")]
    Unsupported,
    #[error("Bluetooth LE failed: {0}")]
    Other(String),
}

impl BleError {
    /// Maps a radio error onto the few cases a person can act on. `detail` is the
    /// error's full text (with D-Bus error names) and decides; `display` is shown.
    pub fn classify(display: &str, detail: &str) -> Self {
        if detail.contains("ServiceUnknown") || detail.contains("org.bluez was not provided") {
            Self::NoBluez
        } else if detail.contains("NoServer")
            || detail.contains("FileNotFound")
            || detail.contains("system_bus_socket")
            || detail.contains("Failed to connect")
        {
            Self::NoBus(display.to_owned())
        } else {
            Self::Other(display.to_owned())
        }
    }
}

/// 16-bit UUID keying the advert's Service Data AD structure (placeholder, see module docs).
pub const ADVERT_SERVICE_UUID16: u16 = 0xFCF5;

/// [`ADVERT_SERVICE_UUID16`] expanded onto the Bluetooth base UUID, as BlueZ and
/// btleplug report it.
pub const ADVERT_SERVICE_UUID: u128 =
    0x0000_0000_0000_1000_8000_0080_5f9b_34fb | ((ADVERT_SERVICE_UUID16 as u128) << 96);

/// GATT service that serves the full discovery record.
pub const GATT_SERVICE_UUID: u128 = 0x7c0f_3a6e_5b1d_4c2a_9e47_c0c4_9a00_0001;

/// Read-only characteristic: the current [`DiscoveryRecord`](crate::DiscoveryRecord) as JSON.
pub const RECORD_CHARACTERISTIC_UUID: u128 = 0x7c0f_3a6e_5b1d_4c2a_9e47_c0c4_9a00_0002;

/// Version of the advert payload layout; bumped on incompatible changes.
pub const ADVERT_VERSION: u8 = 2;

/// First bytes of every payload.
pub const ADVERT_MAGIC: [u8; 2] = *b"CP";

/// Largest legacy advertising payload (all AD structures), in bytes.
pub const LEGACY_ADVERT_MAX_BYTES: usize = 31;

/// What the whole advertisement takes on air: flags (3) + Service Data header (2) +
/// 16-bit UUID (2) + payload.
pub const ADVERT_ON_AIR_BYTES: usize = 3 + 2 + 2 + Advert::LEN;

const _: () = assert!(ADVERT_ON_AIR_BYTES <= LEGACY_ADVERT_MAX_BYTES);

/// Why an advert payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdvertError {
    #[error("advert payload is {0} bytes, expected {len}", len = Advert::LEN)]
    Length(usize),
    #[error("advert payload does not start with the Couchpay magic")]
    Magic,
    #[error("unsupported advert version {0}")]
    Version(u8),
    #[error("unknown kind {0} of advert")]
    Kind(u8),
}

/// What an advert offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AdvertKind {
    Order = 1,
    Packets = 2,
}

impl AdvertKind {
    fn from_byte(b: u8) -> Result<Self, AdvertError> {
        match b {
            1 => Ok(Self::Order),
            2 => Ok(Self::Packets),
            other => Err(AdvertError::Kind(other)),
        }
    }
}

/// A 4-byte hash of a TV id, enough to tell TVs in radio range apart and to match a BLE
/// advert against an mDNS record without a GATT read. Not a secret and not unique.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TvHash(pub [u8; 4]);

impl TvHash {
    pub fn of(tv: &DeviceId) -> Self {
        let digest = Sha256::digest(tv.as_str().as_bytes());
        Self([digest[0], digest[1], digest[2], digest[3]])
    }
}

/// The decoded advert payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Advert {
    pub kind: AdvertKind,
    /// The offered order's or set's 128-bit id.
    pub id: [u8; 16],
    pub tv: TvHash,
}

impl Advert {
    /// Payload length in bytes.
    pub const LEN: usize = 2 + 1 + 1 + 16 + 4;

    /// The advert of an order.
    pub fn new(order: &OrderId, tv: &DeviceId) -> Self {
        Self {
            kind: AdvertKind::Order,
            id: order.to_bytes(),
            tv: TvHash::of(tv),
        }
    }

    /// The advert of a red-packet set.
    pub fn packets(set: &PacketSetId, tv: &DeviceId) -> Self {
        Self {
            kind: AdvertKind::Packets,
            id: set.to_bytes(),
            tv: TvHash::of(tv),
        }
    }

    /// The advert of what `a` offers; `None` for a bare presence, which is not
    /// advertised.
    pub fn of(a: &Announcement) -> Option<Self> {
        match a {
            Announcement::Order(r) => Some(Self::new(&r.order, &r.tv_id)),
            Announcement::Packets(p) => Some(Self::packets(&p.set, &p.tv_id)),
            Announcement::Tv(_) => None,
        }
    }

    /// Whether `a`, read over GATT, is the offer this advert names.
    pub fn names(&self, a: &Announcement) -> bool {
        Self::of(a).as_ref() == Some(self)
    }

    /// The order this advert offers, if it offers one.
    pub fn order(&self) -> Option<OrderId> {
        (self.kind == AdvertKind::Order).then(|| OrderId::from_bytes(self.id))
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..2].copy_from_slice(&ADVERT_MAGIC);
        out[2] = ADVERT_VERSION;
        out[3] = self.kind as u8;
        out[4..20].copy_from_slice(&self.id);
        out[20..].copy_from_slice(&self.tv.0);
        out
    }

    /// Parses a Service Data payload. Exactly [`Advert::LEN`] bytes are accepted, so a
    /// later version that grows the payload must also bump [`ADVERT_VERSION`].
    pub fn decode(bytes: &[u8]) -> Result<Self, AdvertError> {
        if bytes.len() >= 3 && bytes[..2] == ADVERT_MAGIC && bytes[2] != ADVERT_VERSION {
            return Err(AdvertError::Version(bytes[2]));
        }
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| AdvertError::Length(bytes.len()))?;
        if bytes[..2] != ADVERT_MAGIC {
            return Err(AdvertError::Magic);
        }
        let kind = AdvertKind::from_byte(bytes[3])?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&bytes[4..20]);
        let mut tv = [0u8; 4];
        tv.copy_from_slice(&bytes[20..]);
        Ok(Self {
            kind,
            id,
            tv: TvHash(tv),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> OrderId {
        OrderId::from_bytes(*b"0123456789abcdef")
    }

    fn good() -> Vec<u8> {
        Advert::new(&order(), &DeviceId::parse("SN-0001").unwrap())
            .encode()
            .to_vec()
    }

    #[track_caller]
    fn check(input: &[u8], expected: Result<Advert, AdvertError>) {
        assert_eq!(Advert::decode(input), expected, "input {input:02x?}");
    }

    #[test]
    fn codec_table() {
        let tv = DeviceId::parse("SN-0001").unwrap();
        let ok = Advert::new(&order(), &tv);

        check(&good(), Ok(ok.clone()));
        check(&[], Err(AdvertError::Length(0)));
        check(b"CP", Err(AdvertError::Length(2)));
        check(&good()[..23], Err(AdvertError::Length(23)));
        check(&[good(), vec![0]].concat(), Err(AdvertError::Length(25)));
        let mut bad = good();
        bad[0] = b'X';
        check(&bad, Err(AdvertError::Magic));
        let mut v2 = good();
        v2[2] = 3;
        check(&v2, Err(AdvertError::Version(3)));
        // A future, longer version is reported as a version problem, not a length one.
        check(&[&v2[..], &[0, 0]].concat(), Err(AdvertError::Version(3)));
        // The first layout (23 bytes, no kind) is refused by its version.
        let mut v1 = good();
        v1[2] = 1;
        v1.remove(3);
        check(&v1, Err(AdvertError::Version(1)));
        let mut kind = good();
        kind[3] = 9;
        check(&kind, Err(AdvertError::Kind(9)));
        check(&[0u8; Advert::LEN], Err(AdvertError::Magic));
    }

    #[test]
    fn layout_is_stable() {
        let tv = DeviceId::parse("SN-0001").unwrap();
        let bytes = Advert::new(&order(), &tv).encode();
        assert_eq!(&bytes[..4], b"CP\x02\x01");
        assert_eq!(&bytes[4..20], b"0123456789abcdef");
        assert_eq!(bytes[20..], TvHash::of(&tv).0);
        // SHA-256("SN-0001") starts with these bytes; pins the hash across releases.
        let digest = Sha256::digest(b"SN-0001");
        assert_eq!(bytes[20..], digest[..4]);
        let set = PacketSetId::parse("GEZDGNBVGY3TQOJQGE2TKNRXHA").unwrap();
        let p = Advert::packets(&set, &tv).encode();
        assert_eq!(&p[..4], b"CP\x02\x02");
        assert_eq!(p[4..20], set.to_bytes());
    }

    #[test]
    fn random_orders_round_trip() {
        for _ in 0..100 {
            let a = Advert::new(&OrderId::random(), &DeviceId::random());
            assert_eq!(Advert::decode(&a.encode()), Ok(a.clone()));
            assert_eq!(
                a.order().map(|o| Advert::new(&o, &DeviceId::random()).id),
                Some(a.id)
            );
            let p = Advert::packets(&PacketSetId::random(), &DeviceId::random());
            assert_eq!(Advert::decode(&p.encode()), Ok(p.clone()));
            assert_eq!(p.order(), None);
        }
    }

    #[test]
    fn byte_budget_fits_legacy_advertising() {
        assert_eq!(Advert::LEN, 24);
        // `ADVERT_ON_AIR_BYTES <= LEGACY_ADVERT_MAX_BYTES` is checked at compile time.
        assert_eq!(ADVERT_ON_AIR_BYTES, 31);
    }

    #[test]
    fn uuid16_expands_on_the_base_uuid() {
        assert_eq!(
            ADVERT_SERVICE_UUID,
            0x0000_fcf5_0000_1000_8000_0080_5f9b_34fb
        );
    }
}
