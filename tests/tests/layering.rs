//! The extension's modules depend on each other one way only: a module uses
//! the modules below it in [`LAYERS`] and never one above it (see the module
//! list in extension/src/lib.rs). Read from the sources, so that a new
//! `use crate::...` going upwards fails here rather than in a review.

use std::collections::BTreeMap;
use std::path::Path;

/// From the top (closest to the SQL surface) down.
const LAYERS: &[&str] = &[
    "jobs",
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
