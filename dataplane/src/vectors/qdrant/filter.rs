//! Metadata filters as Qdrant payload conditions, so that Qdrant filters while it searches
//! instead of being handed the ids of every matching document.
//!
//! Each point carries its document's metadata under the payload key `metadata`; a condition on
//! key `k` becomes a condition on `metadata.k`, with the semantics of the SQL stores
//! ([`crate::metadata::filter`]):
//!
//! | filter | Qdrant |
//! |---|---|
//! | `"k": "v"`, `true`, `3` | `match` on the value |
//! | `"k": 2.5` | a `range` from 2.5 to 2.5 (Qdrant matches only keywords, integers and booleans) |
//! | `"k": null` | `is_null` or `is_empty` (a missing key matches too) |
//! | `{"in": […]}` | `match any` per type, any of them |
//! | `{"not": […]}` | none of the `in` conditions (a missing key passes) |
//! | `{"gte": 2020}` | a numeric `range` |
//! | `{"gte": "2024-01-01"}` | a `datetime_range`; a date without a time is midnight UTC |
//!
//! A date bound that is not a full RFC 3339 or `YYYY-MM-DD[THH:MM:SS]` time cannot be turned
//! into a timestamp; such a filter is not translated, and the caller resolves it in the metadata
//! store instead.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use qdrant_client::qdrant::{Condition, DatetimeRange, Filter, Range, Timestamp};
use serde_json::Value;

use crate::metadata::filter::{Bound, Cmp, Condition as Wanted, MetadataFilter};

/// Payload key of the document metadata on each point.
pub const METADATA: &str = "metadata";

/// The conditions that select the documents `filter` passes, or `None` when one of them has
/// no exact Qdrant form.
pub fn conditions(filter: &MetadataFilter) -> Option<Vec<Condition>> {
    filter
        .conditions
        .iter()
        .map(|(key, wanted)| condition(&format!("{METADATA}.{key}"), wanted))
        .collect()
}

fn condition(field: &str, wanted: &Wanted) -> Option<Condition> {
    Some(match wanted {
        Wanted::Eq(Value::Null) => {
            Filter::should([Condition::is_null(field), Condition::is_empty(field)]).into()
        }
        Wanted::Eq(v) => equals(field, v)?,
        Wanted::In(values) => any_of(field, values)?,
        Wanted::NotIn(values) => Filter::must_not([any_of(field, values)?]).into(),
        Wanted::Range(cmp, Bound::Number(n)) => Condition::range(field, bounded(*cmp, *n)),
        Wanted::Range(cmp, Bound::Date(d)) => {
            let t = Some(timestamp(d)?);
            let mut r = DatetimeRange::default();
            match cmp {
                Cmp::Gt => r.gt = t,
                Cmp::Gte => r.gte = t,
                Cmp::Lt => r.lt = t,
                Cmp::Lte => r.lte = t,
            }
            Condition::datetime_range(field, r)
        }
    })
}

fn bounded(cmp: Cmp, n: f64) -> Range {
    let mut r = Range::default();
    match cmp {
        Cmp::Gt => r.gt = Some(n),
        Cmp::Gte => r.gte = Some(n),
        Cmp::Lt => r.lt = Some(n),
        Cmp::Lte => r.lte = Some(n),
    }
    r
}

fn equals(field: &str, v: &Value) -> Option<Condition> {
    Some(match v {
        Value::String(s) => Condition::matches(field, s.clone()),
        Value::Bool(b) => Condition::matches(field, *b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Condition::matches(field, i),
            None => Condition::range(
                field,
                Range {
                    gte: n.as_f64(),
                    lte: n.as_f64(),
                    ..Range::default()
                },
            ),
        },
        Value::Null | Value::Array(_) | Value::Object(_) => return None,
    })
}

/// Any of `values`: one `match any` for the strings, one for the integers, and one condition
/// per other value.
fn any_of(field: &str, values: &[Value]) -> Option<Condition> {
    let strings: Vec<String> = values
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let integers: Vec<i64> = values.iter().filter_map(Value::as_i64).collect();
    let mut any = Vec::new();
    if !strings.is_empty() {
        any.push(Condition::matches(field, strings));
    }
    if !integers.is_empty() {
        any.push(Condition::matches(field, integers));
    }
    for v in values {
        if !(v.is_string() || v.as_i64().is_some()) {
            any.push(equals(field, v)?);
        }
    }
    Some(Filter::should(any).into())
}

