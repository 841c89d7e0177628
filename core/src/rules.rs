//! What erasure does to a registered table (`on_erase`) and to one of its
//! columns (column rules set with `lifecycle.set_column_rule()`).

named_enum! {
    /// What erasure does to a table's rows of the erased subject.
    pub enum OnErase ("on_erase action") {
        /// The rows are deleted (children before parents).
        Delete => "delete",
        /// The rows stay; their ruled columns are anonymized, so they stay
        /// attributed to the anonymized subject.
        Anonymize => "anonymize",
        /// The rows stay for a period with a legal basis (their non-`keep`
        /// column rules applied), then purge removes them.
        Retain => "retain",
    }
}

named_enum! {
    /// How erasure treats one column of a row it keeps.
    pub enum ColumnRule ("column rule") {
        /// The value stays.
        Keep => "keep",
        /// The value becomes NULL.
        Clear => "clear",
        /// The value becomes `[redacted]`.
        Redact => "redact",
        /// The value becomes `Deleted User`.
        DeletedName => "deleted_name",
        /// The value becomes `deleted-<id>@deleted.local`.
        DeletedEmail => "deleted_email",
        /// The value becomes a salted SHA-256 digest of itself (hex).
        Hash => "hash",
        /// The value becomes empty: `''`, `{}` for arrays and JSON.
        Empty => "empty",
        /// The value names an object in storage, deleted outside the
        /// database and tracked until confirmed.
        StorageObject => "storage_object",
        /// The value says when the row was erased, in the column's own form
        /// (`true`, a date, a timestamp, or milliseconds since the epoch):
        /// the application sees the account as deleted.
        ErasedAt => "erased_at",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::check_names;

    #[test]
    fn names() {
        check_names(
            OnErase::ALL,
            OnErase::as_str,
            &["delete", "anonymize", "retain"],
        );
        check_names(
            ColumnRule::ALL,
            ColumnRule::as_str,
            &[
                "keep",
                "clear",
                "redact",
                "deleted_name",
                "deleted_email",
                "hash",
                "empty",
                "storage_object",
                "erased_at",
            ],
        );
        assert_eq!(
            "Delete".parse::<OnErase>().unwrap_err().to_string(),
            "unknown on_erase action \"Delete\""
        );
        assert_eq!(
            "deleted-email"
                .parse::<ColumnRule>()
                .unwrap_err()
                .to_string(),
            "unknown column rule \"deleted-email\""
        );
    }
}
