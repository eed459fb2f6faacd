//! The local-network discovery records: what a TV announces over mDNS/DNS-SD (and, in
//! full, over its BLE "which order?" characteristic).
//!
//! A TV announces up to two records, each under its own DNS-SD instance name:
//! - its *offer*, while it shows one: an order ([`DiscoveryRecord`]) or a red-packet
//!   set ([`PacketsRecord`]), under `couchpay-<tv id>`, replaced when the offer changes
//!   and withdrawn when it ends;
//! - its *presence* ([`TvPresence`]), for as long as it runs, under
//!   `couchpay-tv-<tv id>`, so a phone can pick it from Nearby to show something on it.
//!
//! The TXT key `kind` tells them apart ([`kinds`]); a record without it is an order
//! (the first layout had no `kind`). [`Announcement`] is any of the three.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{DeviceId, Money, OrderId, PacketSetId, ParseError, ServerUrl, ShortCode};

/// DNS-SD service type under which TVs announce pending orders.
pub const SERVICE_TYPE: &str = "_couchpay._tcp.local.";

/// Version of the TXT record layout; bumped on incompatible changes.
pub const RECORD_VERSION: u8 = 1;

/// Longest TV name or item title carried in a record, in characters.
pub const MAX_NAME_CHARS: usize = 60;

/// TXT record keys (ASCII, no `=`, each key + value well under 255 bytes).
pub mod keys {
    pub const VERSION: &str = "v";
    pub const ORDER: &str = "order";
    pub const CODE: &str = "code";
    pub const AMOUNT: &str = "amount";
    pub const CURRENCY: &str = "cur";
    pub const SERVER: &str = "server";
    pub const TV_NAME: &str = "tv";
    pub const TV_ID: &str = "tvid";
    pub const ITEM: &str = "item";
    pub const KIND: &str = "kind";
    pub const SET: &str = "set";
    pub const FROM: &str = "from";
    pub const MESSAGE: &str = "msg";
}

/// Values of the `kind` TXT key (and of the `kind` field of the GATT JSON).
pub mod kinds {
    pub const ORDER: &str = "order";
    pub const PACKETS: &str = "packets";
    pub const TV: &str = "tv";
}

/// A TV's announcement of one pending order.
///
/// Nothing in it is trusted: the companion only uses `server` if it is one of its own
/// configured servers, and always re-fetches the order from there before paying.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoveryRecord {
    pub order: OrderId,
    pub short_code: ShortCode,
    pub amount: Money,
    pub server: ServerUrl,
    pub tv_name: String,
    pub tv_id: DeviceId,
    pub item: String,
}

/// `s` without invisible, control or text-direction characters, at most
/// [`MAX_NAME_CHARS`] long: names from the air are shown to a person as a check.
fn clip(s: &str) -> String {
    s.chars()
        .filter(|&c| !crate::text::is_invisible(c))
        .take(MAX_NAME_CHARS)
        .collect()
}

impl DiscoveryRecord {
    /// The record with names clipped to [`MAX_NAME_CHARS`] and control characters removed.
    pub fn new(
        order: OrderId,
        short_code: ShortCode,
        amount: Money,
        server: ServerUrl,
        tv_name: &str,
        tv_id: DeviceId,
        item: &str,
    ) -> Self {
        Self {
            order,
            short_code,
            amount,
            server,
            tv_name: clip(tv_name),
            tv_id,
            item: clip(item),
        }
    }

    /// The DNS-SD instance name: unique per TV, so a TV replaces its own announcement.
    pub fn instance_name(&self) -> String {
        format!("couchpay-{}", self.tv_id)
    }

    /// TXT record properties, in a stable order.
    pub fn to_txt(&self) -> Vec<(String, String)> {
        vec![
            (keys::VERSION.into(), RECORD_VERSION.to_string()),
            (keys::ORDER.into(), self.order.to_string()),
            (keys::CODE.into(), self.short_code.to_string()),
            (keys::AMOUNT.into(), self.amount.minor.to_string()),
            (keys::CURRENCY.into(), self.amount.currency.to_string()),
            (keys::SERVER.into(), self.server.to_string()),
            (keys::TV_NAME.into(), self.tv_name.clone()),
            (keys::TV_ID.into(), self.tv_id.to_string()),
            (keys::ITEM.into(), self.item.clone()),
        ]
    }