/// A date bound as a timestamp: RFC 3339, or a date and time without a zone (UTC), or a date
/// (midnight UTC).
fn timestamp(text: &str) -> Option<Timestamp> {
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .or_else(|_| {
            NaiveDateTime::parse_from_str(&text.replacen(' ', "T", 1), "%Y-%m-%dT%H:%M:%S%.f")
                .map(|t| t.and_utc())
        })
        .or_else(|_| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
        })
        .ok()?;
    Some(Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use qdrant_client::qdrant::condition::ConditionOneOf;
    use qdrant_client::qdrant::r#match::MatchValue;
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> MetadataFilter {
        MetadataFilter::parse(v.as_object().unwrap()).unwrap()
    }

    fn field(c: &Condition) -> &qdrant_client::qdrant::FieldCondition {
        match c.condition_one_of.as_ref().unwrap() {
            ConditionOneOf::Field(f) => f,
            other => panic!("not a field condition: {other:?}"),
        }
    }

    fn nested(c: &Condition) -> &Filter {
        match c.condition_one_of.as_ref().unwrap() {
            ConditionOneOf::Filter(f) => f,
            other => panic!("not a nested filter: {other:?}"),
        }
    }

    #[test]
    fn scalars_match_and_fractions_are_a_point_range() {
        let c = conditions(&parse(
            json!({"lang": "en", "year": 2024, "draft": false, "score": 2.5}),
        ))
        .unwrap();
        assert_eq!(c.len(), 4);
        let by_key = |k: &str| {
            c.iter()
                .map(field)
                .find(|f| f.key == format!("metadata.{k}"))
                .unwrap()
        };
        let value = |k: &str| by_key(k).r#match.clone().unwrap().match_value.unwrap();
        assert_eq!(value("lang"), MatchValue::Keyword("en".into()));
        assert_eq!(value("year"), MatchValue::Integer(2024));
        assert_eq!(value("draft"), MatchValue::Boolean(false));
        let r = by_key("score").range.unwrap();
        assert_eq!((r.gte, r.lte), (Some(2.5), Some(2.5)));
    }

    #[test]
    fn null_in_and_not() {
        let c = conditions(&parse(json!({"gone": null}))).unwrap();
        let f = nested(&c[0]);
        assert_eq!(f.should.len(), 2, "null or missing");
        let c = conditions(&parse(json!({"tag": {"in": ["a", "b", 3, true]}}))).unwrap();
        let any = nested(&c[0]);
        assert_eq!(any.should.len(), 3, "{any:?}");
        assert_eq!(
            field(&any.should[0])
                .r#match
                .clone()
                .unwrap()
                .match_value
                .unwrap(),
            MatchValue::Keywords(qdrant_client::qdrant::RepeatedStrings {
                strings: vec!["a".into(), "b".into()]
            })
        );
        let c = conditions(&parse(json!({"status": {"not": "draft"}}))).unwrap();
        let not = nested(&c[0]);
        assert_eq!(not.must_not.len(), 1);
        assert!(not.must.is_empty() && not.should.is_empty());
    }

    #[test]
    fn ranges_of_numbers_and_dates() {
        let c = conditions(&parse(json!({
            "year": {"gte": 2020, "lt": 2024},
            "day": {"lte": "2024-06-30", "gt": "2024-01-01T12:30:00Z"},
        })))
        .unwrap();
        assert_eq!(c.len(), 4);
        let ranges: Vec<_> = c.iter().map(field).collect();
        let day = |pick: fn(&DatetimeRange) -> Option<Timestamp>| {
            ranges
                .iter()
                .filter_map(|f| f.datetime_range.as_ref())
                .find_map(pick)
                .unwrap()
                .seconds
        };
        assert_eq!(day(|r| r.lte), 1_719_705_600, "2024-06-30T00:00:00Z");
        assert_eq!(day(|r| r.gt), 1_704_112_200, "2024-01-01T12:30:00Z");
        assert!(ranges
            .iter()
            .any(|f| f.range.as_ref().is_some_and(|r| r.gte == Some(2020.0))));
        // A date the filter syntax accepts but no timestamp reading understands stays in SQL.
        assert!(conditions(&parse(json!({"day": {"gte": "2024-06-30Tnoon"}}))).is_none());
    }
}
