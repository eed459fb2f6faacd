//! Device services by serial (SPEC D1–D5): the ids a device is known by, OS versions, and
//! the signed update package a TV checks before it installs anything.
//!
//! A device's id is printed on its box and sent over BLE, so it identifies and never
//! authorises: every device request also carries the device's own credential (a
//! [`crate::Token`] provisioned at the factory). An update package is trusted because of
//! its Ed25519 signature by the vendor's key, which the TV ships with, not because of
//! where it was downloaded from: the server only serves what the vendor signed.

use std::cmp::Ordering;
use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::hex;
use crate::ids::unhex;

/// The public half of the demo vendor key that signs the demo update packages under
/// `assets/updates/`. Its private half is `assets/updates/demo-signing-key` — public on
/// purpose, so developers can sign their own test packages; a real vendor keeps its key
/// offline and ships TVs with its own public key (`couchpay-tv --update-key`).
pub const DEMO_UPDATE_KEY: &str =
    "d1af78f24327549713e48772d12b2f2ed808fa5f3a5bf45b3a32815ce63fb173";

/// What kind of unique id a device has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HardwareIdKind {
    /// 15 decimal digits, the last a Luhn check digit (phones, cellular boxes).
    Imei,
    /// 14 hexadecimal digits (the first A–F) and a base-16 Luhn check digit.
    Meid,
    /// 8 hexadecimal digits (older CDMA devices).
    Esn,
    /// A vendor serial: a 2–6 letter vendor prefix, `-`, then 4–28 of `A-Z 0-9 -`.
    Serial,
}

impl HardwareIdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imei => "imei",
            Self::Meid => "meid",
            Self::Esn => "esn",
            Self::Serial => "serial",
        }
    }

    pub fn from_str_opt(s: &str) -> Option<Self> {
        [Self::Imei, Self::Meid, Self::Esn, Self::Serial]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// Why a device id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HardwareIdError {
    #[error("an IMEI is 15 digits")]
    ImeiLength,
    #[error("the IMEI's check digit is wrong")]
    ImeiCheck,
    #[error("the MEID's check digit is wrong")]
    MeidCheck,
    #[error("not a device id (an IMEI, a MEID, an ESN or a vendor serial such as CPB-7K2Q-91XD)")]
    Unrecognised,
}

/// A device's unique id in its canonical form (no spaces, hex digits upper case).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HardwareId {
    value: String,
    kind: HardwareIdKind,
}

impl PartialOrd for HardwareIdKind {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for HardwareIdKind {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

/// Luhn check over `digits` in base `radix` (10 for IMEI, 16 for MEID): the check digit
/// that makes the sum a multiple of `radix`.
fn luhn_check_digit(digits: &[u32], radix: u32) -> u32 {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 0 {
                let twice = d * 2;
                twice / radix + twice % radix
            } else {
                d
            }
        })
        .sum();
    (radix - sum % radix) % radix
}

impl HardwareId {
    /// Parses a device id as a person or a device writes it: spaces are dropped and
    /// letters upper-cased; what kind of id it is follows from its shape.
    pub fn parse(s: &str) -> Result<Self, HardwareIdError> {
        let v: String = s
            .chars()
            .filter(|c| *c != ' ')
            .collect::<String>()
            .to_ascii_uppercase();
        let digits = |radix: u32| -> Option<Vec<u32>> {
            v.chars()
                .map(|c| c.to_digit(radix))
                .collect::<Option<Vec<_>>>()
        };
        if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) && v.len() != 8 {
            let d = digits(10).unwrap_or_default();
            if d.len() != 15 {
                return Err(HardwareIdError::ImeiLength);
            }
            if luhn_check_digit(&d[..14], 10) != d[14] {
                return Err(HardwareIdError::ImeiCheck);
            }
            return Ok(Self {
                value: v,
                kind: HardwareIdKind::Imei,
            });
        }
        if v.len() == 15
            && v.as_bytes()[0].is_ascii_alphabetic()
            && let Some(d) = digits(16)
        {
            if luhn_check_digit(&d[..14], 16) != d[14] {
                return Err(HardwareIdError::MeidCheck);
            }
            return Ok(Self {
                value: v,
                kind: HardwareIdKind::Meid,
            });
        }
        if v.len() == 8 && digits(16).is_some() {
            return Ok(Self {
                value: v,
                kind: HardwareIdKind::Esn,
            });
        }
        if is_vendor_serial(&v) {
            return Ok(Self {
                value: v,
                kind: HardwareIdKind::Serial,
            });
        }
        Err(HardwareIdError::Unrecognised)
    }

    pub fn kind(&self) -> HardwareIdKind {
        self.kind
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// A fresh vendor serial for a device Couchpay sells: `CPB-` and 8 random characters
    /// of an alphabet without look-alikes.
    pub fn random_serial() -> Self {
        const ALPHABET: &[u8] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
        let bytes = crate::random_bytes::<8>();
        let tail: String = bytes
            .iter()
            .map(|b| ALPHABET[usize::from(b % 32)] as char)
            .collect();
        Self {
            value: format!("CPB-{}-{}", &tail[..4], &tail[4..]),
            kind: HardwareIdKind::Serial,
        }
    }
}

