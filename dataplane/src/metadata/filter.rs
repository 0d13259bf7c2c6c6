//! Metadata filters of search requests, parsed once and turned into SQL by each store.
//!
//! A filter maps metadata keys to conditions; a document passes when every condition holds:
//!
//! | JSON | holds when the key's value |
//! |---|---|
//! | `"k": v` (a scalar) | equals `v`; `null` also matches a missing key |
//! | `"k": {"in": [v, …]}` | equals one of the values |
//! | `"k": {"not": v}` or `{"not": [v, …]}` | differs from each value (a missing key passes) |
//! | `"k": {"gte": 2020, "lt": 2024}` | is a number within the bounds (`gt`, `gte`, `lt`, `lte`) |
//! | `"k": {"gte": "2024-01-01"}` | is a date within the bounds |
//!
//! Dates are ISO 8601 text, `YYYY-MM-DD` optionally followed by a time (`T10:00:00Z`), and compare
//! as text, which orders them correctly when all are written in one time zone (use UTC). One
//! object may combine `in`/`not` with bounds; the bounds of one key are all numbers or all dates.

use serde_json::{Map, Value};

/// Largest number of values in one `in` or `not` list.
pub const MAX_LIST: usize = 1000;

/// A bound of a range: a number, or an ISO 8601 date as text.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    /// A number.
    Number(f64),
    /// A date.
    Date(String),
}

/// One comparison of a range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Gte,
    /// `<`
    Lt,
    /// `<=`
    Lte,
}

impl Cmp {
    /// The SQL operator.
    pub fn sql(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
        }
    }
}

/// One condition on one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to a scalar (`null`: missing or null).
    Eq(Value),
    /// Equal to one of these scalars.
    In(Vec<Value>),
    /// Different from each of these scalars.
    NotIn(Vec<Value>),
    /// Within a bound.
    Range(Cmp, Bound),
}

/// A parsed filter: every `(key, condition)` must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataFilter {
    /// The conditions.
    pub conditions: Vec<(String, Condition)>,
}

impl MetadataFilter {
    /// Whether the filter lets every document through.
    pub fn is_empty(&self) -> bool {
        self.conditions.is_empty()
    }

    /// Parses a request's `filter` object; the error says which key and what is wrong.
    pub fn parse(filter: &Map<String, Value>) -> Result<Self, String> {
        if filter.len() > 64 {
            return Err("at most 64 keys".into());
        }
        let mut conditions = Vec::new();
        for (k, v) in filter {
            check_key(k)?;
            match v {
                Value::Object(ops) => parse_ops(k, ops, &mut conditions)?,
                Value::Array(_) => {
                    return Err(format!(
                        "value of {k:?} must be a scalar or an object of operators (in, not, gt, gte, lt, lte)"
                    ))
                }
                scalar => conditions.push((k.clone(), Condition::Eq(scalar.clone()))),
            }
        }
        Ok(Self { conditions })
    }
}

fn check_key(k: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&k.len())
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key {k:?} must be 1-64 characters of A-Z, a-z, 0-9, '_', '.', '-'"
        ))
    }
}

fn scalars(k: &str, op: &str, v: &Value) -> Result<Vec<Value>, String> {
    let list = match v {
        Value::Array(items) => items.clone(),
        scalar => vec![scalar.clone()],
    };
    if list.is_empty() || list.len() > MAX_LIST {
        return Err(format!("{k:?}: {op} takes 1 to {MAX_LIST} values"));
    }
    if list
        .iter()
        .any(|x| x.is_object() || x.is_array() || x.is_null())
    {
        return Err(format!("{k:?}: {op} takes strings, numbers or booleans"));
    }
    Ok(list)
}

fn parse_ops(
    k: &str,
    ops: &Map<String, Value>,
    out: &mut Vec<(String, Condition)>,
) -> Result<(), String> {
    if ops.is_empty() {
        return Err(format!("{k:?}: the operator object is empty"));
    }
    let mut kind: Option<&str> = None;
    for (op, v) in ops {
        let condition = match op.as_str() {
            "in" => Condition::In(scalars(k, op, v)?),
            "not" => Condition::NotIn(scalars(k, op, v)?),
            "gt" | "gte" | "lt" | "lte" => {
                let cmp = match op.as_str() {
                    "gt" => Cmp::Gt,
                    "gte" => Cmp::Gte,
                    "lt" => Cmp::Lt,
                    _ => Cmp::Lte,
                };
                let bound = match v {
                    Value::Number(n) => Bound::Number(n.as_f64().unwrap_or(f64::NAN)),
                    Value::String(s) if is_iso_date(s) => Bound::Date(s.clone()),
                    _ => {
                        return Err(format!(
                            "{k:?}: {op} takes a number or an ISO 8601 date (YYYY-MM-DD, optionally with a time)"
                        ))
                    }
                };
                let this = if matches!(bound, Bound::Number(_)) {
                    "number"
                } else {
                    "date"
                };
                if kind.is_some_and(|k| k != this) {
                    return Err(format!(
                        "{k:?}: the bounds must be all numbers or all dates"
                    ));
                }
                kind = Some(this);
                Condition::Range(cmp, bound)
            }
            other => {
                return Err(format!(
                    "{k:?}: unknown operator {other:?} (use in, not, gt, gte, lt, lte)"
                ))
            }
        };
        out.push((k.to_string(), condition));
    }
    Ok(())
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space and more.
pub fn is_iso_date(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (b.len() == 10 || b[10] == b'T' || b[10] == b' ')
        && chrono::NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<MetadataFilter, String> {
        MetadataFilter::parse(v.as_object().unwrap())
    }

    #[test]
    fn scalars_operators_and_ranges_parse() {
        let f = parse(json!({
            "lang": "en",
            "tag": {"in": ["a", "b"]},
            "status": {"not": "draft"},
            "year": {"gte": 2020, "lt": 2024},
            "day": {"lte": "2024-06-30T23:59:59Z"},
        }))
        .unwrap();
        assert_eq!(f.conditions.len(), 6);
        assert!(f
            .conditions
            .contains(&("status".into(), Condition::NotIn(vec![json!("draft")]))));
        assert!(f.conditions.contains(&(
            "year".into(),
            Condition::Range(Cmp::Lt, Bound::Number(2024.0))
        )));
        assert!(parse(json!({})).unwrap().is_empty());
    }

    #[test]
    fn bad_filters_name_the_key_and_the_problem() {
        for (f, needle) in [
            (json!({"tag": ["a"]}), "\"tag\""),
            (json!({"tag": {"has": 1}}), "unknown operator \"has\""),
            (json!({"tag": {}}), "empty"),
            (json!({"tag": {"in": []}}), "1 to"),
            (json!({"tag": {"in": [{"x": 1}]}}), "strings, numbers"),
            (json!({"year": {"gte": "soon"}}), "ISO 8601"),
            (json!({"year": {"gte": "2024-02-30"}}), "ISO 8601"),
            (
                json!({"year": {"gte": 2020, "lt": "2024-01-01"}}),
                "all numbers or all dates",
            ),
            (json!({"bad key": 1}), "\"bad key\""),
        ] {
            let e = parse(f.clone()).unwrap_err();
            assert!(e.contains(needle), "{f}: {e}");
        }
    }

    #[test]
    fn iso_dates() {
        assert!(is_iso_date("2024-01-31"));
        assert!(is_iso_date("2024-01-31T10:00:00Z"));
        assert!(!is_iso_date("2024-1-31"));
        assert!(!is_iso_date("2024-02-30"));
        assert!(!is_iso_date("2024-01-31x"));
    }
}
