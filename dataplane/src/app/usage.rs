//! Queries and LLM tokens per tenant, key, collection and minute: counted in memory as each
//! query is logged, written to the metadata store every `console.usage_flush_secs` (and at
//! shutdown) by adding to the stored minute, so instances behind one store add up. The usage
//! page reads them back as a series over the last hour or day, and totals per key and per
//! collection.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{App, Principal};
use crate::error::Result;
use crate::metadata::{MetadataStore, UsageRow};

/// The key id recorded when authentication is off.
pub const ANONYMOUS_KEY: &str = "anonymous";

/// Most (tenant, minute, key, collection) counters held between flushes; past it, new
/// counters are dropped (and logged) until a flush succeeds, so a store outage cannot grow
/// memory without bound.
const MAX_PENDING: usize = 100_000;

type Counter = (String, String, String, String);

/// Counts not yet written to the metadata store.
#[derive(Default)]
pub struct UsageMeter {
    pending: Mutex<HashMap<Counter, UsageCount>>,
}

/// The minute `t` falls in, as stored.
fn minute_of(t: DateTime<Utc>) -> String {
    t.duration_trunc(TimeDelta::minutes(1))
        .unwrap_or(t)
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl UsageMeter {
    /// Counts one query of `p` on `collection` that used `llm_tokens` tokens.
    pub fn record(&self, p: &Principal, collection: &str, llm_tokens: u64) {
        let key = (
            p.tenant_id.clone(),
            minute_of(Utc::now()),
            p.key_id.clone().unwrap_or_else(|| ANONYMOUS_KEY.into()),
            collection.to_owned(),
        );
        let one = UsageCount {
            queries: 1,
            llm_tokens: i64::try_from(llm_tokens).unwrap_or(i64::MAX),
        };
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let full = pending.len() >= MAX_PENDING;
        match pending.get_mut(&key) {
            Some(c) => c.add(&one),
            None if full => tracing::warn!("usage counters are full; a query went uncounted"),
            None => {
                pending.insert(key, one);
            }
        }
    }

    /// Writes the pending counts to `store`. On failure they are kept for the next flush.
    pub async fn flush(&self, store: &dyn MetadataStore) -> Result<()> {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()));
        if taken.is_empty() {
            return Ok(());
        }
        let rows: Vec<UsageRow> = taken
            .iter()
            .map(|((tenant_id, minute, key_id, collection), c)| UsageRow {
                tenant_id: tenant_id.clone(),
                minute: minute.clone(),
                key_id: key_id.clone(),
                collection: collection.clone(),
                queries: c.queries,
                llm_tokens: c.llm_tokens,
            })
            .collect();
        if let Err(e) = store.add_usage(&rows).await {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for (k, c) in taken {
                pending.entry(k).or_default().add(&c);
            }
            return Err(e.into());
        }
        Ok(())
    }
}

/// The span a usage report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageWindow {
    /// The last 60 minutes, per minute.
    Hour,
    /// The last 24 hours, per hour.
    Day,
}

impl UsageWindow {
    /// Its bucket length and bucket count.
    fn buckets(self) -> (TimeDelta, i32) {
        match self {
            Self::Hour => (TimeDelta::minutes(1), 60),
            Self::Day => (TimeDelta::hours(1), 24),
        }
    }

    /// The start of its first bucket, for a report as of `now`.
    fn first_bucket(self, now: DateTime<Utc>) -> DateTime<Utc> {
        let (step, buckets) = self.buckets();
        now.duration_trunc(step).unwrap_or(now) - step * (buckets - 1)
    }
}

/// Queries and tokens in one bucket, or of one key or collection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageCount {
    /// Searches, queries and chat completions.
    pub queries: i64,
    /// LLM prompt plus completion tokens.
    pub llm_tokens: i64,
}

impl UsageCount {
    /// Adds `other`'s counts.
    fn add(&mut self, other: &Self) {
        self.queries += other.queries;
        self.llm_tokens = self.llm_tokens.saturating_add(other.llm_tokens);
    }
}

