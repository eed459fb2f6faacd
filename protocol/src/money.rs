//! Money: an unsigned count of minor units with an ISO 4217 currency. Never floats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ParseError;

/// An ISO 4217 alphabetic currency code, always three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Parses a code such as `EUR`; lower case is accepted and normalised.
    pub fn parse(s: &str) -> Result<Self, ParseError> {
        let b = s.as_bytes();
        if b.len() != 3 || !b.iter().all(u8::is_ascii_alphabetic) {
            return Err(ParseError::Currency);
        }
        Ok(Self([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    pub fn as_str(&self) -> &str {
        // The bytes are checked ASCII letters, so this never fails.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// Number of decimal places of the minor unit (ISO 4217 exponent).
    pub fn exponent(&self) -> u32 {
        match self.as_str() {
            "JPY" | "KRW" | "VND" | "CLP" | "ISK" | "XAF" | "XOF" => 0,
            "BHD" | "KWD" | "OMR" | "JOD" | "TND" | "LYD" | "IQD" => 3,
            _ => 2,
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Currency {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// An amount of money: `minor` units (cents, fen, …) of `currency`.
///
/// Amounts are unsigned: direction is expressed by which ledger account is debited
/// and which is credited, never by a sign.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    pub minor: u64,
    pub currency: Currency,
}

impl Money {
    pub fn new(minor: u64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    /// Parses a decimal amount such as `12.50` in `currency`, refusing more decimals than
    /// the currency has and anything that is not a plain non-negative number.
    pub fn parse_decimal(s: &str, currency: Currency) -> Result<Self, ParseError> {
        let exp = currency.exponent() as usize;
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (!frac.is_empty() && !digits(frac)) || frac.len() > exp {
            return Err(ParseError::Amount);
        }
        if s.contains('.') && frac.is_empty() {
            return Err(ParseError::Amount);
        }
        let mut minor: u64 = whole.parse().map_err(|_| ParseError::Amount)?;
        for _ in 0..exp {
            minor = minor.checked_mul(10).ok_or(ParseError::Amount)?;
        }
        let mut f: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            f += u64::from(b - b'0') * 10u64.pow((exp - 1 - i) as u32);
        }
        let minor = minor.checked_add(f).ok_or(ParseError::Amount)?;
        Ok(Self { minor, currency })
    }

    /// The amount without currency, e.g. `12.50`.
    pub fn decimal(&self) -> String {
        let exp = self.currency.exponent();
        if exp == 0 {
            return self.minor.to_string();
        }
        let unit = 10u64.pow(exp);
        format!(
            "{}.{:0width$}",
            self.minor / unit,
            self.minor % unit,
            width = exp as usize
        )
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency)
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    #[track_caller]
    fn check(input: &str, currency: &str, expected: Option<(u64, &str)>) {
        let c = Currency::parse(currency).unwrap();
        let got = Money::parse_decimal(input, c).ok();
        assert_eq!(
            got.map(|m| (m.minor, m.to_string())),
            expected.map(|(m, s)| (m, s.to_owned())),
            "input {input:?}"
        );
    }

    #[test]
    fn decimal_parsing_table() {
        check("12.50", "EUR", Some((1250, "12.50 EUR")));
        check("12.5", "EUR", Some((1250, "12.50 EUR")));
        check("0", "EUR", Some((0, "0.00 EUR")));
        check("7", "EUR", Some((700, "7.00 EUR")));
        check("1500", "JPY", Some((1500, "1500 JPY")));
        check("1.234", "KWD", Some((1234, "1.234 KWD")));
        check("1.234", "EUR", None);
        check("-1.00", "EUR", None);
        check("1e3", "EUR", None);
        check("", "EUR", None);
        check(".5", "EUR", None);
        check("5.", "EUR", None);
        check("1.5", "JPY", None);
        check("99999999999999999999", "EUR", None);
    }

    #[test]
    fn currency_is_normalised_and_checked() {
        assert_eq!(Currency::parse("eur").unwrap(), eur());
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("E1R").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn money_json_shape_is_stable() {
        let m = Money::new(1299, eur());
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"minor":1299,"currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Money>(r#"{"minor":-1,"currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"minor":1.5,"currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"minor":1,"currency":"EU"}"#).is_err());
    }
}
