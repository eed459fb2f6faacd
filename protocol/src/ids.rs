//! Identifiers and secrets that cross the wire, each parsed once at the boundary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf
}

/// Implements `Display`, `Debug`, `FromStr`, `AsRef<str>` and serde (via `parse`) for a
/// string newtype whose invariant is enforced by its `parse` function.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl FromStr for $name {
            type Err = ParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $name {
            type Error = ParseError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// RFC 4648 base32 alphabet: upper-case letters and digits 2–7, all inside the QR
/// alphanumeric character set, so pay links encode compactly.
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// An order id: 128 random bits written as 26 upper-case base32 characters.
///
/// It is unguessable, URL-safe and QR-alphanumeric. Parsing accepts lower case.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);
string_newtype!(OrderId);

impl OrderId {
    pub const LEN: usize = 26;

    pub fn random() -> Self {
        Self::from_bytes(random_bytes())
    }

    /// The order id whose 128 bits are `bytes` (the compact form carried in BLE adverts).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        let mut out = String::with_capacity(Self::LEN);
        let mut acc: u32 = 0;
        let mut bits = 0;
        for b in bytes {
            acc = (acc << 8) | u32::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out.push(BASE32[((acc >> bits) & 31) as usize] as char);
            }
        }
        // 128 = 25 * 5 + 3: the last character carries 3 bits, padded with zeros.
        out.push(BASE32[((acc << (5 - bits)) & 31) as usize] as char);
        Self(out)
    }

    /// The 128 bits of the id; inverse of [`OrderId::from_bytes`].
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut i = 0;
        for c in self.0.bytes() {
            // `parse` and `from_bytes` only ever store BASE32 characters.
            let v = BASE32.iter().position(|&b| b == c).unwrap_or(0) as u32;
            acc = (acc << 5) | v;
            bits += 5;
            if bits >= 8 && i < 16 {
                bits -= 8;
                out[i] = (acc >> bits) as u8;
                i += 1;
            }
        }
        out
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() != Self::LEN {
            return Err(ParseError::OrderId);
        }
        let up = s.to_ascii_uppercase();
        let mut last = 0;
        for b in up.bytes() {
            last = BASE32
                .iter()
                .position(|&c| c == b)
                .ok_or(ParseError::OrderId)?;
        }
        // Canonical form only: the two padding bits of the last character are zero.
        if last & 0b11 != 0 {
            return Err(ParseError::OrderId);
        }
        Ok(Self(up))
    }
}

/// A newtype id of 128 random bits in the order-id form (26 upper-case base32
/// characters), parsed in any case, logged by its first characters only.
macro_rules! random_id {
    ($(#[$doc:meta])* $name:ident, $err:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);
        string_newtype!($name);

        impl $name {
            pub const LEN: usize = OrderId::LEN;

            pub fn random() -> Self {
                Self(OrderId::random().0)
            }

            pub fn parse(s: &str) -> Result<Self, ParseError> {
                OrderId::parse(s).map(|o| Self(o.0)).map_err(|_| $err)
            }

            /// The id whose 128 bits are `bytes` (as a BLE advert carries it).
            pub fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(OrderId::from_bytes(bytes).0)
            }

            /// The 128 bits of the id.
            pub fn to_bytes(&self) -> [u8; 16] {
                OrderId(self.0.clone()).to_bytes()
            }

            /// The first characters, enough to tell ids apart in a log, useless to use.
            pub fn log_prefix(&self) -> &str {
                &self.0[..6]
            }
        }
    };
}

random_id!(
    /// A voucher id. A voucher is a bearer instrument: whoever has its id (its QR code)
    /// can redeem it, so the id is unguessable and the server logs only its first
    /// characters.
    VoucherId,
    ParseError::VoucherId
);

random_id!(
    /// A red-packet set id: the claim link's secret part.
    PacketSetId,
    ParseError::PacketSetId
);

/// The RFC 8628 §6.1 user-code alphabet: consonants only, no vowels (no words), no
/// digits (no 0/O or 1/I confusion).
pub const SHORT_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A short human-typeable order code: 8 letters from [`SHORT_CODE_ALPHABET`]
/// (20^8 ≈ 2^34.6 values), shown as `XXXX-XXXX`.
///
/// Input is tolerant of case, spaces and dashes; the canonical form has no separator.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ShortCode(String);
string_newtype!(ShortCode);

impl ShortCode {
    pub const LEN: usize = 8;

