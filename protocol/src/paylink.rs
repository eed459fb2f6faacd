//! Pay links (the QR content) and server origins.
//!
//! A pay link is `HTTP://HOST:PORT/P/<ORDER-ID>`, written in upper case so that the
//! whole URL fits the QR *alphanumeric* mode (5.5 bits per character instead of 8).
//! A typical LAN link such as `HTTP://192.168.1.20:8080/P/` + 26 characters is 53
//! characters: QR version 3 (29×29 modules) at error-correction level M, which holds up
//! to 61 alphanumeric characters. Scheme and host are case-insensitive and the server
//! routes both `/P/` and `/p/`, so the upper-case form opens in any browser.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{OrderId, PacketSetId, ParseError, VoucherId};

/// Longest pay link or server URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 256;

/// The path in front of the order id in a pay link.
const PAY_PATH: &str = "/P/";

/// Longest server URL accepted, in bytes of its canonical form: a pay link to any order
/// on the server must still fit in [`MAX_URL_LEN`] (and its mDNS TXT property in 255).
pub const MAX_SERVER_URL_LEN: usize = MAX_URL_LEN - PAY_PATH.len() - OrderId::LEN;

/// A server origin: `http://host[:port]` or `https://…`, lower case, no path.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerUrl(String);

impl ServerUrl {
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (scheme, authority, path) = split_url(s).ok_or(ParseError::ServerUrl)?;
        if !(path.is_empty() || path == "/") {
            return Err(ParseError::ServerUrl);
        }
        let url = format!("{scheme}://{authority}");
        if url.len() > MAX_SERVER_URL_LEN {
            return Err(ParseError::ServerUrl);
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL of `path` (which starts with `/`) on this server.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerUrl({})", self.0)
    }
}

impl FromStr for ServerUrl {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ServerUrl> for String {
    fn from(v: ServerUrl) -> String {
        v.0
    }
}

/// Splits `scheme://authority/path` into lower-case scheme and authority plus the raw
/// path; refuses queries, fragments, user info and anything non-ASCII.
fn split_url(s: &str) -> Option<(String, String, &str)> {
    if s.len() > MAX_URL_LEN || !s.is_ascii() {
        return None;
    }
    let (scheme, rest) = s.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let authority_ok = !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
    if !authority_ok || path.contains(['?', '#']) {
        return None;
    }
    Some((scheme, authority.to_ascii_lowercase(), path))
}

/// The content of the TV's QR code: which server, which order.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PayLink {
    pub server: ServerUrl,
    pub order: OrderId,
}

impl PayLink {
    pub fn new(server: ServerUrl, order: OrderId) -> Self {
        Self { server, order }
    }

    /// Parses a pay link in any letter case. Anything else is a [`ParseError::PayLink`].
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let (server, id) = split_link(s, PAY_PATH).ok_or(ParseError::PayLink)?;
        let order = OrderId::parse(id).map_err(|_| ParseError::PayLink)?;
        Ok(Self { server, order })
    }
}

/// The server and the id of a link `SCHEME://AUTHORITY<path><id>`, `path` in either case.
fn split_link<'a>(s: &'a str, path: &str) -> Option<(ServerUrl, &'a str)> {
    let (scheme, authority, rest) = split_url(s.trim())?;
    let id = rest
        .strip_prefix(path)
        .or_else(|| rest.strip_prefix(path.to_ascii_lowercase().as_str()))?;
    Some((ServerUrl(format!("{scheme}://{authority}")), id))
}

impl fmt::Display for PayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{PAY_PATH}{}",
            self.server.as_str().to_ascii_uppercase(),
            self.order
        )
    }
}

impl fmt::Debug for PayLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PayLink({self})")
    }
}

