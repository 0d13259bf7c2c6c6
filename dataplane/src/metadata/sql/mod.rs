//! The statements the PostgreSQL and SQLite stores share, written once, generic over the
//! database. They use `$N` parameters, which both databases read; each store's own module
//! keeps what differs (types such as JSON and booleans in filters, read replicas, schema
//! set-up).

mod access;
mod chunks;
mod documents;

use std::fmt::Write as _;

use sqlx::{Database, Pool};

/// The shared statements, on one store's pool (PostgreSQL's primary for writes).
pub(crate) struct Sql<'a, DB: Database>(pub &'a Pool<DB>);

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