    /// Parses TXT properties; unknown keys are ignored, a missing or bad key is an error.
    pub fn from_txt(props: &HashMap<String, String>) -> Result<Self, ParseError> {
        let get = checked(props, None)?;
        let currency = crate::Currency::parse(get(keys::CURRENCY)?)?;
        let minor: u64 = get(keys::AMOUNT)?.parse().map_err(|_| ParseError::Amount)?;
        Ok(Self::new(
            OrderId::parse(get(keys::ORDER)?)?,
            ShortCode::parse(get(keys::CODE)?)?,
            Money::new(minor, currency),
            ServerUrl::parse(get(keys::SERVER)?)?,
            get(keys::TV_NAME)?,
            DeviceId::parse(get(keys::TV_ID)?)?,
            get(keys::ITEM)?,
        ))
    }
}

/// A getter of TXT values that has checked the record's version and kind (`kind`:
/// `None` for an order, whose first layout had no `kind` key).
fn checked<'a>(
    props: &'a HashMap<String, String>,
    kind: Option<&'static str>,
) -> Result<impl Fn(&'static str) -> Result<&'a str, ParseError> + 'a, ParseError> {
    let get = move |k: &'static str| {
        props
            .get(k)
            .map(String::as_str)
            .ok_or(ParseError::MissingTxtKey(k))
    };
    let version: u8 = get(keys::VERSION)?
        .parse()
        .map_err(|_| ParseError::RecordVersion)?;
    if version != RECORD_VERSION {
        return Err(ParseError::RecordVersion);
    }
    let found = props.get(keys::KIND).map(String::as_str);
    if found.unwrap_or(kinds::ORDER) != kind.unwrap_or(kinds::ORDER) {
        return Err(ParseError::RecordKind);
    }
    Ok(get)
}

/// A TV's announcement of the red-packet set it shows: the claim code, and who sent it.
///
/// Untrusted like an order record: the companion only uses `server` if it is one of its
/// own, and claims through it, which checks the set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PacketsRecord {
    pub set: PacketSetId,
    pub short_code: ShortCode,
    pub server: ServerUrl,
    pub tv_name: String,
    pub tv_id: DeviceId,
    /// The sender's name, as the server gave it to the TV.
    pub sender_name: String,
    /// The sender's message (may be empty).
    pub message: String,
}

impl PacketsRecord {
    /// The record with names clipped to [`MAX_NAME_CHARS`] and invisible characters
    /// removed.
    pub fn new(
        set: PacketSetId,
        short_code: ShortCode,
        server: ServerUrl,
        tv_name: &str,
        tv_id: DeviceId,
        sender_name: &str,
        message: &str,
    ) -> Self {
        Self {
            set,
            short_code,
            server,
            tv_name: clip(tv_name),
            tv_id,
            sender_name: clip(sender_name),
            message: clip(message),
        }
    }

    /// The same rules applied again, to a record that came from the air as JSON.
    pub fn clipped(self) -> Self {
        Self::new(
            self.set,
            self.short_code,
            self.server,
            &self.tv_name,
            self.tv_id,
            &self.sender_name,
            &self.message,
        )
    }

    /// The TV's offer instance name, shared with its orders: one offer per TV.
    pub fn instance_name(&self) -> String {
        format!("couchpay-{}", self.tv_id)
    }

    pub fn to_txt(&self) -> Vec<(String, String)> {
        vec![
            (keys::VERSION.into(), RECORD_VERSION.to_string()),
            (keys::KIND.into(), kinds::PACKETS.into()),
            (keys::SET.into(), self.set.to_string()),
            (keys::CODE.into(), self.short_code.to_string()),
            (keys::SERVER.into(), self.server.to_string()),
            (keys::TV_NAME.into(), self.tv_name.clone()),
            (keys::TV_ID.into(), self.tv_id.to_string()),
            (keys::FROM.into(), self.sender_name.clone()),
            (keys::MESSAGE.into(), self.message.clone()),
        ]
    }

    pub fn from_txt(props: &HashMap<String, String>) -> Result<Self, ParseError> {
        let get = checked(props, Some(kinds::PACKETS))?;
        Ok(Self::new(
            PacketSetId::parse(get(keys::SET)?)?,
            ShortCode::parse(get(keys::CODE)?)?,
            ServerUrl::parse(get(keys::SERVER)?)?,
            get(keys::TV_NAME)?,
            DeviceId::parse(get(keys::TV_ID)?)?,
            get(keys::FROM)?,
            get(keys::MESSAGE)?,
        ))
    }
}

/// A TV saying it is here and which server it works with, for as long as it runs, so a
/// phone can pick it from Nearby (to put a red-packet set on it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TvPresence {
    pub server: ServerUrl,
    pub tv_name: String,
    pub tv_id: DeviceId,
}

