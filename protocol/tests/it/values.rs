//! Strategies for well-formed protocol values: server origins, pay links and
//! discovery records, each with the parts a test needs to check what parsed.

use proptest::prelude::*;
use protocol::{Currency, DeviceId, DiscoveryRecord, Money, OrderId, ServerUrl, ShortCode};

use crate::support::with_case;

/// A host as a TV's configuration might name it: IPv4, a DNS name, IPv6 in brackets.
pub(crate) fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|b| format!("{}.{}.{}.{}", b[0], b[1], b[2], b[3])),
        "[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,15}[a-z0-9])?){0,3}",
        any::<[u16; 8]>().prop_map(|g| format!("[{}]", g.map(|x| format!("{x:x}")).join(":"))),
        Just("[::1]".to_owned()),
        Just("localhost".to_owned()),
    ]
}

/// A server origin as written (any letter case, maybe a trailing `/`) and its
/// canonical form.
#[derive(Clone, Debug)]
pub(crate) struct Server {
    pub(crate) written: String,
    pub(crate) canonical: String,
}

pub(crate) fn server() -> impl Strategy<Value = Server> {
    (
        prop_oneof![Just("http"), Just("https")],
        host(),
        proptest::option::of(any::<u16>()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(scheme, host, port, slash, case)| {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let canonical = format!("{scheme}://{host}{port}");
            let mut written = with_case(&canonical, case);
            if slash {
                written.push('/');
            }
            Server { written, canonical }
        })
}

/// A pay link as a QR code might carry it (any letter case, `/P/` or `/p/`, maybe
/// surrounded by whitespace) and what it names.
#[derive(Clone, Debug)]
pub(crate) struct Link {
    pub(crate) written: String,
    pub(crate) server: String,
    pub(crate) order: OrderId,
}

/// Whitespace that a QR decoder or a paste may leave around a link.
const SPACES: &[&str] = &["", " ", "\t", "\n", "\r\n", "\u{3000}"];

pub(crate) fn link() -> impl Strategy<Value = Link> {
    (
        server(),
        any::<[u8; 16]>(),
        any::<u64>(),
        any::<u64>(),
        proptest::sample::select(SPACES),
        proptest::sample::select(SPACES),
    )
        .prop_map(|(server, id, case, id_case, before, after)| {
            let order = OrderId::from_bytes(id);
            let written = format!(
                "{before}{}/{}/{}{after}",
                with_case(&server.canonical, case),
                if case & 1 == 1 { "P" } else { "p" },
                with_case(order.as_str(), id_case),
            );
            Link {
                written,
                server: server.canonical,
                order,
            }
        })
}

/// A TV or item name: printable ASCII, any characters (control ones included) or
/// arbitrary text, some longer than a record keeps.
fn name() -> impl Strategy<Value = String> {
    prop_oneof!["[ -~]{0,40}", "(?s).{0,80}", any::<String>(),]
}

/// Red-packet and presence records as a TV builds them.
pub(crate) fn announcement() -> impl Strategy<Value = protocol::Announcement> {
    (
        any::<[u8; 16]>(),
        proptest::collection::vec(
            proptest::sample::select(&protocol::SHORT_CODE_ALPHABET[..]),
            8,
        ),
        server(),
        name(),
        "[A-Za-z0-9._:-]{4,64}",
        name(),
        name(),
        any::<bool>(),
    )
        .prop_map(
            |(set, code, server, tv_name, tv_id, from, message, packets)| {
                let server = ServerUrl::parse(&server.written).expect("a well-formed server");
                let tv_id = DeviceId::parse(&tv_id).expect("a well-formed device id");
                if packets {
                    protocol::Announcement::Packets(protocol::PacketsRecord::new(
                        protocol::PacketSetId::from_bytes(set),
                        ShortCode::parse(&String::from_utf8(code).expect("ASCII letters"))
                            .expect("letters from the alphabet"),
                        server,
                        &tv_name,
                        tv_id,
                        &from,
                        &message,
                    ))
                } else {
                    protocol::Announcement::Tv(protocol::TvPresence::new(server, &tv_name, tv_id))
                }
            },
        )
}

/// A discovery record as a TV builds it.
pub(crate) fn record() -> impl Strategy<Value = DiscoveryRecord> {
    (
        any::<[u8; 16]>(),
        proptest::collection::vec(
            proptest::sample::select(&protocol::SHORT_CODE_ALPHABET[..]),
            8,
        ),
        any::<u64>(),
        "[A-Za-z]{3}",
        server(),
        name(),
        "[A-Za-z0-9._:-]{4,64}",
        name(),
    )
        .prop_map(
            |(order, code, minor, currency, server, tv_name, tv_id, item)| {
                DiscoveryRecord::new(
                    OrderId::from_bytes(order),
                    ShortCode::parse(&String::from_utf8(code).expect("ASCII letters"))
                        .expect("letters from the alphabet"),
                    Money::new(minor, Currency::parse(&currency).expect("three letters")),
                    ServerUrl::parse(&server.written).expect("a well-formed server"),
                    &tv_name,
                    DeviceId::parse(&tv_id).expect("a well-formed device id"),
                    &item,
                )
            },
        )
}
