-- The grants of the service role that `lifecycled serve` connects as:
-- exactly what the API and the worker use, nothing else. `lifecycled setup`
-- runs this file in every database it prepares, after revoking whatever the
-- role held in the schemas `lifecycle` and `lifecycled`, with @ROLE@
-- replaced by the role's name (a plain lower-case identifier). Functions are
-- granted by name, every overload, so a release that adds parameters to a
-- function needs only `lifecycled setup` again. docs/security.md lists the
-- same grants; a test keeps the two in step.

GRANT USAGE ON SCHEMA lifecycle TO @ROLE@;

DO $grants$
DECLARE
    fn regprocedure;
BEGIN
    FOR fn IN
        SELECT p.oid::regprocedure
          FROM pg_catalog.pg_proc p
         WHERE p.pronamespace = 'lifecycle'::regnamespace
           AND p.proname IN (
               -- the API
               'request_export', 'request_erasure', 'request_purge',
               'approve', 'reject', 'cancel',
               'place_hold', 'release_hold',
               'preview_erasure', 'subject_state', 'canonical_id',
               'tenant_names', 'find_tenants', 'is_member',
               'record_event', 'verify_audit_log',
               'list_jobs', 'job_stats', 'oldest_due_jobs', 'export_download',
               -- the worker
               'claim_job', 'renew_lease', 'release_lease', 'run_job',
               'complete_job', 'fail_job', 'confirm_step', 'retention_sweep',
               'export_contents', 'open_export', 'fetch_export', 'expire_export', 'audit_chain_heads')
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO @ROLE@', fn);
    END LOOP;
END
$grants$;

GRANT SELECT ON lifecycle.jobs, lifecycle.external_steps, lifecycle.retention, lifecycle.export_bundles,
                lifecycle.legal_holds, lifecycle.holds_in_force, lifecycle.audit_log,
                lifecycle.data_map, lifecycle.guard_status
   TO @ROLE@;

-- The control plane's own tables (primary database only): read tokens and
-- record their last use; creating and revoking tokens is for the schema's
-- owner (`lifecycled token ...` with the admin URL), so a flaw in the API
-- cannot mint a token.
DO $own$
BEGIN
    IF pg_catalog.to_regnamespace('lifecycled') IS NOT NULL THEN
        GRANT USAGE ON SCHEMA lifecycled TO @ROLE@;
        GRANT SELECT ON lifecycled.schema_version, lifecycled.admin_tokens TO @ROLE@;
        GRANT UPDATE (last_used_at) ON lifecycled.admin_tokens TO @ROLE@;
    END IF;
END
$own$;
