//! One pass over a file's rows writes both of its formats: each row arrives
//! as the JSON object PostgreSQL's `to_json` made of it (keys are column
//! names, in the columns' order), is parsed once without copying its values
//! (`RawValue`), and is written
//!
//! * as JSON: an element of a pretty-printed array whose keys are the
//!   column labels; scalar values are copied as PostgreSQL wrote them
//!   (strings stay escaped, numbers keep their digits), nested JSON is
//!   indented;
//! * as CSV: one record, the values as text (strings unescaped, `null` as
//!   an empty cell, nested JSON as its JSON text), quoted per RFC 4180;
//!
//! and the values of the storage columns (object keys) are handed back.
//!
//! Only the listed columns are written, whatever else a row holds.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use tokio_postgres::types::{FromSql, Type};

use super::contents::FileSpec;

/// A UTF-8 byte-order mark: spreadsheet programs read a CSV file that
/// starts with it as UTF-8 (without it, some take it for a legacy code page).
pub const CSV_BOM: &[u8] = "\u{feff}".as_bytes();
/// CSV records end with CR LF (RFC 4180).
const CSV_EOL: &[u8] = b"\r\n";
/// Indentation of a row object's members in the JSON array.
const MEMBER_INDENT: &str = "    ";

/// The undecoded bytes of a `json` (or `jsonb`) value of a row, or of the
/// JSON text `lifecycle.fetch_export` returns.
pub struct RawJson<'a>(pub &'a [u8]);

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(
        ty: &Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            // jsonb's binary format is a version byte, then the text.
            match raw.split_first() {
                Some((1, rest)) => Ok(RawJson(rest)),
                _ => Err("unsupported jsonb format".into()),
            }
        } else {
            Ok(RawJson(raw))
        }
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSON || *ty == Type::JSONB || *ty == Type::TEXT
    }
}

/// How one file's rows are written.
pub struct RowFormat {
    names: Vec<String>,
    /// `    "Label": ` of each column, escaped once.
    json_keys: Vec<Vec<u8>>,
    storage_columns: Vec<usize>,
}

/// Why a row could not be written.
#[derive(Debug)]
pub struct RowError(pub String);

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl RowFormat {
    pub fn new(spec: &FileSpec) -> Self {
        Self {
            names: spec.columns.iter().map(|c| c.name.clone()).collect(),
            json_keys: spec
                .columns
                .iter()
                .map(|c| {
                    let mut key = MEMBER_INDENT.as_bytes().to_vec();
                    serde_json::to_writer(&mut key, &c.label).expect("a string serializes");
                    key.extend_from_slice(b": ");
                    key
                })
                .collect(),
            storage_columns: spec.storage_columns.clone(),
        }
    }

    /// The CSV header: a byte-order mark, then the labels.
    pub fn csv_header(spec: &FileSpec, out: &mut Vec<u8>) {
        out.extend_from_slice(CSV_BOM);
        for (i, c) in spec.columns.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            csv_field(out, &c.label);
        }
        out.extend_from_slice(CSV_EOL);
    }

    /// Write the row `raw` (a JSON object) to `json` (after `first` or not)
    /// and `csv`, and pass the object keys its storage columns hold to
    /// `key`.
    pub fn write(
        &self,
        raw: &[u8],
        first: bool,
        json: &mut Vec<u8>,
        csv: &mut Vec<u8>,
        mut key: impl FnMut(&str),
    ) -> Result<(), RowError> {
        let values = self.parse(raw)?;
        json.extend_from_slice(if first { b"\n  {\n" } else { b",\n  {\n" });
        let last = values.len() - 1;
        for (i, value) in values.iter().enumerate() {
            json.extend_from_slice(&self.json_keys[i]);
            match value {
                Some(v) => json_value(json, v),
                None => json.extend_from_slice(b"null"),
            }
            json.extend_from_slice(if i == last { b"\n" } else { b",\n" });
            if i > 0 {
                csv.push(b',');
            }
            if let Some(v) = value {
                csv_value(csv, v)?;
            }
        }
        json.extend_from_slice(b"  }");
        csv.extend_from_slice(CSV_EOL);
        for &i in &self.storage_columns {
            if let Some(v) = values[i] {
                if let Some(k) = scalar_text(v)? {
                    if !k.is_empty() {
                        key(&k);
                    }
                }
            }
        }
        Ok(())
    }

    /// The row's value of each column, in the columns' order (`None`: the
    /// row had no such key).
    fn parse<'a>(&self, raw: &'a [u8]) -> Result<Vec<Option<&'a RawValue>>, RowError> {
        let mut de = serde_json::Deserializer::from_slice(raw);
        let values = RowSeed { names: &self.names }
            .deserialize(&mut de)
            .and_then(|v| de.end().map(|()| v))
            .map_err(|e| RowError(format!("a row is not a JSON object: {e}")))?;
        Ok(values)
    }
}