impl TvPresence {
    pub fn new(server: ServerUrl, tv_name: &str, tv_id: DeviceId) -> Self {
        Self {
            server,
            tv_name: clip(tv_name),
            tv_id,
        }
    }

    /// Its own instance name, apart from the TV's offer.
    pub fn instance_name(&self) -> String {
        format!("couchpay-tv-{}", self.tv_id)
    }

    pub fn to_txt(&self) -> Vec<(String, String)> {
        vec![
            (keys::VERSION.into(), RECORD_VERSION.to_string()),
            (keys::KIND.into(), kinds::TV.into()),
            (keys::SERVER.into(), self.server.to_string()),
            (keys::TV_NAME.into(), self.tv_name.clone()),
            (keys::TV_ID.into(), self.tv_id.to_string()),
        ]
    }

    pub fn from_txt(props: &HashMap<String, String>) -> Result<Self, ParseError> {
        let get = checked(props, Some(kinds::TV))?;
        Ok(Self::new(
            ServerUrl::parse(get(keys::SERVER)?)?,
            get(keys::TV_NAME)?,
            DeviceId::parse(get(keys::TV_ID)?)?,
        ))
    }
}

/// Anything a TV announces. Its JSON (the BLE record characteristic) is tagged by
/// `kind`, like the TXT record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Announcement {
    Order(DiscoveryRecord),
    Packets(PacketsRecord),
    Tv(TvPresence),
}

impl Announcement {
    /// Parses TXT properties of any kind.
    pub fn from_txt(props: &HashMap<String, String>) -> Result<Self, ParseError> {
        match props.get(keys::KIND).map(String::as_str) {
            None | Some(kinds::ORDER) => DiscoveryRecord::from_txt(props).map(Self::Order),
            Some(kinds::PACKETS) => PacketsRecord::from_txt(props).map(Self::Packets),
            Some(kinds::TV) => TvPresence::from_txt(props).map(Self::Tv),
            Some(_) => Err(ParseError::RecordKind),
        }
    }

