//! Membership tables: which subject belongs to which tenant, and who is an
//! admin there. Applications say "admin" in many shapes: a role name
//! (`'owner'`), a list of roles (`'{admin,viewer}'`, or a delimited string
//! such as `'team_user team_admin'`), a boolean flag (`schemeadmin`), a
//! number (`20`). The registration records the shape; [`admin_predicate`]
//! turns it into SQL.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use super::{
    after_change, audit_change, check_type_name, column, key_column, refresh_row_guard, relation,
    require_key_type, roles_of, store, warn_unindexed, Column, Relation,
};
use crate::error::{LcError, LcResult};
use crate::plan::Admin;
use crate::privilege;
use lifecycle_core::events;

pub struct MembershipRegistration<'a> {
    pub tbl: Option<pg_sys::Oid>,
    pub subject_column: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    pub role_column: Option<&'a str>,
    pub admin_roles: Option<Vec<Option<String>>>,
    pub subject_type: Option<&'a str>,
    pub role_separator: Option<&'a str>,
    pub active_column: Option<&'a str>,
}

/// The subject type a membership's subject column refers to, from its
/// foreign key (or declared link) to a registered subject table's id column.
fn inferred_subject_type(rel: &Relation, col: &str) -> LcResult<Option<String>> {
    let Some((parent, _, key, _)) = super::register::resolve_link(rel, col)? else {
        return Ok(None);
    };
    privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT subject_type FROM lifecycle.subject_tables \
              WHERE relation OPERATOR(pg_catalog.=) $1 AND id_column OPERATOR(pg_catalog.=) $2::pg_catalog.name",
            &[parent.into(), key.as_str().into()],
        )
    })
}

/// The shape of the role column and the admin roles it is compared with.
fn admin_rule(
    rel: &Relation,
    role: &Column,
    admin_roles: Option<Vec<Option<String>>>,
    separator: Option<&str>,
) -> LcResult<Admin> {
    let roles: Option<Vec<String>> = admin_roles.map(|r| {
        r.into_iter()
            .flatten()
            .filter(|s| !s.trim().is_empty())
            .collect()
    });
    let need_roles = |roles: Option<Vec<String>>| -> LcResult<Vec<String>> {
        match roles {
            None => Err(
                LcError::null_value("admin_roles", "lifecycle.register_membership()")
                    .hint("Name the admin roles, for example admin_roles => '{owner,admin}'."),
            ),
            Some(r) if !r.is_empty() => Ok(r),
            _ => Err(LcError::invalid_parameter(format!(
                "admin_roles must name at least one role of column \"{}\" of {}",
                role.name, rel.name
            ))
            .hint("For example admin_roles => '{owner,admin}'.")),
        }
    };
    if role.base_type == pg_sys::BOOLOID {
        if let Some(r) = &roles {
            if !(r.is_empty() || r.iter().all(|x| x == "true")) {
                return Err(LcError::invalid_parameter(format!(
                    "role column \"{}\" of {} is a boolean flag: admin_roles does not apply",
                    role.name, rel.name
                ))
                .detail("A true value marks an admin.")
                .hint("Leave admin_roles NULL."));
            }
        }
        if separator.is_some() {
            return Err(LcError::invalid_parameter(
                "role_separator applies to a text role column, not to a boolean flag",
            )
            .hint("Leave role_separator NULL."));
        }
        return Ok(Admin::Flag);
    }
    if role.category == 'A' {
        if separator.is_some() {
            return Err(LcError::invalid_parameter(
                "role_separator applies to a text role column, not to an array",
            )
            .hint("Leave role_separator NULL: the array's elements are the roles."));
        }
        return Ok(Admin::List(need_roles(roles)?));
    }
    match separator {
        Some("") => Err(
            LcError::invalid_parameter("role_separator must not be empty")
                .hint("For roles such as 'team_user team_admin', pass role_separator => ' '."),
        ),
        Some(sep) if role.is_textual() => Ok(Admin::Delimited {
            separator: sep.to_string(),
            roles: need_roles(roles)?,
        }),
        Some(_) => Err(LcError::datatype_mismatch(format!(
            "role column \"{}\" of {} is not text: it cannot hold delimited roles",
            role.name, rel.name
        ))
        .detail(format!("Its type is {}.", role.type_name))
        .hint("Leave role_separator NULL.")),
        None if role.is_textual() => Ok(Admin::Exact(need_roles(roles)?)),
        None if role.category == 'N' || role.category == 'E' => {
            // Roles of a number or enum column must be values of it.
            let roles = need_roles(roles)?;
            for r in &roles {
                if crate::keys::canonical(role.type_oid, r)?.is_none() {
                    return Err(LcError::datatype_mismatch(format!(
                        "admin role \"{r}\" is not a value of column \"{}\" of {}",
                        role.name, rel.name
                    ))
                    .detail(format!("The column is of type {}.", role.type_name))
                    .hint("Name the values that mark admins, for example admin_roles => '{20}'."));
                }
            }
            Ok(Admin::Exact(roles))
        }
        None => Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot say who is an admin",
            role.name, rel.name
        ))
        .detail(format!("Its type is {}.", role.type_name))
        .hint("Use a text, numeric, enum, array or boolean role column.")),
    }
}