/// Finds each key's column: the next one in order, else by name.
struct RowSeed<'n> {
    names: &'n [String],
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Vec<Option<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut values = vec![None; self.names.len()];
        let mut next = 0;
        while let Some(key) = map.next_key::<Text<'de>>()? {
            let index = if self.names.get(next).is_some_and(|n| *n == key.0) {
                Some(next)
            } else {
                self.names.iter().position(|n| *n == key.0)
            };
            match index {
                Some(i) => {
                    values[i] = Some(map.next_value::<&'de RawValue>()?);
                    next = i + 1;
                }
                // Not a listed column: never written.
                None => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        Ok(values)
    }
}

/// A JSON string, borrowed from the input when it holds no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Whether a raw value is an object or an array.
fn is_nested(raw: &str) -> bool {
    matches!(raw.as_bytes().first(), Some(b'{' | b'['))
}

/// A value in the JSON file: scalars as PostgreSQL wrote them, nested JSON
/// indented under its key.
fn json_value(out: &mut Vec<u8>, value: &RawValue) {
    let raw = value.get();
    if !is_nested(raw) {
        out.extend_from_slice(raw.as_bytes());
        return;
    }
    let Ok(parsed) = serde_json::from_str::<serde_json::Value>(raw) else {
        out.extend_from_slice(raw.as_bytes());
        return;
    };
    let mut pretty = Vec::with_capacity(raw.len() * 2);
    let mut ser = serde_json::Serializer::with_formatter(
        &mut pretty,
        serde_json::ser::PrettyFormatter::with_indent(b"  "),
    );
    parsed.serialize(&mut ser).expect("a JSON value serializes");
    for &b in &pretty {
        out.push(b);
        if b == b'\n' {
            out.extend_from_slice(MEMBER_INDENT.as_bytes());
        }
    }
}

/// The text of a scalar (`None` for `null`); nested JSON as its JSON text.
fn scalar_text(value: &RawValue) -> Result<Option<Cow<'_, str>>, RowError> {
    let raw = value.get();
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<Text<'_>>(raw)
            .map(|t| Some(t.0))
            .map_err(|e| RowError(format!("a string value does not parse: {e}"))),
        Some(b'n') if raw == "null" => Ok(None),
        _ => Ok(Some(Cow::Borrowed(raw))),
    }
}

/// A value in the CSV file.
fn csv_value(out: &mut Vec<u8>, value: &RawValue) -> Result<(), RowError> {
    if let Some(text) = scalar_text(value)? {
        csv_field(out, &text);
    }
    Ok(())
}

