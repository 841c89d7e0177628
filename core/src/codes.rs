//! The product's error codes.
//!
//! Every refusal of the extension carries one of these SQLSTATEs (class `LC`
//! for its own conditions, PostgreSQL's standard codes for invalid input),
//! and the control plane answers each SQLSTATE with the HTTP status given
//! here. A few codes are PostgreSQL's own (a unique index, a transaction to
//! retry, a lost connection): the extension never raises them itself, but the
//! control plane maps them too. Any other SQLSTATE is an internal error.
//!
//! `docs/sqlstates.md` is the human-readable form of this table; a test
//! below checks that the two agree.

/// Who raises a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The extension raises it on purpose, with a DETAIL and a HINT.
    Extension,
    /// PostgreSQL raises it; the control plane maps it to a status of its own.
    PostgreSql,
}

macro_rules! codes {
    ($( $variant:ident => ($sqlstate:literal, $name:literal, $http:literal, $origin:ident, $meaning:literal), )+) => {
        /// One of the product's error codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Code {
            $( #[doc = $meaning] $variant, )+
        }

        impl Code {
            /// Every code, in the order of `docs/sqlstates.md`.
            pub const ALL: &'static [Code] = &[$(Code::$variant),+];

            /// The five-character SQLSTATE.
            pub const fn sqlstate(self) -> &'static str {
                match self { $( Code::$variant => $sqlstate, )+ }
            }

            /// PostgreSQL's condition name (`held_row_modification`), also the
            /// machine-readable `code` of the control plane's error body.
            pub const fn name(self) -> &'static str {
                match self { $( Code::$variant => $name, )+ }
            }

            /// The HTTP status the control plane answers with.
            pub const fn http_status(self) -> u16 {
                match self { $( Code::$variant => $http, )+ }
            }

            /// What the code means, in one line.
            pub const fn meaning(self) -> &'static str {
                match self { $( Code::$variant => $meaning, )+ }
            }

            /// Who raises it.
            pub const fn origin(self) -> Origin {
                match self { $( Code::$variant => Origin::$origin, )+ }
            }
        }
    };
}

