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
//! | — payload ([`Advert::LEN`])            | 23    |
//! | **total**                              | **30**|
//!
//! A 128-bit service UUID list alone would take 18 bytes and a 128-bit *Service Data* AD
//! 18 bytes of overhead before any payload, leaving at most 10 bytes: too few for the
//! 16-byte order id. So the advert uses the 16-bit form and the 128-bit UUIDs only name
//! the GATT service and characteristic, which have no size limit that matters here.
//!
//! Payload layout, all fixed-size:
//!
//! | offset | len | field                                                   |
//! |--------|-----|---------------------------------------------------------|
//! | 0      | 2   | magic `b"CP"`: filters out other users of the 16-bit id |
//! | 2      | 1   | version ([`ADVERT_VERSION`])                            |
//! | 3      | 16  | order id, raw bytes ([`OrderId::to_bytes`])             |
//! | 19     | 4   | TV hash: first 4 bytes of SHA-256 of the TV id          |
//!
//! The 16-bit UUID `0xFCF5` is a placeholder in the Bluetooth SIG's member range: a
//! product shipping Couchpay must register its own and change [`ADVERT_SERVICE_UUID16`].
//! Nothing in an advert is trusted: the companion re-fetches the order from its own server.

use sha2::{Digest, Sha256};

use crate::{DeviceId, OrderId};

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
pub const ADVERT_VERSION: u8 = 1;

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
    pub order: OrderId,
    pub tv: TvHash,
}

impl Advert {
    /// Payload length in bytes.
    pub const LEN: usize = 2 + 1 + 16 + 4;

    pub fn new(order: &OrderId, tv: &DeviceId) -> Self {
        Self {
            order: order.clone(),
            tv: TvHash::of(tv),
        }
    }

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..2].copy_from_slice(&ADVERT_MAGIC);
        out[2] = ADVERT_VERSION;
        out[3..19].copy_from_slice(&self.order.to_bytes());
        out[19..].copy_from_slice(&self.tv.0);
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
        let mut order = [0u8; 16];
        order.copy_from_slice(&bytes[3..19]);
        let mut tv = [0u8; 4];
        tv.copy_from_slice(&bytes[19..]);
        Ok(Self {
            order: OrderId::from_bytes(order),
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
        check(&good()[..22], Err(AdvertError::Length(22)));
        check(&[good(), vec![0]].concat(), Err(AdvertError::Length(24)));
        let mut bad = good();
        bad[0] = b'X';
        check(&bad, Err(AdvertError::Magic));
        let mut v2 = good();
        v2[2] = 2;
        check(&v2, Err(AdvertError::Version(2)));
        // A future, longer version is reported as a version problem, not a length one.
        check(&[&v2[..], &[0, 0]].concat(), Err(AdvertError::Version(2)));
        check(&[0u8; Advert::LEN], Err(AdvertError::Magic));
    }

    #[test]
    fn layout_is_stable() {
        let tv = DeviceId::parse("SN-0001").unwrap();
        let bytes = Advert::new(&order(), &tv).encode();
        assert_eq!(&bytes[..3], b"CP\x01");
        assert_eq!(&bytes[3..19], b"0123456789abcdef");
        assert_eq!(bytes[19..], TvHash::of(&tv).0);
        // SHA-256("SN-0001") starts with these bytes; pins the hash across releases.
        let digest = Sha256::digest(b"SN-0001");
        assert_eq!(bytes[19..], digest[..4]);
    }

    #[test]
    fn random_orders_round_trip() {
        for _ in 0..100 {
            let a = Advert::new(&OrderId::random(), &DeviceId::random());
            assert_eq!(Advert::decode(&a.encode()), Ok(a));
        }
    }

    #[test]
    fn byte_budget_fits_legacy_advertising() {
        assert_eq!(Advert::LEN, 23);
        // `ADVERT_ON_AIR_BYTES <= LEGACY_ADVERT_MAX_BYTES` is checked at compile time.
        assert_eq!(ADVERT_ON_AIR_BYTES, 30);
    }

    #[test]
    fn uuid16_expands_on_the_base_uuid() {
        assert_eq!(
            ADVERT_SERVICE_UUID,
            0x0000_fcf5_0000_1000_8000_0080_5f9b_34fb
        );
    }
}