    pub fn random() -> Self {
        // Rejection sampling keeps the distribution uniform: 256 = 12*20 + 16.
        let mut out = String::with_capacity(Self::LEN);
        while out.len() < Self::LEN {
            for b in random_bytes::<16>() {
                if b < 240 && out.len() < Self::LEN {
                    out.push(SHORT_CODE_ALPHABET[usize::from(b % 20)] as char);
                }
            }
        }
        Self(out)
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() > 32 {
            return Err(ParseError::ShortCode);
        }
        let mut out = String::with_capacity(Self::LEN);
        for c in s.chars() {
            if c == '-' || c.is_whitespace() {
                continue;
            }
            let u = c.to_ascii_uppercase();
            if !u.is_ascii() || !SHORT_CODE_ALPHABET.contains(&(u as u8)) {
                return Err(ParseError::ShortCode);
            }
            out.push(u);
        }
        if out.len() != Self::LEN {
            return Err(ParseError::ShortCode);
        }
        Ok(Self(out))
    }

    /// The code as shown to people: `XXXX-XXXX`.
    pub fn display(&self) -> String {
        format!("{}-{}", &self.0[..4], &self.0[4..])
    }
}

/// A client-generated idempotency key: 8–64 characters of `[A-Za-z0-9_-]`.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);
string_newtype!(IdempotencyKey);

impl IdempotencyKey {
    /// A fresh key with 128 random bits.
    pub fn random() -> Self {
        Self(hex(&random_bytes::<16>()))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = (8..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::IdempotencyKey)
        }
    }
}

/// Checks a lower-case slug: 1–`max` characters of `[a-z0-9._-]`, starting alphanumeric.
fn is_slug(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// A ledger account id, e.g. `alice` or `alice.card`: a lower-case slug of up to 40 characters.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);
string_newtype!(AccountId);

impl AccountId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if is_slug(s, 40) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::AccountId)
        }
    }
}

/// A catalog item id, e.g. `film-night-train`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ItemId(String);
string_newtype!(ItemId);

impl ItemId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if is_slug(s, 64) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::ItemId)
        }
    }
}

/// A device's unique id (serial number, IMEI, ESN, MEID): 4–64 characters of
/// `[A-Za-z0-9._:-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);
string_newtype!(DeviceId);

impl DeviceId {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let ok = (4..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::DeviceId)
        }
    }

    /// A fresh random serial, for a device that has none yet.
    pub fn random() -> Self {
        Self(format!(
            "CP-{}",
            hex(&random_bytes::<8>()).to_ascii_uppercase()
        ))
    }
}

/// A bearer secret (session token, TV order token): 256 random bits as 64 hex digits.
///
/// `Debug` never prints the secret.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Token(String);

impl Token {
    pub fn random() -> Self {
        Self(hex(&random_bytes::<32>()))
    }

    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::Token)
        }
    }

    /// The secret itself, for an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(…)")
    }
}

impl TryFrom<String> for Token {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Token> for String {
    fn from(v: Token) -> String {
        v.0
    }
}

/// A payer's PIN: 4–12 digits. `Debug` never prints it, and it is not serialisable
/// except inside request bodies that carry it to the server.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Pin(String);

impl Pin {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if (4..=12).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::Pin)
        }
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(****)")
    }
}

impl TryFrom<String> for Pin {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Pin> for String {
    fn from(v: Pin) -> String {
        v.0
    }
}

/// A phone number in E.164 form: `+` and 8–15 digits.
///
/// Parsing accepts spaces, dashes, dots and parentheses, a leading `00` for `+`, and bare
/// digits (as a TV number pad sends them) taken as including the country code.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);
string_newtype!(PhoneNumber);

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        if s.len() > 32 {
            return Err(ParseError::PhoneNumber);
        }
        let compact: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let digits = compact
            .strip_prefix('+')
            .or_else(|| compact.strip_prefix("00"))
            .unwrap_or(&compact);
        if (8..=15).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0')
        {
            Ok(Self(format!("+{digits}")))
        } else {
            Err(ParseError::PhoneNumber)
        }
    }

    /// The number with all but the last three digits hidden, for screens and logs.
    pub fn masked(&self) -> String {
        let n = self.0.len();
        format!(
            "+{}{}",
            "•".repeat(n.saturating_sub(4)),
            &self.0[n.saturating_sub(3)..]
        )
    }
}

