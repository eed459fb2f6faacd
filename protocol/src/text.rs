//! Text that is shown to a person as a check (a TV's name on the payer's phone, an
//! account or merchant name): it must look like what it is.
//!
//! Refused: control characters, line and paragraph separators, bidirectional controls
//! (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C, which can make "Den TV" render
//! as something else), and the other invisible, "default ignorable" code points
//! (zero-width spaces and joiners, U+2060–U+206F, the BOM, Hangul fillers, tags…).
//! Variation selectors (U+FE00–U+FE0F) stay allowed: emoji need them.

/// Why a display text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {0} characters")]
    TooLong(usize),
    #[error("must not contain invisible, control or text-direction characters (found U+{0:04X})")]
    Invisible(u32),
}

/// Whether `c` is invisible or changes how the text around it is shown.
pub fn is_invisible(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || matches!(
            u,
            0x00AD
                | 0x034F
                | 0x061C
                | 0x115F..=0x1160
                | 0x17B4..=0x17B5
                | 0x180B..=0x180F
                | 0x200B..=0x200F
                | 0x2028..=0x202E
                | 0x2060..=0x206F
                | 0x3164
                | 0xFEFF
                | 0xFFA0
                | 0xFFF0..=0xFFFB
                | 0x1BCA0..=0x1BCA3
                | 0x1D173..=0x1D17A
                | 0xE0000..=0xE0FFF
        )
}

/// Trims `s` and checks it is a visible name of 1 to `max_chars` characters.
pub fn display_text(s: &str, max_chars: usize) -> Result<String, TextError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(TextError::Empty);
    }
    if t.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    if let Some(c) = t.chars().find(|&c| is_invisible(c)) {
        return Err(TextError::Invisible(c as u32));
    }
    Ok(t.to_owned())
}

/// `s` with every invisible character removed, for showing untrusted text (an mDNS or
/// BLE record) where refusing is not an option.
pub fn strip_invisible(s: &str) -> String {
    s.chars().filter(|&c| !is_invisible(c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(input: &str, expected: Result<&str, TextError>) {
        assert_eq!(
            display_text(input, 20),
            expected.map(str::to_owned),
            "{input:?}"
        );
    }

    #[test]
    fn display_texts() {
        check("  Den TV ", Ok("Den TV"));
        check("Wohnzimmer-Fernseher", Ok("Wohnzimmer-Fernseher"));
        check("客厅电视", Ok("客厅电视"));
        check("Kids \u{1F4FA}\u{FE0F}", Ok("Kids \u{1F4FA}\u{FE0F}"));
        check("   ", Err(TextError::Empty));
        check(&"x".repeat(21), Err(TextError::TooLong(20)));
        // Right-to-left override: "Den TV\u{202E}VT kcaB" shows reversed text.
        check("Den\u{202E}VT", Err(TextError::Invisible(0x202E)));
        check("Den\u{2066}TV", Err(TextError::Invisible(0x2066)));
        check("De\u{200B}n", Err(TextError::Invisible(0x200B)));
        check("De\u{200D}n", Err(TextError::Invisible(0x200D)));
        check("\u{FEFF}Den", Err(TextError::Invisible(0xFEFF)));
        check("Den\u{0007}", Err(TextError::Invisible(7)));
        check("Den\u{2028}TV", Err(TextError::Invisible(0x2028)));
        check("Den\u{E0041}", Err(TextError::Invisible(0xE0041)));
        check("\u{3164}", Err(TextError::Invisible(0x3164)));
    }

    #[test]
    fn stripping_keeps_the_visible_part() {
        assert_eq!(strip_invisible("Den\u{202E}\u{200B} TV"), "Den TV");
    }
}
