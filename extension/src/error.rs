//! Errors of the extension: one constructor per documented SQLSTATE.
//!
//! pgrx's own error type only carries PostgreSQL's built-in SQLSTATEs, so the
//! extension reports its errors itself: every refusal is an [`LcError`] with a
//! five-character SQLSTATE (class `LC` for the extension's own conditions),
//! a message in PostgreSQL's style, a DETAIL and a HINT. `entry::boundary` is the
//! single place where an `LcError` becomes a PostgreSQL `ERROR`; every
//! `#[pg_extern]` and trigger entry point runs its body inside it.
//!
//! The codes themselves (SQLSTATE, condition name, HTTP status) are
//! [`lifecycle_core::Code`]; `docs/sqlstates.md` documents them, and a test
//! in the core crate checks that the two agree.

use std::cell::RefCell;
use std::ffi::CString;

use lifecycle_core::jobs::STATE_MACHINE;
use lifecycle_core::Code;
use pgrx::pg_sys;

/// An error the extension raises on purpose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcError {
    pub sqlstate: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

pub type LcResult<T> = Result<T, LcError>;

thread_local! {
    /// The hold named by the last refusal raised in this backend.
    static BLOCKING_HOLD: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The hold named by the last hold refusal raised since the last call
/// (taken: a second call returns `None`).
pub fn take_blocking_hold() -> Option<String> {
    BLOCKING_HOLD.with(|b| b.borrow_mut().take())
}

impl LcError {
    fn new(code: Code, message: impl Into<String>) -> Self {
        LcError {
            sqlstate: code.sqlstate(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A refusal because of legal hold `hold_id`: the id is kept for the
    /// job runner (see [`take_blocking_hold`]), which catches the error
    /// PostgreSQL raised and marks the job blocked by that hold.
    pub fn blocked_by(self, hold_id: &str) -> Self {
        BLOCKING_HOLD.with(|b| *b.borrow_mut() = Some(hold_id.to_string()));
        self
    }

    // ----- legal holds -------------------------------------------------------

    /// LC001: a DELETE or UPDATE reached a row that a legal hold covers.
    pub fn held_row_modification(operation: &str, table: &str) -> Self {
        Self::new(
            Code::HeldRowModification,
            format!("cannot {operation} row of table {table}: it is under legal hold"),
        )
    }

    /// LC002: TRUNCATE of a table that holds rows under legal hold.
    pub fn held_table_truncate(table: &str) -> Self {
        Self::new(
            Code::HeldTableTruncate,
            format!("cannot truncate table {table}: it holds rows under legal hold"),
        )
    }

    /// LC003: dropping, detaching or unregistering a table that may hold rows
    /// under legal hold.
    pub fn held_table_drop(action: &str, table: &str) -> Self {
        Self::new(
            Code::HeldTableDrop,
            format!("cannot {action} table {table}: it may hold rows under legal hold"),
        )
    }

    /// LC004: a guard trigger was disabled, dropped or renamed by a role that
    /// is not a superuser.
    pub fn guard_tampering(action: &str, trigger: &str, table: &str) -> Self {
        Self::new(
            Code::GuardTampering,
            format!(
                "cannot {action} trigger \"{trigger}\" on table {table}: it is a lifecycle guard"
            ),
        )
    }

    /// LC005: UPDATE, DELETE or TRUNCATE of the audit log.
    pub fn audit_log_append_only(operation: &str) -> Self {
        Self::new(
            Code::AuditLogAppendOnly,
            format!("cannot {operation} lifecycle.audit_log: the audit log is append-only"),
        )
        .detail("Audit events are hash-chained; changing or removing one breaks the chain.")
        .hint("Record a correcting event with lifecycle.record_event() instead.")
    }

    /// LC006: direct modification of the legal holds table.
    pub fn legal_hold_immutable(operation: &str) -> Self {
        Self::new(
            Code::LegalHoldImmutable,
            format!("cannot {operation} lifecycle.legal_holds directly"),
        )
        .detail("Legal holds are records: they are placed and released, never edited or deleted.")
        .hint("Use lifecycle.place_hold() and lifecycle.release_hold().")
    }

    /// LC007: DDL that would rewrite, drop or endanger the values of rows a
    /// legal hold covers (a column's type changed or dropped, the table made
    /// unlogged, an enum label the rows use renamed). `action` says what was
    /// refused ("drop column \"body\" of table app.posts"), `holder` where
    /// the held rows are ("the table", "its partition app.posts_2026").
    pub fn held_table_alter(action: &str, holder: &str) -> Self {
        Self::new(
            Code::HeldTableAlter,
            format!("cannot {action}: {holder} holds rows under legal hold"),
        )
    }

    /// LC008: a write to one of the extension's own tables (or DDL that
    /// would hook into them) by code that is not the extension's, whatever
    /// was granted on them.
    pub fn extension_table_write(operation: &str, table: &str) -> Self {
        Self::new(
            Code::ExtensionTableWrite,
            format!(
                "cannot {operation} {table}: the extension's tables change only through its functions"
            ),
        )
    }

    // ----- data map ----------------------------------------------------------

    /// LC010: a registration that contradicts an existing one.
    pub fn data_map_conflict(message: impl Into<String>) -> Self {
        Self::new(Code::DataMapConflict, message)
    }

    /// LC011: DDL that would break a column the data map relies on.
    pub fn data_map_column_in_use(table: &str, column: &str, role: &str) -> Self {
        Self::new(
            Code::DataMapColumnInUse,
            format!("column \"{column}\" of table {table} is used by the lifecycle data map"),
        )
        .detail(format!("The data map uses it as {role}."))
        .hint("Unregister the table with lifecycle.unregister_table(), or register the new column first.")
    }

    /// LC012: an operation on a table the data map does not know.
    pub fn not_registered(table: &str) -> Self {
        Self::new(
            Code::NotRegistered,
            format!("table {table} is not registered in the lifecycle data map"),
        )
        .hint(
            "Register it with lifecycle.register_table(), register_subject() or register_tenant().",
        )
    }

    // ----- holds API ---------------------------------------------------------

    /// LC020: release of a hold id that does not exist.
    pub fn hold_not_found(id: &str) -> Self {
        Self::new(
            Code::HoldNotFound,
            format!("legal hold {id} does not exist"),
        )
        .hint("List holds with SELECT * FROM lifecycle.legal_holds.")
    }

    /// LC021: release of a hold that was already released.
    pub fn hold_already_released(id: &str, at: &str, by: &str) -> Self {
        Self::new(
            Code::HoldAlreadyReleased,
            format!("legal hold {id} is already released"),
        )
        .detail(format!("It was released at {at} by {by}."))
        .hint("Nothing to do; place a new hold if one is needed.")
    }

    /// LC022: a hold whose scope type no registered table maps to a column.
    pub fn unknown_scope_type(scope_type: &str, known: &[String]) -> Self {
        Self::new(Code::UnknownScopeType, format!("unknown legal hold scope type \"{scope_type}\""))
            .detail(if known.is_empty() {
                "The data map is empty: no table maps any scope to a column.".to_string()
            } else {
                format!("Known scope types: {}.", known.join(", "))
            })
            .hint("Use 'tenant', a registered subject type, or map a column to the scope with lifecycle.register_scope().")
    }

    // ----- jobs --------------------------------------------------------------

    /// LC030: a job state change the state machine does not allow.
    pub fn invalid_job_transition(job: &str, from: &str, to: &str) -> Self {
        Self::new(
            Code::InvalidJobTransition,
            format!("cannot move job {job} from {from} to {to}"),
        )
        .detail(STATE_MACHINE)
    }

    /// LC030: an action on a job whose status does not allow it.
    pub fn job_not_in_state(job: &str, action: &str, status: &str) -> Self {
        Self::new(
            Code::InvalidJobTransition,
            format!("cannot {action} job {job}: it is {status}"),
        )
        .detail(STATE_MACHINE)
    }

    /// LC031: the approver of a job is the one who requested it.
    pub fn approver_is_requester(job: &str, who: &str) -> Self {
        Self::new(
            Code::ApproverIsRequester,
            format!("job {job} cannot be approved by its requester"),
        )
        .detail(format!("\"{who}\" requested the job."))
        .hint("Another administrator must approve it.")
    }

    /// LC032: a target type that is neither a registered subject type nor
    /// 'tenant'.
    pub fn unknown_target_type(target_type: &str, known: &[String]) -> Self {
        Self::new(
            Code::UnknownTargetType,
            format!("unknown target type \"{target_type}\""),
        )
        .detail(if known.is_empty() {
            "The data map has no subject table.".to_string()
        } else {
            format!("Known target types: {}.", known.join(", "))
        })
        .hint("Use 'tenant' or a subject type registered with lifecycle.register_subject().")
    }

    /// LC033: the target of a request does not exist.
    pub fn target_not_found(target_type: &str, target_id: &str, table: &str) -> Self {
        Self::new(
            Code::TargetNotFound,
            format!("{target_type} \"{target_id}\" does not exist"),
        )
        .detail(format!("No row of {table} has this id."))
        .hint("Check the id; ids are given as text, for example '42' or a uuid.")
    }

    /// LC034: erasure of the last admin of one or more workspaces, without a
    /// decision for each of them.
    pub fn last_admin(target_type: &str, target_id: &str, tenants: &[String]) -> Self {
        Self::new(
            Code::LastAdmin,
            format!(
                "{target_type} \"{target_id}\" is the last admin of {} workspace{}",
                tenants.len(),
                if tenants.len() == 1 { "" } else { "s" }
            ),
        )
        .detail(format!("Workspaces without another admin: {}.", tenants.join(", ")))
        .hint(
            "Say for each workspace what happens: workspaces => '{\"<workspace id>\": {\"transfer_to\": \"<member id>\"}}' \
             to make another member its admin, or '{\"<workspace id>\": \"erase\"}' to erase the workspace too.",
        )
    }

    /// LC035: a job id that does not exist.
    pub fn job_not_found(id: &str) -> Self {
        Self::new(Code::JobNotFound, format!("job {id} does not exist"))
            .detail("No row of lifecycle.jobs has this id.")
            .hint("List jobs with SELECT * FROM lifecycle.jobs.")
    }

    /// LC036: a request for a target that already has an open request of the
    /// same kind.
    pub fn duplicate_request(kind: &str, target: &str, job: &str, status: &str) -> Self {
        Self::new(
            Code::DuplicateRequest,
            format!("{target} already has an open {kind} request"),
        )
        .detail(format!("Job {job} is {status}."))
        .hint("Wait for that job, or cancel it with lifecycle.cancel() first.")
    }

    /// LC037: an erasure of a target that is already erased.
    pub fn target_already_erased(target: &str, job: &str) -> Self {
        Self::new(
            Code::TargetAlreadyErased,
            format!("{target} is already erased"),
        )
        .detail(format!("Job {job} erased it."))
        .hint("Request a purge with lifecycle.request_purge() to remove what erasure kept.")
    }

    /// LC038: a purge of a target that was never erased.
    pub fn target_not_erased(target: &str) -> Self {
        Self::new(Code::TargetNotErased, format!("{target} is not erased"))
            .detail("Purge removes what an erasure kept; there was no completed erasure.")
            .hint("Request an erasure with lifecycle.request_erasure() first.")
    }

    /// LC039: a worker acted on a job another worker holds the lease of.
    pub fn job_lease_held(job: &str, worker: &str, until: &str) -> Self {
        Self::new(
            Code::JobLeaseHeld,
            format!("job {job} is being processed by another worker"),
        )
        .detail(format!("Worker \"{worker}\" holds its lease until {until}."))
        .hint("Claim another job with lifecycle.claim_job(); an expired lease is taken over automatically.")
    }

    // ----- erasure -----------------------------------------------------------

    /// LC040: erasure would have to change rows of a table the data map does
    /// not know (a foreign key from it references rows being removed).
    pub fn unmapped_reference(table: &str, constraint: &str, target: &str) -> Self {
        Self::new(
            Code::UnmappedReference,
            format!("cannot remove rows of {target}: rows of {table} reference them"),
        )
        .detail(format!(
            "Foreign key \"{constraint}\" of {table}, which is not in the data map, points at rows the erasure removes."
        ))
        .hint("Register the table with lifecycle.register_table() so erasure knows what to do with its rows; lifecycle.unmapped_references() lists such tables.")
    }

    /// LC041: the verification after an erasure still found the subject.
    pub fn erasure_incomplete(target: &str, findings: &str) -> Self {
        Self::new(
            Code::ErasureIncomplete,
            format!("erasure of {target} left personal data behind"),
        )
        .detail(findings.to_string())
        .hint("Check the column rules of the tables named; nothing was changed.")
    }

    /// LC042: a second export of a subject within 24 hours of the last one.
    pub fn export_rate_limited(target: &str, job: &str, requested_at: &str, next_at: &str) -> Self {
        Self::new(
            Code::ExportRateLimited,
            format!("{target} already had an export in the last 24 hours"),
        )
        .detail(format!(
            "Export job {job} was requested at {requested_at}; the next export can be requested at {next_at}."
        ))
        .hint("Download that export, or request a new one after the time given.")
    }

    /// LC043: an export whose entitlement ended.
    pub fn export_expired(job: &str, expired_at: &str) -> Self {
        Self::new(Code::ExportExpired, format!("export {job} has expired"))
            .detail(format!(
                "Its bundle could be downloaded until {expired_at} and has been deleted since."
            ))
            .hint("Request a new export.")
    }

    /// LC044: row-level security would hide rows of `table` from what the
    /// extension is doing (`purpose`: "the erasure", "the export"), which
    /// reads the table as a role its policies apply to. The DETAIL and HINT
    /// are `crate::row_security`'s.
    pub fn row_security_hides_rows(table: &str, purpose: &str) -> Self {
        Self::new(
            Code::RowSecurityHidesRows,
            format!("row-level security would hide rows of table {table} from {purpose}"),
        )
    }

    // ----- input validation (PostgreSQL's own codes) -------------------------

    /// 0A000: a schema shape the guards cannot protect (inheritance
    /// children of a registered table).
    pub fn feature_not_supported(message: impl Into<String>) -> Self {
        Self::new(Code::FeatureNotSupported, message)
    }

    /// 22023: a parameter has a value outside what the function accepts.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidParameterValue, message)
    }

    /// 22P02: a value that is not valid input for the type it must be
    /// compared with (a legal hold's scope id that no key column can hold).
    pub fn invalid_text_representation(message: impl Into<String>) -> Self {
        Self::new(Code::InvalidTextRepresentation, message)
    }

    /// 22004: NULL passed where a value is required.
    pub fn null_value(parameter: &str, function: &str) -> Self {
        Self::new(
            Code::NullValueNotAllowed,
            format!("parameter \"{parameter}\" of {function} must not be NULL"),
        )
    }

    /// 42703: a column that does not exist.
    pub fn undefined_column(table: &str, column: &str) -> Self {
        Self::new(
            Code::UndefinedColumn,
            format!("column \"{column}\" of relation {table} does not exist"),
        )
    }

    /// 42804: a column whose type cannot serve the purpose it is registered for.
    pub fn datatype_mismatch(message: impl Into<String>) -> Self {
        Self::new(Code::DatatypeMismatch, message)
    }

    /// 42501: the caller may not do this.
    pub fn insufficient_privilege(message: impl Into<String>) -> Self {
        Self::new(Code::InsufficientPrivilege, message)
    }

    /// XX000: an unexpected failure inside the extension.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::InternalError, message)
    }
}

impl From<pgrx::spi::SpiError> for LcError {
    fn from(e: pgrx::spi::SpiError) -> Self {
        LcError::internal(format!("SPI failure: {e}"))
    }
}

impl std::fmt::Display for LcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.sqlstate, self.message)
    }
}

