//! Lists and lookups over every configured database.
//!
//! One control plane serves several databases, and its lists are one list:
//! newest first across all of them, paged with one keyset cursor. Each item
//! has a [`Position`]: its timestamp, its database's name and its id in that
//! database. Items are ordered by timestamp (newest first), then database
//! name, then id (highest first), so the order is total even when two
//! databases hold events of the same microsecond with the same id.
//!
//! A page asks every database for its first `limit + 1` items after the
//! cursor (each database gets the bound [`Position::bound_for`] computes
//! for it), merges them and keeps `limit`: the global first `limit` items
//! are among them. Databases that do not answer are reported in the page's
//! `unavailable`; when none answers, the first one's error is the answer.
//!
//! Ids are uuids (holds, jobs) or per-database numbers (audit events); a
//! lookup by id asks every database ([`locate`]).

use std::cmp::Ordering;
use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::pagination::{Page, PageQuery};
use crate::db::{partition, Database, Databases, PerDatabase, UnavailableDatabase};
use crate::error::{ApiError, ApiResult};

/// An id type that can take part in a keyset bound: it has a smallest and a
/// largest value that no real row uses.
pub trait KeysetId:
    Copy + Ord + Serialize + DeserializeOwned + ToSql + Sync + Send + 'static
{
    /// Below every real id.
    const LOWEST: Self;
    /// Above every real id.
    const HIGHEST: Self;
}

impl KeysetId for i64 {
    const LOWEST: Self = i64::MIN;
    const HIGHEST: Self = i64::MAX;
}

impl KeysetId for Uuid {
    const LOWEST: Self = Uuid::nil();
    const HIGHEST: Self = Uuid::max();
}

/// Where an item stands in a list over several databases; also the
/// content of the list's cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position<Id> {
    /// The item's timestamp (creation, occurrence).
    pub at: DateTime<Utc>,
    /// The configured name of the item's database.
    pub database: String,
    /// The item's id in its database.
    pub id: Id,
}

impl<Id: KeysetId> Position<Id> {
    /// List order: newest first, then database name, then highest id.
    pub fn list_order(&self, other: &Self) -> Ordering {
        other
            .at
            .cmp(&self.at)
            .then_with(|| self.database.cmp(&other.database))
            .then_with(|| other.id.cmp(&self.id))
    }

    /// The bound `(at, id)` for `database`'s query: its items after this
    /// position in list order are exactly those with `(at, id) < bound`
    /// (row comparison). In the position's own database that is the
    /// position itself; a database named before it has passed `at`
    /// entirely, one named after it still has the items of `at`.
    pub fn bound_for(&self, database: &str) -> (DateTime<Utc>, Id) {
        let id = match database.cmp(self.database.as_str()) {
            Ordering::Less => Id::LOWEST,
            Ordering::Equal => self.id,
            Ordering::Greater => Id::HIGHEST,
        };
        (self.at, id)
    }
}

/// An item of a list over several databases.
pub trait Positioned {
    type Id: KeysetId;
    fn position(&self) -> Position<Self::Id>;
}

/// One page of a list over every database. `fetch` is called once per
/// database with a connection, the bound after which to start (`None` for
/// the first page) and how many items to return at most (newest first, in
/// list order within the database).
pub async fn list<T, F, Fut>(dbs: &Databases, page: &PageQuery, fetch: F) -> ApiResult<Page<T>>
where
    T: Positioned,
    F: Fn(Arc<str>, Object, Option<(DateTime<Utc>, T::Id)>, i64) -> Fut,
    Fut: Future<Output = ApiResult<Vec<T>>>,
{
    let limit = page.limit()?;
    let after: Option<Position<T::Id>> = page.cursor()?;
    let fetch = &fetch;
    let after = &after;
    let answers = dbs
        .fan_out(|name, client| async move {
            let bound = after.as_ref().map(|p| p.bound_for(&name));
            fetch(name, client, bound, i64::from(limit) + 1).await
        })
        .await;
    let (values, unavailable) = answered(answers)?;
    let mut items: Vec<T> = values.into_iter().flat_map(|(_, items)| items).collect();
    items.sort_by(|a, b| a.position().list_order(&b.position()));
    items.truncate(limit as usize + 1);
    Ok(Page::from_overfetch(items, limit, Positioned::position).with_unavailable(unavailable))
}