fn is_vendor_serial(v: &str) -> bool {
    let Some((prefix, rest)) = v.split_once('-') else {
        return false;
    };
    (2..=6).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_uppercase())
        && (4..=28).contains(&rest.len())
        && rest
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'-')
        && !rest.starts_with('-')
        && !rest.ends_with('-')
        && !rest.contains("--")
}

impl fmt::Display for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for HardwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.kind.as_str(), self.value)
    }
}

impl TryFrom<String> for HardwareId {
    type Error = HardwareIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<HardwareId> for String {
    fn from(v: HardwareId) -> String {
        v.value
    }
}

/// Most parts of a version (`1.2.3.4`).
pub const MAX_VERSION_PARTS: usize = 4;

/// An OS version: 1 to [`MAX_VERSION_PARTS`] dot-separated numbers (`1.4.2`), compared
/// part by part (`1.10` is newer than `1.9`; `1.2` equals `1.2.0`).
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OsVersion(Vec<u32>);

impl OsVersion {
    pub fn parse(s: &str) -> Result<Self, crate::ParseError> {
        let parts: Option<Vec<u32>> = s
            .split('.')
            .map(|p| {
                let ok = (1..=6).contains(&p.len())
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                ok.then(|| p.parse().ok()).flatten()
            })
            .collect();
        match parts {
            Some(p) if (1..=MAX_VERSION_PARTS).contains(&p.len()) => Ok(Self(p)),
            _ => Err(crate::ParseError::OsVersion),
        }
    }

    fn part(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl PartialEq for OsVersion {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Ord for OsVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..MAX_VERSION_PARTS)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for OsVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OsVersion({self})")
    }
}

impl std::str::FromStr for OsVersion {
    type Err = crate::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for OsVersion {
    type Error = crate::ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<OsVersion> for String {
    fn from(v: OsVersion) -> String {
        v.to_string()
    }
}

/// Why an update package is not to be installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackageError {
    #[error("not an Ed25519 public key (64 hex digits)")]
    BadKey,
    #[error("the package's signature is malformed")]
    BadSignature,
    #[error("the package is not signed by the vendor's key")]
    NotSigned,
    #[error("the download is {got} bytes, the package is {want}")]
    Size { got: u64, want: u64 },
    #[error("the download's SHA-256 does not match the package's")]
    Checksum,
}

/// The bytes a vendor signs for a package: a domain tag, then product, version, size and
/// SHA-256, so that a signature for one package can never pass for another.
pub fn signed_message(product: &str, version: &OsVersion, size: u64, sha256: &[u8; 32]) -> Vec<u8> {
    let mut m = b"couchpay-update-v1\0".to_vec();
    m.extend_from_slice(product.as_bytes());
    m.push(0);
    m.extend_from_slice(version.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(&size.to_be_bytes());
    m.extend_from_slice(sha256);
    m
}

/// A vendor's update-signing key pair (the signing side: packaging tools and tests).
#[derive(Clone)]
pub struct VendorKey(SigningKey);

impl fmt::Debug for VendorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VendorKey(public {})", self.public_hex())
    }
}

impl VendorKey {
    pub fn random() -> Self {
        Self(SigningKey::from_bytes(&crate::random_bytes::<32>()))
    }

