//! Per-backend caches of the legal holds in force and of each guarded
//! relation's scope columns, kept coherent with PostgreSQL's invalidation
//! messages.
//!
//! Why a cache: the row guard fires for every row a statement updates or
//! deletes. With no hold in force for any scope the table maps, the guard
//! must cost next to nothing, so it must not query `lifecycle.legal_holds`
//! per row.
//!
//! Coherence: every change to `lifecycle.legal_holds` or to a data-map table
//! queues a relcache invalidation of that table (statement triggers in
//! `sql/extension/guards.sql`), which PostgreSQL delivers to every backend at
//! commit. A backend processes pending invalidations whenever it acquires a
//! relation lock, so the `ROW EXCLUSIVE` lock a DELETE or UPDATE takes on its
//! table makes it see every hold committed before that lock was granted.
//! `place_hold` takes a `SHARE` lock on every relation in the hold's scope,
//! which waits for in-flight writers and keeps new ones out until the hold
//! commits: a write either finishes before the hold exists or sees it.
//! Holds are read with a fresh snapshot (not the transaction's), so this also
//! holds under REPEATABLE READ and SERIALIZABLE.
//!
//! The facts read from the application's tables themselves (column numbers
//! and types, names, indexes, foreign keys) are kept with a fingerprint of
//! each relation they were read from, taken from the relation cache. Every
//! VACUUM and ANALYZE of a table invalidates it too (it updates the table's
//! statistics in `pg_class`); such an invalidation changes nothing the
//! caches know, so a tracked relation's invalidation is only noted, and the
//! next reader compares the relation's fingerprint with the one kept: the
//! caches start again only when it differs. Renamed schemas, types and
//! operators, which invalidate no relation, are caught through the system
//! caches' own invalidations.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::error::LcResult;
use crate::privilege;

/// One legal hold in force.
#[derive(Debug, Clone)]
pub struct Hold {
    pub id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub tenant_id: Option<String>,
    pub reason: String,
    pub created_by: String,
    /// `TimestampTz` (microseconds since 2000-01-01), if the hold expires.
    pub expires_at: Option<i64>,
}

impl Hold {
    pub fn in_force_at(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }

    pub fn describe_scope(&self) -> String {
        match &self.tenant_id {
            Some(t) if self.scope_type != "tenant" => {
                format!("{} {} in tenant {}", self.scope_type, self.scope_id, t)
            }
            _ => format!("{} {}", self.scope_type, self.scope_id),
        }
    }
}

/// A column that ties a row to a scope (a subject type, or `tenant`).
#[derive(Debug, Clone)]
pub struct ScopeColumn {
    pub scope_type: String,
    pub column: String,
    pub attnum: i16,
    /// The column's type (a domain, if it is declared with one).
    pub type_oid: pg_sys::Oid,
    /// The column's collation (`InvalidOid` for types without one).
    pub collation: pg_sys::Oid,
    /// Set when the column links each row to a registered parent that
    /// carries the scope (a post's channel, whose workspace is the post's):
    /// the row's scope id is the parent's value.
    pub via: Option<Via>,
}

/// A path through a parent: `column` of the row references the parent's
/// key; the parent's `parent_column` holds the scope id.
#[derive(Debug, Clone)]
pub struct Via {
    pub parent_name: String,
    /// The parent's scope column: type (base) and collation.
    pub parent_type: pg_sys::Oid,
    pub parent_collation: pg_sys::Oid,
    /// `SELECT EXISTS (...)`: does the parent row whose key is `$1` (text)
    /// hold the scope id `$2` (text, canonical for `parent_type`)?
    pub match_sql: String,
    /// A condition on the row aliased `c`: its parent holds the scope id
    /// `$1` (text) (for scans of a whole relation).
    pub rows_sql: String,
    /// Every relation on the path (the parent and the parents after it).
    pub relations: Vec<pg_sys::Oid>,
}

/// What the guards need to know about one relation (a registered table or
/// a partition of one).
#[derive(Debug)]
pub struct TableGuard {
    pub relid: pg_sys::Oid,
    /// The registered relation (the partitioned root for a partition).
    pub registered: pg_sys::Oid,
    /// Qualified, quoted name of `relid`, for messages and queries.
    pub name: String,
    pub scopes: Vec<ScopeColumn>,
    /// The column mapped to the `tenant` scope, if the table is tenant-scoped.
    pub tenant: Option<ScopeColumn>,
    /// Soft-delete column: (name, attnum, type oid).
    pub soft_delete: Option<(String, i16, pg_sys::Oid)>,
    /// "scope:column,..." in scope order: the row guard's WHEN condition
    /// passes keys in this order and this signature along with them.
    pub signature: String,
}

/// A 64-bit digest of a signature (FNV-1a): what the row guard's `WHEN`
/// condition carries, so that the trigger's stored expression stays small
/// (PostgreSQL reads it back for every statement).
pub fn signature_digest(signature: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in signature.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h as i64
}

