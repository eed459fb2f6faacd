//! "Pay with phone number" (SPEC W2): the on-screen number pad and its waiting screen, a
//! sub-state of the order screen, so the order keeps being followed, announced and
//! payable by QR while they are up.

use protocol::{ErrorCode, OrderId, PhoneNumber, PhonePayKind, PhonePayStarted};

use super::{App, Choice, Effect, Failure, Key, Screen};

/// Most digits the phone-number pad takes: the longest E.164 number, country code included.
pub const MAX_PHONE_DIGITS: usize = 15;

/// The country calling code prefilled on the pad when nothing else is configured: +1
/// (North America, and the stub server's demo numbers).
pub const DEFAULT_COUNTRY_CODE: &str = "1";

/// A key of the on-screen number pad.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadKey {
    Digit(u8),
    /// ⌫: deletes the last digit.
    Delete,
    /// ✓: sends the number.
    Send,
}

/// Columns of the on-screen number pad.
pub const PAD_COLUMNS: usize = 3;

/// The on-screen number pad, row by row, as laid out on the TV (a phone's layout).
pub const PAD: [PadKey; 12] = [
    PadKey::Digit(1),
    PadKey::Digit(2),
    PadKey::Digit(3),
    PadKey::Digit(4),
    PadKey::Digit(5),
    PadKey::Digit(6),
    PadKey::Digit(7),
    PadKey::Digit(8),
    PadKey::Digit(9),
    PadKey::Delete,
    PadKey::Digit(0),
    PadKey::Send,
];

/// Index of a key in [`PAD`].
fn pad_index(key: PadKey) -> usize {
    PAD.iter().position(|k| *k == key).unwrap_or(0)
}

/// Two-digit country calling codes (ITU-T E.164 zones 2–9); every other code starting
/// with 2–9 has three digits, and those starting with 1 or 7 have one.
const TWO_DIGIT_CODES: [u16; 44] = [
    20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54, 55, 56,
    57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98,
];

/// How many of `digits`' first digits are the country calling code (when known).
pub fn country_code_len(digits: &str) -> usize {
    let len = if digits.starts_with(['1', '7']) {
        1
    } else {
        match digits.get(..2).and_then(|p| p.parse::<u16>().ok()) {
            Some(p) if TWO_DIGIT_CODES.contains(&p) => 2,
            Some(_) => 3,
            None => 2,
        }
    };
    len.min(digits.len())
}

/// Countries whose numbers all have the same length (country code included) — or whose
/// longest numbers do — so the pad knows a number is complete. Countries with numbers
/// of many lengths (e.g. Germany, Austria) are left out: there the viewer moves to ✓.
const FULL_LENGTHS: [(&str, usize); 34] = [
    ("1", 11),   // North America
    ("7", 11),   // Russia, Kazakhstan
    ("20", 12),  // Egypt
    ("27", 11),  // South Africa
    ("30", 12),  // Greece
    ("31", 11),  // Netherlands
    ("32", 11),  // Belgium
    ("33", 11),  // France
    ("34", 11),  // Spain
    ("39", 12),  // Italy
    ("40", 11),  // Romania
    ("41", 11),  // Switzerland
    ("44", 12),  // United Kingdom
    ("45", 10),  // Denmark
    ("47", 10),  // Norway
    ("48", 11),  // Poland
    ("52", 12),  // Mexico
    ("55", 13),  // Brazil
    ("56", 11),  // Chile
    ("57", 12),  // Colombia
    ("61", 11),  // Australia
    ("63", 12),  // Philippines
    ("65", 10),  // Singapore
    ("66", 11),  // Thailand
    ("81", 12),  // Japan
    ("84", 12),  // Vietnam
    ("86", 13),  // China
    ("90", 12),  // Turkey
    ("91", 12),  // India
    ("351", 12), // Portugal
    ("353", 12), // Ireland
    ("852", 11), // Hong Kong
    ("971", 12), // United Arab Emirates
    ("972", 12), // Israel
];

/// How many digits a complete number starting with `digits`' country code has, when
/// that country's numbers have one length.
pub fn full_number_len(digits: &str) -> Option<usize> {
    let cc = &digits[..country_code_len(digits)];
    FULL_LENGTHS
        .iter()
        .find(|(code, _)| *code == cc)
        .map(|(_, len)| *len)
}

/// Where "pay with phone number" is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhonePhase {
    /// Typing on the pad; `message` explains why the last OK on ✓ (or a digit) was refused.
    Typing { message: Option<String> },
    /// The number went to the server; waiting for its answer.
    Sending,
    /// The server texted the number: waiting for the payment (the order's stream says).
    Sent {
        kind: PhonePayKind,
        /// The number as the server masked it, e.g. `+••••••••001`.
        phone_masked: String,
        /// "Back to the QR code" (primary) or "Edit number" (secondary).
        focus: Choice,
    },
}

