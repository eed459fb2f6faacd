//! Shared pieces of the property tests: the runner settings, the per-call time limit,
//! the memory check and the byte mutations applied to well-formed inputs.

use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Longest one call of a text or byte parser may take, in milliseconds. The parsers
/// take microseconds; the margin is for a busy, unoptimised CI build.
pub(crate) const PARSE_LIMIT_MS: u64 = 50;

/// Highest resident memory this test process may reach, in bytes. Every input is at
/// most a few hundred kilobytes, so a parser that allocated in proportion to a length
/// it read (rather than to its input) would cross it.
pub(crate) const MAX_PROCESS_RSS_BYTES: u64 = 512 * 1024 * 1024;

/// Longest run of one repeated byte or token that a mutation inserts (overlong fields).
pub(crate) const MAX_REPEAT: usize = 100_000;

/// Runs `test` on `cases` inputs drawn from `strategy`, then checks the process's memory.
///
/// Nothing is written to disk on failure (`failure_persistence: None`): the failing
/// input, shrunk, is in the panic message.
#[track_caller]
pub(crate) fn check<S: Strategy>(
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let start = Instant::now();
    if let Err(e) = runner.run(&strategy, test) {
        panic!("{e}");
    }
    // Shown with `--nocapture`: what each property costs in CI time.
    let test = std::thread::current().name().unwrap_or("?").to_owned();
    println!("{test}: {cases} cases in {:?}", start.elapsed());
    check_memory();
}

/// Fails when the process's peak resident memory is over [`MAX_PROCESS_RSS_BYTES`].
#[track_caller]
pub(crate) fn check_memory() {
    if let Some(peak) = peak_rss_bytes() {
        assert!(
            peak <= MAX_PROCESS_RSS_BYTES,
            "peak resident memory {peak} bytes is over {MAX_PROCESS_RSS_BYTES}"
        );
    }
}

/// The process's peak resident memory (`VmHWM`), where the system reports it (Linux).
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `f` and fails if it took longer than [`PARSE_LIMIT_MS`]. A slow call is timed
/// once more, so that only a call that is slow twice fails, not one whose thread was
/// merely descheduled on a loaded machine.
#[track_caller]
pub(crate) fn timed<T>(f: impl Fn() -> T) -> T {
    let limit = Duration::from_millis(PARSE_LIMIT_MS);
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    if took > limit {
        let again = Instant::now();
        drop(f());
        let retook = again.elapsed();
        assert!(
            retook <= limit,
            "the call took {took:?}, then {retook:?}; the limit is {limit:?}"
        );
    }
    out
}

/// One edit of an input's bytes. Positions are raw numbers taken modulo the input's
/// length, so one edit applies to an input of any length.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    /// Flips one bit of one byte.
    FlipBit(usize, u8),
    /// Overwrites one byte.
    SetByte(usize, u8),
    /// Cuts the input short.
    Truncate(usize),
    /// Removes up to `n` bytes.
    Remove(usize, usize),
    /// Inserts bytes.
    Insert(usize, Vec<u8>),
    /// Inserts a token repeated `n` times: overlong fields, huge numbers, deep nesting.
    Repeat(usize, Vec<u8>, usize),
    /// Inserts a non-ASCII character (UTF-8 encoded).
    NonAscii(usize, char),
    /// Copies a slice of the input to another place in it.
    Duplicate(usize, usize, usize),
    /// Swaps the ASCII letter case of one byte.
    SwapCase(usize),
}

/// Tokens worth repeating: digits (huge numbers), brackets (nesting), separators,
/// escapes, whitespace and bytes that are not UTF-8.
const TOKENS: &[&[u8]] = &[
    b"9",
    b"0",
    b"A",
    b"[",
    b"{\"a\":",
    b"\\u0000",
    b"\\ud800",
    b"/",
    b":",
    b".",
    b"-",
    b" ",
    b"\n",
    b"%",
    b"\xff",
    b"\xc3",
    "\u{202e}".as_bytes(),
];

/// A count that is usually small and sometimes up to [`MAX_REPEAT`].
fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        16 => 1usize..64,
        3 => 64usize..1_000,
        1 => 1_000usize..=MAX_REPEAT,
    ]
}

pub(crate) fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<usize>(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
        2 => any::<usize>().prop_map(Mutation::Truncate),
        2 => (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Remove(i, n)),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        2 => (any::<usize>(), proptest::sample::select(TOKENS), count())
            .prop_map(|(i, t, n)| Mutation::Repeat(i, t.to_vec(), n)),
        2 => (any::<usize>(), any::<char>()).prop_map(|(i, c)| Mutation::NonAscii(i, c)),
        1 => (any::<usize>(), any::<usize>(), 1usize..32)
            .prop_map(|(a, b, n)| Mutation::Duplicate(a, b, n)),
        2 => any::<usize>().prop_map(Mutation::SwapCase),
    ]
}