/// The signature of a list of (scope type, column) pairs.
pub fn scope_signature<'a>(scopes: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    scopes
        .map(|(t, c)| format!("{t}:{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Guard configurations by relation (None: not guarded).
type GuardMap = HashMap<pg_sys::Oid, Option<Rc<TableGuard>>>;

#[derive(Default)]
pub struct Holds {
    pub by_scope: HashMap<String, Vec<Hold>>,
    /// Scope ids with a hold, per scope type (for a quick "not held").
    pub ids: HashMap<String, HashSet<String>>,
}

impl Holds {
    /// Holds of `scope_type` whose scope id is `scope_id` (may have expired).
    pub fn matching<'a>(
        &'a self,
        scope_type: &str,
        scope_id: &'a str,
    ) -> impl Iterator<Item = &'a Hold> {
        self.by_scope
            .get(scope_type)
            .into_iter()
            .flatten()
            .filter(move |h| h.scope_id == scope_id)
    }

    /// Holds of `scope_type` in force at `now`.
    pub fn in_force<'a>(&'a self, scope_type: &str, now: i64) -> impl Iterator<Item = &'a Hold> {
        self.by_scope
            .get(scope_type)
            .into_iter()
            .flatten()
            .filter(move |h| h.in_force_at(now))
    }

    /// Whether any hold of `scope_type` is in force at `now`.
    pub fn any_in_force(&self, scope_type: &str, now: i64) -> bool {
        self.by_scope
            .get(scope_type)
            .is_some_and(|v| v.iter().any(|h| h.in_force_at(now)))
    }
}

/// Cache generations, bumped by the invalidation callback. A backend runs
/// one thread; plain statics (relaxed atomics, an ordinary load) rather than
/// thread-locals, because the row guard's condition reads them for every
/// row and a thread-local in a shared library costs a call each time.
static HOLDS_GEN: AtomicU64 = AtomicU64::new(1);
static MAP_GEN: AtomicU64 = AtomicU64::new(1);
/// Set while a tracked relation's invalidation waits for [`settle`] to
/// compare its fingerprint (the generations are not current meanwhile).
static PENDING: AtomicBool = AtomicBool::new(false);

/// Relations the caches read facts from, with their fingerprint then
/// (`None`: any invalidation of the relation counts as a change).
type Tracked = HashMap<pg_sys::Oid, Option<u64>>;

/// Invalidated tracked relations waiting for [`settle`], at most.
const DIRTY_MAX: usize = 32;
/// Hash values of the types whose names the caches hold, at most.
const TYPE_HASHES_MAX: usize = 64;

