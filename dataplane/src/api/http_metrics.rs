//! Request metrics: every request counted with its latency by route, method and status, those
//! whose client went away before the response included.
//!
//! A request whose client closes the connection first (a client-side timeout, a cancelled
//! call) never gets a status. Dropping it from the counts would hide exactly the slow requests
//! that clients gave up on, so the latency histogram and the p95 alert built on it would look
//! better the worse the server got. Such a request is counted with the status
//! [`CLIENT_CLOSED`] and the time it had run when the client left, and it leaves one log line
//! in the request's span (so with its request id and trace id). The span itself ends without a
//! status code and with `error.type` [`CLIENT_CLOSED_ERROR`], as the semantic conventions ask
//! of a request that failed before its status was sent.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use ragplane_telemetry::OpenTelemetrySpanExt;

/// The status label of a request whose client went away before the response: 499, nginx's
/// "client closed request". No response is sent with it.
pub const CLIENT_CLOSED: &str = "499";

/// The `error.type` of the span of a request whose client went away before the response.
pub const CLIENT_CLOSED_ERROR: &str = "client_closed";

/// Counts every request and its latency by route, method and status.
pub(crate) async fn record_metrics(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let mut pending = Pending {
        request: Some((route, req.method().to_string())),
        started: Instant::now(),
        span: tracing::Span::current(),
    };
    let resp = next.run(req).await;
    if let Some((route, method)) = pending.request.take() {
        record(&route, &method, resp.status().as_str(), pending.started);
    }
    resp
}

fn record(route: &str, method: &str, status: &str, started: Instant) {
    let labels = [route, method, status];
    crate::metrics::HTTP_REQUESTS
        .with_label_values(&labels)
        .inc();
    crate::metrics::HTTP_DURATION
        .with_label_values(&labels)
        .observe(started.elapsed().as_secs_f64());
}

/// A request not yet answered; dropped while still holding its request, it was abandoned.
struct Pending {
    /// Route and method, until the response is recorded.
    request: Option<(String, String)>,
    started: Instant,
    /// The request's span, current when the request came in: a dropped future is not polled,
    /// so its span is not entered when it is dropped.
    span: tracing::Span,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some((route, method)) = self.request.take() else {
            return;
        };
        // The semantic conventions' mark of a request that failed before its status was sent.
        self.span.set_attribute("error.type", CLIENT_CLOSED_ERROR);
        // In the request's span: the latency's exemplar and the log line name its trace.
        let _in_request = self.span.enter();
        record(&route, &method, CLIENT_CLOSED, self.started);
        tracing::info!(
            route,
            method,
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "the client went away before the response"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use axum::routing::get;
    use axum::Router;
    use tokio::io::AsyncWriteExt;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    use super::*;

    fn count(route: &str, status: &str) -> u64 {
        crate::metrics::HTTP_REQUESTS
            .with_label_values(&[route, "GET", status])
            .get()
    }

    /// The latency histogram's observation count for a series, from the exposition.
    fn observations(route: &str, status: &str) -> Option<String> {
        let series = format!(
            "ragplane_http_request_duration_seconds_count{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} "
        );
        crate::metrics::render()
            .lines()
            .find_map(|l| l.strip_prefix(&series).map(str::to_owned))
    }

    /// Log lines written while it is the thread's subscriber.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn a_handler_that_panics() -> &'static str {
        panic!("a handler's bug")
    }

    #[tokio::test]
    async fn a_request_whose_client_leaves_is_counted_as_499_and_one_answered_by_its_status() {
        // The runtime has one thread, so the server's log lines come to this subscriber.
        let lines = Captured::default();
        let writer = lines.clone();
        let spans = ragplane_telemetry::testing::Recorder::new();
        let _logs = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(move || writer.clone())
                    .with_ansi(false),
            )
            .with(spans.layer())
            .set_default();
        // Routes of their own: the metrics are process-wide.
        let (slow, fast, panics) = ("/abandoned-by-test", "/answered-by-test", "/panics-in-test");
        let (entered_tx, mut entered) = tokio::sync::mpsc::unbounded_channel();
        let app = Router::new()
            .route(
                slow,
                get(move || async move {
                    let _ = entered_tx.send(());
                    std::future::pending::<()>().await
                }),
            )
            .route(fast, get(|| async { "ok" }))
            .route(panics, get(a_handler_that_panics));
        // The layers of the API and the embedding server, in their order.
        let app = super::super::instrument(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let answered = reqwest::Client::new()
            .get(format!("http://{addr}{fast}"))
            .header("x-request-id", "answered-in-time")
            .send()
            .await
            .unwrap();
        assert_eq!(answered.status(), 200);
        assert_eq!((count(fast, "200"), count(fast, CLIENT_CLOSED)), (1, 0));
        // A panic is answered for the handler, and counted as what the client got.
        let failed = reqwest::get(format!("http://{addr}{panics}"))
            .await
            .unwrap();
        assert_eq!(failed.status(), 500);
        assert_eq!((count(panics, "500"), count(panics, CLIENT_CLOSED)), (1, 0));

        // A client that sends its request and hangs up while the handler is still working.
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(
                format!("GET {slow} HTTP/1.1\r\nhost: test\r\nx-request-id: left-early\r\n\r\n")
                    .as_bytes(),
            )
            .await
            .unwrap();
        entered.recv().await.expect("the handler ran");
        assert_eq!(
            count(slow, CLIENT_CLOSED),
            0,
            "counted before the client left"
        );
        drop(client);
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(slow, CLIENT_CLOSED) == 0 {
            assert!(
                Instant::now() < deadline,
                "the abandoned request was never counted"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(count(slow, CLIENT_CLOSED), 1);
        assert_eq!(
            observations(slow, CLIENT_CLOSED).as_deref(),
            Some("1"),
            "its latency is observed too"
        );
        assert_eq!(observations(fast, "200").as_deref(), Some("1"));
        assert_eq!(count(slow, "200"), 0);
        let logged = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        let line = logged
            .lines()
            .find(|l| l.contains("the client went away before the response"))
            .unwrap_or_else(|| panic!("no line for the abandoned request in:\n{logged}"));
        assert!(line.contains(&format!("route=\"{slow}\"")), "{line}");
        // Logged in the request's span, so with its request id.
        assert!(line.contains("request_id=\"left-early\""), "{line}");
        assert_eq!(
            logged.matches("went away").count(),
            1,
            "the answered requests are no abandoned ones:\n{logged}"
        );
        // Its span ends with the mark, and without a status code; an answered one has its code.
        let span_of = |id: &str| {
            spans
                .spans()
                .into_iter()
                .find(|s| s.attr("request_id") == Some(id))
        };
        while span_of("left-early").is_none() {
            assert!(
                Instant::now() < deadline,
                "the abandoned request's span never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let left = span_of("left-early").unwrap();
        assert_eq!(
            left.attr("error.type"),
            Some(CLIENT_CLOSED_ERROR),
            "{left:?}"
        );
        assert_eq!(left.attr("http.response.status_code"), None, "{left:?}");
        let answered = span_of("answered-in-time").expect("the answered request's span");
        assert_eq!(answered.attr("http.response.status_code"), Some("200"));
        assert_eq!(answered.attr("error.type"), None, "{answered:?}");
    }
}
