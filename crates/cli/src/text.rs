//! Terminal-safe text: every human (table, text) output of the CLI goes through [`escape`].
//!
//! Image references, workload names, rule descriptions, CVE ids and messages come from
//! manifests, registries, reports and the alert store: anyone who can push an image or create
//! a workload chooses them. Printed raw, `"\x1b[2J"` clears the reader's screen, `"\x1b]8;;"`
//! plants a link, and U+202E (right-to-left override) makes `nginx\u{202e}1.52` read as
//! another tag. So control characters are shown as escapes instead: C0 (U+0000-U+001F), DEL,
//! C1 (U+0080-U+009F) and the bidirectional formatting characters (U+061C, U+200E, U+200F,
//! U+202A-U+202E, U+2066-U+2069). Everything else, backslashes included, is printed as is.
//!
//! JSON and SARIF outputs are not escaped this way: `serde_json` already escapes C0 controls,
//! and their consumers need the exact strings. `alerts show`, JSON meant to be read on a
//! terminal, goes through [`to_json_pretty`], which also writes C1 and bidi characters as
//! `\uXXXX` (the parsed value stays exact).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is shown as an escape.
pub fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}')
}

/// `s` with every control and bidi formatting character escaped (`\t`, `\n`, `\r`, `\x1b`,
/// `\u{202e}`); borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_inner(s, false)
}

/// Like [`escape`], but line breaks stay: for multi-line messages (error chains).
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_inner(s, true)
}

fn escape_inner(s: &str, keep_newlines: bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !(keep_newlines && c == '\n');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !unsafe_char(c) {
            out.push(c);
            continue;
        }
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// A serde_json formatter that also writes DEL, C1 and bidi characters as `\uXXXX` (C0 is
/// already escaped by serde_json).
struct TerminalSafe(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    // The pretty layout: delegated.
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// Pretty JSON (as `serde_json::to_string_pretty`) that is also safe to print on a terminal.
pub fn to_json_pretty<T: serde::Serialize + ?Sized>(value: &T) -> serde_json::Result<String> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(
        &mut out,
        TerminalSafe(serde_json::ser::PrettyFormatter::new()),
    );
    value.serialize(&mut ser)?;
    // The formatter writes only UTF-8 (serde_json's output and ASCII escapes).
    String::from_utf8(out).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        let s = "registry.example.com/shop/api:1.4.2 CVE-2024-3094 ünïcødé \\ \"q\"";
        assert!(matches!(escape(s), Cow::Borrowed(_)));
        assert_eq!(escape(s), s);
    }

    #[test]
    fn c0_del_and_c1_are_escaped() {
        assert_eq!(escape("a\x1b[31mred\x1b[0m"), "a\\x1b[31mred\\x1b[0m");
        assert_eq!(escape("a\tb\nc\rd"), "a\\tb\\nc\\rd");
        assert_eq!(escape("\0\x07\x7f"), "\\x00\\x07\\x7f");
        assert_eq!(escape("x\u{9b}31m\u{85}"), "x\\u{9b}31m\\u{85}");
        assert_eq!(escape("\u{80}\u{9f}\u{a0}"), "\\u{80}\\u{9f}\u{a0}");
    }

    #[test]
    fn bidi_controls_are_escaped() {
        assert_eq!(
            escape("nginx\u{202e}52.1:"),
            "nginx\\u{202e}52.1:",
            "right-to-left override"
        );
        for c in [
            '\u{61c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            let e = escape(&c.to_string()).into_owned();
            assert_eq!(e, format!("\\u{{{:x}}}", c as u32));
        }
        // Neighbours that are not formatting characters stay.
        assert_eq!(
            escape("\u{2010}\u{2065}\u{206a}"),
            "\u{2010}\u{2065}\u{206a}"
        );
    }

    #[test]
    fn escape_lines_keeps_line_breaks_only() {
        assert_eq!(escape_lines("one\ntwo\x1b[2J\tx"), "one\ntwo\\x1b[2J\\tx");
    }

    #[test]
    fn terminal_safe_json_parses_back_to_the_same_value() {
        let v = serde_json::json!({
            "image": "evil\u{1b}[31m:1\u{202e}\u{9b}\u{7f}",
            "n": [1, 2],
            "plain": "x\\y\"z",
        });
        let text = to_json_pretty(&v).unwrap();
        assert!(!text.chars().any(is_unsafe_but_layout), "{text}");
        assert!(text.contains("\\u202e") && text.contains("\\u009b") && text.contains("\\u007f"));
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        // Without such characters, byte for byte serde_json's pretty output.
        let clean = serde_json::json!({"a": {"b": [true, null, "é"]}, "c": ""});
        assert_eq!(
            to_json_pretty(&clean).unwrap(),
            serde_json::to_string_pretty(&clean).unwrap()
        );
    }

    /// An unsafe character other than the pretty printer's own line breaks.
    fn is_unsafe_but_layout(c: char) -> bool {
        is_unsafe(c) && c != '\n'
    }
}