thread_local! {
    static HOLDS: RefCell<Option<(u64, Rc<Holds>)>> = const { RefCell::new(None) };
    static TABLES: RefCell<(u64, GuardMap)> = RefCell::new((0, HashMap::new()));
    static TRACKED: RefCell<Tracked> = RefCell::new(HashMap::new());
    static DIRTY: Cell<([pg_sys::Oid; DIRTY_MAX], usize)> =
        const { Cell::new(([pg_sys::Oid::INVALID; DIRTY_MAX], 0)) };
    /// Depth of [`load_tracked`]: an invalidation while facts are read
    /// makes them stale at once (they may predate it, their fingerprint not).
    static LOADING: Cell<u32> = const { Cell::new(0) };
    /// `TYPEOID` cache hash values of the tracked relations' column types
    /// (and their base types), and whether more did not fit.
    static TYPE_HASHES: Cell<([u32; TYPE_HASHES_MAX], usize, bool)> =
        const { Cell::new(([0; TYPE_HASHES_MAX], 0, false)) };
    static WATCHED: Cell<[pg_sys::Oid; 8]> = const { Cell::new([pg_sys::Oid::INVALID; 8]) };
    /// Set when one of the watched tables was invalidated: it may have been
    /// dropped with the extension and created again under another OID, so
    /// the next reader looks their OIDs up again.
    static WATCHED_STALE: Cell<bool> = const { Cell::new(false) };
    static CALLBACK_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

const HOLDS_SLOT: usize = 0;

/// The extension's own tables whose changes invalidate the caches. Slot 0 is
/// `legal_holds`; the rest are the data map.
const WATCHED_TABLES: [&str; 8] = [
    "legal_holds",
    "subject_tables",
    "tenant_tables",
    "tables",
    "memberships",
    "scopes",
    "column_rules",
    "links",
];

fn bump(gen: &AtomicU64) {
    gen.fetch_add(1, Ordering::Relaxed);
}

/// Note an invalidation of a tracked relation for [`settle`].
fn defer(relid: pg_sys::Oid) {
    let (mut dirty, n) = DIRTY.with(|d| d.get());
    if !dirty[..n].contains(&relid) {
        if n == DIRTY_MAX {
            bump(&MAP_GEN);
            return;
        }
        dirty[n] = relid;
        DIRTY.with(|d| d.set((dirty, n + 1)));
    }
    PENDING.store(true, Ordering::Relaxed);
}

/// Relcache invalidation callback. Runs inside invalidation processing:
/// it only flips counters and notes relation ids, never allocates in
/// PostgreSQL or errors.
unsafe extern "C-unwind" fn relcache_callback(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    if relid == pg_sys::Oid::INVALID {
        bump(&HOLDS_GEN);
        bump(&MAP_GEN);
        privilege::reset();
        return;
    }
    let watched = WATCHED.with(|w| w.get());
    if relid == watched[HOLDS_SLOT] {
        bump(&HOLDS_GEN);
        WATCHED_STALE.with(|w| w.set(true));
        return;
    }
    if watched[1..].contains(&relid) {
        bump(&MAP_GEN);
        WATCHED_STALE.with(|w| w.set(true));
        return;
    }
    if LOADING.with(|l| l.get()) > 0 {
        bump(&MAP_GEN);
        return;
    }
    let tracked = TRACKED.with(|t| match t.try_borrow() {
        Ok(map) => map.get(&relid).copied(),
        Err(_) => Some(None),
    });
    match tracked {
        None => {}
        Some(None) => bump(&MAP_GEN),
        Some(Some(_)) => defer(relid),
    }
}

/// Syscache invalidation callback for the names the caches hold that no
/// relation's invalidation covers: schemas, types (those of tracked
/// columns), operators and operator classes (a type's equality operator).
unsafe extern "C-unwind" fn syscache_callback(
    _arg: pg_sys::Datum,
    cacheid: std::ffi::c_int,
    hashvalue: u32,
) {
    if cacheid == pg_sys::SysCacheIdentifier::TYPEOID as std::ffi::c_int && hashvalue != 0 {
        let (hashes, n, full) = TYPE_HASHES.with(|t| t.get());
        if !full && !hashes[..n].contains(&hashvalue) {
            return;
        }
    }
    bump(&MAP_GEN);
}

fn ensure_callback() {
    if !CALLBACK_REGISTERED.with(|c| c.get()) {
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(relcache_callback), pg_sys::Datum::from(0));
            for cache in [
                pg_sys::SysCacheIdentifier::NAMESPACEOID,
                pg_sys::SysCacheIdentifier::TYPEOID,
                pg_sys::SysCacheIdentifier::OPEROID,
                pg_sys::SysCacheIdentifier::CLAOID,
            ] {
                pg_sys::CacheRegisterSyscacheCallback(
                    cache as std::ffi::c_int,
                    Some(syscache_callback),
                    pg_sys::Datum::from(0),
                );
            }
        }
        CALLBACK_REGISTERED.with(|c| c.set(true));
    }
}

/// The OID of the extension's table `name` (`InvalidOid` when there is
/// none), from the system cache.
fn own_table(name: &str) -> pg_sys::Oid {
    let Ok(name) = std::ffi::CString::new(name) else {
        return pg_sys::Oid::INVALID;
    };
    // SAFETY: plain cache lookups of NUL-terminated names.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"lifecycle".as_ptr(), true);
        if schema == pg_sys::Oid::INVALID {
            return pg_sys::Oid::INVALID;
        }
        pg_sys::get_relname_relid(name.as_ptr(), schema)
    }
}

/// Look the watched tables up when that has not been done yet or one of
/// them was invalidated since.
fn resolve_watched() -> LcResult<()> {
    if !WATCHED_STALE.with(|w| w.replace(false))
        && WATCHED.with(|w| w.get())[1] != pg_sys::Oid::INVALID
    {
        return Ok(());
    }
    let mut oids = [pg_sys::Oid::INVALID; 8];
    for (i, t) in WATCHED_TABLES.iter().enumerate() {
        oids[i] = own_table(t);
    }
    WATCHED.with(|w| w.set(oids));
    Ok(())
}

/// Compare the fingerprints of the tracked relations invalidated since the
/// last call with the ones kept: the data-map generation moves on when one
/// differs (or cannot be taken), and stays when all are the same (a VACUUM,
/// an ANALYZE, anything the caches do not read).
pub fn settle() {
    if !PENDING.swap(false, Ordering::Relaxed) {
        return;
    }
    let (dirty, n) = DIRTY.with(|d| d.replace(([pg_sys::Oid::INVALID; DIRTY_MAX], 0)));
    for relid in &dirty[..n] {
        let kept = TRACKED.with(|t| t.borrow().get(relid).copied());
        let same = match kept {
            None => true,
            Some(None) => false,
            Some(Some(fp)) => fingerprint(*relid).map(|(f, _)| f) == Some(fp),
        };
        if !same {
            bump(&MAP_GEN);
            return;
        }
    }
}

/// The current (holds, data map) cache generations: a value computed from
/// both caches stays valid while these are unchanged.
pub fn generations() -> (u64, u64) {
    ensure_callback();
    settle();
    generations_unchecked()
}

/// The data map's generation (see [`generations`]): a value computed from
/// the data map and the tables it names stays valid while it is unchanged.
/// [`load_tracked`] reads such a value.
pub fn map_generation() -> LcResult<u64> {
    ensure_callback();
    resolve_watched()?;
    settle();
    Ok(MAP_GEN.load(Ordering::Relaxed))
}

