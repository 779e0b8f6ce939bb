//! Untrusted text for logs and terminals: the one escaper. Relay messages,
//! event content and tags, hook output and worker details all pass through
//! [`printable`] before a person sees them, so no byte from outside can move
//! the cursor, fake a log line or reorder text (bidi overrides).

/// `text` with control characters and invisible or bidi-control characters
/// (U+200B..U+200F, U+2028..U+202E, U+2066..U+2069, U+FEFF) escaped as
/// `\u{..}` (`\n`, `\t`, `\r` as themselves escaped), everything else
/// verbatim, cut after `max_chars` characters with `...` appended.
pub fn printable(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    for (i, c) in text.chars().enumerate() {
        if i == max_chars {
            out.push_str("...");
            break;
        }
        if c.is_control()
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_invisibles_and_keeps_the_rest() {
        assert_eq!(printable("a\u{1b}[2Jb\n", 100), "a\\u{1b}[2Jb\\n");
        assert_eq!(printable("x\u{202e}y\u{feff}", 100), "x\\u{202e}y\\u{feff}");
        assert_eq!(printable("héllo 🎉 \"q\" \\", 100), "héllo 🎉 \"q\" \\");
        assert_eq!(printable("\u{7f}", 100), "\\u{7f}");
    }

    #[test]
    fn cuts_after_max_chars() {
        assert_eq!(printable("abcdef", 3), "abc...");
        assert_eq!(printable("abc", 3), "abc");
        assert_eq!(printable("ééé", 2), "éé...");
        assert_eq!(printable("", 0), "");
    }
}