codes! {
    HeldRowModification => ("LC001", "held_row_modification", 409, Extension,
        "An UPDATE or DELETE reached a row under legal hold."),
    HeldTableTruncate => ("LC002", "held_table_truncate", 409, Extension,
        "TRUNCATE of a table that holds rows under legal hold."),
    HeldTableDrop => ("LC003", "held_table_drop", 409, Extension,
        "Dropping, detaching or unregistering a table that may hold rows under legal hold."),
    GuardTampering => ("LC004", "guard_tampering", 403, Extension,
        "A guard trigger disabled, renamed or dropped by a role that is not a superuser."),
    AuditLogAppendOnly => ("LC005", "audit_log_append_only", 403, Extension,
        "A change to the append-only audit log."),
    LegalHoldImmutable => ("LC006", "legal_hold_immutable", 403, Extension,
        "A change to the legal holds table outside release_hold()."),
    HeldTableAlter => ("LC007", "held_table_alter", 409, Extension,
        "DDL that would rewrite, drop or endanger values under legal hold."),
    ExtensionTableWrite => ("LC008", "extension_table_write", 403, Extension,
        "A direct write to one of the extension's own tables."),
    DataMapConflict => ("LC010", "data_map_conflict", 409, Extension,
        "A registration that contradicts an existing one."),
    DataMapColumnInUse => ("LC011", "data_map_column_in_use", 409, Extension,
        "DDL that drops or renames a column the data map relies on."),
    NotRegistered => ("LC012", "not_registered", 404, Extension,
        "A table the data map does not know."),
    HoldNotFound => ("LC020", "hold_not_found", 404, Extension,
        "A legal hold id that does not exist."),
    HoldAlreadyReleased => ("LC021", "hold_already_released", 409, Extension,
        "Release of a legal hold that is already released."),
    UnknownScopeType => ("LC022", "unknown_scope_type", 422, Extension,
        "A legal hold scope type that no registered table maps."),
    InvalidJobTransition => ("LC030", "invalid_job_transition", 409, Extension,
        "A job state change the state machine does not allow."),
    ApproverIsRequester => ("LC031", "approver_is_requester", 403, Extension,
        "Approval of a job by the one who requested it."),
    UnknownTargetType => ("LC032", "unknown_target_type", 422, Extension,
        "A target type that is neither a workspace nor a registered subject type."),
    TargetNotFound => ("LC033", "target_not_found", 404, Extension,
        "A request for a subject or workspace that does not exist."),
    LastAdmin => ("LC034", "last_admin", 409, Extension,
        "Erasure of the last admin of a workspace without a decision for it."),
    JobNotFound => ("LC035", "job_not_found", 404, Extension,
        "A job id that does not exist."),
    DuplicateRequest => ("LC036", "duplicate_request", 409, Extension,
        "A second open request of the same kind for the same target."),
    TargetAlreadyErased => ("LC037", "target_already_erased", 409, Extension,
        "Erasure of a target that is already erased."),
    TargetNotErased => ("LC038", "target_not_erased", 409, Extension,
        "Purge of a target that was never erased."),
    JobLeaseHeld => ("LC039", "job_lease_held", 409, Extension,
        "A worker acting on a job whose lease another worker holds."),
    UnmappedReference => ("LC040", "unmapped_reference", 409, Extension,
        "Erasure would change rows of a table the data map does not know."),
    ErasureIncomplete => ("LC041", "erasure_incomplete", 409, Extension,
        "The verification after an erasure still finds the subject."),
    ExportRateLimited => ("LC042", "export_rate_limited", 429, Extension,
        "A second export of the same subject within 24 hours of the last one."),
    ExportExpired => ("LC043", "export_expired", 410, Extension,
        "A download of an export whose 7-day entitlement has ended."),
    RowSecurityHidesRows => ("LC044", "row_security_hides_rows", 409, Extension,
        "Row-level security would hide rows of a registered table from the erasure, preview or export that reads it."),
    FeatureNotSupported => ("0A000", "feature_not_supported", 409, Extension,
        "A schema shape the guards cannot protect (inheritance children)."),
    InvalidParameterValue => ("22023", "invalid_parameter_value", 422, Extension,
        "An argument outside what the function accepts."),
    InvalidTextRepresentation => ("22P02", "invalid_text_representation", 422, Extension,
        "A value that is not valid input for the key type it is compared with."),
    NullValueNotAllowed => ("22004", "null_value_not_allowed", 422, Extension,
        "NULL where a value is required."),
    UndefinedColumn => ("42703", "undefined_column", 422, Extension,
        "A registered column that does not exist."),
    DatatypeMismatch => ("42804", "datatype_mismatch", 422, Extension,
        "A column or argument whose type cannot serve."),
    InsufficientPrivilege => ("42501", "insufficient_privilege", 403, Extension,
        "The caller may not do this."),
    InternalError => ("XX000", "internal_error", 500, Extension,
        "An unexpected failure inside the extension."),
    UniqueViolation => ("23505", "unique_violation", 409, PostgreSql,
        "A row that would duplicate a unique key."),
    UndefinedTable => ("42P01", "undefined_table", 404, PostgreSql,
        "A relation that does not exist."),
    CharacterNotInRepertoire => ("22021", "character_not_in_repertoire", 422, PostgreSql,
        "Text PostgreSQL cannot store: a NUL character, or bytes invalid in the encoding."),
    UntranslatableCharacter => ("22P05", "untranslatable_character", 422, PostgreSql,
        "A character the database's encoding cannot represent."),
    NumericValueOutOfRange => ("22003", "numeric_value_out_of_range", 422, PostgreSql,
        "A number outside what its type holds."),
    InvalidDatetimeFormat => ("22007", "invalid_datetime_format", 422, PostgreSql,
        "A date or time PostgreSQL cannot read."),
    DatetimeFieldOverflow => ("22008", "datetime_field_overflow", 422, PostgreSql,
        "A date or time outside what its type holds."),
    SerializationFailure => ("40001", "serialization_failure", 503, PostgreSql,
        "A serialization failure: the transaction can be retried."),
    DeadlockDetected => ("40P01", "deadlock_detected", 503, PostgreSql,
        "A deadlock: the transaction can be retried."),
    QueryCanceled => ("57014", "query_canceled", 503, PostgreSql,
        "A statement canceled by a timeout or on request."),
    ConnectionException => ("08000", "connection_exception", 503, PostgreSql,
        "Any SQLSTATE of class 08: the connection to the database failed."),
}

