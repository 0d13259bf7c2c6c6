//! The last error responses this process sent, for the console's health page
//! (`GET /v1/admin/errors`). Bounded to [`KEPT`] entries; the oldest go first.

use std::collections::VecDeque;
use std::sync::{LazyLock, Mutex};

use serde::Serialize;

/// How many are kept.
pub const KEPT: usize = 50;

/// One error response.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RecentError {
    /// When it was sent (RFC 3339).
    pub at: String,
    /// HTTP status.
    pub status: u16,
    /// Its `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Its message, as the client saw it.
    pub error: String,
    /// The request's id.
    pub request_id: Option<String>,
}

static RECENT: LazyLock<Mutex<VecDeque<RecentError>>> =
    LazyLock::new(|| Mutex::new(VecDeque::with_capacity(KEPT)));

/// Keeps an error response.
pub fn record(e: RecentError) {
    let mut r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if r.len() == KEPT {
        r.pop_front();
    }
    r.push_back(e);
}

/// The kept errors, newest first.
pub fn newest_first() -> Vec<RecentError> {
    let r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    r.iter().rev().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_drops_the_oldest() {
        for i in 0..KEPT + 5 {
            record(RecentError {
                at: String::new(),
                status: 500,
                kind: "internal".into(),
                error: format!("e{i}"),
                request_id: None,
            });
        }
        let kept = newest_first();
        assert_eq!(kept.len(), KEPT);
        assert_eq!(kept[0].error, format!("e{}", KEPT + 4));
    }
}