impl FromStr for PayLink {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PayLink {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PayLink {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A link `HTTP://HOST:PORT<path><ID>` to one thing on a server, upper case like a pay
/// link (so its QR code stays as small) and opened in a browser it shows that thing's
/// page. It is a bearer secret: `Debug` shows only the id's first characters.
macro_rules! id_link {
    ($(#[$doc:meta])* $name:ident, $field:ident: $id:ty, $path:expr, $err:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            pub server: ServerUrl,
            pub $field: $id,
        }

        impl $name {
            pub fn new(server: ServerUrl, $field: $id) -> Self {
                Self { server, $field }
            }

            /// Parses the link in any letter case; anything else is refused.
            pub fn parse(s: &str) -> Result<Self, ParseError> {
                let (server, id) = split_link(s, $path).ok_or($err)?;
                let $field = <$id>::parse(id).map_err(|_| $err)?;
                Ok(Self { server, $field })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}{}{}",
                    self.server.as_str().to_ascii_uppercase(),
                    $path,
                    self.$field
                )
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "{}({}{}{}…)",
                    stringify!($name),
                    self.server,
                    $path,
                    self.$field.log_prefix()
                )
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_link!(
    /// The content of a voucher's QR code: `HTTP://HOST:PORT/V/<VOUCHER-ID>`. Whoever has
    /// it can redeem the voucher.
    VoucherLink,
    voucher: VoucherId,
    "/V/",
    ParseError::VoucherLink
);

id_link!(
    /// The claim link of a red-packet set: `HTTP://HOST:PORT/R/<SET-ID>` (its QR content).
    PacketLink,
    set: PacketSetId,
    "/R/",
    ParseError::PacketLink
);

/// Is every character of `s` in the QR alphanumeric set?
pub fn is_qr_alphanumeric(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b" $%*+-./:".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYQ";

    #[test]
    fn pay_link_round_trips_and_is_qr_alphanumeric() {
        let link = PayLink::new(
            ServerUrl::parse("http://192.168.1.20:8080").unwrap(),
            OrderId::random(),
        );
        let text = link.to_string();
        assert!(is_qr_alphanumeric(&text), "{text}");
        assert_eq!(text.len(), 53);
        assert_eq!(PayLink::parse(&text).unwrap(), link);
        assert_eq!(PayLink::parse(&text.to_lowercase()).unwrap(), link);
    }

    #[test]
    fn voucher_link_round_trips_and_is_not_a_pay_link() {
        let link = VoucherLink::new(
            ServerUrl::parse("http://192.168.1.20:8080").unwrap(),
            VoucherId::random(),
        );
        let text = link.to_string();
        assert!(is_qr_alphanumeric(&text), "{text}");
        assert_eq!(text.len(), 53);
        assert_eq!(VoucherLink::parse(&text).unwrap(), link);
        assert_eq!(VoucherLink::parse(&text.to_lowercase()).unwrap(), link);
        assert_eq!(PayLink::parse(&text), Err(ParseError::PayLink));
        let pay = text.replace("/V/", "/P/");
        assert_eq!(VoucherLink::parse(&pay), Err(ParseError::VoucherLink));
        assert!(!format!("{link:?}").contains(link.voucher.as_str()));
    }

    #[track_caller]
    fn check(input: &str, expected: Option<(&str, &str)>) {
        let got = PayLink::parse(input).ok();
        assert_eq!(
            got.as_ref()
                .map(|l| (l.server.as_str(), l.order.as_str().to_owned())),
            expected.map(|(s, o)| (s, o.to_owned())),
            "{input:?}"
        );
    }

    #[test]
    fn pay_link_table() {
        let ok = Some(("http://127.0.0.1:8080", ID));
        check(&format!("HTTP://127.0.0.1:8080/P/{ID}"), ok);
        check(&format!("http://127.0.0.1:8080/p/{ID}"), ok);
        check(&format!("  HTTP://127.0.0.1:8080/P/{ID}\n"), ok);
        check(
            &format!("https://pay.example/P/{ID}"),
            Some(("https://pay.example", ID)),
        );
        check(&format!("ftp://127.0.0.1/P/{ID}"), None);
        check(&format!("HTTP://127.0.0.1:8080/X/{ID}"), None);
        check(&format!("HTTP://127.0.0.1:8080/P/{ID}?x=1"), None);
        check(&format!("HTTP://127.0.0.1:8080/P/{ID}/"), None);
        check(&format!("HTTP://user@127.0.0.1/P/{ID}"), None);
        check("HTTP://127.0.0.1:8080/P/", None);
        check("HTTP://127.0.0.1:8080/P/SHORT", None);
        check("", None);
        check("not a url at all", None);
        check(&format!("HTTP://127.0.0.1/P/{ID}{}", "A".repeat(300)), None);
        check("HTTP://127.0.0.1/P/ÄBCDEFGHIJKLMNOPQRSTUVWXY", None);
    }

    #[test]
    fn server_url_is_normalised() {
        let u = ServerUrl::parse("HTTP://LOCALHOST:8080/").unwrap();
        assert_eq!(u.as_str(), "http://localhost:8080");
        assert_eq!(u.join("/v1/catalog"), "http://localhost:8080/v1/catalog");
        assert!(ServerUrl::parse("http://localhost:8080/api").is_err());
        assert!(ServerUrl::parse("localhost:8080").is_err());
        assert!(ServerUrl::parse("http://[::1]:8080").is_ok());
    }

    /// Regression test: `ServerUrl::parse` used to accept origins up to `MAX_URL_LEN`
    /// (256) bytes, so a server longer than 227 bytes gave pay links that `PayLink::parse`
    /// refused (a QR code the companion could not read) and TXT properties over DNS's
    /// 255 bytes. Found by the property test `long_servers_fit_in_a_pay_link_or_are_refused`.
    #[test]
    fn a_server_too_long_for_its_pay_links_is_refused() {
        let host = |n: usize| "a".repeat(n - "http://".len());
        let longest = ServerUrl::parse(&format!("http://{}/", host(MAX_SERVER_URL_LEN))).unwrap();
        assert_eq!(longest.as_str().len(), MAX_SERVER_URL_LEN);
        let link = PayLink::new(longest, OrderId::random());
        assert_eq!(link.to_string().len(), MAX_URL_LEN);
        assert_eq!(PayLink::parse(&link.to_string()).unwrap(), link);
        let one_more = format!("http://{}", host(MAX_SERVER_URL_LEN + 1));
        assert_eq!(ServerUrl::parse(&one_more), Err(ParseError::ServerUrl));
    }
}
