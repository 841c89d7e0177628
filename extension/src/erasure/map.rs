//! The plan's input ([`super::catalog::load`]) kept per backend: reading it
//! took two catalog queries of a few milliseconds each, on every job,
//! preview and request, while it changes only with the data map or the
//! tables it describes.
//!
//! It is valid while the data-map generation it was read at is current
//! ([`crate::cache::map_generation`]): a change to the data map, a change to
//! a registered table or to a table whose foreign keys reach one (name,
//! columns, indexes, foreign keys, owner), a renamed schema or column type
//! moves that generation on. A VACUUM or ANALYZE of those tables does not.

use std::cell::RefCell;
use std::rc::Rc;

use pgrx::pg_sys;

use crate::cache;
use crate::error::LcResult;
use crate::plan::Catalog;

thread_local! {
    static KEPT: RefCell<Option<(u64, Rc<Catalog>)>> = const { RefCell::new(None) };
}

/// The data map as the plan reads it.
pub fn load() -> LcResult<Rc<Catalog>> {
    let gen = cache::map_generation()?;
    let kept = KEPT.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|(g, _)| *g == gen)
            .map(|(_, c)| Rc::clone(c))
    });
    if let Some(cat) = kept {
        return Ok(cat);
    }
    let cat = Rc::new(cache::load_tracked(|| {
        let cat = super::catalog::load()?;
        let mut relations: Vec<pg_sys::Oid> = cat
            .tables
            .iter()
            .map(|t| t.oid)
            .chain(cat.refs.iter().flat_map(|r| [r.child, r.parent]))
            .map(pg_sys::Oid::from)
            .collect();
        relations.sort_by_key(|r| r.to_u32());
        relations.dedup();
        Ok((cat, relations))
    })?);
    KEPT.with(|k| *k.borrow_mut() = Some((gen, Rc::clone(&cat))));
    Ok(cat)
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use std::rc::Rc;

    use pgrx::prelude::*;

    use super::load;

    fn setup() {
        Spi::run(
            "CREATE SCHEMA kept;
             CREATE DOMAIN kept.mail AS text;
             CREATE TABLE kept.users (id bigint PRIMARY KEY, email kept.mail, name text);
             CREATE TABLE kept.posts (id bigint PRIMARY KEY, author_id bigint REFERENCES kept.users,
                                      body text);
             INSERT INTO kept.users VALUES (1, 'a@example.com', 'Ann');
             INSERT INTO kept.posts VALUES (1, 1, 'hello');
             SELECT lifecycle.register_subject('kept.users', 'id');
             SELECT lifecycle.register_table('kept.posts', 'user', 'author_id');",
        )
        .expect("setup");
    }

    fn table_name(oid_of: &str) -> String {
        let oid =
            Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[oid_of.into()])
                .unwrap()
                .unwrap();
        load()
            .unwrap()
            .table(oid.to_u32())
            .map(|t| t.name.clone())
            .unwrap_or_default()
    }

    /// The data map is read once and kept while nothing it was read from
    /// changes: statistics (ANALYZE, which invalidates the table like
    /// VACUUM), another table, a type nobody uses.
    #[pg_test]
    fn the_data_map_is_kept_across_statistics_and_unrelated_changes() {
        setup();
        let first = load().unwrap();
        assert!(Rc::ptr_eq(&first, &load().unwrap()), "kept");
        Spi::run("ANALYZE kept.posts; ANALYZE kept.users").unwrap();
        assert!(Rc::ptr_eq(&first, &load().unwrap()), "kept across ANALYZE");
        Spi::run(
            "CREATE TABLE kept.other (id int PRIMARY KEY);
             CREATE TYPE kept.mood AS ENUM ('ok');
             CREATE INDEX ON kept.other (id);",
        )
        .unwrap();
        assert!(
            Rc::ptr_eq(&first, &load().unwrap()),
            "kept across changes to other tables and types"
        );
    }

    /// Whatever the plan reads from a table or the data map is read again
    /// after it changed: columns, types and schemas by their new names,
    /// foreign keys from tables outside the data map, column rules.
    #[pg_test]
    fn the_data_map_is_read_again_after_what_it_was_read_from_changed() {
        setup();
        let oid = |name: &str| {
            Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()])
                .unwrap()
                .unwrap()
                .to_u32()
        };
        let (users, posts) = (oid("kept.users"), oid("kept.posts"));
        let first = load().unwrap();

        Spi::run("ALTER TABLE kept.posts RENAME COLUMN body TO text_body").unwrap();
        let cat = load().unwrap();
        assert!(!Rc::ptr_eq(&first, &cat), "a renamed column");
        assert!(cat.table(posts).unwrap().column("text_body").is_some());

        Spi::run("ALTER TABLE kept.users ALTER COLUMN name SET NOT NULL").unwrap();
        let cat = load().unwrap();
        assert!(cat.table(users).unwrap().column("name").unwrap().not_null);

        Spi::run("CREATE UNIQUE INDEX ON kept.users (name)").unwrap();
        let cat = load().unwrap();
        assert!(cat.table(users).unwrap().column("name").unwrap().unique);

        Spi::run("ALTER DOMAIN kept.mail RENAME TO address").unwrap();
        let cat = load().unwrap();
        assert_eq!(
            cat.table(users).unwrap().column("email").unwrap().type_name,
            "kept.address",
            "a renamed type"
        );

        // A table outside the data map starts referencing a registered one,
        // then is renamed: its foreign key and its new name are seen.
        Spi::run(
            "CREATE TABLE kept.notes (id int PRIMARY KEY, user_id bigint REFERENCES kept.users)",
        )
        .unwrap();
        let cat = load().unwrap();
        assert!(cat.refs.iter().any(|r| r.child_name == "kept.notes"));
        Spi::run("ALTER TABLE kept.notes RENAME TO memos").unwrap();
        let cat = load().unwrap();
        assert!(cat.refs.iter().any(|r| r.child_name == "kept.memos"));
        assert!(!cat.refs.iter().any(|r| r.child_name == "kept.notes"));
        Spi::run("ALTER TABLE kept.memos RENAME CONSTRAINT notes_user_id_fkey TO memos_owner")
            .unwrap();
        assert!(load().unwrap().refs.iter().any(|r| r.name == "memos_owner"));

        Spi::run("SELECT lifecycle.set_column_rule('kept.users', 'name', 'deleted_name')").unwrap();
        let cat = load().unwrap();
        assert!(cat
            .table(users)
            .unwrap()
            .rules
            .iter()
            .any(|(c, _)| c == "name"));

        Spi::run("ALTER SCHEMA kept RENAME TO kept2").unwrap();
        assert_eq!(table_name("kept2.posts"), "kept2.posts", "a renamed schema");
        assert!(load()
            .unwrap()
            .refs
            .iter()
            .any(|r| r.child_name == "kept2.memos"));
    }
}