/// Lower-case hex of `bytes`.
/// The `N` bytes written as `2N` hex digits in `s`, if it is exactly that.
pub(crate) fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_ids_are_random_canonical_and_round_trip() {
        let a = OrderId::random();
        let b = OrderId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), OrderId::LEN);
        assert_eq!(OrderId::parse(a.as_str()).unwrap(), a);
        assert_eq!(OrderId::parse(&a.as_str().to_lowercase()).unwrap(), a);
    }

    #[test]
    fn order_id_bytes_round_trip() {
        assert_eq!(OrderId::from_bytes([0; 16]).as_str(), "A".repeat(26));
        assert_eq!(
            OrderId::from_bytes([0xff; 16]).as_str(),
            format!("{}4", "7".repeat(25))
        );
        for _ in 0..100 {
            let bytes: [u8; 16] = random_bytes();
            let id = OrderId::from_bytes(bytes);
            assert_eq!(id.to_bytes(), bytes);
            assert_eq!(OrderId::parse(id.as_str()).unwrap().to_bytes(), bytes);
        }
    }

    #[track_caller]
    fn check_order_id(input: &str, ok: bool) {
        assert_eq!(OrderId::parse(input).is_ok(), ok, "{input:?}");
    }

    #[test]
    fn order_id_table() {
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAAAA", true);
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAAAQ", true); // Q = 16: padding bits zero
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAAAB", false); // padding bits set
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAAA", false);
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAAAAA", false);
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAA0A", false); // 0 is not base32
        check_order_id("AAAAAAAAAAAAAAAAAAAAAAAA/A", false);
        check_order_id("", false);
    }

    #[track_caller]
    fn check_code(input: &str, expected: Option<&str>) {
        assert_eq!(
            ShortCode::parse(input).ok().map(|c| c.display()),
            expected.map(str::to_owned),
            "{input:?}"
        );
    }

    #[test]
    fn short_code_table() {
        check_code("BCDF-GHJK", Some("BCDF-GHJK"));
        check_code("bcdfghjk", Some("BCDF-GHJK"));
        check_code(" bcd f-gh jk ", Some("BCDF-GHJK"));
        check_code("BCDF-GHJ", None);
        check_code("BCDF-GHJKL", None);
        check_code("ABCD-EFGH", None); // vowels are not in the alphabet
        check_code("BCD1-GHJK", None);
        check_code("BCDF-GHJÄ", None);
        check_code("", None);
        check_code(&"B".repeat(100), None);
    }

    #[test]
    fn random_short_codes_parse() {
        for _ in 0..100 {
            let c = ShortCode::random();
            assert_eq!(ShortCode::parse(&c.display()).unwrap(), c);
        }
    }

    #[test]
    fn slugs_and_keys() {
        assert!(AccountId::parse("alice").is_ok());
        assert!(AccountId::parse("alice.card").is_ok());
        assert!(AccountId::parse("Alice").is_err());
        assert!(AccountId::parse(".alice").is_err());
        assert!(AccountId::parse("").is_err());
        assert!(IdempotencyKey::parse("short").is_err());
        assert!(IdempotencyKey::parse(IdempotencyKey::random().as_str()).is_ok());
        assert!(IdempotencyKey::parse("has space in it").is_err());
        assert!(DeviceId::parse("SN-12345").is_ok());
        assert!(DeviceId::parse(DeviceId::random().as_str()).is_ok());
        assert!(DeviceId::parse("a b c d").is_err());
        assert!(Pin::parse("1234").is_ok());
        assert!(Pin::parse("12a4").is_err());
        assert!(Pin::parse("123").is_err());
    }

    #[track_caller]
    fn check_phone(input: &str, expected: Option<&str>) {
        assert_eq!(
            PhoneNumber::parse(input)
                .ok()
                .as_ref()
                .map(PhoneNumber::as_str),
            expected,
            "{input:?}"
        );
    }

    #[test]
    fn phone_number_table() {
        check_phone("+15550100001", Some("+15550100001"));
        check_phone("+1 (555) 010-0001", Some("+15550100001"));
        check_phone("0015550100001", Some("+15550100001"));
        check_phone("15550100001", Some("+15550100001"));
        check_phone("+1555", None);
        check_phone("+1234567890123456", None);
        check_phone("+1555O100001", None);
        check_phone("", None);
        check_phone("0555010000", None);
        assert_eq!(
            PhoneNumber::parse("+15550100001").unwrap().masked(),
            "+••••••••001"
        );
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let pin = Pin::parse("123456").unwrap();
        assert!(!format!("{pin:?}").contains("123456"));
        let t = Token::random();
        assert!(!format!("{t:?}").contains(t.expose()));
        assert!(Token::parse(t.expose()).is_ok());
    }
}
