//! A subject's identifiers inside free text and JSON: which values count as
//! identifiers, where they occur, and the text with each occurrence replaced
//! by `[redacted]`.
//!
//! Matching is what a reader would call "the same name":
//! * letter case is ignored (`ERIN.ERSATZ` is `erin.ersatz`);
//! * canonically equivalent spellings are equal: a name typed with
//!   combining accents (`Zoe` + U+0308) matches the precomposed `Zoë`
//!   (both sides are compared in Unicode normal form C);
//! * a match must be a whole word where the script separates words with
//!   spaces: `Erin Ersatz` is not found inside `Erin Ersatzová`, nor
//!   `@erin.ersatz` inside `@erin.ersatzova`; in scripts written without
//!   spaces (Chinese, Japanese, Thai...) `山田太郎` is found inside
//!   `山田太郎さん`.

use serde_json::Value;
use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

pub const REDACTED: &str = "[redacted]";

/// Most single-word values combined into full names.
const MAX_NAME_PARTS: usize = 8;

/// Scripts written without spaces between words: a match there needs no
/// word boundary.
fn unspaced(c: char) -> bool {
    matches!(c as u32,
        0x0E00..=0x0EFF        // Thai, Lao
        | 0x1000..=0x109F      // Myanmar
        | 0x1780..=0x17FF      // Khmer
        | 0x3040..=0x30FF      // Hiragana, Katakana
        | 0x31F0..=0x31FF      // Katakana extensions
        | 0x3400..=0x4DBF      // CJK extension A
        | 0x4E00..=0x9FFF      // CJK unified ideographs
        | 0xF900..=0xFAFF      // CJK compatibility ideographs
        | 0xFF66..=0xFF9F      // half-width Katakana
        | 0x20000..=0x2FA1F) // CJK extensions B..
}

/// A character that continues a word of a spaced script.
fn word_char(c: char) -> bool {
    (c.is_alphanumeric() || is_combining(c)) && !unspaced(c)
}

fn is_combining(c: char) -> bool {
    unicode_normalization::char::is_combining_mark(c)
}

fn nfc(s: &str) -> std::borrow::Cow<'_, str> {
    if is_nfc_quick(s.chars()) == IsNormalized::Yes {
        std::borrow::Cow::Borrowed(s)
    } else {
        std::borrow::Cow::Owned(s.nfc().collect())
    }
}

/// Where `needle` occurs in `haystack` (both in normal form C), ignoring
/// letter case, as whole words: byte ranges, left to right, not
/// overlapping.
fn occurrences(haystack: &str, needle: &str) -> Vec<(usize, usize)> {
    let lowered: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    let (Some(first), Some(last)) = (needle.chars().next(), needle.chars().last()) else {
        return Vec::new();
    };
    let chars: Vec<(usize, char)> = haystack.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // Match the lower-cased needle against the characters from i on.
        let mut matched = 0;
        let mut j = i;
        'outer: while j < chars.len() && matched < lowered.len() {
            for lc in chars[j].1.to_lowercase() {
                if matched >= lowered.len() || lowered[matched] != lc {
                    matched = 0;
                    break 'outer;
                }
                matched += 1;
            }
            j += 1;
        }
        let whole = matched == lowered.len()
            && !(word_char(first) && i > 0 && word_char(chars[i - 1].1))
            && !(word_char(last) && j < chars.len() && word_char(chars[j].1))
            // A combining mark after the match changes its last letter.
            && !(j < chars.len() && is_combining(chars[j].1));
        if whole {
            let start = chars[i].0;
            let end = chars.get(j).map(|(b, _)| *b).unwrap_or(haystack.len());
            out.push((start, end));
            i = j;
        } else {
            i += 1;
        }
    }
    out
}

/// The identifiers worth looking for, in normal form C, longest first (so
/// that a name inside an e-mail address does not leave the rest behind).
fn prepared(identifiers: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = identifiers
        .iter()
        .map(|i| nfc(i.trim()).into_owned())
        .filter(|i| !i.is_empty())
        .collect();
    ids.sort_by(|a, b| b.chars().count().cmp(&a.chars().count()).then(a.cmp(b)));
    ids.dedup();
    ids
}

