//! Property tests of the discovery record parsers: `DiscoveryRecord::from_txt` (mDNS
//! TXT properties) and its JSON form (the BLE GATT characteristic's value).

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use protocol::discovery::{MAX_NAME_CHARS, keys};
use protocol::{Announcement, DiscoveryRecord};

use crate::support::{Mutation, check, mutated_text, mutations, random_text, timed};
use crate::values::record;

/// Records as a TV builds them, through TXT properties and JSON and back.
const VALID_RECORD_CASES: u32 = 20_000;
/// TXT properties of a well-formed record after one to four edits.
const MUTATED_TXT_CASES: u32 = 60_000;
/// Random TXT properties.
const RANDOM_TXT_CASES: u32 = 50_000;
/// JSON of a well-formed record after byte or structure edits.
const MUTATED_JSON_CASES: u32 = 60_000;
/// Random bytes and JSON-like text.
const RANDOM_JSON_CASES: u32 = 50_000;

/// Inputs per run of this module's properties.
pub(crate) const CASES: u32 = VALID_RECORD_CASES
    + VALID_RECORD_CASES / 4
    + MUTATED_TXT_CASES
    + RANDOM_TXT_CASES
    + MUTATED_JSON_CASES
    + RANDOM_JSON_CASES;

/// Longest TXT string DNS allows (one length byte), in bytes.
const MAX_TXT_STRING_BYTES: usize = 255;

/// Every key the record uses.
const KEYS: &[&str] = &[
    keys::VERSION,
    keys::ORDER,
    keys::CODE,
    keys::AMOUNT,
    keys::CURRENCY,
    keys::SERVER,
    keys::TV_NAME,
    keys::TV_ID,
    keys::ITEM,
    keys::KIND,
    keys::SET,
    keys::FROM,
    keys::MESSAGE,
];

/// A record parsed from the air re-encodes to TXT properties that fit DNS and parse
/// back to it, keeps the clipping rules, and round-trips through JSON.
fn record_round_trips(r: &DiscoveryRecord) -> Result<(), TestCaseError> {
    for name in [&r.tv_name, &r.item] {
        prop_assert!(name.chars().count() <= MAX_NAME_CHARS, "{name:?}");
        prop_assert!(!name.chars().any(char::is_control), "{name:?}");
    }
    let txt = r.to_txt();
    for (k, v) in &txt {
        let len = k.len() + 1 + v.len();
        prop_assert!(len <= MAX_TXT_STRING_BYTES, "{k}={v:?} is {len} bytes");
    }
    let map: HashMap<String, String> = txt.into_iter().collect();
    prop_assert_eq!(&DiscoveryRecord::from_txt(&map), &Ok(r.clone()));
    json_round_trips(r)
}

/// A record's JSON parses back to the same record.
fn json_round_trips(r: &DiscoveryRecord) -> Result<(), TestCaseError> {
    let json = serde_json::to_vec(r).expect("a record serialises");
    let back = serde_json::from_slice::<DiscoveryRecord>(&json);
    prop_assert_eq!(back.ok(), Some(r.clone()));
    Ok(())
}

/// Whatever the properties are, `from_txt` answers in time, and what it accepts
/// round-trips.
fn parse_txt(props: &HashMap<String, String>) -> Result<(), TestCaseError> {
    if let Ok(a) = timed(|| Announcement::from_txt(props)) {
        announcement_round_trips(&a)?;
    }
    match timed(|| DiscoveryRecord::from_txt(props)) {
        Ok(r) => record_round_trips(&r),
        Err(_) => Ok(()),
    }
}

/// Any kind of record parsed from the air keeps the clipping rules, fits DNS, and
/// round-trips through TXT and JSON.
fn announcement_round_trips(a: &Announcement) -> Result<(), TestCaseError> {
    let txt = a.to_txt();
    for (k, v) in &txt {
        if [keys::TV_NAME, keys::FROM, keys::MESSAGE].contains(&k.as_str()) {
            prop_assert!(v.chars().count() <= MAX_NAME_CHARS, "{k}={v:?}");
            prop_assert!(!v.chars().any(protocol::text::is_invisible), "{k}={v:?}");
        }
        let len = k.len() + 1 + v.len();
        prop_assert!(len <= MAX_TXT_STRING_BYTES, "{k}={v:?} is {len} bytes");
    }
    let map: HashMap<String, String> = txt.into_iter().collect();
    prop_assert_eq!(&Announcement::from_txt(&map), &Ok(a.clone()));
    let json = serde_json::to_vec(a).expect("a record serialises");
    prop_assert_eq!(Announcement::from_json(&json).ok(), Some(a.clone()));
    Ok(())
}