/// [`generations`] without making sure the invalidation callback is
/// registered: for callers that only compare with generations obtained from
/// [`generations`] earlier in this backend (which registered it). While an
/// invalidation waits for [`settle`], the data map's generation is 0, which
/// matches nothing.
#[inline]
pub fn generations_unchecked() -> (u64, u64) {
    (
        HOLDS_GEN.load(Ordering::Relaxed),
        if PENDING.load(Ordering::Relaxed) {
            0
        } else {
            MAP_GEN.load(Ordering::Relaxed)
        },
    )
}

/// Read facts with `f`, which returns them and the relations they were read
/// from; those relations are tracked from then on (see [`settle`]). An
/// invalidation of any relation while `f` runs makes the data-map
/// generation move on, so that facts read at a generation read before
/// calling this are stale at once if something changed meanwhile.
pub fn load_tracked<T>(f: impl FnOnce() -> LcResult<(T, Vec<pg_sys::Oid>)>) -> LcResult<T> {
    struct Loading;
    impl Drop for Loading {
        fn drop(&mut self) {
            LOADING.with(|l| l.set(l.get().saturating_sub(1)));
        }
    }
    ensure_callback();
    LOADING.with(|l| l.set(l.get() + 1));
    let _loading = Loading;
    let (value, relations) = f()?;
    for relid in relations {
        track(relid);
    }
    Ok(value)
}

/// Keep `relid`'s fingerprint (and the hash values of its column types).
fn track(relid: pg_sys::Oid) {
    let taken = fingerprint(relid);
    if let Some((_, types)) = &taken {
        let mut known = TYPE_HASHES.with(|t| t.get());
        for ty in types {
            // SAFETY: plain cache lookups.
            let base = unsafe { pg_sys::getBaseType(*ty) };
            for t in [*ty, base] {
                let h = unsafe {
                    pg_sys::GetSysCacheHashValue(
                        pg_sys::SysCacheIdentifier::TYPEOID as std::ffi::c_int,
                        pg_sys::Datum::from(t),
                        pg_sys::Datum::from(0),
                        pg_sys::Datum::from(0),
                        pg_sys::Datum::from(0),
                    )
                };
                let (hashes, n, full) = &mut known;
                if !hashes[..*n].contains(&h) {
                    if *n == TYPE_HASHES_MAX {
                        *full = true;
                    } else {
                        hashes[*n] = h;
                        *n += 1;
                    }
                }
            }
        }
        TYPE_HASHES.with(|t| t.set(known));
    }
    TRACKED.with(|t| {
        t.borrow_mut().insert(relid, taken.map(|(f, _)| f));
    });
}

/// A relation as the caches read it, reduced to a number, with the types of
/// its columns: its name, schema, owner and kind; its columns (name, number,
/// type, modifier, collation, NOT NULL, dropped, inherited); its indexes,
/// triggers and foreign keys (with their names). Not its statistics (pages,
/// tuples, frozen ids), which VACUUM and ANALYZE update. `None` for a relation that is gone
/// and for anything but a plain table that is not a partition (a partition
/// tree's facts come from several relations: any invalidation counts).
fn fingerprint(relid: pg_sys::Oid) -> Option<(u64, Vec<pg_sys::Oid>)> {
    // SAFETY: the relation is held open (reference counted) while it is
    // read, and closed after; the lists read are the relation cache's own
    // (foreign keys) or our copy (indexes, freed).
    unsafe {
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return None;
        }
        let form = &*(*rel).rd_rel;
        if form.relkind as u8 != pg_sys::RELKIND_RELATION || form.relispartition {
            pg_sys::RelationClose(rel);
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::ffi::CStr::from_ptr(form.relname.data.as_ptr())
            .to_bytes()
            .hash(&mut h);
        (
            form.relnamespace,
            form.relowner,
            form.reltype,
            form.relpersistence,
            form.relnatts,
            form.relchecks,
            form.relhassubclass,
        )
            .hash(&mut h);
        let desc = (*rel).rd_att;
        let attrs = (*desc).attrs.as_slice((*desc).natts as usize);
        let mut types = Vec::with_capacity(attrs.len());
        for a in attrs {
            std::ffi::CStr::from_ptr(a.attname.data.as_ptr())
                .to_bytes()
                .hash(&mut h);
            (
                a.attnum,
                a.atttypid,
                a.atttypmod,
                a.attcollation,
                a.attnotnull,
                a.attisdropped,
                a.attinhcount,
                a.attislocal,
            )
                .hash(&mut h);
            if !a.attisdropped {
                types.push(a.atttypid);
            }
        }
        let oids = |list: *mut pg_sys::List| -> &[pg_sys::ListCell] {
            if list.is_null() {
                &[]
            } else {
                std::slice::from_raw_parts((*list).elements, (*list).length as usize)
            }
        };
        let indexes = pg_sys::RelationGetIndexList(rel);
        for cell in oids(indexes) {
            cell.oid_value.hash(&mut h);
        }
        if !indexes.is_null() {
            pg_sys::list_free(indexes);
        }
        let triggers = (*rel).trigdesc;
        if !triggers.is_null() {
            for t in
                std::slice::from_raw_parts((*triggers).triggers, (*triggers).numtriggers as usize)
            {
                (t.tgoid, t.tgenabled).hash(&mut h);
            }
        }
        for cell in oids(pg_sys::RelationGetFKeyList(rel)) {
            let fk = cell.ptr_value as *const pg_sys::ForeignKeyCacheInfo;
            ((*fk).conoid, (*fk).confrelid).hash(&mut h);
            // Its name, which messages quote (renaming it invalidates the
            // table).
            let name = pg_sys::get_constraint_name((*fk).conoid);
            if !name.is_null() {
                std::ffi::CStr::from_ptr(name).to_bytes().hash(&mut h);
                pg_sys::pfree(name.cast());
            }
        }
        pg_sys::RelationClose(rel);
        Some((h.finish(), types))
    }
}

