//! Jobs: what a job does, the statuses it goes through and the state machine
//! between them.
//!
//! ```text
//! pending -> approved -> processing -> completed | failed
//! pending -> rejected                 (reason required)
//! pending | approved -> cancelled
//! processing -> approved              (handed back: blocked by a hold)
//! ```
//!
//! A job starts pending, or approved when it needs no approval. The
//! extension enforces all of this with a trigger on `lifecycle.jobs`; the
//! functions here are the rules that trigger applies.

named_enum! {
    /// What a job does to its target.
    pub enum JobType ("job type") {
        /// Build an export bundle of the target's data (done by the control plane).
        Export => "export",
        /// Erase the target (done by the extension's engine).
        Erase => "erase",
        /// Remove what an earlier erasure kept (done by the extension's engine).
        Purge => "purge",
    }
}

named_enum! {
    /// Where a job is in the state machine.
    pub enum JobStatus ("job status") {
        /// Requested, waiting for approval.
        Pending => "pending",
        /// Approved (or needing no approval): runs when due.
        Approved => "approved",
        /// Taken by a runner or worker.
        Processing => "processing",
        /// Done.
        Completed => "completed",
        /// Ended with an error.
        Failed => "failed",
        /// Refused by an approver, with a reason.
        Rejected => "rejected",
        /// Withdrawn before it ran.
        Cancelled => "cancelled",
    }
}

/// The state machine in one sentence, as the DETAIL of refused job actions.
pub const STATE_MACHINE: &str = "Jobs go pending -> approved -> processing -> completed | failed; \
                                 pending -> rejected; pending or approved -> cancelled.";

impl JobType {
    /// Whether a request of this type waits for approval unless it says
    /// otherwise: erasures and purges do, exports do not.
    pub const fn requires_approval_by_default(self) -> bool {
        !matches!(self, JobType::Export)
    }
}

impl JobStatus {
    /// The status a new job starts in.
    pub const fn initial(requires_approval: bool) -> JobStatus {
        if requires_approval {
            JobStatus::Pending
        } else {
            JobStatus::Approved
        }
    }

    /// Whether the job is over: no transition leads out of these.
    pub const fn is_finished(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Rejected | JobStatus::Cancelled
        )
    }
}

/// Whether a new job may start in `status`: pending always, approved only
/// when it needs no approval.
pub const fn start_allowed(status: JobStatus, requires_approval: bool) -> bool {
    match status {
        JobStatus::Pending => true,
        JobStatus::Approved => !requires_approval,
        _ => false,
    }
}

/// Whether the state machine allows `from -> to`. Staying in the same
/// status is allowed (an update of other fields).
pub fn transition_allowed(from: JobStatus, to: JobStatus) -> bool {
    use JobStatus::*;
    from == to
        || matches!(
            (from, to),
            (Pending, Approved)
                | (Pending, Rejected)
                | (Pending, Cancelled)
                | (Approved, Cancelled)
                | (Approved, Processing)
                | (Processing, Completed)
                | (Processing, Failed)
                | (Processing, Approved)
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::check_names;
    use JobStatus::*;

    #[test]
    fn names() {
        check_names(JobType::ALL, JobType::as_str, &["export", "erase", "purge"]);
        check_names(
            JobStatus::ALL,
            JobStatus::as_str,
            &[
                "pending",
                "approved",
                "processing",
                "completed",
                "failed",
                "rejected",
                "cancelled",
            ],
        );
        assert_eq!(JobStatus::Cancelled.to_string(), "cancelled");
        assert_eq!(
            "exploded".parse::<JobStatus>().unwrap_err().to_string(),
            "unknown job status \"exploded\""
        );
    }

    #[test]
    fn state_machine_allows_exactly_the_documented_transitions() {
        let allowed = [
            (Pending, Approved),
            (Pending, Rejected),
            (Pending, Cancelled),
            (Approved, Cancelled),
            (Approved, Processing),
            (Processing, Completed),
            (Processing, Failed),
            (Processing, Approved),
        ];
        for &from in JobStatus::ALL {
            for &to in JobStatus::ALL {
                let expected = from == to || allowed.contains(&(from, to));
                assert_eq!(transition_allowed(from, to), expected, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn finished_jobs_stay_finished() {
        let finished: Vec<JobStatus> = JobStatus::ALL
            .iter()
            .copied()
            .filter(|s| s.is_finished())
            .collect();
        assert_eq!(finished, [Completed, Failed, Rejected, Cancelled]);
        for &from in &finished {
            for &to in JobStatus::ALL {
                assert_eq!(transition_allowed(from, to), from == to, "{from} -> {to}");
            }
        }
        // Every status that is not finished leads somewhere else.
        for &from in JobStatus::ALL.iter().filter(|s| !s.is_finished()) {
            assert!(
                JobStatus::ALL
                    .iter()
                    .any(|&to| to != from && transition_allowed(from, to)),
                "{from}"
            );
        }
    }

    #[test]
    fn jobs_start_pending_or_approved_without_approval() {
        for &s in JobStatus::ALL {
            assert_eq!(start_allowed(s, true), s == Pending, "{s}");
            assert_eq!(
                start_allowed(s, false),
                s == Pending || s == Approved,
                "{s}"
            );
        }
        assert_eq!(JobStatus::initial(true), Pending);
        assert_eq!(JobStatus::initial(false), Approved);
        for requires_approval in [true, false] {
            assert!(start_allowed(
                JobStatus::initial(requires_approval),
                requires_approval
            ));
        }
        assert!(!JobType::Export.requires_approval_by_default());
        assert!(JobType::Erase.requires_approval_by_default());
        assert!(JobType::Purge.requires_approval_by_default());
    }
}
