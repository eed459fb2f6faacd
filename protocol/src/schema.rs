//! OpenAPI schemas of the types that travel as plain strings (feature `openapi`).
//!
//! Ids, secrets, links and codes are newtypes parsed at the boundary and serialised as
//! strings, so their schema is a `string` with the pattern their parser enforces, written
//! here once instead of being derived from their Rust representation.

use std::borrow::Cow;

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Implements `utoipa::ToSchema` for a type serialised as a string.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $desc:literal $(, pattern = $pattern:literal)? $(, example = $example:literal)?) => {
        impl utoipa::PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($desc))
                    $(.pattern(Some($pattern)))?
                    $(.examples([$example]))?
                    .into()
            }
        }
        impl utoipa::ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

string_schema!(
    crate::OrderId,
    "OrderId",
    "An order id: 128 random bits as 26 base32 characters (accepted in any case).",
    pattern = "^[A-Za-z2-7]{26}$",
    example = "4CQ2JVOXK7MBN3SGZ5YPLW6T2E"
);
string_schema!(
    crate::VoucherId,
    "VoucherId",
    "A voucher id: 128 random bits as 26 base32 characters. Whoever holds it can redeem the voucher.",
    pattern = "^[A-Za-z2-7]{26}$"
);
string_schema!(
    crate::PacketSetId,
    "PacketSetId",
    "A red-packet set id: 128 random bits as 26 base32 characters, the secret part of the claim link.",
    pattern = "^[A-Za-z2-7]{26}$"
);
string_schema!(
    crate::ShortCode,
    "ShortCode",
    "A short order code: 8 consonants, shown as XXXX-XXXX. Input may be in any case, with spaces or dashes.",
    example = "BCDF-GHJK"
);
string_schema!(
    crate::IdempotencyKey,
    "IdempotencyKey",
    "A client-generated idempotency key: 8 to 64 characters of [A-Za-z0-9_-].",
    pattern = "^[A-Za-z0-9_-]{8,64}$"
);
string_schema!(
    crate::AccountId,
    "AccountId",
    "A ledger account id: a lower-case slug of up to 40 characters, e.g. `alice` or `alice.card`.",
    example = "alice"
);
string_schema!(
    crate::ItemId,
    "ItemId",
    "A catalog item id, e.g. `film-night-train`.",
    example = "film-night-train"
);
string_schema!(
    crate::DeviceId,
    "DeviceId",
    "A device's unique id (serial number, IMEI, ESN, MEID): 4 to 64 characters of [A-Za-z0-9._:-].",
    pattern = "^[A-Za-z0-9._:-]{4,64}$"
);
string_schema!(
    crate::Token,
    "Token",
    "A bearer secret (session token, TV order token): 256 random bits as 64 hex digits.",
    pattern = "^[0-9a-fA-F]{64}$"
);
string_schema!(
    crate::Pin,
    "Pin",
    "A payer's PIN: 4 to 12 digits. Never echoed by the server.",
    pattern = "^[0-9]{4,12}$"
);
string_schema!(
    crate::PhoneNumber,
    "PhoneNumber",
    "A phone number, answered in E.164 form (`+` and 8 to 15 digits). Input may contain spaces, dashes, dots, parentheses or a leading 00.",
    example = "+447700900123"
);
string_schema!(
    crate::ServerUrl,
    "ServerUrl",
    "A server origin: `http://host[:port]` or `https://…`, no path.",
    example = "http://127.0.0.1:8080"
);
string_schema!(
    crate::PayLink,
    "PayLink",
    "The content of the TV's QR code: `HTTP://HOST:PORT/P/<ORDER-ID>`, upper case so the QR code stays small.",
    example = "HTTP://127.0.0.1:8080/P/4CQ2JVOXK7MBN3SGZ5YPLW6T2E"
);
string_schema!(
    crate::VoucherLink,
    "VoucherLink",
    "The content of a voucher's QR code: `HTTP://HOST:PORT/V/<VOUCHER-ID>`. Whoever has it can redeem the voucher."
);
string_schema!(
    crate::PacketLink,
    "PacketLink",
    "The claim link of a red-packet set: `HTTP://HOST:PORT/R/<SET-ID>`."
);
string_schema!(
    crate::Currency,
    "Currency",
    "An ISO 4217 alphabetic currency code.",
    pattern = "^[A-Z]{3}$",
    example = "EUR"
);
string_schema!(
    crate::device::HardwareId,
    "HardwareId",
    "A device's hardware id in canonical form (no spaces, hex digits upper case)."
);
string_schema!(
    crate::device::OsVersion,
    "OsVersion",
    "An OS version: dot-separated numbers compared part by part (`1.10` is newer than `1.9`).",
    pattern = "^[0-9]+(\\.[0-9]+)*$",
    example = "1.4.2"
);
