//! The console's files, compiled into the binary: the page at `/ui` and its scripts and styles
//! under `/ui/assets/`. They are plain ES modules and CSS with no build step, so a release build
//! needs no JavaScript toolchain. Each is served with a content hash as its ETag and
//! `Cache-Control: no-cache`, so browsers revalidate and never run a stale script after an
//! upgrade.

use std::collections::HashMap;
use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::api::error::ApiError;
use crate::error::Error;

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/console/", $name)).as_slice())),*]
    };
}

/// Every file, by its path under `console/`.
const FILES: [(&str, &[u8]); 13] = files![
    "index.html",
    "app.css",
    "js/main.js",
    "js/api.js",
    "js/dom.js",
    "js/signin.js",
    "js/collections.js",
    "js/documents.js",
    "js/playground.js",
    "js/keys.js",
    "js/health.js",
    "js/usage.js",
    "js/chart.js",
];

/// A file with its content type and ETag.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: HeaderValue,
}

static ASSETS: LazyLock<HashMap<&'static str, Asset>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|&(name, body)| {
            let content_type = match name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => "text/html; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                _ => "application/octet-stream",
            };
            let hash = hex::encode(&Sha256::digest(body)[..12]);
            let etag = HeaderValue::from_str(&format!("\"{hash}\""))
                .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
            (
                name,
                Asset {
                    body,
                    content_type,
                    etag,
                },
            )
        })
        .collect()
});

fn serve(name: &str, headers: &HeaderMap) -> Result<Response, ApiError> {
    let a = ASSETS
        .get(name)
        .ok_or_else(|| ApiError(Error::not_found("console file", name)))?;
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == a.etag.as_bytes());
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, a.content_type)], a.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::ETAG, a.etag.clone());
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

/// `GET /ui`: the page; the script shows sign-in or the console.
pub async fn page(headers: HeaderMap) -> Result<Response, ApiError> {
    serve("index.html", &headers)
}

/// `GET /ui/assets/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Result<Response, ApiError> {
    if file == "index.html" {
        return Err(ApiError(Error::not_found("console file", &file)));
    }
    serve(&file, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_script_the_page_imports_is_embedded() {
        for (name, body) in FILES {
            let text = std::str::from_utf8(body).unwrap();
            for import in text
                .split("from \"./")
                .skip(1)
                .filter_map(|rest| rest.split('"').next())
            {
                let path = format!("js/{import}");
                assert!(
                    ASSETS.contains_key(path.as_str()),
                    "{name} imports {path}, which is not embedded"
                );
            }
        }
        assert!(ASSETS.contains_key("index.html"));
    }
}