    /// The key from its 32-byte secret in hex (the format of `demo-signing-key`).
    pub fn from_hex(s: &str) -> Result<Self, PackageError> {
        unhex::<32>(s.trim())
            .map(|b| Self(SigningKey::from_bytes(&b)))
            .ok_or(PackageError::BadKey)
    }

    pub fn secret_hex(&self) -> String {
        hex(&self.0.to_bytes())
    }

    pub fn public_hex(&self) -> String {
        hex(self.0.verifying_key().as_bytes())
    }

    /// The signature (hex) of a package with these contents.
    pub fn sign(&self, product: &str, version: &OsVersion, size: u64, sha256: &[u8; 32]) -> String {
        let m = signed_message(product, version, size, sha256);
        hex(&self.0.sign(&m).to_bytes())
    }
}

/// The key a TV checks update signatures with.
#[derive(Clone, PartialEq, Eq)]
pub struct UpdateKey(VerifyingKey);

impl fmt::Debug for UpdateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UpdateKey({})", hex(self.0.as_bytes()))
    }
}

impl UpdateKey {
    pub fn parse(s: &str) -> Result<Self, PackageError> {
        let bytes = unhex::<32>(s.trim()).ok_or(PackageError::BadKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| PackageError::BadKey)
    }

    /// The demo vendor's key ([`DEMO_UPDATE_KEY`]).
    pub fn demo() -> Self {
        Self::parse(DEMO_UPDATE_KEY).expect("the demo key is a valid key")
    }

    /// Whether `package`'s manifest (product, version, size, checksum) is signed by this key.
    pub fn verify_manifest(&self, package: &crate::UpdatePackage) -> Result<(), PackageError> {
        let sha = unhex::<32>(&package.sha256).ok_or(PackageError::BadSignature)?;
        let sig = unhex::<64>(&package.signature).ok_or(PackageError::BadSignature)?;
        let m = signed_message(&package.product, &package.version, package.size, &sha);
        self.0
            .verify(&m, &Signature::from_bytes(&sig))
            .map_err(|_| PackageError::NotSigned)
    }

