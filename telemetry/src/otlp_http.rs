//! The HTTP client of OTLP/HTTP trace export: the workspace's `reqwest`, with its rustls, run on
//! a small runtime of its own.
//!
//! The batch span processor exports from a thread of its own, outside any Tokio runtime, and
//! `reqwest` needs one to connect. Each export is therefore spawned on a one-thread runtime that
//! lives as long as the process (dropping a runtime inside another one's context would panic),
//! and the exporter thread only waits for its answer.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// How long one export may take, connection included (the OTLP default).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body read back; collectors answer with a few bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

fn runtime() -> Result<&'static tokio::runtime::Runtime, HttpError> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("otlp-http")
        .enable_all()
        .build()?;
    // Two first exports racing: the loser's runtime is dropped here, outside any runtime.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Posts OTLP requests with `reqwest`.
#[derive(Debug, Clone)]
pub(crate) struct ExportClient {
    client: reqwest::Client,
}

impl ExportClient {
    /// A client with the export timeout.
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build()?,
        })
    }
}

#[async_trait::async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let exchange = async move {
            let mut response = client.execute(request).await?;
            let mut answer = Response::builder().status(response.status());
            for (name, value) in response.headers() {
                answer = answer.header(name, value);
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(format!(
                        "the collector's answer is larger than {MAX_RESPONSE_BYTES} bytes"
                    )
                    .into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok::<_, HttpError>(answer.body(Bytes::from(body))?)
        };
        runtime()?.spawn(exchange).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// One export from a thread with no runtime, as the batch processor makes it, against a
    /// one-shot HTTP server: the request arrives whole, and the status comes back.
    #[test]
    fn posts_from_a_thread_without_a_runtime() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&seen).contains("payload") {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0, "connection closed early");
                seen.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
            String::from_utf8_lossy(&seen).into_owned()
        });
        let client = ExportClient::new().unwrap();
        let request = Request::post(&url)
            .header("content-type", "application/x-protobuf")
            .body(Bytes::from_static(b"payload"))
            .unwrap();
        let response = block_on_without_io(client.send_bytes(request)).unwrap();
        assert_eq!(response.status().as_u16(), 202);
        assert_eq!(response.body().as_ref(), b"ok");
        let seen = server.join().unwrap();
        assert!(seen.starts_with("POST /v1/traces HTTP/1.1"), "{seen}");
        assert!(
            seen.contains("content-type: application/x-protobuf"),
            "{seen}"
        );
    }

    /// An executor with no I/O driver, as the exporter thread has none: `reqwest` run here
    /// directly would panic.
    fn block_on_without_io<F: std::future::Future>(f: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(f)
    }
}