/// One to four mutations.
pub(crate) fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 1..=4)
}

/// The position `raw` picks in `0..len`, or 0 for an empty input.
fn at(raw: usize, len: usize) -> usize {
    raw.checked_rem(len).unwrap_or(0)
}

/// The position `raw` picks in `0..=len` (inserting at the end is allowed).
fn gap(raw: usize, len: usize) -> usize {
    raw % (len + 1)
}

/// `bytes` inserted into `out` at `at`, copied in bulk (an overlong run costs a few
/// copies, not a loop per byte, in this unoptimised test build).
fn insert(out: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    let tail = out.split_off(at);
    out.extend_from_slice(bytes);
    out.extend_from_slice(&tail);
}

/// `input` with `mutations` applied in order.
pub(crate) fn apply(input: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut out = input.to_vec();
    for m in mutations {
        let len = out.len();
        match m {
            Mutation::FlipBit(i, bit) if len > 0 => out[at(*i, len)] ^= 1 << bit,
            Mutation::SetByte(i, b) if len > 0 => out[at(*i, len)] = *b,
            Mutation::Truncate(i) => out.truncate(gap(*i, len)),
            Mutation::Remove(i, n) if len > 0 => {
                let a = at(*i, len);
                let tail = out.split_off((a + n).min(len));
                out.truncate(a);
                out.extend_from_slice(&tail);
            }
            Mutation::Insert(i, bytes) => insert(&mut out, gap(*i, len), bytes),
            Mutation::Repeat(i, token, n) => insert(&mut out, gap(*i, len), &token.repeat(*n)),
            Mutation::NonAscii(i, c) => {
                let mut buf = [0u8; 4];
                insert(&mut out, gap(*i, len), c.encode_utf8(&mut buf).as_bytes());
            }
            Mutation::Duplicate(from, to, n) if len > 0 => {
                let a = at(*from, len);
                let piece = out[a..(a + n).min(len)].to_vec();
                insert(&mut out, gap(*to, len), &piece);
            }
            Mutation::SwapCase(i) if len > 0 => {
                let b = &mut out[at(*i, len)];
                *b = if b.is_ascii_lowercase() {
                    b.to_ascii_uppercase()
                } else {
                    b.to_ascii_lowercase()
                };
            }
            // Edits of a byte that an empty input does not have leave it empty.
            _ => {}
        }
    }
    out
}

/// `text` mutated, decoded as UTF-8 with invalid sequences replaced (as a text field
/// read from the air would be).
pub(crate) fn mutated_text(text: &str, mutations: &[Mutation]) -> String {
    String::from_utf8_lossy(&apply(text.as_bytes(), mutations)).into_owned()
}

/// Arbitrary text: any characters, random bytes read as UTF-8, or a string over
/// `alphabet` (a regex character class such as `[a-z:/]`) that is more likely to get
/// past a parser's first checks.
pub(crate) fn random_text(alphabet: &str, max_len: usize) -> impl Strategy<Value = String> {
    let near = proptest::string::string_regex(&format!("{alphabet}{{0,{max_len}}}"))
        .expect("a valid regex");
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(any::<u8>(), 0..max_len)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        near,
    ]
}

/// Applies a random letter case to `s`: bit `i % 64` of `mask` upper-cases byte `i`.
pub(crate) fn with_case(s: &str, mask: u64) -> String {
    s.bytes()
        .enumerate()
        .map(|(i, b)| {
            if mask >> (i % 64) & 1 == 1 {
                b.to_ascii_uppercase() as char
            } else {
                b.to_ascii_lowercase() as char
            }
        })
        .collect()
}

#[test]
fn mutations_do_what_they_say() {
    let i = |n: usize| n;
    assert_eq!(apply(b"abc", &[Mutation::Truncate(i(0))]), b"");
    assert_eq!(apply(b"abc", &[Mutation::SetByte(i(0), b'x')]), b"xbc");
    assert_eq!(
        apply(b"ab", &[Mutation::Repeat(i(0), b"9".to_vec(), 3)]),
        b"999ab"
    );
    assert_eq!(apply(b"", &[Mutation::FlipBit(i(5), 1)]), b"");
    assert_eq!(with_case("http", 0b0101), "HtTp");
}