/// A tenant column that references another table than the tenant table
/// (a channel, where the workspace is the team) names no workspace.
fn refuse_link_elsewhere(rel: &Relation, t: &Column) -> LcResult<()> {
    let Some((tenant_table, _)) = key_column("tenant")? else {
        return Ok(());
    };
    if let Some((_, parent_name, _, source)) = super::register::resolve_link(rel, &t.name)? {
        if parent_name != tenant_table {
            return Err(LcError::invalid_parameter(format!(
                "column \"{}\" of {} names rows of {parent_name}, not workspaces",
                t.name, rel.name
            ))
            .detail(format!(
                "It references {parent_name} ({source}); the workspaces are {tenant_table}'s rows."
            ))
            .hint("Name the column that holds the workspace id: the last-admin rule counts admins per workspace."));
        }
    }
    Ok(())
}

pub fn register_membership(r: MembershipRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_membership()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let s = column(&rel, r.subject_column, "subject_column", F)?;
    require_key_type(&rel, &s, "a subject id")?;
    let t = column(&rel, r.tenant_column, "tenant_column", F)?;
    require_key_type(&rel, &t, "a tenant id")?;
    refuse_link_elsewhere(&rel, &t)?;
    let role = column(&rel, r.role_column, "role_column", F)?;
    let rule = admin_rule(&rel, &role, r.admin_roles, r.role_separator)?;
    // The subject type: given, or the one the subject column references,
    // or 'user' when that is a registered subject type.
    let subject_type = match r.subject_type {
        Some(t) => {
            check_type_name(t, "subject_type")?;
            t.to_string()
        }
        None => match inferred_subject_type(&rel, &s.name)? {
            Some(t) => t,
            None if key_column("user")?.is_some() => "user".to_string(),
            None => {
                return Err(LcError::invalid_parameter(format!(
                    "cannot tell which subject type column \"{}\" of {} refers to",
                    s.name, rel.name
                ))
                .detail("It has no foreign key or declared link to a registered subject table, and 'user' is not a registered subject type.")
                .hint("Pass subject_type => '<type>', after registering that subject's table with lifecycle.register_subject()."));
            }
        },
    };
    let active = match r.active_column {
        None => None,
        Some(a) => {
            let c = column(&rel, Some(a), "active_column", F)?;
            if c.base_type != pg_sys::BOOLOID {
                return Err(LcError::datatype_mismatch(format!(
                    "active_column \"{}\" of {} is not a boolean",
                    c.name, rel.name
                ))
                .detail(format!("Its type is {}.", c.type_name))
                .hint("Name a boolean column that is true while the membership is current, or register the table's soft-delete column with lifecycle.register_table()."));
            }
            Some(c.name)
        }
    };
    let (kind, separator) = (rule.kind(), rule.separator().map(str::to_string));
    let roles = (rule != Admin::Flag).then(|| rule.roles());
    let wanted = json!({
        "subject_type": subject_type,
        "subject_column": s.name,
        "tenant_column": t.name,
        "role_column": role.name,
        "role_kind": kind,
        "role_separator": separator,
        "admin_roles": roles,
        "active_column": active,
    });
    if store("memberships", &rel, wanted.clone(), &["subject", "tenant"])? {
        after_change(&rel, events::DATA_MAP_MEMBERSHIP_REGISTERED, wanted)?;
        warn_unindexed(&rel, &[s.name, t.name])?;
    }
    Ok(())
}

/// Remove a membership registration (the table's other registrations, if
/// any, stay).
pub fn unregister_membership(tbl: Option<pg_sys::Oid>) -> LcResult<()> {
    const F: &str = "lifecycle.unregister_membership()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "unregister")?;
    let roles = roles_of(rel.oid)?;
    if !roles.contains(&"membership") {
        return Err(LcError::not_registered(&rel.name).detail(format!(
            "{} is not registered as a membership table.",
            rel.name
        )));
    }
    if roles == ["membership"] {
        // Its rows may be held like any registered table's.
        if let Some((part, h)) = crate::holds::hold_covering_tree(rel.oid, rel.oid)? {
            return Err(LcError::held_table_drop("unregister", &rel.name)
                .detail(format!(
                    "Rows of {part} are under {}",
                    crate::error::lower_first(&crate::holds::hold_detail(&h))
                ))
                .hint(crate::holds::release_hint(&h))
                .blocked_by(&h.id));
        }
    }
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            "DELETE FROM lifecycle.memberships WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1",
            &[rel.oid.into()],
        )?;
        Ok(())
    })?;
    crate::cache::invalidate("memberships")?;
    if roles == ["membership"] {
        super::drop_guards(rel.oid)?;
    } else {
        refresh_row_guard(rel.oid)?;
    }
    audit_change(events::DATA_MAP_MEMBERSHIP_UNREGISTERED, &rel, json!({}))
}