/// Queue an invalidation of one of the extension's tables: every backend
/// (this one at the next command, the others at commit) reloads its cache.
///
/// The extension's own writes call this explicitly: the statement triggers on
/// its tables cover other paths (a superuser's direct writes, a restore), but
/// tests showed writes issued through SPI inside the extension's functions
/// were not reliably seen by other backends without it.
pub fn invalidate(table: &str) -> LcResult<()> {
    let oid = own_table(table);
    if oid != pg_sys::Oid::INVALID {
        unsafe { pg_sys::CacheInvalidateRelcacheByRelid(oid) };
    }
    Ok(())
}

/// Run `f` with a snapshot taken now rather than the transaction's, so that
/// holds committed after a REPEATABLE READ transaction began are seen.
fn with_latest_snapshot<R>(f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot()) };
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    unsafe { pg_sys::PopActiveSnapshot() };
    match r {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

const HOLDS_SQL: &std::ffi::CStr = c"\
    SELECT id::text, scope_type, scope_id, tenant_id, reason, created_by, \
           ((extract(epoch FROM expires_at) - 946684800) * 1000000)::bigint::text \
      FROM lifecycle.legal_holds \
     WHERE active AND (expires_at IS NULL OR expires_at > pg_catalog.now())";

/// Read the holds in force with a snapshot taken now. The query runs
/// read-only, so SPI uses that snapshot rather than the transaction's: a
/// REPEATABLE READ or SERIALIZABLE writer sees holds committed after its
/// transaction began.
fn load_holds() -> LcResult<Holds> {
    privilege::as_extension_owner(|| {
        with_latest_snapshot(|| unsafe {
            use crate::error::LcError;
            if pg_sys::SPI_connect() != pg_sys::SPI_OK_CONNECT as i32 {
                return Err(LcError::internal("SPI_connect failed"));
            }
            let rc = pg_sys::SPI_execute(HOLDS_SQL.as_ptr(), true, 0);
            if rc != pg_sys::SPI_OK_SELECT as i32 {
                pg_sys::SPI_finish();
                return Err(LcError::internal(format!(
                    "reading legal holds failed ({rc})"
                )));
            }
            let table = pg_sys::SPI_tuptable;
            let n = pg_sys::SPI_processed as usize;
            let text = |row: usize, col: i32| -> Option<String> {
                let tuple = *(*table).vals.add(row);
                let v = pg_sys::SPI_getvalue(tuple, (*table).tupdesc, col);
                if v.is_null() {
                    None
                } else {
                    Some(std::ffi::CStr::from_ptr(v).to_string_lossy().into_owned())
                }
            };
            let mut holds = Holds::default();
            for row in 0..n {
                let h = Hold {
                    id: text(row, 1).unwrap_or_default(),
                    scope_type: text(row, 2).unwrap_or_default(),
                    scope_id: text(row, 3).unwrap_or_default(),
                    tenant_id: text(row, 4),
                    reason: text(row, 5).unwrap_or_default(),
                    created_by: text(row, 6).unwrap_or_default(),
                    expires_at: text(row, 7).and_then(|s| s.parse::<i64>().ok()),
                };
                holds
                    .ids
                    .entry(h.scope_type.clone())
                    .or_default()
                    .insert(h.scope_id.clone());
                holds
                    .by_scope
                    .entry(h.scope_type.clone())
                    .or_default()
                    .push(h);
            }
            pg_sys::SPI_finish();
            Ok(holds)
        })
    })
}

pub fn current_holds() -> LcResult<Rc<Holds>> {
    ensure_callback();
    let gen = HOLDS_GEN.load(Ordering::Relaxed);
    if let Some((g, h)) = HOLDS.with(|h| h.borrow().clone()) {
        if g == gen {
            return Ok(h);
        }
    }
    resolve_watched()?;
    let holds = Rc::new(load_holds()?);
    HOLDS.with(|h| *h.borrow_mut() = Some((gen, holds.clone())));
    Ok(holds)
}

/// Holds in force now for `scope_type`, if any (the common case is none).
pub fn holds_for(scope_type: &str) -> LcResult<Vec<Hold>> {
    let holds = current_holds()?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Ok(holds
        .by_scope
        .get(scope_type)
        .map(|v| v.iter().filter(|h| h.in_force_at(now)).cloned().collect())
        .unwrap_or_default())
}

/// Whether any legal hold is in force at all.
pub fn any_hold_in_force() -> LcResult<bool> {
    let holds = current_holds()?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Ok(holds
        .by_scope
        .values()
        .any(|v| v.iter().any(|h| h.in_force_at(now))))
}

/// True when no hold is in force for any scope this table maps.
pub fn table_is_unheld(guard: &TableGuard) -> LcResult<bool> {
    let holds = current_holds()?;
    if holds.by_scope.is_empty() {
        return Ok(true);
    }
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    Ok(!guard
        .scopes
        .iter()
        .any(|s| holds.any_in_force(&s.scope_type, now)))
}

/// The guard configuration of `relid`, or `None` when neither it nor any of
/// its partition ancestors is registered.
pub fn table_guard(relid: pg_sys::Oid) -> LcResult<Option<Rc<TableGuard>>> {
    ensure_callback();
    settle();
    let gen = MAP_GEN.load(Ordering::Relaxed);
    let cached = TABLES.with(|t| {
        let t = t.borrow();
        if t.0 == gen {
            t.1.get(&relid).cloned()
        } else {
            None
        }
    });
    if let Some(found) = cached {
        return Ok(found);
    }
    resolve_watched()?;
    let loaded = load_tracked(|| {
        let loaded = privilege::as_extension_owner(|| load_table_guard(relid))?;
        // The relation, its registered root and every parent a scope is
        // reached through.
        let mut relations = vec![relid];
        if let Some(l) = &loaded {
            relations.push(l.registered);
            for s in &l.scopes {
                relations.extend(s.via.iter().flat_map(|v| v.relations.iter().copied()));
            }
        }
        relations.sort_by_key(|r| r.to_u32());
        relations.dedup();
        Ok((loaded.map(Rc::new), relations))
    })?;
    TABLES.with(|t| {
        let mut t = t.borrow_mut();
        if t.0 != gen {
            t.0 = gen;
            t.1.clear();
        }
        t.1.insert(relid, loaded.clone());
    });
    Ok(loaded)
}

/// The nearest registered relation among a relation and its ancestors.
/// Walks `pg_inherits` rather than `pg_partition_ancestors` so that a
/// partition pending a concurrent detach still counts as part of its tree.
pub const REGISTERED_ROOT_SQL: &str = "\
    WITH RECURSIVE up(relid, depth) AS ( \
        SELECT $1::regclass::oid, 0 \
        UNION ALL \
        SELECT i.inhparent, up.depth + 1 FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.relid) \
    SELECT up.relid FROM up \
     WHERE EXISTS (SELECT 1 FROM lifecycle.registered_relations r WHERE r.relation = up.relid) \
     ORDER BY up.depth LIMIT 1";

/// Every (scope type, column) a registered relation maps, from the data map.
pub const SCOPE_COLUMNS_SQL: &str = "\
    SELECT scope_type, column_name::text, via_parent::pg_catalog.oid, via_key::text, via_column::text \
      FROM lifecycle.scope_columns WHERE relation OPERATOR(pg_catalog.=) $1::pg_catalog.regclass \
     ORDER BY scope_type OPERATOR(pg_catalog.=) 'tenant', scope_type, column_name";

fn load_table_guard(relid: pg_sys::Oid) -> LcResult<Option<TableGuard>> {
    Spi::connect(|client| {
        // The nearest registered relation among relid and its ancestors.
        let registered = crate::spi::first::<pg_sys::Oid>(crate::spi::select(
            client,
            REGISTERED_ROOT_SQL,
            None,
            &[relid.into()],
        )?)?;
        let Some(registered) = registered else {
            return Ok(None);
        };
        let name = crate::spi::first::<String>(crate::spi::select(
            client,
            "SELECT $1::regclass::text",
            None,
            &[relid.into()],
        )?)?
        .unwrap_or_default();
        let mut scopes = Vec::new();
        let mut found = Vec::new();
        for row in crate::spi::select(client, SCOPE_COLUMNS_SQL, None, &[registered.into()])? {
            found.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<pg_sys::Oid>(3)?,
                row.get::<String>(4)?,
                row.get::<String>(5)?,
            ));
        }
        for (scope_type, column, parent, key, parent_column) in found {
            let Some((attnum, type_oid, collation)) = attribute(client, relid, &column)? else {
                continue;
            };
            let via = match (parent, key, parent_column) {
                (Some(p), Some(k), Some(pc)) => Some(via(p, &k, &pc)?),
                _ => None,
            };
            scopes.push(ScopeColumn {
                scope_type,
                column,
                attnum,
                type_oid,
                collation,
                via,
            });
        }
        let tenant = scopes.iter().find(|s| s.scope_type == "tenant").cloned();
        let soft_delete_column = crate::spi::first::<String>(crate::spi::select(
            client,
            "SELECT soft_delete_column::text FROM lifecycle.tables WHERE relation = $1::regclass",
            None,
            &[registered.into()],
        )?)?;
        let soft_delete = match soft_delete_column {
            Some(col) => attribute(client, relid, &col)?.map(|(n, t, _)| (col, n, t)),
            None => None,
        };
        let signature = scope_signature(
            scopes
                .iter()
                .map(|s| (s.scope_type.as_str(), s.column.as_str())),
        );
        Ok(Some(TableGuard {
            signature,
            relid,
            registered,
            name,
            scopes,
            tenant,
            soft_delete,
        }))
    })
}