/// The phone-number pad and its waiting screen (SPEC W2).
///
/// The country code is prefilled. Keys on the pad: digits type directly; arrows move
/// over the pad and OK presses the focused key; after a digit the focus is on that digit,
/// and on ✓ once the number is complete. Back deletes the last digit, and with nothing
/// typed (only the prefilled code, or nothing) returns to the order screen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneEntry {
    /// Digits typed, country code first, at most [`MAX_PHONE_DIGITS`].
    pub digits: String,
    /// The country code the pad opened with.
    pub prefill: String,
    /// Index into [`PAD`] of the focused pad key.
    pub pad_focus: usize,
    pub phase: PhonePhase,
}

impl PhoneEntry {
    /// The pad with `country_code` typed, focus on its middle key.
    pub fn new(country_code: &str) -> Self {
        Self {
            digits: country_code.to_owned(),
            prefill: country_code.to_owned(),
            pad_focus: pad_index(PadKey::Digit(5)),
            phase: PhonePhase::Typing { message: None },
        }
    }

    /// The number typed, if it is a whole phone number that can be sent.
    pub fn number(&self) -> Option<PhoneNumber> {
        PhoneNumber::parse(&self.digits).ok()
    }

    /// Whether the number has all the digits its country's numbers have.
    pub fn is_complete(&self) -> bool {
        self.number().is_some()
            && (self.digits.len() >= MAX_PHONE_DIGITS
                || full_number_len(&self.digits).is_some_and(|n| self.digits.len() >= n))
    }

    /// Why the digits typed so far cannot be sent yet, in words for the screen.
    pub fn why_not_sendable(&self) -> Option<&'static str> {
        if self.number().is_some() {
            None
        } else if self.digits.is_empty() {
            Some("Type your phone number first, starting with the country code.")
        } else if self.digits.starts_with('0') {
            Some("Start with the country code instead of 0 — for example 44 for the UK.")
        } else {
            Some("That number is too short — include the country code, e.g. 1 for the US.")
        }
    }

    /// Types digit `d` (from a digit key or the pad); the focus moves to that digit's
    /// key, or to ✓ once the number is complete.
    fn push(&mut self, d: u8) {
        let d = d.min(9);
        if self.digits.len() >= MAX_PHONE_DIGITS {
            self.phase = PhonePhase::Typing {
                message: Some(format!(
                    "A phone number has at most {MAX_PHONE_DIGITS} digits."
                )),
            };
            return;
        }
        self.digits.push(char::from(b'0' + d));
        self.phase = PhonePhase::Typing { message: None };
        self.pad_focus = if self.is_complete() {
            pad_index(PadKey::Send)
        } else {
            pad_index(PadKey::Digit(d))
        };
    }

    fn pop(&mut self) {
        self.digits.pop();
        self.phase = PhonePhase::Typing { message: None };
    }

    /// Nothing typed beyond the prefilled country code.
    fn untouched(&self) -> bool {
        self.digits.is_empty() || self.digits == self.prefill
    }

    /// Moves the pad focus one step, stopping at the pad's edges.
    fn move_focus(&mut self, key: Key) {
        let (row, col) = (self.pad_focus / PAD_COLUMNS, self.pad_focus % PAD_COLUMNS);
        let rows = PAD.len() / PAD_COLUMNS;
        let (row, col) = match key {
            Key::Up => (row.saturating_sub(1), col),
            Key::Down => ((row + 1).min(rows - 1), col),
            Key::Left => (row, col.saturating_sub(1)),
            Key::Right => (row, (col + 1).min(PAD_COLUMNS - 1)),
            _ => (row, col),
        };
        self.pad_focus = row * PAD_COLUMNS + col;
    }
}

/// What the TV says when the server refuses to text a number, in words for the viewer.
pub fn phone_failure_text(failure: &Failure) -> String {
    let text = match failure {
        Failure::Unreachable(_) => "Can't reach Couchpay. Check the connection and press ✓ again.",
        Failure::Refused { code, .. } => match code {
            Some(ErrorCode::InvalidRequest) => {
                "The server did not accept that number. Check it, with its country code."
            }
            // The server allows 3 phone numbers per order.
            Some(ErrorCode::TooManyAttempts) => {
                "This order was already sent to a phone 3 times. Scan the QR code instead."
            }
            Some(ErrorCode::RateLimited | ErrorCode::Unavailable) => {
                "The server is busy. Wait a moment, then press ✓ again."
            }
            Some(ErrorCode::AlreadyPaid) => "This order is already paid.",
            Some(ErrorCode::OrderExpired) => "This order has expired.",
            Some(ErrorCode::OrderCancelled) => "This order was cancelled.",
            Some(ErrorCode::Unauthorized) => {
                "The server did not recognise this TV for this order. Get a new code."
            }
            _ => "Couldn't send a text to that number. Scan the QR code instead.",
        },
    };
    text.to_owned()
}

