//! The statements the PostgreSQL and SQLite stores share, written once, generic over the
//! database. They use `$N` parameters, which both databases read; each store's own module
//! keeps what differs (types such as JSON and booleans in filters, read replicas, schema
//! set-up).

mod access;
mod chunks;
mod documents;

use std::fmt::Write as _;

use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use super::{db, Result};

/// The shared statements, on one store's pool (PostgreSQL's primary for writes).
pub(crate) struct Sql<'a, DB: Database>(pub &'a Pool<DB>);

impl<DB> Sql<'_, DB>
where
    DB: Database,
    DB::QueryResult: RowsAffected,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
{
    /// Runs `statement`, whose one parameter is `value`; returns how many rows it changed.
    async fn run(&self, statement: &str, value: &str, action: &'static str) -> Result<u64> {
        sqlx::query(statement)
            .bind(value)
            .execute(self.0)
            .await
            .map(|r| r.rows())
            .map_err(db(action))
    }
}

/// How many rows a statement changed, from either driver's result.
pub(crate) trait RowsAffected {
    /// The count.
    fn rows(&self) -> u64;
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows(&self) -> u64 {
        self.rows_affected()
    }
}

/// `rows` parenthesised tuples of `width` parameters, numbered from `$first`:
/// `($1, $2), ($3, $4)`.
fn tuples(rows: usize, width: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * width * 5);
    for row in 0..rows {
        if row > 0 {
            out.push_str(", ");
        }
        out.push('(');
        for col in 0..width {
            if col > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "${}", first + row * width + col);
        }
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuples_number_their_parameters_in_order() {
        assert_eq!(super::tuples(2, 2, 2), "($2, $3), ($4, $5)");
        assert_eq!(super::tuples(1, 3, 1), "($1, $2, $3)");
        assert_eq!(super::tuples(0, 3, 1), "");
    }
}