/// The path from a row to its scope through `parent` (`key` referenced by
/// the row, `column` holding the scope id, or leading on through the
/// parent's own path).
pub fn via(parent: pg_sys::Oid, key: &str, column: &str) -> LcResult<Via> {
    let parent_name =
        crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[parent.into()])?
            .unwrap_or_default();
    let (_, key_type, _) = attribute_of(parent, &parent_name, key)?;
    let key_base = crate::namespace::base_type(key_type);
    let key_eq = crate::namespace::equality_operator(key_base)?;
    let key_ty = crate::namespace::type_name(key_base)?;
    let k = crate::namespace::quote_ident(key);
    let mut relations = vec![parent];
    let (matches, scope_type, collation) = path_cond(parent, column, "p", "$2", 0, &mut relations)?;
    let (rows, _, _) = path_cond(parent, column, "p", "$1", 0, &mut relations)?;
    relations.sort_by_key(|r| r.to_u32());
    relations.dedup();
    Ok(Via {
        relations,
        match_sql: format!(
            "SELECT EXISTS (SELECT 1 FROM {parent_name} p \
                             WHERE p.{k} {key_eq} $1::{key_ty} AND {matches})"
        ),
        rows_sql: format!("IN (SELECT p.{k} FROM {parent_name} p WHERE {rows})"),
        parent_name,
        parent_type: scope_type,
        parent_collation: collation,
    })
}