    /// Parses the JSON form (BLE), bounded by the caller, and applies the clipping
    /// rules again: names from the air are never trusted to be clipped. JSON without a
    /// `kind` is an order, as in the first layout.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let a = match serde_json::from_slice::<Self>(bytes) {
            Ok(a) => a,
            Err(e) => match serde_json::from_slice::<serde_json::Value>(bytes) {
                Ok(v) if v.get("kind").is_none() => {
                    Self::Order(serde_json::from_value::<DiscoveryRecord>(v)?)
                }
                _ => return Err(e),
            },
        };
        Ok(a.clipped())
    }

    fn clipped(self) -> Self {
        match self {
            Self::Order(r) => Self::Order(DiscoveryRecord::new(
                r.order,
                r.short_code,
                r.amount,
                r.server,
                &r.tv_name,
                r.tv_id,
                &r.item,
            )),
            Self::Packets(p) => Self::Packets(p.clipped()),
            Self::Tv(t) => Self::Tv(TvPresence::new(t.server, &t.tv_name, t.tv_id)),
        }
    }

    pub fn to_txt(&self) -> Vec<(String, String)> {
        match self {
            Self::Order(r) => r.to_txt(),
            Self::Packets(p) => p.to_txt(),
            Self::Tv(t) => t.to_txt(),
        }
    }

    pub fn instance_name(&self) -> String {
        match self {
            Self::Order(r) => r.instance_name(),
            Self::Packets(p) => p.instance_name(),
            Self::Tv(t) => t.instance_name(),
        }
    }

    pub fn server(&self) -> &ServerUrl {
        match self {
            Self::Order(r) => &r.server,
            Self::Packets(p) => &p.server,
            Self::Tv(t) => &t.server,
        }
    }

    pub fn tv_id(&self) -> &DeviceId {
        match self {
            Self::Order(r) => &r.tv_id,
            Self::Packets(p) => &p.tv_id,
            Self::Tv(t) => &t.tv_id,
        }
    }

    pub fn tv_name(&self) -> &str {
        match self {
            Self::Order(r) => &r.tv_name,
            Self::Packets(p) => &p.tv_name,
            Self::Tv(t) => &t.tv_name,
        }
    }

    /// The TV's presence, as any of its records shows it.
    pub fn presence(&self) -> TvPresence {
        TvPresence::new(self.server().clone(), self.tv_name(), self.tv_id().clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Currency;

    fn record() -> DiscoveryRecord {
        DiscoveryRecord::new(
            OrderId::random(),
            ShortCode::random(),
            Money::new(1299, Currency::parse("EUR").unwrap()),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Living-room TV",
            DeviceId::parse("SN-0001").unwrap(),
            "Night Train",
        )
    }

    fn txt_map(r: &DiscoveryRecord) -> HashMap<String, String> {
        r.to_txt().into_iter().collect()
    }

    #[test]
    fn txt_round_trip_and_sizes() {
        let r = record();
        for (k, v) in r.to_txt() {
            assert!(k.is_ascii() && !k.contains('='));
            assert!(k.len() + 1 + v.len() < 255, "{k}");
        }
        assert_eq!(DiscoveryRecord::from_txt(&txt_map(&r)).unwrap(), r);
    }

    #[track_caller]
    fn check_broken(key: &str, value: Option<&str>) {
        let mut m = txt_map(&record());
        match value {
            Some(v) => m.insert(key.into(), v.into()),
            None => m.remove(key),
        };
        assert!(
            DiscoveryRecord::from_txt(&m).is_err(),
            "{key}={value:?} accepted"
        );
    }

    #[test]
    fn malformed_records_are_refused() {
        check_broken(keys::VERSION, Some("2"));
        check_broken(keys::VERSION, None);
        check_broken(keys::ORDER, Some("nope"));
        check_broken(keys::CODE, Some("AAAA-AAAA"));
        check_broken(keys::AMOUNT, Some("-5"));
        check_broken(keys::CURRENCY, Some("EURO"));
        check_broken(keys::SERVER, Some("javascript:alert(1)"));
        check_broken(keys::TV_ID, Some("x"));
        check_broken(keys::ITEM, None);
    }

    fn packets() -> PacketsRecord {
        PacketsRecord::new(
            PacketSetId::random(),
            ShortCode::random(),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Living-room TV",
            DeviceId::parse("SN-0001").unwrap(),
            "Alice",
            "Happy new year <3",
        )
    }

    #[test]
    fn every_kind_round_trips_through_txt_and_json() {
        let presence = TvPresence::new(
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Den",
            DeviceId::parse("SN-0002").unwrap(),
        );
        for a in [
            Announcement::Order(record()),
            Announcement::Packets(packets()),
            Announcement::Tv(presence),
        ] {
            let txt = a.to_txt();
            for (k, v) in &txt {
                assert!(k.len() + 1 + v.len() < 255, "{k}");
            }
            let map: HashMap<String, String> = txt.into_iter().collect();
            assert_eq!(Announcement::from_txt(&map).unwrap(), a);
            let json = serde_json::to_vec(&a).unwrap();
            assert_eq!(Announcement::from_json(&json).unwrap(), a);
        }
        // The first layout: an order without `kind`, in TXT and in JSON.
        let r = record();
        let json = serde_json::to_vec(&r).unwrap();
        assert_eq!(
            Announcement::from_json(&json).unwrap(),
            Announcement::Order(r.clone())
        );
        assert_eq!(
            Announcement::from_txt(&txt_map(&r)).unwrap(),
            Announcement::Order(r)
        );
    }

    #[test]
    fn kinds_are_not_mixed_up() {
        let p: HashMap<String, String> = packets().to_txt().into_iter().collect();
        assert_eq!(DiscoveryRecord::from_txt(&p), Err(ParseError::RecordKind));
        let mut unknown = p.clone();
        unknown.insert(keys::KIND.into(), "toaster".into());
        assert_eq!(
            Announcement::from_txt(&unknown),
            Err(ParseError::RecordKind)
        );
        let mut o = txt_map(&record());
        o.insert(keys::KIND.into(), kinds::PACKETS.into());
        assert!(Announcement::from_txt(&o).is_err());
    }

    #[test]
    fn names_from_the_air_lose_invisible_characters() {
        let p = PacketsRecord::new(
            PacketSetId::random(),
            ShortCode::random(),
            ServerUrl::parse("http://127.0.0.1:8080").unwrap(),
            "Den\u{202E}VT",
            DeviceId::parse("SN-0001").unwrap(),
            "Al\u{200B}ice",
            "hi",
        );
        assert_eq!(p.tv_name, "DenVT");
        assert_eq!(p.sender_name, "Alice");
    }

    #[test]
    fn long_names_are_clipped() {
        let mut r = record();
        r = DiscoveryRecord::new(
            r.order,
            r.short_code,
            r.amount,
            r.server,
            &"é".repeat(200),
            r.tv_id,
            "a\u{7}b",
        );
        assert_eq!(r.tv_name.chars().count(), MAX_NAME_CHARS);
        assert_eq!(r.item, "ab");
    }
}