/// One CSV field, quoted when it holds a separator, a quote, a line break
/// or surrounding spaces (which some readers would trim).
pub fn csv_field(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let quote = bytes
        .iter()
        .any(|&b| matches!(b, b',' | b'"' | b'\n' | b'\r'))
        || bytes.first() == Some(&b' ')
        || bytes.last() == Some(&b' ');
    if !quote {
        out.extend_from_slice(bytes);
        return;
    }
    out.push(b'"');
    for &b in bytes {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::contents::{Column, FileKind};

    fn spec(columns: &[(&str, &str)], storage: &[usize]) -> FileSpec {
        FileSpec {
            name: "posts".into(),
            kind: FileKind::Table,
            label: "Posts".into(),
            description: String::new(),
            retention: None,
            columns: columns
                .iter()
                .map(|(n, l)| Column {
                    name: (*n).into(),
                    label: (*l).into(),
                    type_name: "text".into(),
                })
                .collect(),
            excluded: Vec::new(),
            storage_columns: storage.to_vec(),
        }
    }

    fn write(spec: &FileSpec, rows: &[&str]) -> (String, String, Vec<String>) {
        let format = RowFormat::new(spec);
        let (mut json, mut csv, mut keys) = (b"[".to_vec(), Vec::new(), Vec::new());
        RowFormat::csv_header(spec, &mut csv);
        for (i, row) in rows.iter().enumerate() {
            format
                .write(row.as_bytes(), i == 0, &mut json, &mut csv, |k| {
                    keys.push(k.to_owned())
                })
                .unwrap();
        }
        json.extend_from_slice(b"\n]\n");
        (
            String::from_utf8(json).unwrap(),
            String::from_utf8(csv).unwrap(),
            keys,
        )
    }

    #[test]
    fn json_is_pretty_with_labels_and_typed_values() {
        let s = spec(
            &[
                ("id", "ID"),
                ("name", "Name"),
                ("meta", "Details"),
                ("at", "Created at"),
            ],
            &[],
        );
        let (json, _, _) = write(
            &s,
            &[
                r#"{"id":1,"name":"Zoë \"Z\" Ångström","meta":{"b":[1,2],"a":null},"at":"2026-01-02T03:04:05.123+00:00"}"#,
                r#"{"id":2,"name":"山田太郎","meta":null,"at":null}"#,
            ],
        );
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!([
                {"ID": 1, "Name": "Zoë \"Z\" Ångström", "Details": {"a": null, "b": [1, 2]},
                 "Created at": "2026-01-02T03:04:05.123+00:00"},
                {"ID": 2, "Name": "山田太郎", "Details": null, "Created at": null}
            ])
        );
        assert!(
            json.starts_with("[\n  {\n    \"ID\": 1,\n    \"Name\": "),
            "{json}"
        );
        assert!(
            json.contains("\"Details\": {\n      \"a\": null,"),
            "{json}"
        );
        assert!(json.contains("山田太郎"), "not escaped: {json}");
    }

    #[test]
    fn csv_has_labels_text_values_and_quotes() {
        let s = spec(
            &[
                ("id", "ID"),
                ("name", "Full name, as given"),
                ("meta", "Details"),
            ],
            &[],
        );
        let (_, csv, _) = write(
            &s,
            &[
                r#"{"id":1,"name":"Zoë \"Z\"\nÅngström","meta":{"a":1}}"#,
                r#"{"id":2.5,"name":null,"meta":[1, 2]}"#,
                r#"{"id":3,"name":" padded","meta":true}"#,
            ],
        );
        assert_eq!(
            csv,
            "\u{feff}ID,\"Full name, as given\",Details\r\n\
             1,\"Zoë \"\"Z\"\"\nÅngström\",\"{\"\"a\"\":1}\"\r\n\
             2.5,,\"[1, 2]\"\r\n\
             3,\" padded\",true\r\n"
        );
    }

    #[test]
    fn only_listed_columns_are_written_in_their_order() {
        let s = spec(&[("id", "ID"), ("email", "E-mail")], &[]);
        let (json, csv, _) = write(
            &s,
            &[r#"{"email":"a@example.com","password_hash":"secret","id":7}"#],
        );
        assert!(!json.contains("secret") && !csv.contains("secret"));
        assert!(
            json.contains("\"ID\": 7,\n    \"E-mail\": \"a@example.com\""),
            "{json}"
        );
        assert!(csv.ends_with("7,a@example.com\r\n"), "{csv}");
        // A missing column is null / empty.
        let (json, csv, _) = write(&s, &[r#"{"id":8}"#]);
        assert!(json.contains("\"E-mail\": null"), "{json}");
        assert!(csv.ends_with("8,\r\n"), "{csv}");
    }

    #[test]
    fn storage_keys_are_handed_back() {
        let s = spec(&[("id", "ID"), ("key", "Stored as")], &[1]);
        let (_, _, keys) = write(
            &s,
            &[
                r#"{"id":1,"key":"workspaces/1/files/a b"}"#,
                r#"{"id":2,"key":null}"#,
                r#"{"id":3,"key":"x\/y\u00e9"}"#,
            ],
        );
        assert_eq!(keys, ["workspaces/1/files/a b", "x/yé"]);
    }

    #[test]
    fn a_row_that_is_not_an_object_is_an_error() {
        let s = spec(&[("id", "ID")], &[]);
        let format = RowFormat::new(&s);
        for raw in ["[1]", "{\"id\":", "{\"id\":1} x", "null"] {
            assert!(
                format
                    .write(
                        raw.as_bytes(),
                        true,
                        &mut Vec::new(),
                        &mut Vec::new(),
                        |_| {}
                    )
                    .is_err(),
                "{raw}"
            );
        }
    }

    #[test]
    fn jsonb_rows_lose_their_version_byte() {
        let raw = b"\x01{\"a\":1}";
        assert_eq!(
            RawJson::from_sql(&Type::JSONB, raw).unwrap().0,
            b"{\"a\":1}"
        );
        assert_eq!(RawJson::from_sql(&Type::JSON, b"{}").unwrap().0, b"{}");
        assert!(RawJson::from_sql(&Type::JSONB, b"\x02{}").is_err());
    }
}