/// Most parents a path goes through.
const MAX_PATH: u32 = 8;

/// A condition on `relid` aliased `alias` that its `column` holds the
/// scope id `param` (text): directly, or through the relation's own path
/// to a parent of its own. Returns the condition and the scope id's base
/// type and collation; adds the parents it goes through to `relations`.
fn path_cond(
    relid: pg_sys::Oid,
    column: &str,
    alias: &str,
    param: &str,
    depth: u32,
    relations: &mut Vec<pg_sys::Oid>,
) -> LcResult<(String, pg_sys::Oid, pg_sys::Oid)> {
    let name = crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
        .unwrap_or_default();
    let c = crate::namespace::quote_ident(column);
    let next = crate::privilege::as_extension_owner(|| {
        crate::spi::json(
            "SELECT pg_catalog.jsonb_build_array(via_parent::pg_catalog.oid::pg_catalog.int8, \
                    via_key::text, via_column::text) \
               FROM lifecycle.scope_columns \
              WHERE relation OPERATOR(pg_catalog.=) $1 AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND via_parent IS NOT NULL LIMIT 1",
            &[relid.into(), column.into()],
        )
    })?;
    if let Some(n) = next.filter(|_| depth < MAX_PATH) {
        let parent = pg_sys::Oid::from(n[0].as_u64().unwrap_or_default() as u32);
        let (key, further) = (
            n[1].as_str().unwrap_or_default().to_string(),
            n[2].as_str().unwrap_or_default().to_string(),
        );
        let parent_name =
            crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[parent.into()])?
                .unwrap_or_default();
        let inner_alias = format!("{alias}{}", depth + 1);
        relations.push(parent);
        let (inner, ty, coll) =
            path_cond(parent, &further, &inner_alias, param, depth + 1, relations)?;
        return Ok((
            format!(
                "{alias}.{c} IN (SELECT {inner_alias}.{} FROM {parent_name} {inner_alias} WHERE {inner})",
                crate::namespace::quote_ident(&key)
            ),
            ty,
            coll,
        ));
    }
    let (_, col_type, collation) = attribute_of(relid, &name, column)?;
    let base = crate::namespace::base_type(col_type);
    let eq = crate::namespace::equality_operator(base)?;
    let ty = crate::namespace::type_name(base)?;
    Ok((format!("{alias}.{c} {eq} {param}::{ty}"), base, collation))
}

fn attribute_of(
    relid: pg_sys::Oid,
    name: &str,
    column: &str,
) -> LcResult<(i16, pg_sys::Oid, pg_sys::Oid)> {
    Spi::connect(|client| attribute(client, relid, column))?.ok_or_else(|| {
        crate::error::LcError::internal(format!("column {column} of {name} vanished"))
    })
}

