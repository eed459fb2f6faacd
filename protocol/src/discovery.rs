//! The local-network discovery record: what a TV announces over mDNS/DNS-SD (and, in
//! full, over its BLE "which order?" characteristic) while it offers an order.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{DeviceId, Money, OrderId, ParseError, ServerUrl, ShortCode};

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

fn clip(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
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
        let get = |k: &'static str| {
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
