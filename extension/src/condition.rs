//! The row guard's `WHEN` condition, `lifecycle.row_may_be_held(regclass,
//! bigint, VARIADIC "any")`: could this old row be under legal hold?
//!
//! It runs for every row an UPDATE or DELETE of a guarded table touches, so
//! the common case is answered without calling into PostgreSQL: the backend
//! keeps, for the relation it last answered for, the held ids of each scope
//! column in the column's own binary form (a memo, valid while the cache
//! generations it was built under are current).
//!
//! It is also executable by PUBLIC (a trigger's condition runs with the
//! rights of whoever writes the table), so anyone can call it with any
//! arguments. Keys are only ever read as the type of their scope column
//! after the call site's argument types were checked against the data map:
//! each call site (its `FmgrInfo`) remembers in `fn_extra` the memo it was
//! checked against, and the per-row path answers only for that memo.
//! Anything else goes through [`row_may_be_held`], inside the error
//! boundary, which checks and remembers.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use pgrx::pg_sys;

use crate::cache;
use crate::error::{LcError, LcResult};
use crate::keys;

/// The held scope ids of one scope column, in the column's own binary form,
/// so that keys are compared without converting them. Few holds are in
/// force at a time: the ids are kept sorted and searched linearly, or by
/// bisection when there are many, which is cheaper than hashing the key of
/// every row.
enum KeySet {
    /// No hold in force for this scope type.
    Empty,
    Ints(Vec<i64>),
    Uuids(Vec<[u8; 16]>),
    /// Text of a deterministic collation: equal means byte for byte equal.
    Texts(Vec<Box<[u8]>>),
    /// Compared in its own type by the row guard itself: always "maybe".
    Unknown,
}

/// Up to this many ids a linear search beats bisection.
const LINEAR_SEARCH_MAX: usize = 16;

fn sorted_set<T: Ord>(mut ids: Vec<T>) -> Vec<T> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn set_contains<T: Ord + ?Sized, E: std::borrow::Borrow<T> + Ord>(ids: &[E], key: &T) -> bool {
    if ids.len() <= LINEAR_SEARCH_MAX {
        ids.iter().any(|id| id.borrow() == key)
    } else {
        ids.binary_search_by(|id| id.borrow().cmp(key)).is_ok()
    }
}

/// What the condition knows about one relation, valid while the cache
/// generations it was built under are current.
struct RowMemo {
    relid: pg_sys::Oid,
    gens: (u64, u64),
    /// Unique per memo built in this backend: what a call site records once
    /// its argument types are checked against `key_types`.
    serial: u64,
    signature: Option<i64>,
    /// The type of each scope column, in signature order: what the keys
    /// must be.
    key_types: Vec<pg_sys::Oid>,
    keysets: Vec<KeySet>,
    any: bool,
}

/// The memo of the relation the condition was last evaluated for: owned
/// (built by `Box::into_raw`, freed when replaced). A backend runs one
/// thread; a static rather than a thread-local keeps the per-row access to
/// an ordinary load (a thread-local in a shared library costs a call).
static ROW_MEMO: AtomicPtr<RowMemo> = AtomicPtr::new(std::ptr::null_mut());
static SERIAL: AtomicU64 = AtomicU64::new(1);

/// The held ids of `scope` read as values of its column's type.
fn keyset(scope: &cache::ScopeColumn, ids: &[&str]) -> LcResult<KeySet> {
    if ids.is_empty() {
        return Ok(KeySet::Empty);
    }
    if scope.via.is_some() {
        // The row's scope id is its parent's: the row guard looks it up.
        return Ok(KeySet::Unknown);
    }
    let base = crate::namespace::base_type(scope.type_oid);
    let mut values = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(v) = keys::value(base, id)? {
            values.push(v);
        }
    }
    let deterministic = || {
        scope.collation == pg_sys::Oid::INVALID
            || unsafe { pg_sys::get_collation_isdeterministic(scope.collation) }
    };
    Ok(match base {
        t if t == pg_sys::INT2OID || t == pg_sys::INT4OID || t == pg_sys::INT8OID => KeySet::Ints(
            sorted_set(values.iter().map(|d| d.value() as i64).collect()),
        ),
        t if t == pg_sys::UUIDOID => KeySet::Uuids(sorted_set(
            values
                .iter()
                .map(|d| unsafe { *d.cast_mut_ptr::<[u8; 16]>() })
                .collect(),
        )),
        t if (t == pg_sys::TEXTOID || t == pg_sys::VARCHAROID) && deterministic() => {
            KeySet::Texts(sorted_set(
                values
                    .iter()
                    .map(|d| unsafe { varlena_bytes(d.cast_mut_ptr()).into() })
                    .collect(),
            ))
        }
        _ => KeySet::Unknown,
    })
}

