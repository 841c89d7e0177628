//! The extension's modules depend on each other one way only: a module uses
//! the modules below it in [`LAYERS`] and never one above it (see the module
//! list in extension/src/lib.rs). Read from the sources, so that a new
//! `use crate::...` going upwards fails here rather than in a review.

use std::collections::BTreeMap;
use std::path::Path;

/// From the top (closest to the SQL surface) down.
const LAYERS: &[&str] = &[
    "jobs",
    "export",
    "erasure",
    "ddl",
    "datamap",
    "guard",
    "holds",
    "audit",
    "condition",
    "keys",
    "cache",
    "privilege",
    "row_security",
    "subxact",
    "namespace",
    "spi",
    "error",
];

/// The source of each module: `src/<m>.rs` or every file under `src/<m>/`.
fn sources(src: &Path) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for m in LAYERS {
        let mut text = String::new();
        let file = src.join(format!("{m}.rs"));
        if file.exists() {
            text.push_str(&std::fs::read_to_string(&file).expect("module source"));
        }
        let dir = src.join(m);
        if dir.is_dir() {
            for entry in std::fs::read_dir(&dir).expect("module directory") {
                let path = entry.expect("entry").path();
                if path.extension().is_some_and(|e| e == "rs") {
                    text.push_str(&std::fs::read_to_string(&path).expect("module source"));
                }
            }
        }
        assert!(!text.is_empty(), "no source for module {m}");
        out.insert(*m, text);
    }
    out
}

/// Modules named as `crate::<m>` in code (comment lines left out).
fn uses(text: &str) -> Vec<&'static str> {
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    LAYERS
        .iter()
        .copied()
        .filter(|m| {
            code.match_indices(&format!("crate::{m}")).any(|(i, s)| {
                // a whole module name, not a prefix of a longer one
                !code[i + s.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .collect()
}

#[test]
fn extension_modules_depend_downwards_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/src");
    let rank = |m: &str| LAYERS.iter().position(|x| *x == m).expect("layer");
    let mut upwards = Vec::new();
    for (m, text) in sources(&src) {
        for used in uses(&text) {
            if used != m && rank(used) < rank(m) {
                upwards.push(format!("{m} uses {used}"));
            }
        }
    }
    assert!(
        upwards.is_empty(),
        "modules that use a module above them: {upwards:?}"
    );
}

/// The functions of `src` that follow `marker` (an attribute or a
/// signature's start): (name, the text up to the function's closing brace
/// at the start of a line).
fn functions_after<'a>(src: &'a str, marker: &str) -> Vec<(&'a str, &'a str)> {
    src.match_indices(marker)
        .map(|(at, _)| {
            let rest = &src[at..];
            let name_at = rest.find("fn ").expect("a function after the marker") + 3;
            let name_len = rest[name_at..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .expect("a function name");
            let end = rest.find("\n}\n").expect("the function's end");
            (&rest[name_at..name_at + name_len], &rest[..end])
        })
        .collect()
}

/// Every SQL entry point runs its body through `entry::boundary`, which
/// pins the search path (nothing it parses resolves to another role's
/// objects) and reports errors with their own SQLSTATE. The exceptions
/// call nothing in PostgreSQL: the pure text functions, and the row
/// condition's fast path, whose slow path is guarded.
#[test]
fn every_entry_point_runs_through_the_boundary() {
    let lib = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../extension/src/lib.rs"),
    )
    .expect("lib.rs");
    const PURE: &[&str] = &["redact_text", "redact_json", "mentions"];
    let externs = functions_after(&lib, "\n#[pg_extern");
    assert!(externs.len() > 40, "entry points found: {}", externs.len());
    let mut unguarded: Vec<&str> = externs
        .iter()
        .filter(|(name, body)| !PURE.contains(name) && !body.contains("boundary("))
        .map(|(name, _)| *name)
        .collect();
    for (name, body) in functions_after(&lib, "extern \"C-unwind\" fn") {
        let guarded = body.contains("boundary(")
            || (name == "lifecycle_row_may_be_held"
                && body.contains("row_may_be_held_full(fcinfo)"));
        if !guarded {
            unguarded.push(name);
        }
    }
    assert!(
        unguarded.is_empty(),
        "entry points that do not run through entry::boundary: {unguarded:?}"
    );
    for (name, body) in externs.iter().filter(|(name, _)| PURE.contains(name)) {
        assert!(
            !body.contains("Spi") && !body.contains("pg_sys::"),
            "{name} is listed as pure but calls into PostgreSQL"
        );
    }
}