/// The object `find` finds in one of the databases, with that database.
/// `Ok(None)` when every database answered and none has it; the error of
/// the first database that did not answer when none of the others has it
/// (it may be there: answering 404 would be wrong).
pub async fn locate<T, F, Fut>(dbs: &Databases, find: F) -> ApiResult<Option<(Arc<str>, T)>>
where
    F: Fn(Object) -> Fut,
    Fut: Future<Output = ApiResult<Option<T>>>,
{
    let find = &find;
    let answers = dbs
        .fan_out(|_, client| async move { find(client).await })
        .await;
    let mut first_error = None;
    for answer in answers {
        match answer.result {
            Ok(Some(found)) => return Ok(Some((answer.database, found))),
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(database = %answer.database, error = %err, "database did not answer a lookup");
                first_error.get_or_insert(err);
            }
        }
    }
    first_error.map_or(Ok(None), Err)
}

/// The database a new object goes to: the one named, the only one
/// configured, or 422 when several are configured and none is named.
pub fn target<'a>(dbs: &'a Databases, named: Option<&str>) -> ApiResult<&'a Database> {
    if let Some(name) = named {
        return dbs.get_or_404(name);
    }
    let mut all = dbs.iter();
    match (all.next(), all.next()) {
        (Some(only), None) => Ok(only),
        _ => Err(ApiError::unprocessable(
            "\"database\" is required when several databases are configured",
        )
        .with_code("database_required")
        .with_hint(format!(
            "name one of: {}",
            dbs.names().collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// What the databases of a fan-out answered, by database, and the
/// databases that did not answer.
pub type Answered<T> = (Vec<(Arc<str>, T)>, Vec<UnavailableDatabase>);

/// The answers of a fan-out split as [`partition`] does (what answered,
/// and the databases that did not), except that a fan-out where no database
/// answered is the first database's error: there is nothing to show.
pub fn answered<T>(answers: Vec<PerDatabase<T>>) -> ApiResult<Answered<T>> {
    if answers.iter().all(|a| a.result.is_err()) {
        if let Some(first) = answers.into_iter().next() {
            return Err(first.result.err().expect("every answer is an error"));
        }
        return Ok((Vec::new(), Vec::new()));
    }
    Ok(partition(answers))
}

/// The bound's two halves as query parameters (`NULL`s for the first page).
pub fn bound_params<Id: KeysetId>(
    bound: Option<(DateTime<Utc>, Id)>,
) -> (Option<DateTime<Utc>>, Option<Id>) {
    (bound.map(|(at, _)| at), bound.map(|(_, id)| id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(s, 0).unwrap()
    }

    fn pos(s: i64, db: &str, id: i64) -> Position<i64> {
        Position {
            at: at(s),
            database: db.into(),
            id,
        }
    }

    /// Items after `cursor` in `db`, as the database's query selects them.
    fn after_in(items: &[Position<i64>], cursor: &Position<i64>, db: &str) -> Vec<Position<i64>> {
        let bound = cursor.bound_for(db);
        items
            .iter()
            .filter(|p| p.database == db && (p.at, p.id) < bound)
            .cloned()
            .collect()
    }

    #[test]
    fn bounds_select_exactly_the_items_after_the_cursor() {
        let mut items = Vec::new();
        for db in ["a", "b", "c"] {
            for s in 1..=3 {
                for id in 1..=2 {
                    items.push(pos(s, db, id + s * 10));
                    items.push(pos(s, db, id));
                }
            }
        }
        items.sort_by(Position::list_order);
        for (i, cursor) in items.iter().enumerate() {
            let mut selected: Vec<_> = ["a", "b", "c"]
                .iter()
                .flat_map(|db| after_in(&items, cursor, db))
                .collect();
            selected.sort_by(Position::list_order);
            assert_eq!(selected, items[i + 1..], "after {cursor:?}");
        }
    }

    #[test]
    fn uuid_bounds_cover_every_uuid() {
        let p = Position {
            at: at(1),
            database: "b".into(),
            id: Uuid::new_v4(),
        };
        assert_eq!(p.bound_for("a").1, Uuid::nil());
        assert_eq!(p.bound_for("b").1, p.id);
        assert_eq!(p.bound_for("c").1, Uuid::max());
    }
}