thread_local! {
    /// The last error raised by [`raise`]. When one of the extension's own
    /// errors travels through a nested SPI call, pgrx re-throws it with a
    /// generic SQLSTATE; the outer `entry::boundary` uses this to restore it.
    static LAST_RAISED: RefCell<Option<LcError>> = const { RefCell::new(None) };
}

pub(crate) fn sqlstate_code(s: &str) -> i32 {
    // MAKE_SQLSTATE: six bits per character, first character lowest.
    let b = s.as_bytes();
    let mut code = 0i32;
    for (i, ch) in b.iter().take(5).enumerate() {
        code |= (((*ch as i32) - ('0' as i32)) & 0x3F) << (6 * i);
    }
    code
}

#[allow(improper_ctypes)]
unsafe extern "C-unwind" {
    fn errstart(elevel: std::os::raw::c_int, domain: *const std::os::raw::c_char) -> bool;
    fn errcode(sqlerrcode: std::os::raw::c_int) -> std::os::raw::c_int;
    fn errmsg(fmt: *const std::os::raw::c_char, ...) -> std::os::raw::c_int;
    fn errdetail(fmt: *const std::os::raw::c_char, ...) -> std::os::raw::c_int;
    fn errhint(fmt: *const std::os::raw::c_char, ...) -> std::os::raw::c_int;
    fn errfinish(
        filename: *const std::os::raw::c_char,
        lineno: std::os::raw::c_int,
        funcname: *const std::os::raw::c_char,
    );
}