/// One bucket of the series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageBucket {
    /// Its start (RFC 3339).
    pub start: String,
    /// Its counts.
    #[serde(flatten)]
    pub count: UsageCount,
}

/// A key's or a collection's totals over the window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageTotal {
    /// Key id or collection name.
    pub id: String,
    /// The key's name (keys only; empty for a key since removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its counts.
    #[serde(flatten)]
    pub count: UsageCount,
}

/// `GET /v1/usage`: the caller's tenant's usage over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct UsageReport {
    /// The window.
    pub window: UsageWindow,
    /// Every bucket of the window, oldest first, empty ones included (60 minutes or 24 hours).
    pub series: Vec<UsageBucket>,
    /// Totals over the window.
    pub total: UsageCount,
    /// Totals per key, most queries first.
    pub keys: Vec<UsageTotal>,
    /// Totals per collection, most queries first.
    pub collections: Vec<UsageTotal>,
}

/// Builds the report of `rows` as of `now`; rows outside the window's buckets are left out.
fn report(window: UsageWindow, now: DateTime<Utc>, rows: &[UsageRow]) -> UsageReport {
    let (step, buckets) = window.buckets();
    let first = window.first_bucket(now);
    let mut series: BTreeMap<DateTime<Utc>, UsageCount> = (0..buckets)
        .map(|i| (first + step * i, UsageCount::default()))
        .collect();
    let mut total = UsageCount::default();
    let mut keys: HashMap<&str, UsageCount> = HashMap::new();
    let mut collections: HashMap<&str, UsageCount> = HashMap::new();
    for r in rows {
        let Some(t) = crate::metadata::parse_rfc3339(&r.minute) else {
            continue;
        };
        let Ok(bucket) = t.duration_trunc(step) else {
            continue;
        };
        let Some(c) = series.get_mut(&bucket) else {
            continue;
        };
        let count = UsageCount {
            queries: r.queries,
            llm_tokens: r.llm_tokens,
        };
        for c in [
            c,
            &mut total,
            keys.entry(&r.key_id).or_default(),
            collections.entry(&r.collection).or_default(),
        ] {
            c.add(&count);
        }
    }
    let ranked = |m: HashMap<&str, UsageCount>| {
        let mut v: Vec<UsageTotal> = m
            .into_iter()
            .map(|(id, count)| UsageTotal {
                id: id.to_owned(),
                name: None,
                count,
            })
            .collect();
        v.sort_by(|a, b| b.count.queries.cmp(&a.count.queries).then(a.id.cmp(&b.id)));
        v
    };
    UsageReport {
        window,
        series: series
            .into_iter()
            .map(|(t, count)| UsageBucket {
                start: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                count,
            })
            .collect(),
        total,
        keys: ranked(keys),
        collections: ranked(collections),
    }
}

impl App {
    /// The caller's tenant's usage over `window`, including this instance's counts not yet
    /// written (other instances' appear within their flush interval).
    pub async fn usage_report(&self, p: &Principal, window: UsageWindow) -> Result<UsageReport> {
        if let Err(e) = self.usage.flush(self.metadata.as_ref()).await {
            tracing::warn!(error = %e, "could not write usage counters before reading them");
        }
        let now = Utc::now();
        let since = minute_of(window.first_bucket(now));
        let rows = self.metadata.usage(&p.tenant_id, &since).await?;
        let mut report = report(window, now, &rows);
        let names: HashMap<String, String> = self
            .metadata
            .list_api_keys(&p.tenant_id)
            .await?
            .into_iter()
            .map(|k| (k.id, k.name))
            .collect();
        for k in &mut report.keys {
            k.name = Some(names.get(&k.id).cloned().unwrap_or_default());
        }
        Ok(report)
    }

