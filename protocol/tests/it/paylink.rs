//! Property tests of the QR content parsers, `PayLink::parse` and `ServerUrl::parse`:
//! well-formed links in every spelling, mutated links, random text, long hosts.

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use protocol::{MAX_SERVER_URL_LEN, MAX_URL_LEN, OrderId, PayLink, ServerUrl};

use crate::support::{check, mutated_text, mutations, random_text, timed};
use crate::values::{link, server};

/// Well-formed pay links, each checked to parse to what it was made from.
const VALID_LINK_CASES: u32 = 50_000;
/// Well-formed links and server URLs after one to four byte mutations.
const MUTATED_LINK_CASES: u32 = 100_000;
/// Random text, fed to both parsers.
const RANDOM_TEXT_CASES: u32 = 100_000;
/// Server URLs with long host names, around the length limits.
const LONG_SERVER_CASES: u32 = 20_000;

/// Inputs per run of this module's properties (well-formed links and servers both use
/// [`VALID_LINK_CASES`]).
pub(crate) const CASES: u32 =
    2 * VALID_LINK_CASES + MUTATED_LINK_CASES + RANDOM_TEXT_CASES + LONG_SERVER_CASES;

/// Characters of URLs, so that random text gets past the first checks more often.
const URL_ALPHABET: &str = "[hHtTpPsS:/\\[\\]0-9a-zA-Z.%?#@ -]";

/// A parsed link re-encodes to text that parses back to it, in upper and lower case
/// and as JSON, and the text fits the length limit.
fn link_round_trips(link: &PayLink) -> Result<(), TestCaseError> {
    let text = link.to_string();
    prop_assert!(text.len() <= MAX_URL_LEN, "{} bytes: {text}", text.len());
    prop_assert_eq!(&PayLink::parse(&text), &Ok(link.clone()));
    prop_assert_eq!(&PayLink::parse(&text.to_lowercase()), &Ok(link.clone()));
    let json = serde_json::to_string(link).expect("a link serialises");
    prop_assert_eq!(
        &serde_json::from_str::<PayLink>(&json).ok(),
        &Some(link.clone())
    );
    server_round_trips(&link.server)
}

/// A parsed server URL is canonical (lower case, no path), parses back to itself and
/// fits in a pay link that parses back to the same server and order.
fn server_round_trips(server: &ServerUrl) -> Result<(), TestCaseError> {
    let text = server.as_str();
    prop_assert!(
        text.len() <= MAX_SERVER_URL_LEN,
        "{} bytes: {text}",
        text.len()
    );
    prop_assert_eq!(text, text.to_ascii_lowercase());
    prop_assert!(!text.ends_with('/'), "{text}");
    prop_assert_eq!(&ServerUrl::parse(text), &Ok(server.clone()));
    let json = serde_json::to_string(server).expect("a server URL serialises");
    prop_assert_eq!(
        &serde_json::from_str::<ServerUrl>(&json).ok(),
        &Some(server.clone())
    );
    let link = PayLink::new(server.clone(), OrderId::from_bytes([0xa5; 16]));
    prop_assert_eq!(&PayLink::parse(&link.to_string()), &Ok(link));
    Ok(())
}

/// Whatever `text` is, both parsers answer in time, and what they accept round-trips.
fn parse_anything(text: &str) -> Result<(), TestCaseError> {
    if let Ok(link) = timed(|| PayLink::parse(text)) {
        link_round_trips(&link)?;
    }
    if let Ok(server) = timed(|| ServerUrl::parse(text)) {
        server_round_trips(&server)?;
    }
    Ok(())
}

#[test]
fn well_formed_links_parse_to_what_they_name() {
    check(VALID_LINK_CASES, link(), |l| {
        let link = timed(|| PayLink::parse(&l.written));
        let link = link.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", l.written)))?;
        prop_assert_eq!(link.server.as_str(), l.server.as_str());
        prop_assert_eq!(&link.order, &l.order);
        link_round_trips(&link)
    });
}

#[test]
fn well_formed_servers_parse_to_their_canonical_form() {
    check(VALID_LINK_CASES, server(), |s| {
        let server = timed(|| ServerUrl::parse(&s.written));
        let server = server.map_err(|e| TestCaseError::fail(format!("{:?}: {e}", s.written)))?;
        prop_assert_eq!(server.as_str(), s.canonical.as_str());
        server_round_trips(&server)
    });
}

#[test]
fn mutated_links_and_servers_parse_or_are_refused() {
    let strategy = (link(), server(), mutations(), mutations());
    check(MUTATED_LINK_CASES, strategy, |(l, s, lm, sm)| {
        parse_anything(&mutated_text(&l.written, &lm))?;
        parse_anything(&mutated_text(&s.written, &sm))
    });
}

#[test]
fn random_text_is_parsed_or_refused() {
    check(RANDOM_TEXT_CASES, random_text(URL_ALPHABET, 300), |text| {
        parse_anything(&text)
    });
}

#[test]
fn long_servers_fit_in_a_pay_link_or_are_refused() {
    let strategy = (
        prop_oneof![Just("http"), Just("HTTPS")],
        "[a-z0-9.-]{150,260}",
        proptest::option::of(any::<u16>()),
        any::<bool>(),
    );
    check(
        LONG_SERVER_CASES,
        strategy,
        |(scheme, host, port, slash)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let slash = if slash { "/" } else { "" };
            parse_anything(&format!("{scheme}://{host}{port}{slash}"))
        },
    );
}