fn attribute(
    client: &pgrx::spi::SpiClient<'_>,
    relid: pg_sys::Oid,
    column: &str,
) -> LcResult<Option<(i16, pg_sys::Oid, pg_sys::Oid)>> {
    let row = client
        .select(
            "SELECT attnum, atttypid, attcollation FROM pg_catalog.pg_attribute \
              WHERE attrelid OPERATOR(pg_catalog.=) $1 AND attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND NOT attisdropped AND attnum OPERATOR(pg_catalog.>) 0",
            None,
            &[relid.into(), column.into()],
        )?
        .first();
    if row.is_empty() {
        return Ok(None);
    }
    let (n, t, c) = row.get_three::<i16, pg_sys::Oid, pg_sys::Oid>()?;
    Ok(match (n, t) {
        (Some(n), Some(t)) => Some((n, t, c.unwrap_or(pg_sys::Oid::INVALID))),
        _ => None,
    })
}

// ----- the data map's scopes, read directly ----------------------------------

/// Every scope type some registered relation maps to a column.
pub fn scope_types() -> LcResult<Vec<String>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in crate::spi::select(
                client,
                "SELECT DISTINCT scope_type FROM lifecycle.scope_columns ORDER BY 1",
                None,
                &[],
            )? {
                out.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok(out)
        })
    })
}

/// Registered relations (quoted names) that map `scope_type`, in OID order.
pub fn relations_with_scope(scope_type: &str) -> LcResult<Vec<String>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in crate::spi::select(
                client,
                "SELECT relation::text FROM lifecycle.scope_columns WHERE scope_type = $1 \
                  GROUP BY relation ORDER BY relation::oid",
                None,
                &[scope_type.into()],
            )? {
                out.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok(out)
        })
    })
}

/// (scope type, column) pairs of a registered relation.
pub fn scope_columns(relid: pg_sys::Oid) -> LcResult<Vec<(String, String)>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in crate::spi::select(client, SCOPE_COLUMNS_SQL, None, &[relid.into()])? {
                out.push((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ));
            }
            Ok(out)
        })
    })
}

/// The relation and every partition below it: (oid, quoted name).
pub fn partitions(relid: pg_sys::Oid) -> LcResult<Vec<(pg_sys::Oid, String)>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in crate::spi::select(
            client,
            "SELECT p.relid, p.relid::pg_catalog.regclass::text \
               FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) p \
              ORDER BY p.level, p.relid",
            None,
            &[relid.into()],
        )? {
            if let (Some(oid), Some(name)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) {
                out.push((oid, name));
            }
        }
        if out.is_empty() {
            let name =
                crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
                    .unwrap_or_default();
            out.push((relid, name));
        }
        Ok(out)
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use std::rc::Rc;

    use pgrx::prelude::*;

    use super::{generations, table_guard};

    fn oid(name: &str) -> pg_sys::Oid {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()])
            .unwrap()
            .unwrap()
    }

    /// A table's guard facts are kept across invalidations that change none
    /// of them (ANALYZE updates its statistics and invalidates it, as VACUUM
    /// does), and read again when its columns change; a partition's are read
    /// again after any invalidation.
    #[pg_test]
    fn guard_facts_are_kept_until_their_table_changes() {
        Spi::run(
            "CREATE SCHEMA gk;
             CREATE TABLE gk.users (id bigint PRIMARY KEY);
             CREATE TABLE gk.posts (id bigint PRIMARY KEY, author_id bigint, note text);
             CREATE TABLE gk.events (id bigint, author_id bigint) PARTITION BY RANGE (id);
             CREATE TABLE gk.events_1 PARTITION OF gk.events FOR VALUES FROM (0) TO (100);
             INSERT INTO gk.posts VALUES (1, 1, 'x');
             SELECT lifecycle.register_subject('gk.users', 'id');
             SELECT lifecycle.register_table('gk.posts', 'user', 'author_id');
             SELECT lifecycle.register_table('gk.events', 'user', 'author_id');",
        )
        .unwrap();
        let posts = oid("gk.posts");
        let first = table_guard(posts).unwrap().unwrap();
        let gens = generations();
        Spi::run("ANALYZE gk.posts").unwrap();
        assert_eq!(
            super::generations_unchecked().1,
            0,
            "ANALYZE invalidated the table: the generation waits for a comparison"
        );
        assert_eq!(generations(), gens, "statistics change no fact");
        assert!(Rc::ptr_eq(&first, &table_guard(posts).unwrap().unwrap()));

        Spi::run("ALTER TABLE gk.posts DROP COLUMN note").unwrap();
        assert_ne!(generations(), gens, "a dropped column");
        let again = table_guard(posts).unwrap().unwrap();
        assert!(!Rc::ptr_eq(&first, &again));
        assert_eq!(again.scopes[0].column, "author_id");

        let part = oid("gk.events_1");
        let first = table_guard(part).unwrap().unwrap();
        assert_eq!(first.registered, oid("gk.events"));
        let gens = generations();
        Spi::run("ANALYZE gk.events_1").unwrap();
        assert_ne!(generations(), gens, "a partition's invalidation counts");
    }
}