/// Whatever the bytes are, JSON parsing answers in time, and what it accepts
/// round-trips through JSON.
fn parse_json(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(a) = timed(|| Announcement::from_json(bytes)) {
        let json = serde_json::to_vec(&a).expect("a record serialises");
        prop_assert_eq!(Announcement::from_json(&json).ok(), Some(a));
    }
    match timed(|| serde_json::from_slice::<DiscoveryRecord>(bytes)) {
        Ok(r) => json_round_trips(&r),
        Err(_) => Ok(()),
    }
}

/// One edit of a record's TXT properties. Indexes are taken modulo the number of
/// properties.
#[derive(Clone, Debug)]
enum TxtEdit {
    /// Drops a property.
    Remove(usize),
    /// Mutates a value's bytes (read back lossily, as a TXT value may not be UTF-8).
    Value(usize, Vec<Mutation>),
    /// Mutates a key's bytes.
    Key(usize, Vec<Mutation>),
    /// Replaces a value with unrelated text.
    Replace(usize, String),
    /// Adds a property: an unknown key, or a known key again with another value.
    Add(String, String),
}

fn txt_edit() -> impl Strategy<Value = TxtEdit> {
    let key = prop_oneof![
        proptest::sample::select(KEYS).prop_map(str::to_owned),
        random_text("[a-zA-Z=]", 12),
    ];
    prop_oneof![
        1 => any::<usize>().prop_map(TxtEdit::Remove),
        4 => (any::<usize>(), mutations()).prop_map(|(i, m)| TxtEdit::Value(i, m)),
        1 => (any::<usize>(), mutations()).prop_map(|(i, m)| TxtEdit::Key(i, m)),
        2 => (any::<usize>(), random_text("[0-9A-Za-z:/.-]", 40))
            .prop_map(|(i, v)| TxtEdit::Replace(i, v)),
        1 => (key, random_text("[0-9A-Za-z:/.-]", 40)).prop_map(|(k, v)| TxtEdit::Add(k, v)),
    ]
}

/// `props` after `edits`, as the map an mDNS browser hands over (a later duplicate
/// key wins).
fn edited(mut props: Vec<(String, String)>, edits: &[TxtEdit]) -> HashMap<String, String> {
    for edit in edits {
        let n = props.len();
        match edit {
            TxtEdit::Remove(i) if n > 0 => {
                props.remove(i % n);
            }
            TxtEdit::Value(i, m) if n > 0 => props[i % n].1 = mutated_text(&props[i % n].1, m),
            TxtEdit::Key(i, m) if n > 0 => props[i % n].0 = mutated_text(&props[i % n].0, m),
            TxtEdit::Replace(i, v) if n > 0 => props[i % n].1.clone_from(v),
            TxtEdit::Add(k, v) => props.push((k.clone(), v.clone())),
            // Edits of a property that an empty record does not have change nothing.
            _ => {}
        }
    }
    props.into_iter().collect()
}

#[test]
fn records_round_trip_through_txt_and_json() {
    check(VALID_RECORD_CASES, record(), |r| {
        let map: HashMap<String, String> = r.to_txt().into_iter().collect();
        prop_assert_eq!(&timed(|| DiscoveryRecord::from_txt(&map)), &Ok(r.clone()));
        let pretty = serde_json::to_vec_pretty(&r).expect("a record serialises");
        prop_assert_eq!(parse_json_ok(&pretty), Some(r.clone()));
        // Through a `Value` the keys come out sorted: another field order.
        let sorted = serde_json::to_value(&r)
            .and_then(|v| serde_json::to_vec(&v))
            .expect("a record serialises");
        prop_assert_eq!(parse_json_ok(&sorted), Some(r.clone()));
        record_round_trips(&r)
    });
}

#[test]
fn packet_and_presence_records_round_trip() {
    check(VALID_RECORD_CASES / 4, crate::values::announcement(), |a| {
        announcement_round_trips(&a)?;
        let edits = vec![TxtEdit::Remove(0)];
        parse_txt(&edited(a.to_txt(), &edits))
    });
}

fn parse_json_ok(bytes: &[u8]) -> Option<DiscoveryRecord> {
    timed(|| serde_json::from_slice(bytes)).ok()
}