/// The bytes of a varlena that is neither compressed nor out of line.
///
/// # Safety
/// `v` must point to such a varlena, alive for the returned borrow.
unsafe fn varlena_bytes<'a>(v: *mut pg_sys::varlena) -> &'a [u8] {
    std::slice::from_raw_parts(
        pgrx::varlena::vardata_any(v) as *const u8,
        pgrx::varlena::varsize_any_exhdr(v),
    )
}

fn build_row_memo(relid: pg_sys::Oid, gens: (u64, u64)) -> LcResult<RowMemo> {
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let Some(guard) = cache::table_guard(relid)? else {
        return Ok(RowMemo {
            relid,
            gens,
            serial,
            signature: None,
            key_types: Vec::new(),
            keysets: Vec::new(),
            any: false,
        });
    };
    let holds = cache::current_holds()?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut keysets = Vec::with_capacity(guard.scopes.len());
    for scope in &guard.scopes {
        let ids: Vec<&str> = holds
            .in_force(&scope.scope_type, now)
            .map(|h| h.scope_id.as_str())
            .collect();
        keysets.push(keyset(scope, &ids)?);
    }
    Ok(RowMemo {
        relid,
        gens,
        serial,
        signature: Some(cache::signature_digest(&guard.signature)),
        key_types: guard.scopes.iter().map(|s| s.type_oid).collect(),
        any: keysets.iter().any(|k| !matches!(k, KeySet::Empty)),
        keysets,
    })
}

/// Whether `key` (not null) is among the held ids of `set`. `None` when
/// the key is a compressed or out-of-line text and `expand` is false.
///
/// # Safety
/// The datum must be of the type of the set's scope column.
unsafe fn keyset_hit(set: &KeySet, key: pg_sys::Datum, expand: bool) -> Option<bool> {
    Some(match set {
        KeySet::Empty => false,
        KeySet::Unknown => true,
        KeySet::Ints(ids) => set_contains(ids, &(key.value() as i64)),
        KeySet::Uuids(ids) => set_contains(ids, &*key.cast_mut_ptr::<[u8; 16]>()),
        KeySet::Texts(ids) => {
            let mut v = key.cast_mut_ptr::<pg_sys::varlena>();
            if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
                if !expand {
                    return None;
                }
                v = pg_sys::pg_detoast_datum_packed(v);
            }
            set_contains::<[u8], _>(ids, varlena_bytes(v))
        }
    })
}

/// Answer from a memo: `None` when a key needs PostgreSQL to read it and
/// `expand` is false.
///
/// # Safety
/// Each key datum must be of the memo's key type at its position.
unsafe fn answer(
    memo: &RowMemo,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
    expand: bool,
) -> Option<bool> {
    if !memo.any {
        return Some(false);
    }
    if memo.signature != Some(signature) || memo.keysets.len() != keys.len() {
        return Some(true);
    }
    for (set, key) in memo.keysets.iter().zip(keys) {
        if !key.isnull && keyset_hit(set, key.value, expand)? {
            return Some(true);
        }
    }
    Some(false)
}

/// The condition, per row, when this backend already knows the relation's
/// held ids under the current cache generations and the call site's
/// argument types were checked against that knowledge (`checked` is the
/// serial the call site recorded). `None` sends the call to
/// [`row_may_be_held`]: the memo must be (re)built, the call site checked,
/// or a key needs PostgreSQL to read it (a compressed or out-of-line text).
///
/// It runs outside the error boundary: it never calls into PostgreSQL,
/// never allocates and cannot panic, and it reads no key unless `checked`
/// is the current memo's serial.
///
/// # Safety
/// `keys` must be the call's arguments after the first two.
pub unsafe fn row_may_be_held_memoized(
    checked: u64,
    registered: pg_sys::Oid,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
) -> Option<bool> {
    let memo = ROW_MEMO.load(Ordering::Relaxed);
    if memo.is_null() {
        return None;
    }
    // SAFETY: owned by ROW_MEMO and only freed when replaced, in
    // `row_may_be_held`, never while this reference is alive.
    let memo = &*memo;
    if memo.serial != checked
        || memo.relid != registered
        || memo.gens != cache::generations_unchecked()
    {
        return None;
    }
    // SAFETY: the call site's argument types are the memo's key types.
    answer(memo, signature, keys, false)
}

