//! Mocked API server for tests of the request conversation: each expected request is checked
//! for method, path and body, and answered with a canned response.

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// A request the client sent, with the channel its answer goes back on.
type Pending = (Request<Body>, oneshot::Sender<Response<Body>>);

/// One expected request and how to answer it.
pub struct Exchange {
    /// Expected method.
    pub method: Method,
    /// Expected path with query, compared as a prefix so long query strings can be elided.
    pub path_prefix: String,
    /// Checks the request body (parsed as JSON; `Null` when empty).
    pub check: Box<dyn Fn(&Value) + Send>,
    /// Status code of the answer.
    pub status: StatusCode,
    /// Answer body; `None` echoes the request body back, as server-side apply does.
    pub reply: Option<Value>,
}

impl Exchange {
    /// A request answered by echoing its body.
    pub fn echo(
        method: Method,
        path_prefix: &str,
        check: impl Fn(&Value) + Send + 'static,
    ) -> Self {
        Self {
            method,
            path_prefix: path_prefix.into(),
            check: Box::new(check),
            status: StatusCode::OK,
            reply: None,
        }
    }

    /// A request answered with `status` and `reply`.
    pub fn reply(method: Method, path_prefix: &str, status: StatusCode, reply: Value) -> Self {
        Self {
            method,
            path_prefix: path_prefix.into(),
            check: Box::new(|_| {}),
            status,
            reply: Some(reply),
        }
    }

    /// An Event of `type_` (`Normal`, `Warning`) and `reason` about the object named `regarding`,
    /// posted to namespace `rag` and answered `201 Created`.
    pub fn event(type_: &'static str, reason: &'static str, regarding: &'static str) -> Self {
        Self {
            status: StatusCode::CREATED,
            ..Self::echo(
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/rag/events",
                move |b| {
                    assert_eq!(
                        (b["type"].as_str(), b["reason"].as_str()),
                        (Some(type_), Some(reason))
                    );
                    assert_eq!(b["regarding"]["name"], regarding);
                },
            )
        }
    }

    /// A `404 Not Found` answer.
    pub fn not_found(method: Method, path_prefix: &str) -> Self {
        Self::reply(
            method,
            path_prefix,
            StatusCode::NOT_FOUND,
            serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "not found"}),
        )
    }
}

/// A client backed by a mock, and the task that plays `script` against it. The task fails if a
/// request differs from the script; awaiting it after the code under test finished also checks
/// that nothing was left unasked.
pub fn mock_client(script: Vec<Exchange>) -> (Client, tokio::task::JoinHandle<()>) {
    let (requests, pending) = mpsc::unbounded_channel::<Pending>();
    let service = tower::service_fn(move |request: Request<Body>| {
        let requests = requests.clone();
        async move {
            let (answer, answered) = oneshot::channel();
            requests
                .send((request, answer))
                .map_err(|_| tower::BoxError::from("the mocked API server has stopped"))?;
            answered
                .await
                .map_err(|_| tower::BoxError::from("the mocked API server gave no answer"))
        }
    });
    let client = Client::new(service, "default");
    (client, tokio::spawn(play(pending, script)))
}

async fn play(mut pending: mpsc::UnboundedReceiver<Pending>, script: Vec<Exchange>) {
    for (i, exchange) in script.into_iter().enumerate() {
        let (request, send) = pending.recv().await.unwrap_or_else(|| {
            panic!(
                "request {i} ({} {}) never came",
                exchange.method, exchange.path_prefix
            )
        });
        let path = request
            .uri()
            .path_and_query()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert_eq!(request.method(), exchange.method, "request {i}: {path}");
        assert!(
            path.starts_with(&exchange.path_prefix),
            "request {i}: expected {} {}, got {path}",
            exchange.method,
            exchange.path_prefix
        );
        let bytes = request
            .into_body()
            .collect_bytes()
            .await
            .expect("request body");
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON request body")
        };
        (exchange.check)(&body);
        let reply = exchange.reply.unwrap_or(body);
        let response = Response::builder()
            .status(exchange.status)
            .body(Body::from(serde_json::to_vec(&reply).expect("JSON reply")))
            .expect("response");
        // The client may have given up on the request; the script goes on regardless.
        let _ = send.send(response);
    }
}