#[test]
fn mutated_txt_properties_parse_or_are_refused() {
    let edits = proptest::collection::vec(txt_edit(), 1..=4);
    let any_record = prop_oneof![
        record().prop_map(Announcement::Order),
        crate::values::announcement()
    ];
    check(MUTATED_TXT_CASES, (any_record, edits), |(r, edits)| {
        parse_txt(&edited(r.to_txt(), &edits))
    });
}

#[test]
fn random_txt_properties_parse_or_are_refused() {
    let key = prop_oneof![
        3 => proptest::sample::select(KEYS).prop_map(str::to_owned),
        1 => random_text("[a-z]", 8),
    ];
    let value = || random_text("[0-9A-Za-z:/.-]", 40);
    let any_props = proptest::collection::hash_map(key, value(), 0..12);
    // Every key present, each with random text: more inputs get past the first keys.
    let all_keys = proptest::collection::vec(value(), KEYS.len()).prop_map(|values| {
        KEYS.iter()
            .map(|k| (*k).to_owned())
            .zip(values)
            .collect::<HashMap<_, _>>()
    });
    check(
        RANDOM_TXT_CASES,
        prop_oneof![any_props, all_keys],
        |props| parse_txt(&props),
    );
}

/// One structural edit of a record's JSON object.
#[derive(Clone, Debug)]
enum JsonEdit {
    /// Drops a field (index modulo the number of fields).
    Remove(usize),
    /// Replaces a field's value.
    Replace(usize, serde_json::Value),
    /// Adds a field.
    Add(String, serde_json::Value),
}

/// Any JSON value, nested a few levels, with edge-case numbers and strings.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "(?s).{0,40}".prop_map(Value::String),
        "[A-Z2-7]{26}|[a-z]{3}|[BCDFGHJKLMNPQRSTVWXZ]{8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn json_edit() -> impl Strategy<Value = JsonEdit> {
    let field = prop_oneof![
        proptest::sample::select(
            &[
                "order",
                "short_code",
                "amount",
                "server",
                "tv_name",
                "tv_id",
                "item",
                "minor",
                "currency",
            ][..]
        )
        .prop_map(str::to_owned),
        "[a-z_]{1,10}",
    ];
    prop_oneof![
        1 => any::<usize>().prop_map(JsonEdit::Remove),
        3 => (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        1 => (field, json_value()).prop_map(|(k, v)| JsonEdit::Add(k, v)),
    ]
}

/// The record's JSON after structural edits; an edit addressed to the nested `amount`
/// object applies there when the index is odd.
fn edited_json(r: &DiscoveryRecord, edits: &[JsonEdit]) -> Vec<u8> {
    let mut value = serde_json::to_value(r).expect("a record serialises");
    for edit in edits {
        let Some(top) = value.as_object_mut() else {
            break;
        };
        let nested = match edit {
            JsonEdit::Remove(i) | JsonEdit::Replace(i, _) => i % 2 == 1,
            JsonEdit::Add(..) => false,
        };
        let obj = match top.get_mut("amount").and_then(|a| a.as_object_mut()) {
            Some(amount) if nested => amount,
            _ => top,
        };
        let keys: Vec<String> = obj.keys().cloned().collect();
        match edit {
            JsonEdit::Remove(i) if !keys.is_empty() => {
                obj.remove(&keys[i / 2 % keys.len()]);
            }
            JsonEdit::Replace(i, v) if !keys.is_empty() => {
                obj.insert(keys[i / 2 % keys.len()].clone(), v.clone());
            }
            JsonEdit::Add(k, v) => {
                obj.insert(k.clone(), v.clone());
            }
            // Edits of a field that an empty object does not have change nothing.
            _ => {}
        }
    }
    serde_json::to_vec(&value).expect("a value serialises")
}

#[test]
fn mutated_record_json_parses_or_is_refused() {
    let strategy = prop_oneof![
        (record(), mutations()).prop_map(|(r, m)| {
            let json = serde_json::to_vec(&r).expect("a record serialises");
            crate::support::apply(&json, &m)
        }),
        (record(), proptest::collection::vec(json_edit(), 1..=3))
            .prop_map(|(r, edits)| edited_json(&r, &edits)),
    ];
    check(MUTATED_JSON_CASES, strategy, |bytes| parse_json(&bytes));
}

#[test]
fn random_json_parses_or_is_refused() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        random_text("[{}\\[\\]\":,0-9a-z\\\\ .eE+-]", 300).prop_map(String::into_bytes),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("a value serialises")),
    ];
    check(RANDOM_JSON_CASES, strategy, |bytes| parse_json(&bytes));
}