/// The argument types of the call site, after the first two, when
/// PostgreSQL knows them (it does for a trigger's condition and any call in
/// SQL; not for a call from C without an expression).
///
/// # Safety
/// `flinfo` must be NULL or the call's `FmgrInfo`.
unsafe fn argument_types(flinfo: *mut pg_sys::FmgrInfo, nkeys: usize) -> Option<Vec<pg_sys::Oid>> {
    if flinfo.is_null() || (*flinfo).fn_expr.is_null() {
        return None;
    }
    if pg_sys::get_fn_expr_variadic(flinfo) {
        // VARIADIC ARRAY[...]: one array, not the row's keys.
        return Some(vec![pg_sys::ANYARRAYOID]);
    }
    Some(
        (0..nkeys)
            .map(|i| pg_sys::get_fn_expr_argtype(flinfo, (i + 2) as i32))
            .collect(),
    )
}

/// The condition: could this old row be held? `keys` are the row's
/// scope-column values, in the order `signature` names. False means
/// certainly not held; true queues the row guard, which decides with
/// tenant and expiry in the columns' own types. A signature that no longer
/// matches the data map (the trigger predates a data-map change) answers
/// true.
///
/// Builds this relation's memo when needed, and checks the call site's
/// argument types against it before any key is read: keys of other types
/// than the scope columns' are refused (`42804`), never read. A call site
/// found right records the memo's serial in `fn_extra`, and
/// [`row_may_be_held_memoized`] answers its next rows.
///
/// # Safety
/// `flinfo` must be NULL or the call's `FmgrInfo`; `keys` the call's
/// arguments after the first two.
pub unsafe fn row_may_be_held(
    flinfo: *mut pg_sys::FmgrInfo,
    registered: pg_sys::Oid,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
) -> LcResult<bool> {
    let gens = cache::generations();
    let mut memo = ROW_MEMO.load(Ordering::Relaxed);
    // SAFETY: see `row_may_be_held_memoized`.
    if memo.is_null() || (*memo).relid != registered || (*memo).gens != gens {
        let fresh = Box::into_raw(Box::new(build_row_memo(registered, gens)?));
        let old = ROW_MEMO.swap(fresh, Ordering::Relaxed);
        if !old.is_null() {
            drop(Box::from_raw(old));
        }
        memo = fresh;
    }
    let memo = &*memo;
    if !memo.any {
        return Ok(false);
    }
    if memo.signature != Some(signature) || memo.key_types.len() != keys.len() {
        // Not this relation's current keys: nothing is read.
        return Ok(true);
    }
    match argument_types(flinfo, keys.len()) {
        None => return Ok(true),
        Some(types) if types != memo.key_types => {
            let name = crate::spi::one::<String>(
                "SELECT $1::pg_catalog.regclass::text",
                &[registered.into()],
            )?
            .unwrap_or_default();
            let type_names = |ts: &[pg_sys::Oid]| -> LcResult<String> {
                Ok(ts
                    .iter()
                    .map(|t| crate::namespace::display_type(*t))
                    .collect::<LcResult<Vec<_>>>()?
                    .join(", "))
            };
            return Err(LcError::datatype_mismatch(format!(
                "lifecycle.row_may_be_held() got keys of other types than the scope columns of {name}"
            ))
            .detail(format!(
                "The keys are of types ({}); the scope columns are of types ({}).",
                type_names(&types)?,
                type_names(&memo.key_types)?
            ))
            .hint("This function is the row guard's condition: leave calling it to the guard trigger."));
        }
        Some(_) => {
            // Checked: remember it for the call site's next rows.
            let mut extra = (*flinfo).fn_extra as *mut u64;
            if extra.is_null() {
                extra = pg_sys::MemoryContextAlloc((*flinfo).fn_mcxt, std::mem::size_of::<u64>())
                    as *mut u64;
                (*flinfo).fn_extra = extra.cast();
            }
            *extra = memo.serial;
        }
    }
    // SAFETY: the argument types were just checked against the memo.
    Ok(answer(memo, signature, keys, true).unwrap_or(true))
}
