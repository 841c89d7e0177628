//! The names of the audit events the extension records.
//!
//! An event name is `<area>.<what happened>`, lower case. These names are
//! part of the product's contract: auditors query by them, and the control
//! plane and the privacy center show them. Events an application records
//! itself with `lifecycle.record_event()` may use any other name.

/// A user's erasure was requested.
pub const ACCOUNT_DELETION_REQUESTED: &str = "account.deletion_requested";
/// A user's pending erasure was cancelled.
pub const ACCOUNT_DELETION_CANCELLED: &str = "account.deletion_cancelled";
/// A user's erasure ran; the details carry the receipt's digest.
pub const ACCOUNT_PERMANENTLY_DELETED: &str = "account.permanently_deleted";
/// A user was erased at someone else's request (an administrator's).
pub const ADMIN_USER_DELETED: &str = "admin.user_deleted";
/// A workspace's erasure was requested.
pub const WORKSPACE_DELETION_REQUESTED: &str = "workspace.deletion_requested";
/// A workspace's pending erasure was cancelled.
pub const WORKSPACE_DELETION_CANCELLED: &str = "workspace.deletion_cancelled";
/// A workspace's erasure ran; the details carry the receipt's digest.
pub const WORKSPACE_PERMANENTLY_DELETED: &str = "workspace.permanently_deleted";

/// An export was requested.
pub const DATA_EXPORT_REQUESTED: &str = "data.export_requested";
/// An export bundle was built.
pub const DATA_EXPORT_COMPLETED: &str = "data.export_completed";
/// An export bundle was downloaded (IP and user agent recorded).
pub const DATA_EXPORT_DOWNLOADED: &str = "data.export_downloaded";
/// An export's entitlement ended: its bundle was deleted from storage.
pub const DATA_EXPORT_EXPIRED: &str = "data.export_expired";
/// A purge was requested.
pub const DATA_PURGE_REQUESTED: &str = "data.purge_requested";
/// A purge ran.
pub const DATA_PURGED: &str = "data.purged";

/// A job was approved.
pub const JOB_APPROVED: &str = "job.approved";
/// A job was rejected, with a reason.
pub const JOB_REJECTED: &str = "job.rejected";
/// An export or purge job was cancelled.
pub const JOB_CANCELLED: &str = "job.cancelled";
/// A job failed; the details carry the SQLSTATE.
pub const JOB_FAILED: &str = "job.failed";
/// A job was stopped by a legal hold (recorded once per hold).
pub const JOB_BLOCKED_BY_HOLD: &str = "job.blocked_by_hold";
/// The last step of a job outside the database was confirmed.
pub const JOB_EXTERNAL_STEPS_CONFIRMED: &str = "job.external_steps_confirmed";
/// A worker handed a job it had claimed but not started back to the queue.
pub const JOB_LEASE_RELEASED: &str = "job.lease_released";

/// A legal hold was placed.
pub const LEGAL_HOLD_PLACED: &str = "legal_hold.placed";
/// A legal hold was released.
pub const LEGAL_HOLD_RELEASED: &str = "legal_hold.released";

/// A subject table was registered.
pub const DATA_MAP_SUBJECT_REGISTERED: &str = "data_map.subject_registered";
/// The tenant table was registered.
pub const DATA_MAP_TENANT_REGISTERED: &str = "data_map.tenant_registered";
/// A table was registered.
pub const DATA_MAP_TABLE_REGISTERED: &str = "data_map.table_registered";
/// A column rule was set.
pub const DATA_MAP_COLUMN_RULE_SET: &str = "data_map.column_rule_set";
/// A column's label or exclusion for exports was set.
pub const DATA_MAP_COLUMN_EXPORT_SET: &str = "data_map.column_export_set";
/// A membership table was registered.
pub const DATA_MAP_MEMBERSHIP_REGISTERED: &str = "data_map.membership_registered";
/// A membership registration was removed.
pub const DATA_MAP_MEMBERSHIP_UNREGISTERED: &str = "data_map.membership_unregistered";
/// A column was declared to reference a registered table's key.
pub const DATA_MAP_LINK_REGISTERED: &str = "data_map.link_registered";
/// A column was mapped to a hold scope.
pub const DATA_MAP_SCOPE_REGISTERED: &str = "data_map.scope_registered";
/// A table was unregistered.
pub const DATA_MAP_TABLE_UNREGISTERED: &str = "data_map.table_unregistered";
/// A registered table was dropped.
pub const DATA_MAP_TABLE_DROPPED: &str = "data_map.table_dropped";

/// A superuser renamed a guard trigger.
pub const GUARD_RENAMED: &str = "guard.renamed";
/// A superuser disabled a guard trigger.
pub const GUARD_DISABLED: &str = "guard.disabled";
/// A superuser dropped a guard trigger.
pub const GUARD_DROPPED: &str = "guard.dropped";

/// Retained rows whose period ended were removed.
pub const RETENTION_PURGED: &str = "retention.purged";

/// Every event name above.
pub const ALL: &[&str] = &[
    ACCOUNT_DELETION_REQUESTED,
    ACCOUNT_DELETION_CANCELLED,
    ACCOUNT_PERMANENTLY_DELETED,
    ADMIN_USER_DELETED,
    WORKSPACE_DELETION_REQUESTED,
    WORKSPACE_DELETION_CANCELLED,
    WORKSPACE_PERMANENTLY_DELETED,
    DATA_EXPORT_REQUESTED,
    DATA_EXPORT_COMPLETED,
    DATA_EXPORT_DOWNLOADED,
    DATA_EXPORT_EXPIRED,
    DATA_PURGE_REQUESTED,
    DATA_PURGED,
    JOB_APPROVED,
    JOB_REJECTED,
    JOB_CANCELLED,
    JOB_FAILED,
    JOB_BLOCKED_BY_HOLD,
    JOB_EXTERNAL_STEPS_CONFIRMED,
    LEGAL_HOLD_PLACED,
    LEGAL_HOLD_RELEASED,
    DATA_MAP_SUBJECT_REGISTERED,
    DATA_MAP_TENANT_REGISTERED,
    DATA_MAP_TABLE_REGISTERED,
    DATA_MAP_COLUMN_RULE_SET,
    DATA_MAP_COLUMN_EXPORT_SET,
    DATA_MAP_MEMBERSHIP_REGISTERED,
    DATA_MAP_MEMBERSHIP_UNREGISTERED,
    DATA_MAP_LINK_REGISTERED,
    DATA_MAP_SCOPE_REGISTERED,
    DATA_MAP_TABLE_UNREGISTERED,
    DATA_MAP_TABLE_DROPPED,
    GUARD_RENAMED,
    GUARD_DISABLED,
    GUARD_DROPPED,
    RETENTION_PURGED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_dotted() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(seen.insert(*name), "{name} twice");
            let (area, what) = name.split_once('.').expect("area.what");
            for part in [area, what] {
                assert!(
                    !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                    "{name}"
                );
            }
        }
        assert_eq!(ALL.len(), 36);
    }
}