fn redact_prepared(text: &str, ids: &[String]) -> Option<String> {
    let mut out: Option<String> = None;
    for id in ids {
        let current = out.as_deref().unwrap_or(text);
        let found = occurrences(current, id);
        if found.is_empty() {
            continue;
        }
        let mut next = String::with_capacity(current.len());
        let mut last = 0;
        for (s, e) in found {
            next.push_str(&current[last..s]);
            next.push_str(REDACTED);
            last = e;
        }
        next.push_str(&current[last..]);
        out = Some(next);
    }
    out
}

/// `text` with every occurrence of every identifier replaced by
/// `[redacted]`. Text without any occurrence comes back unchanged (byte for
/// byte, even when it is not in normal form C).
pub fn redact_text(text: &str, identifiers: &[String]) -> String {
    let ids = prepared(identifiers);
    let normal = nfc(text);
    redact_prepared(&normal, &ids).unwrap_or_else(|| text.to_string())
}

/// Whether `text` mentions one of the identifiers.
pub fn mentions(text: &str, identifiers: &[String]) -> bool {
    Matcher::new(identifiers).mentions(text)
}

/// Identifiers prepared once to be looked for in many texts (every row of
/// a table the erasure searches).
///
/// Text in ASCII, the common case, is searched for the ASCII identifiers
/// in one pass (Aho-Corasick, ASCII case ignored), then each hit is
/// checked for word boundaries: the same answer as the general search
/// below, which lower-cases and compares character by character, without
/// its allocations. Identifiers with other characters, and text with other
/// characters, take the general search (a non-ASCII letter can lower-case
/// to an ASCII one: the Kelvin sign is a `k`).
pub struct Matcher {
    ids: Vec<String>,
    ascii: Option<aho_corasick::AhoCorasick>,
    other: Vec<String>,
}

impl Matcher {
    pub fn new(identifiers: &[String]) -> Matcher {
        let ids = prepared(identifiers);
        let (ascii_ids, other): (Vec<String>, Vec<String>) =
            ids.iter().cloned().partition(|i| i.is_ascii());
        let ascii = (!ascii_ids.is_empty())
            .then(|| {
                aho_corasick::AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .build(&ascii_ids)
                    .ok()
            })
            .flatten();
        Matcher { ids, ascii, other }
    }

    /// Whether `text` mentions one of the identifiers, as whole words.
    pub fn mentions(&self, text: &str) -> bool {
        if !text.is_ascii() {
            let normal = nfc(text);
            return self
                .ids
                .iter()
                .any(|id| !occurrences(&normal, id).is_empty());
        }
        let b = text.as_bytes();
        let word = |i: usize| b[i].is_ascii_alphanumeric();
        if let Some(ac) = &self.ascii {
            for m in ac.find_overlapping_iter(b) {
                let (s, e) = (m.start(), m.end());
                if word(s) && s > 0 && word(s - 1) {
                    continue;
                }
                if word(e - 1) && e < b.len() && word(e) {
                    continue;
                }
                return true;
            }
        }
        self.other
            .iter()
            .any(|id| !occurrences(text, id).is_empty())
    }
}

/// `value` with every identifier replaced in its strings and object keys;
/// numbers, booleans and the structure stay.
pub fn redact_json(value: &Value, identifiers: &[String]) -> Value {
    let ids = prepared(identifiers);
    json_prepared(value, &ids)
}

