//! Redacting a subject's identifiers (e-mail, names, username...) inside
//! free text and JSON: every occurrence, whatever its letter case, becomes
//! `[redacted]`. Pure functions, exposed to SQL as `lifecycle.redact_text()`
//! and `lifecycle.redact_json()` (safe for any arguments: they only build
//! new values).

use serde_json::Value;

pub const REDACTED: &str = "[redacted]";

/// Where `needle` occurs in `haystack`, ignoring letter case: byte ranges,
/// left to right, not overlapping.
fn occurrences(haystack: &str, needle: &str) -> Vec<(usize, usize)> {
    let needle: Vec<char> = needle.chars().flat_map(char::to_lowercase).collect();
    if needle.is_empty() {
        return Vec::new();
    }
    let chars: Vec<(usize, char)> = haystack.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        // Match needle against the lower-cased characters from i on.
        let mut matched = 0;
        let mut j = i;
        'outer: while j < chars.len() && matched < needle.len() {
            for lc in chars[j].1.to_lowercase() {
                if matched >= needle.len() || needle[matched] != lc {
                    matched = 0;
                    break 'outer;
                }
                matched += 1;
            }
            j += 1;
        }
        if matched == needle.len() {
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

/// `text` with every identifier replaced (longest identifiers first, so
/// that a name inside an e-mail address does not leave the rest behind).
pub fn redact_text(text: &str, identifiers: &[String]) -> String {
    let mut ids: Vec<&String> = identifiers
        .iter()
        .filter(|i| !i.trim().is_empty())
        .collect();
    ids.sort_by_key(|i| std::cmp::Reverse(i.chars().count()));
    let mut out = text.to_string();
    for id in ids {
        let found = occurrences(&out, id);
        if found.is_empty() {
            continue;
        }
        let mut next = String::with_capacity(out.len());
        let mut last = 0;
        for (s, e) in found {
            next.push_str(&out[last..s]);
            next.push_str(REDACTED);
            last = e;
        }
        next.push_str(&out[last..]);
        out = next;
    }
    out
}

/// `value` with every identifier replaced in its strings and object keys.
pub fn redact_json(value: &Value, identifiers: &[String]) -> Value {
    match value {
        Value::String(s) => Value::String(redact_text(s, identifiers)),
        Value::Array(a) => Value::Array(a.iter().map(|v| redact_json(v, identifiers)).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (redact_text(k, identifiers), redact_json(v, identifiers)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
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
    fn keeps_non_latin_text_intact_around_matches() {
        assert_eq!(
            redact_text(
                "山田太郎さんとZoë Ångström",
                &ids(&["山田太郎", "zoë ångström"])
            ),
            "[redacted]さんと[redacted]"
        );
        assert_eq!(redact_text("nothing here", &ids(&["erin"])), "nothing here");
        assert_eq!(redact_text("", &ids(&["x"])), "");
        assert_eq!(redact_text("abc", &ids(&["", "  "])), "abc");
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
}