fn pg_cstr(s: &str) -> *mut std::os::raw::c_char {
    let c = CString::new(s.replace('\0', "")).unwrap_or_default();
    // Copy into the current memory context so nothing Rust-owned is left
    // behind when errfinish() jumps away.
    unsafe { pg_sys::pstrdup(c.as_ptr()) }
}

/// Report `e` as a PostgreSQL ERROR. Never returns.
///
/// Must only be called from `entry::boundary`, where no Rust value that needs
/// dropping is alive in the frames that the error unwinds through.
pub(crate) fn raise(e: LcError) -> ! {
    LAST_RAISED.with(|l| *l.borrow_mut() = Some(e.clone()));
    let code = sqlstate_code(e.sqlstate);
    let message = pg_cstr(&e.message);
    let detail = e.detail.as_deref().map(pg_cstr);
    let hint = e.hint.as_deref().map(pg_cstr);
    drop(e);
    unsafe {
        let fmt = c"%s".as_ptr();
        if errstart(pg_sys::PGERROR as _, std::ptr::null()) {
            errcode(code);
            errmsg(fmt, message);
            if let Some(d) = detail {
                errdetail(fmt, d);
            }
            if let Some(h) = hint {
                errhint(fmt, h);
            }
            errfinish(c"lifecycle".as_ptr(), 0, std::ptr::null());
        }
    }
    unreachable!("errfinish returned at ERROR level")
}

/// Recover an `LcError` from a panic payload, when the payload is one of ours
/// that pgrx re-threw after a nested SPI call.
pub(crate) fn recover(payload: &(dyn std::any::Any + Send)) -> Option<LcError> {
    use pgrx::pg_sys::panic::CaughtError;
    let message = match payload.downcast_ref::<CaughtError>() {
        Some(CaughtError::PostgresError(report))
        | Some(CaughtError::ErrorReport(report))
        | Some(CaughtError::RustPanic {
            ereport: report, ..
        }) => report.message().to_string(),
        None => return None,
    };
    LAST_RAISED.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|e| e.message == message)
            .cloned()
    })
}

pub fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}
