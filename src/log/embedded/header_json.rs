//! The `records.headers` column: a record's headers as a JSON array of
//! `[name, value]` pairs, byte for byte what `serde_json` writes.
//!
//! The store writer encodes about a dozen headers for every record it
//! commits (the stage's outputs carry 13), and `serde_json` checks each byte
//! of each string against its escape table: 5 % of the instructions the
//! stage cost per message (callgrind, BENCHMARKS.md). Header names and
//! values are nearly always plain text, which needs no escape; such a
//! string is copied whole, and only the rest goes through `serde_json`.

/// Appends the headers' JSON to `out`.
pub(super) fn write(out: &mut String, headers: &[(String, String)]) {
    // Room for every plain pair at once: brackets, quotes and commas.
    out.reserve(
        2 + headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum::<usize>(),
    );
    out.push('[');
    for (i, (name, value)) in headers.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        string(out, name);
        out.push(',');
        string(out, value);
        out.push(']');
    }
    out.push(']');
}

fn string(out: &mut String, s: &str) {
    if needs_escape(s.as_bytes()) {
        // serde_json cannot fail on a string written to memory.
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// What JSON makes serde_json escape: `"`, `\` and the control characters
/// below 0x20 (it writes everything else, non-ASCII included, as is).
/// Eight bytes at a time: header strings are mostly shorter than the
/// compiler's vector loops start at, and a byte loop cost as much as
/// serde_json's.
fn needs_escape(b: &[u8]) -> bool {
    if b.len() < 8 {
        return b.iter().any(|&c| c < 0x20 || c == b'"' || c == b'\\');
    }
    let mut words = b.chunks_exact(8);
    if words.by_ref().any(|w| word_needs_escape(word(w))) {
        return true;
    }
    // The last bytes, as the final eight (overlapping bytes already seen).
    !words.remainder().is_empty() && word_needs_escape(word(&b[b.len() - 8..]))
}

/// Eight bytes as one word; `w` is always eight bytes long.
fn word(w: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(w);
    u64::from_le_bytes(a)
}

fn word_needs_escape(w: u64) -> bool {
    has_byte_below(w, 0x20) || has_byte(w, b'"') || has_byte(w, b'\\')
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH_BITS: u64 = 0x8080_8080_8080_8080;

/// Whether any byte of `w` is below `n` (for `n` <= 0x80): a byte below `n`
/// borrows into its high bit when `n` is subtracted, and a byte whose high
/// bit was already set is masked out. Exact as a yes or no.
fn has_byte_below(w: u64, n: u8) -> bool {
    w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH_BITS != 0
}

/// Whether any byte of `w` is `b`: a zero byte after XOR, found as above.
fn has_byte(w: u64, b: u8) -> bool {
    has_byte_below(w ^ (ONES * u64::from(b)), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde(headers: &[(String, String)]) -> String {
        serde_json::to_string(headers).unwrap()
    }

    fn ours(headers: &[(String, String)]) -> String {
        let mut out = String::new();
        write(&mut out, headers);
        out
    }

    #[test]
    fn the_column_is_byte_for_byte_what_serde_json_writes() {
        // Every piece serde_json treats differently, alone and in pairs.
        let pieces = [
            "",
            "a",
            "hl7.control_id",
            "\"",
            "\\",
            "/",
            "\n",
            "\r",
            "\t",
            "\u{8}",
            "\u{c}",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            " ",
            "é",
            "日本",
            "\u{2028}",
            "😀",
            "x\"y\\z",
        ];
        let mut values: Vec<String> = pieces.iter().map(|p| p.to_string()).collect();
        for a in pieces {
            for b in pieces {
                values.push(format!("{a}{b}"));
            }
        }
        for v in &values {
            let headers = vec![
                (v.clone(), "plain".to_owned()),
                ("plain".to_owned(), v.clone()),
            ];
            assert_eq!(ours(&headers), serde(&headers), "value {v:?}");
        }
        assert_eq!(ours(&[]), serde(&[]));
    }

    #[test]
    fn every_byte_at_every_position_is_judged_as_serde_json_judges_it() {
        for len in 1..=24 {
            for at in 0..len {
                for b in 0u8..=0x7f {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    let s = String::from_utf8(s).unwrap();
                    let serde_escapes = serde_json::to_string(&s).unwrap().len() != s.len() + 2;
                    assert_eq!(
                        needs_escape(s.as_bytes()),
                        serde_escapes,
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
    }

    #[test]
    fn what_is_written_reads_back_as_the_same_headers() {
        let headers = vec![
            ("hl7.control_id".to_owned(), "R8dc7dd000000000".to_owned()),
            ("bridge.peer".to_owned(), "127.0.0.1:34512".to_owned()),
            ("note".to_owned(), "line\nbreak \"quoted\" \\ é".to_owned()),
        ];
        let back: Vec<(String, String)> = serde_json::from_str(&ours(&headers)).unwrap();
        assert_eq!(back, headers);
    }
}
