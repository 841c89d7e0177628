//! Key values in their column's own type.
//!
//! A legal hold names its scope by text (`scope_id`, `tenant_id`), but a
//! row's key is a value of its column's type, and two spellings the type
//! treats as equal must be held alike: an upper-case uuid, `'042'` for a
//! bigint, `'abc'` for a `character(5)` column holding `'abc  '`, `'Alice'`
//! for a case-insensitive column holding `'alice'`. So ids are never
//! compared as text with a column: they are read with the column type's
//! input function and compared with its default equality operator under the
//! column's collation.
//!
//! Reading an id can fail (`'abc'` is no bigint): such an id matches no
//! value of that type. Conversions run in a subtransaction so that the
//! failure stays contained, and are cached per backend until the holds or
//! the data map change.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;

use pgrx::pg_sys;

use crate::error::LcResult;

/// A conversion cache: ids read as values of a type, in a memory context of
/// its own (reset when the cache generations move on).
struct Cache {
    gens: (u64, u64),
    context: pg_sys::MemoryContext,
    values: HashMap<(pg_sys::Oid, String), Option<pg_sys::Datum>>,
}

thread_local! {
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

/// Read `id` with the input function of `type_oid`, in the current memory
/// context; `None` when it is not valid input (or contains a NUL).
fn read(type_oid: pg_sys::Oid, id: &str) -> Option<pg_sys::Datum> {
    let cstr = CString::new(id).ok()?;
    let mut input = pg_sys::Oid::INVALID;
    let mut ioparam = pg_sys::Oid::INVALID;
    unsafe { pg_sys::getTypeInputInfo(type_oid, &mut input, &mut ioparam) };
    crate::subxact::run(|| unsafe {
        Ok(pg_sys::OidInputFunctionCall(
            input,
            cstr.as_ptr() as *mut std::ffi::c_char,
            ioparam,
            -1,
        ))
    })
    .ok()
}

/// `id` as a value of `type_oid` (a base type), cached: `None` when it is
/// not a valid value of the type. The datum lives until the holds or the
/// data map change.
pub fn value(type_oid: pg_sys::Oid, id: &str) -> LcResult<Option<pg_sys::Datum>> {
    let gens = crate::cache::generations();
    let key = (type_oid, id.to_string());
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_mut() {
            Some(cache) if cache.gens == gens => cache.values.get(&key).copied(),
            Some(cache) => {
                unsafe { pg_sys::MemoryContextReset(cache.context) };
                cache.values.clear();
                cache.gens = gens;
                None
            }
            None => None,
        }
    });
    if let Some(v) = cached {
        return Ok(v);
    }
    let context = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.get_or_insert_with(|| Cache {
            gens,
            context: unsafe {
                pg_sys::AllocSetContextCreateExtended(
                    pg_sys::TopMemoryContext,
                    c"lifecycle key values".as_ptr(),
                    pg_sys::ALLOCSET_DEFAULT_MINSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_INITSIZE as usize,
                    pg_sys::ALLOCSET_DEFAULT_MAXSIZE as usize,
                )
            },
            values: HashMap::new(),
        })
        .context
    });
    let v = unsafe {
        let old = pg_sys::MemoryContextSwitchTo(context);
        let v = read(type_oid, id);
        pg_sys::MemoryContextSwitchTo(old);
        v
    };
    CACHE.with(|c| {
        if let Some(cache) = c.borrow_mut().as_mut() {
            cache.values.insert(key, v);
        }
    });
    Ok(v)
}

/// Whether `datum` (a value of `type_oid`, not null) equals `id` read as a
/// value of that type, by the type's default equality under `collation`.
///
/// # Safety
/// `datum` must be a valid value of `type_oid`.
pub unsafe fn equals(
    type_oid: pg_sys::Oid,
    collation: pg_sys::Oid,
    datum: pg_sys::Datum,
    id: &str,
) -> LcResult<bool> {
    let base = crate::namespace::base_type(type_oid);
    let Some(held) = value(base, id)? else {
        return Ok(false);
    };
    let entry = pg_sys::lookup_type_cache(base, pg_sys::TYPECACHE_EQ_OPR_FINFO as i32);
    if entry.is_null() || (*entry).eq_opr_finfo.fn_oid == pg_sys::Oid::INVALID {
        // No equality to compare with: only identical text can match.
        return Ok(canonical(type_oid, id)?.is_some_and(|c| c == output(type_oid, datum)));
    }
    // A collatable type compared without a column collation: its own.
    let collation = if collation == pg_sys::Oid::INVALID {
        pg_sys::get_typcollation(base)
    } else {
        collation
    };
    let r = pg_sys::FunctionCall2Coll(&mut (*entry).eq_opr_finfo, collation, datum, held);
    Ok(r.value() != 0)
}

/// The text form of a value of `type_oid`.
///
/// # Safety
/// `datum` must be a valid value of `type_oid`.
pub unsafe fn output(type_oid: pg_sys::Oid, datum: pg_sys::Datum) -> String {
    let mut out = pg_sys::Oid::INVALID;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut out, &mut varlena);
    let cstr = pg_sys::OidOutputFunctionCall(out, datum);
    let s = std::ffi::CStr::from_ptr(cstr)
        .to_string_lossy()
        .into_owned();
    pg_sys::pfree(cstr.cast());
    s
}

/// `id` in the canonical text form of `type_oid` (what the type prints for
/// it), or `None` when it is not a valid value of the type.
pub fn canonical(type_oid: pg_sys::Oid, id: &str) -> LcResult<Option<String>> {
    let base = crate::namespace::base_type(type_oid);
    Ok(value(base, id)?.map(|d| unsafe { output(base, d) }))
}
