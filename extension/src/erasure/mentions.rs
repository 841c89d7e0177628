//! `lifecycle.mentions(text, text[])`, called once per row of every table
//! an erasure searches: the identifiers' matcher is built once and kept
//! for as long as the calls pass the same identifiers.

use std::cell::RefCell;
use std::rc::Rc;

use lifecycle_core::redact::Matcher;
use pgrx::Array;

thread_local! {
    /// The identifiers of the last call (as passed) and their matcher.
    static LAST: RefCell<Option<(Vec<String>, Rc<Matcher>)>> = const { RefCell::new(None) };
}

/// Whether `value` mentions one of `identifiers` (NULL elements ignored).
pub fn mentions(value: &str, identifiers: Array<'_, &str>) -> bool {
    let same = |kept: &[String]| {
        let mut given = identifiers.iter().flatten();
        kept.iter().all(|k| given.next() == Some(k.as_str())) && given.next().is_none()
    };
    let cached = LAST.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(kept, _)| same(kept))
            .map(|(_, m)| Rc::clone(m))
    });
    let matcher = cached.unwrap_or_else(|| {
        let ids: Vec<String> = identifiers.iter().flatten().map(str::to_string).collect();
        let m = Rc::new(Matcher::new(&ids));
        LAST.with(|l| *l.borrow_mut() = Some((ids, Rc::clone(&m))));
        m
    });
    matcher.mentions(value)
}