    /// Writes usage counters every `console.usage_flush_secs` and drops rows older than
    /// `console.usage_retention_hours`, until `shutdown`; then writes once more.
    pub async fn keep_usage(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let c = &self.config.console;
        let mut tick = tokio::time::interval(Duration::from_secs(c.usage_flush_secs));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention = TimeDelta::hours(i64::try_from(c.usage_retention_hours).unwrap_or(48));
        let mut last_purge: Option<DateTime<Utc>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(e) = self.usage.flush(self.metadata.as_ref()).await {
                tracing::warn!(error = %e, "could not write usage counters; keeping them for the next try");
            }
            let now = Utc::now();
            if last_purge.is_none_or(|t| now - t > TimeDelta::hours(1)) {
                last_purge = Some(now);
                match self.metadata.purge_usage(&minute_of(now - retention)).await {
                    Ok(n) if n > 0 => tracing::debug!(rows = n, "purged old usage rows"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "could not purge old usage rows"),
                }
            }
        }
        if let Err(e) = self.usage.flush(self.metadata.as_ref()).await {
            tracing::warn!(error = %e, "could not write usage counters at shutdown");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc)
    }

    fn row(minute: &str, key: &str, collection: &str, queries: i64, tokens: i64) -> UsageRow {
        UsageRow {
            tenant_id: "t".into(),
            minute: minute.into(),
            key_id: key.into(),
            collection: collection.into(),
            queries,
            llm_tokens: tokens,
        }
    }

    #[test]
    fn the_hour_has_sixty_minutes_and_totals_per_key_and_collection() {
        let now = at("2026-12-01T10:30:20Z");
        let rows = [
            row("2026-12-01T09:30:00Z", "a", "docs", 100, 0), // before the window
            row("2026-12-01T09:31:00Z", "a", "docs", 2, 10),
            row("2026-12-01T10:30:00Z", "b", "docs", 1, 5),
            row("2026-12-01T10:30:00Z", "a", "faq", 3, 0),
        ];
        let r = report(UsageWindow::Hour, now, &rows);
        assert_eq!(r.series.len(), 60);
        assert_eq!(r.series[0].start, "2026-12-01T09:31:00Z");
        assert_eq!(r.series[0].count.queries, 2);
        assert_eq!(r.series[59].start, "2026-12-01T10:30:00Z");
        assert_eq!(
            r.series[59].count,
            UsageCount {
                queries: 4,
                llm_tokens: 5
            }
        );
        assert_eq!(
            r.total,
            UsageCount {
                queries: 6,
                llm_tokens: 15
            }
        );
        assert_eq!(r.keys[0].id, "a");
        assert_eq!(r.keys[0].count.queries, 5);
        assert_eq!(r.collections[0].id, "docs");
        assert_eq!(r.collections[0].count.queries, 3);
    }

    #[test]
    fn the_day_sums_minutes_into_hours() {
        let now = at("2026-12-01T10:30:00Z");
        let rows = [
            row("2026-11-30T11:05:00Z", "a", "docs", 1, 1),
            row("2026-11-30T11:59:00Z", "a", "docs", 1, 1),
            row("2026-12-01T10:01:00Z", "a", "docs", 7, 0),
        ];
        let r = report(UsageWindow::Day, now, &rows);
        assert_eq!(r.series.len(), 24);
        assert_eq!(r.series[0].start, "2026-11-30T11:00:00Z");
        assert_eq!(r.series[0].count.queries, 2);
        assert_eq!(r.series[23].count.queries, 7);
    }

    #[test]
    fn counts_of_one_key_add_up_within_a_minute() {
        let m = UsageMeter::default();
        let p = Principal {
            tenant_id: "t".into(),
            key_id: None,
            scope: crate::metadata::Scope::QueryOnly,
            expires_at: None,
        };
        m.record(&p, "docs", 3);
        m.record(&p, "docs", 4);
        let pending = m.pending.lock().unwrap();
        assert_eq!(pending.len(), 1);
        let ((_, _, key, _), counts) = pending.iter().next().unwrap();
        assert_eq!(key, ANONYMOUS_KEY);
        assert_eq!(
            *counts,
            UsageCount {
                queries: 2,
                llm_tokens: 7
            }
        );
    }
}