impl Code {
    /// The code of a SQLSTATE: an exact match, or [`Code::ConnectionException`]
    /// for every five-character SQLSTATE of class `08`. `None` for the
    /// rest, which are internal errors.
    pub fn from_sqlstate(sqlstate: &str) -> Option<Code> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.sqlstate() == sqlstate)
            .or_else(|| {
                (sqlstate.len() == 5 && sqlstate.starts_with("08"))
                    .then_some(Code::ConnectionException)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// A row of a table in docs/sqlstates.md: SQLSTATE, condition, HTTP status.
    fn doc_rows(section: &str) -> Vec<(&str, &str, u16)> {
        section
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                assert!(cells.len() >= 5, "malformed row: {line}");
                let status = cells[cells.len() - 2]
                    .parse()
                    .unwrap_or_else(|_| panic!("HTTP column is not a number: {line}"));
                (
                    cells[1].trim_matches('`'),
                    cells[2].trim_matches('`'),
                    status,
                )
            })
            .collect()
    }

    /// docs/sqlstates.md and [`Code`] agree both ways: the first table lists
    /// exactly the codes the extension raises, the second the PostgreSQL
    /// codes the control plane maps, each with the enum's condition name and
    /// HTTP status.
    #[test]
    fn docs_table_and_enum_agree() {
        let doc = include_str!("../../docs/sqlstates.md");
        let (extension, postgres) = doc
            .split_once("\n## ")
            .expect("docs/sqlstates.md has a second section for PostgreSQL's own codes");
        let mut documented = HashSet::new();
        for (section, origin) in [
            (extension, Origin::Extension),
            (postgres, Origin::PostgreSql),
        ] {
            for (sqlstate, name, status) in doc_rows(section) {
                let code = Code::ALL
                    .iter()
                    .find(|c| c.sqlstate() == sqlstate)
                    .unwrap_or_else(|| panic!("{sqlstate} is documented but not a Code"));
                assert_eq!(code.name(), name, "{sqlstate}");
                assert_eq!(code.http_status(), status, "{sqlstate}");
                assert_eq!(code.origin(), origin, "{sqlstate} is in the wrong table");
                assert!(documented.insert(*code), "{sqlstate} documented twice");
            }
        }
        for code in Code::ALL {
            assert!(
                documented.contains(code),
                "{} ({}) missing from docs/sqlstates.md",
                code.sqlstate(),
                code.name()
            );
        }
    }

    #[test]
    fn codes_are_well_formed_and_distinct() {
        let mut sqlstates = HashSet::new();
        let mut names = HashSet::new();
        for code in Code::ALL {
            let s = code.sqlstate();
            assert_eq!(s.len(), 5, "{code:?}");
            assert!(
                s.chars()
                    .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()),
                "{code:?}"
            );
            assert!(sqlstates.insert(s), "{s} twice");
            assert!(names.insert(code.name()), "{} twice", code.name());
            assert!(
                code.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{code:?}"
            );
            assert!((400..=599).contains(&code.http_status()), "{code:?}");
            let meaning = code.meaning();
            assert!(
                !meaning.is_empty() && !meaning.contains('\n') && meaning.ends_with('.'),
                "{code:?}"
            );
            if s.starts_with("LC") {
                assert_eq!(code.origin(), Origin::Extension, "{code:?}");
            }
        }
        // Only the internal error is a 500: everything else is the client's
        // to act on (or to retry).
        let internal: Vec<_> = Code::ALL
            .iter()
            .filter(|c| c.http_status() == 500)
            .collect();
        assert_eq!(internal, [&Code::InternalError]);
    }

    /// The brief: a legal hold or a last-admin refusal is 409.
    #[test]
    fn hold_and_last_admin_refusals_are_conflicts() {
        for code in [
            Code::HeldRowModification,
            Code::HeldTableTruncate,
            Code::HeldTableDrop,
            Code::HeldTableAlter,
            Code::LastAdmin,
        ] {
            assert_eq!(code.http_status(), 409, "{code:?}");
        }
    }

    #[test]
    fn lookup_by_sqlstate() {
        for code in Code::ALL {
            assert_eq!(Code::from_sqlstate(code.sqlstate()), Some(*code));
        }
        assert_eq!(
            Code::from_sqlstate("LC001"),
            Some(Code::HeldRowModification)
        );
        assert_eq!(Code::from_sqlstate("XX000"), Some(Code::InternalError));
        for class_08 in ["08000", "08001", "08003", "08006", "08P01"] {
            assert_eq!(
                Code::from_sqlstate(class_08),
                Some(Code::ConnectionException),
                "{class_08}"
            );
        }
        for unknown in [
            "22012", "P0001", "LC999", "23503", "lc001", "0800", "080000", "", "LC0011",
        ] {
            assert_eq!(Code::from_sqlstate(unknown), None, "{unknown}");
        }
    }
}
