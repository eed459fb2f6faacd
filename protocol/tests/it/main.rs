//! The protocol's integration tests (one binary): property tests that feed the parsers
//! of untrusted input (pay links from QR codes, mDNS TXT records, BLE adverts, the GATT
//! record's JSON) well-formed, mutated and random inputs, and check that none panics,
//! each answers in time and whatever parses re-encodes to the same value.

mod ble;
mod discovery;
mod paylink;
mod support;
mod values;

/// The bar: at least a million generated and mutated inputs per run across the
/// text and byte parsers (the companion's picture and GATT tests come on top).
const MIN_TOTAL_CASES: u32 = 1_000_000;

const _: () = assert!(paylink::CASES + discovery::CASES + ble::CASES >= MIN_TOTAL_CASES);