fn json_prepared(value: &Value, ids: &[String]) -> Value {
    let text = |s: &str| {
        let normal = nfc(s);
        redact_prepared(&normal, ids).unwrap_or_else(|| s.to_string())
    };
    match value {
        Value::String(s) => Value::String(text(s)),
        Value::Array(a) => Value::Array(a.iter().map(|v| json_prepared(v, ids)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (text(k), json_prepared(v, ids)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The JSON document `json` (valid JSON text, as PostgreSQL prints a
/// `jsonb`) with every identifier replaced in its strings and object keys,
/// as [`redact_json`] does, or `None` when nothing changed. It reads the
/// text once, token by token, without building the document: any depth of
/// nesting is one pass and no recursion.
pub fn redact_json_text(json: &str, identifiers: &[String]) -> Option<String> {
    let ids = prepared(identifiers);
    if ids.is_empty() {
        return None;
    }
    let bytes = json.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut at = 0;
    // Outside string literals JSON is ASCII punctuation, numbers and
    // keywords; inside, a quote or backslash byte is never part of a
    // multi-byte character.
    while let Some(open) = bytes[at..].iter().position(|b| *b == b'"') {
        let start = at + open;
        let mut end = start + 1;
        while end < bytes.len() && bytes[end] != b'"' {
            end += if bytes[end] == b'\\' { 2 } else { 1 };
        }
        let end = (end + 1).min(bytes.len());
        at = end;
        let Ok(value) = serde_json::from_str::<String>(&json[start..end]) else {
            continue; // not valid JSON text: left as it is
        };
        if let Some(redacted) = redact_prepared(&nfc(&value), &ids) {
            out.push_str(&json[copied..start]);
            out.push_str(&serde_json::to_string(&redacted).expect("a string serializes"));
            copied = end;
        }
    }
    if copied == 0 {
        return None;
    }
    out.push_str(&json[copied..]);
    Some(out)
}

/// A value that is one word of letters (a given name, a family name, a job
/// title): too common to identify anyone on its own.
fn single_word(v: &str) -> bool {
    !v.chars().any(char::is_whitespace)
        && v.chars()
            .all(|c| c.is_alphabetic() || is_combining(c) || c == '-' || c == '\'')
}

fn all_unspaced(v: &str) -> bool {
    v.chars().all(|c| unspaced(c) || c == '・')
}

/// The identifiers of a subject, from the values of its personal columns
/// (in column order): what redaction replaces and verification looks for.
///
/// * A value of several words, or with digits or signs in it (an e-mail
///   address, a username, a phone number, a full name), identifies on its
///   own, from three characters on.
/// * A single word (a given name, a family name) does not: "Erin" names
///   many people. Single words are combined into full names instead, in
///   both orders ("Erin Ersatz", "Ersatz Erin"); in scripts written without
///   spaces also without one ("山田太郎"). A single word of such a script
///   of three characters or more (a full name written as one word)
///   identifies on its own.
///
/// `values` pairs each value with whether its column's rule says it names
/// the subject (`deleted_name`, `deleted_email`, `redact`, `hash`). A value
/// of several plain words in a column that is merely cleared (a job title
/// such as "Product Designer") identifies nobody.
pub fn identifiers(values: &[(String, bool)]) -> Vec<String> {
    let mut strong = Vec::new();
    let mut parts: Vec<String> = Vec::new();
    for (v, names) in values {
        let v = nfc(v.trim()).into_owned();
        if v.is_empty() {
            continue;
        }
        let plain_words = v
            .chars()
            .all(|c| c.is_alphabetic() || c.is_whitespace() || is_combining(c) || c == '-');
        if !names && !single_word(&v) && plain_words {
            continue;
        }
        if single_word(&v) {
            if all_unspaced(&v) && v.chars().count() >= 3 {
                strong.push(v.clone());
            }
            if !parts.contains(&v) && parts.len() < MAX_NAME_PARTS {
                parts.push(v);
            }
        } else if v.chars().count() >= 3 {
            strong.push(v);
        }
    }
    for a in &parts {
        for b in &parts {
            if a == b {
                continue;
            }
            strong.push(format!("{a} {b}"));
            if all_unspaced(a) && all_unspaced(b) {
                strong.push(format!("{a}{b}"));
            }
        }
    }
    let mut out = prepared(&strong);
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn named(v: &[&str]) -> Vec<(String, bool)> {
        v.iter().map(|s| (s.to_string(), true)).collect()
    }

    #[test]
    fn replaces_every_spelling_of_every_identifier() {
        let out = redact_text(
            "Posted by Erin Ersatz (ERIN.ERSATZ, erin@example.com); thanks erin ersatz!",
            &ids(&["Erin Ersatz", "erin.ersatz", "erin@example.com"]),
        );
        assert_eq!(
            out,
            "Posted by [redacted] ([redacted], [redacted]); thanks [redacted]!"
        );
    }

    #[test]
    fn whole_words_only_in_spaced_scripts() {
        let id = ids(&["Erin Ersatz", "@erin.ersatz"]);
        let decoy = "Erin Ersatzová (@erin.ersatzova) says hi";
        assert_eq!(redact_text(decoy, &id), decoy);
        assert!(!mentions(decoy, &id));
        assert_eq!(
            redact_text("@erin.ersatz: Erin Ersatz's notes.", &id),
            "[redacted]: [redacted]'s notes."
        );
        assert!(!mentions("Erin Erskine here", &ids(&["Erin Ersatz"])));
        // No boundary between words of scripts written without spaces.
        assert_eq!(
            redact_text("Erin Ersatzさん、ありがとう", &ids(&["Erin Ersatz"])),
            "[redacted]さん、ありがとう"
        );
        assert_eq!(
            redact_text(
                "山田太郎さんとZoë Ångström",
                &ids(&["山田太郎", "zoë ångström"])
            ),
            "[redacted]さんと[redacted]"
        );
    }

    #[test]
    fn decomposed_text_matches_composed_names() {
        let nfd: String = "Welcome Zoë Ångström!".nfd().collect();
        assert_ne!(nfd, "Welcome Zoë Ångström!");
        assert_eq!(
            redact_text(&nfd, &ids(&["Zoë Ångström"])),
            "Welcome [redacted]!"
        );
        // "Zoe" is not "Zoë", composed or not.
        assert!(!mentions(&nfd, &ids(&["Zoe Ångström"])));
        // Unchanged text keeps its own form.
        assert_eq!(redact_text(&nfd, &ids(&["nobody here"])), nfd);
    }

    #[test]
    fn empty_and_blank_inputs() {
        assert_eq!(redact_text("nothing here", &ids(&["erin"])), "nothing here");
        assert_eq!(redact_text("", &ids(&["x"])), "");
        assert_eq!(redact_text("abc", &ids(&["", "  "])), "abc");
        assert!(!mentions("abc", &[]));
    }

    #[test]
    fn longest_identifier_first() {
        assert_eq!(
            redact_text("erin@example.com", &ids(&["erin", "erin@example.com"])),
            "[redacted]"
        );
    }

    #[test]
    fn json_strings_and_keys_are_redacted_structure_kept() {
        let v: Value = serde_json::json!({
            "username": "erin.ersatz",
            "mentions": ["Erin Ersatz", 3, null, {"erin.ersatz": true}],
            "count": 2
        });
        let out = redact_json(&v, &ids(&["erin.ersatz", "Erin Ersatz"]));
        assert_eq!(
            out,
            serde_json::json!({
                "username": "[redacted]",
                "mentions": ["[redacted]", 3, null, {"[redacted]": true}],
                "count": 2
            })
        );
    }

    #[test]
    fn identifiers_combine_single_words_into_names() {
        let got = identifiers(&named(&[
            "erin.ersatz",
            "erin@example.com",
            "Erin",
            "Ersatz",
            "",
            "Engineer",
            "Erin",
        ]));
        for want in [
            "erin.ersatz",
            "erin@example.com",
            "Erin Ersatz",
            "Ersatz Erin",
        ] {
            assert!(got.contains(&want.to_string()), "{want} in {got:?}");
        }
        // A given name or a job title alone identifies nobody.
        for not in ["Erin", "Ersatz", "Engineer"] {
            assert!(!got.contains(&not.to_string()), "{not} in {got:?}");
        }
        let jp = identifiers(&named(&["yamada.taro", "太郎", "山田", "山田太郎"]));
        for want in ["山田太郎", "太郎山田", "山田 太郎", "yamada.taro"] {
            assert!(jp.contains(&want.to_string()), "{want} in {jp:?}");
        }
        assert!(!jp.contains(&"太郎".to_string()));
        // Short values other than names do not identify either.
        assert!(identifiers(&named(&["ab", "x1"])).is_empty());
        // A job title in a column that is only cleared names nobody; a
        // phone number there does.
        let cleared = identifiers(&[
            ("Product Designer".to_string(), false),
            ("+49 30 1234 5678".to_string(), false),
            ("Erin Ersatz".to_string(), true),
        ]);
        assert_eq!(cleared, vec!["+49 30 1234 5678", "Erin Ersatz"]);
    }

    /// The general search, character by character, for any text.
    fn general(text: &str, identifiers: &[String]) -> bool {
        let normal = nfc(text);
        prepared(identifiers)
            .iter()
            .any(|id| !occurrences(&normal, id).is_empty())
    }

    #[test]
    fn the_ascii_search_respects_word_boundaries_and_case() {
        let m = Matcher::new(&ids(&["erin.ersatz@example.com", "Erin Ersatz"]));
        assert!(m.mentions("mail ERIN.ERSATZ@EXAMPLE.COM now"));
        assert!(m.mentions("by erin ersatz."));
        assert!(!m.mentions("by Erin Ersatzova"));
        assert!(!m.mentions("xerin ersatz"));
        assert!(!m.mentions("nothing here"));
        // The Kelvin sign lower-cases to an ASCII k.
        let kelvin = Matcher::new(&ids(&["\u{212A}arl Marx"]));
        assert!(kelvin.mentions("by karl marx"));
        assert!(general("by karl marx", &ids(&["\u{212A}arl Marx"])));
    }

    #[test]
    fn json_text_is_redacted_at_any_depth_in_one_pass() {
        let id = ids(&["erin.ersatz@example.com"]);
        // Deeper than any recursive parser allows by default.
        let deep = format!(
            "{}\"mail erin.ersatz@example.com\"{}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let got = redact_json_text(&deep, &id).expect("redacted");
        assert_eq!(
            got,
            format!(
                "{}\"mail [redacted]\"{}",
                "[".repeat(100_000),
                "]".repeat(100_000)
            )
        );
        // Keys too; escapes decoded before matching and written back as JSON.
        let doc = r#"{"erin.ersatz@example.com": "x", "q\"uote": "\u0045rin.ersatz@example.com \ud83d\ude00", "n": 1.5e3}"#;
        let got = redact_json_text(doc, &id).expect("redacted");
        assert_eq!(
            got,
            r#"{"[redacted]": "x", "q\"uote": "[redacted] 😀", "n": 1.5e3}"#
        );
        // Nothing to replace: None, and the caller keeps the value.
        assert_eq!(redact_json_text(r#"{"a": ["b", "c\\"]}"#, &id), None);
        assert_eq!(redact_json_text(r#""erin""#, &ids(&[])), None);
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i32>().prop_map(Value::from),
            "[ab .@\"\\\\\u{e9}\u{301}\n]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[ab .@\u{e9}]{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn json_text_redaction_agrees_with_the_document_redaction(
            doc in json_value(),
            id_list in proptest::collection::vec("[ab .@\u{e9}]{3,6}", 1..3),
        ) {
            let text = serde_json::to_string(&doc).expect("serializes");
            let streamed = redact_json_text(&text, &id_list).unwrap_or(text);
            let streamed: Value = serde_json::from_str(&streamed).expect("valid JSON");
            proptest::prop_assert_eq!(streamed, redact_json(&doc, &id_list));
        }

        #[test]
        fn the_ascii_search_agrees_with_the_general_search(
            text in "[aAbB .@1_-]{0,40}",
            id_list in proptest::collection::vec("[aAbB .@1-]{1,6}", 1..4),
        ) {
            let m = Matcher::new(&id_list);
            proptest::prop_assert_eq!(m.mentions(&text), general(&text, &id_list));
        }

        #[test]
        fn any_text_agrees_with_the_general_search(
            text in "[aéÉb \u{301}K\u{212A}k]{0,24}",
            id_list in proptest::collection::vec("[aéb \u{301}kK\u{212A}]{1,5}", 1..3),
        ) {
            let m = Matcher::new(&id_list);
            proptest::prop_assert_eq!(m.mentions(&text), general(&text, &id_list));
        }
    }
}