impl App {
    pub(super) fn open_phone_pad(&mut self, first_digit: Option<u8>) {
        let cc = self.phone_country_code.clone();
        if let Screen::Order(o) = &mut self.screen {
            let mut entry = PhoneEntry::new(&cc);
            if let Some(d) = first_digit {
                entry.push(d);
            }
            o.focus = Choice::Primary;
            o.phone = Some(entry);
        }
    }

    /// Keys while the phone-number pad or its waiting screen is up.
    pub(super) fn on_phone_key(&mut self, key: Key, fx: &mut Vec<Effect>) {
        let Screen::Order(o) = &mut self.screen else {
            return;
        };
        let Some(p) = &mut o.phone else {
            return;
        };
        match &mut p.phase {
            PhonePhase::Typing { .. } => match key {
                Key::Digit(d) => p.push(d),
                Key::Up | Key::Down | Key::Left | Key::Right => p.move_focus(key),
                Key::Ok => match PAD.get(p.pad_focus) {
                    Some(PadKey::Digit(d)) => p.push(*d),
                    Some(PadKey::Delete) => p.pop(),
                    Some(PadKey::Send) => match p.number() {
                        Some(phone) => {
                            p.phase = PhonePhase::Sending;
                            fx.push(Effect::PayByPhone {
                                order: o.order.id.clone(),
                                tv_token: o.tv_token.clone(),
                                phone,
                            });
                        }
                        None => {
                            p.phase = PhonePhase::Typing {
                                message: p.why_not_sendable().map(str::to_owned),
                            };
                        }
                    },
                    None => {}
                },
                Key::Back if !p.untouched() => p.pop(),
                Key::Back => o.phone = None,
            },
            // Back gives up waiting for the answer (which is then ignored); the SMS may
            // still arrive, and a payment through it is still seen on the order stream.
            PhonePhase::Sending => {
                if key == Key::Back {
                    o.phone = None;
                }
            }
            PhonePhase::Sent { focus, .. } => match key {
                Key::Left | Key::Right => *focus = focus.toggled(key),
                Key::Ok if *focus == Choice::Secondary => {
                    p.phase = PhonePhase::Typing { message: None };
                }
                Key::Ok | Key::Back => o.phone = None,
                _ => {}
            },
        }
    }

    pub(super) fn on_phone_pay_done(
        &mut self,
        order: &OrderId,
        result: Result<PhonePayStarted, Failure>,
        fx: &mut Vec<Effect>,
    ) {
        let Some(p) = self.order_screen_of(order).and_then(|o| o.phone.as_mut()) else {
            return;
        };
        if p.phase != PhonePhase::Sending {
            return;
        }
        match result {
            Ok(started) => {
                p.phase = PhonePhase::Sent {
                    kind: started.kind,
                    phone_masked: started.phone_masked,
                    focus: Choice::Primary,
                };
            }
            Err(failure) => {
                if matches!(
                    failure.code(),
                    Some(
                        ErrorCode::AlreadyPaid
                            | ErrorCode::OrderExpired
                            | ErrorCode::OrderCancelled
                    )
                ) {
                    // The order changed under the pad: fetch it, and `on_order_update`
                    // moves to the paid or expired screen.
                    fx.push(Effect::PollOrder(order.clone()));
                }
                p.phase = PhonePhase::Typing {
                    message: Some(phone_failure_text(&failure)),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn country_code_lengths() {
        for (digits, len) in [
            ("15550100001", 1),
            ("79161234567", 1),
            ("447700900123", 2),
            ("4915112345678", 2),
            ("353861234567", 3),
            ("97150123456", 3),
            ("4", 1),
            ("", 0),
        ] {
            assert_eq!(country_code_len(digits), len, "{digits}");
        }
    }

    #[test]
    fn a_number_is_complete_at_its_country_length() {
        let mut p = PhoneEntry::new("1");
        for d in "555010000".bytes() {
            p.push(d - b'0');
            assert!(!p.is_complete(), "{}", p.digits);
        }
        p.push(1);
        assert!(p.is_complete());
        assert_eq!(PAD[p.pad_focus], PadKey::Send);
        // Germany has numbers of several lengths: the viewer decides when it is done.
        let mut p = PhoneEntry::new("49");
        for d in "15112345678".bytes() {
            p.push(d - b'0');
        }
        assert!(!p.is_complete());
        assert_eq!(
            PAD[p.pad_focus],
            PadKey::Digit(8),
            "focus follows the digit"
        );
        for d in "9999".bytes() {
            p.push(d - b'0');
        }
        assert!(p.is_complete(), "15 digits is as long as numbers get");
    }
}