    /// Checks a finished download against a signed manifest: size, SHA-256 of the bytes,
    /// then the signature. Only a package that passes all three may be installed.
    pub fn verify_download(
        &self,
        package: &crate::UpdatePackage,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<(), PackageError> {
        if size != package.size {
            return Err(PackageError::Size {
                got: size,
                want: package.size,
            });
        }
        if hex(sha256) != package.sha256 {
            return Err(PackageError::Checksum);
        }
        self.verify_manifest(package)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn ok(input: &str, kind: HardwareIdKind, canonical: &str) {
        let id = HardwareId::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
        assert_eq!((id.kind(), id.as_str()), (kind, canonical), "{input:?}");
    }

    #[track_caller]
    fn bad(input: &str, why: HardwareIdError) {
        assert_eq!(HardwareId::parse(input), Err(why), "{input:?}");
    }

    #[test]
    fn device_ids_are_parsed_by_shape_and_checked() {
        use HardwareIdKind::*;
        // IMEI: 15 digits with a Luhn check digit (the textbook example, and with spaces).
        ok("490154203237518", Imei, "490154203237518");
        ok("49 015420 323751 8", Imei, "490154203237518");
        ok("356938035643809", Imei, "356938035643809");
        bad("490154203237519", HardwareIdError::ImeiCheck);
        bad("356938035643800", HardwareIdError::ImeiCheck);
        bad("49015420323751", HardwareIdError::ImeiLength);
        bad("4901542032375180", HardwareIdError::ImeiLength);
        // MEID: 14 hex (first A–F) and a base-16 Luhn check digit.
        let body = "A10000009296F2";
        let d: Vec<u32> = body.chars().map(|c| c.to_digit(16).unwrap()).collect();
        let check = std::char::from_digit(luhn_check_digit(&d, 16), 16)
            .unwrap()
            .to_ascii_uppercase();
        let meid = format!("{body}{check}");
        ok(&meid, Meid, &meid);
        ok(&meid.to_lowercase(), Meid, &meid);
        let wrong = std::char::from_digit((luhn_check_digit(&d, 16) + 1) % 16, 16).unwrap();
        bad(&format!("{body}{wrong}"), HardwareIdError::MeidCheck);
        // ESN: 8 hex digits.
        ok("80a1b2c3", Esn, "80A1B2C3");
        ok("12345678", Esn, "12345678");
        // Vendor serials.
        ok("CPB-7K2Q-91XD", Serial, "CPB-7K2Q-91XD");
        ok("cpb-demo-0001", Serial, "CPB-DEMO-0001");
        ok("SN-12345", Serial, "SN-12345");
        for junk in [
            "",
            " ",
            "CPB",
            "CPB-",
            "CPB-12",
            "-ABCD",
            "CPB--1234",
            "CPB-1234-",
            "C-1234",
            "TOOLONG-1234",
            "80A1B2C",
            "80A1B2C3D",
            "CPB_1234",
            "CPB-12é4",
            "GGGGGGGGGGGGGGG",
        ] {
            assert!(HardwareId::parse(junk).is_err(), "{junk:?} was accepted");
        }
        let fresh = HardwareId::random_serial();
        ok(fresh.as_str(), Serial, fresh.as_str());
        assert_ne!(fresh, HardwareId::random_serial());
    }

    #[test]
    fn versions_compare_part_by_part() {
        let v = |s: &str| OsVersion::parse(s).unwrap();
        assert!(v("1.10") > v("1.9"));
        assert!(v("2.0.0") > v("1.99.99"));
        assert_eq!(v("1.2"), v("1.2.0"));
        assert_eq!(v("1.2.0").to_string(), "1.2.0");
        for bad in [
            "",
            "1.",
            ".1",
            "1..2",
            "a.b",
            "01.2",
            "1.2.3.4.5",
            "1234567",
            "-1",
        ] {
            assert!(OsVersion::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_demo_key_is_the_committed_secret_s_public_half() {
        let secret = include_str!("../../assets/updates/demo-signing-key");
        let key = VendorKey::from_hex(secret).unwrap();
        assert_eq!(key.public_hex(), DEMO_UPDATE_KEY);
        UpdateKey::demo();
    }

    #[test]
    fn only_the_signed_manifest_verifies() {
        let vendor = VendorKey::random();
        let key = UpdateKey::parse(&vendor.public_hex()).unwrap();
        let sha = [7u8; 32];
        let version = OsVersion::parse("1.1.0").unwrap();
        let pkg = crate::UpdatePackage {
            product: "couchpay-box".into(),
            version: version.clone(),
            size: 1000,
            url: "http://127.0.0.1/v1/updates/x".into(),
            sha256: hex(&sha),
            signature: vendor.sign("couchpay-box", &version, 1000, &sha),
        };
        key.verify_download(&pkg, 1000, &sha).unwrap();
        assert_eq!(
            key.verify_download(&pkg, 999, &sha),
            Err(PackageError::Size {
                got: 999,
                want: 1000
            })
        );
        assert_eq!(
            key.verify_download(&pkg, 1000, &[8u8; 32]),
            Err(PackageError::Checksum)
        );
        let mut bigger = pkg.clone();
        bigger.size = 1001;
        assert_eq!(key.verify_manifest(&bigger), Err(PackageError::NotSigned));
        let mut other = pkg.clone();
        other.version = OsVersion::parse("9.0").unwrap();
        assert_eq!(key.verify_manifest(&other), Err(PackageError::NotSigned));
        let stranger = UpdateKey::parse(&VendorKey::random().public_hex()).unwrap();
        assert_eq!(stranger.verify_manifest(&pkg), Err(PackageError::NotSigned));
        assert!(UpdateKey::parse("abc").is_err());
    }
}
