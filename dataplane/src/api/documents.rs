//! Document and job endpoints. Uploads come as JSON text, as a multipart file, or as a raw
//! body whose `Content-Type` is one of the supported formats.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{header, StatusCode};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::app::{Accepted, Upload};
use crate::error::Error;
use crate::metadata::{Document, DocumentStatus};
use crate::queue::Job;
use ragplane_parse::Format;

/// JSON form of an upload.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextUpload {
    /// The document's text.
    pub text: String,
    /// `text` (default), `markdown` or `html`.
    #[serde(default)]
    pub format: Option<String>,
    /// Title.
    #[serde(default)]
    pub title: Option<String>,
    /// Where the text came from.
    #[serde(default)]
    pub source: Option<String>,
    /// Metadata usable in search filters: string, number, boolean or null values.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Query string of raw-body uploads.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawParams {
    /// Title.
    pub title: Option<String>,
}

/// Pagination of document listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Page size, 1 to 1000 (default 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only the documents in this status: `queued`, `processing`, `indexed` or `failed`.
    pub status: Option<DocumentStatus>,
}

/// A page of documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentPage {
    /// Documents in id (creation) order.
    pub documents: Vec<Document>,
    /// Cursor of the next page; null on the last page, even a full one.
    pub next_cursor: Option<String>,
}

fn format_named(name: &str) -> Result<Format, Error> {
    match name {
        "text" | "txt" | "plain" => Ok(Format::Text),
        "markdown" | "md" => Ok(Format::Markdown),
        "html" => Ok(Format::Html),
        other => Err(Error::invalid(
            "format",
            format!("{other:?} is not one of text, markdown, html"),
        )),
    }
}

async fn read_multipart(mut mp: Multipart) -> Result<Upload, ApiError> {
    let mut file: Option<(Option<String>, Option<String>, Bytes)> = None;
    let mut title = None;
    let mut metadata = None;
    while let Some(field) = mp.next_field().await? {
        match field.name().unwrap_or("") {
            "file" => {
                let name = field.file_name().map(str::to_string);
                let ctype = field.content_type().map(str::to_string);
                file = Some((name, ctype, field.bytes().await?));
            }
            "title" => title = Some(field.text().await?),
            "metadata" => {
                let text = field.text().await?;
                let m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
                    .map_err(|e| {
                        Error::invalid("metadata", format!("must be a JSON object: {e}"))
                    })?;
                metadata = Some(m);
            }
            other => {
                return Err(
                    Error::invalid("multipart", format!("unexpected field {other:?}")).into(),
                )
            }
        }
    }
    let (name, ctype, body) =
        file.ok_or_else(|| Error::invalid("file", "multipart body has no \"file\" field"))?;
    // The declared type wins when it names a supported format; otherwise the file extension.
    let by_type = ctype
        .as_deref()
        .filter(|t| *t != "application/octet-stream")
        .map(Format::from_media_type);
    let format = match (by_type, name.as_deref().and_then(Format::from_file_name)) {
        (Some(Ok(f)), _) | (None, Some(f)) => f,
        (Some(Err(e)), _) => return Err(Error::UnsupportedMediaType(e.to_string()).into()),
        (None, None) => {
            return Err(Error::UnsupportedMediaType(format!(
                "cannot tell the format of {:?}; send a Content-Type or a .txt, .md, .html or .pdf name",
                name.unwrap_or_default()
            ))
            .into())
        }
    };
    Ok(Upload {
        title: title
            .or_else(|| name.clone())
            .unwrap_or_else(|| "untitled".into()),
        source: name,
        format,
        body,
        metadata: metadata.unwrap_or_default(),
    })
}

/// Uploads a document and queues it for indexing. Multipart bodies carry the fields `file`
/// (required), `title` and `metadata` (a JSON object).
#[utoipa::path(post, path = "/v1/collections/{collection}/documents",
    params(("collection" = String, Path, description = "Collection name")),
    request_body(content(
        (TextUpload = "application/json"),
        (String = "multipart/form-data"),
        (String = "text/plain"), (String = "text/markdown"), (String = "text/html"), (Vec<u8> = "application/pdf"))),
    responses((status = 202, body = Accepted), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn upload(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(collection): Path<String>,
    req: Request,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    let ctype = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = ctype.split(';').next().unwrap_or("").trim().to_string();
    let upload = match essence.as_str() {
        "application/json" => {
            let ApiJson(body) = ApiJson::<TextUpload>::from_request(req, &app).await?;
            let format = body
                .format
                .as_deref()
                .map_or(Ok(Format::Text), format_named)?;
            Upload {
                title: body
                    .title
                    .or_else(|| body.source.clone())
                    .unwrap_or_else(|| "untitled".into()),
                source: body.source,
                format,
                body: Bytes::from(body.text.into_bytes()),
                metadata: body.metadata.unwrap_or_default(),
            }
        }
        "multipart/form-data" => read_multipart(Multipart::from_request(req, &app).await?).await?,
        "" => return Err(Error::UnsupportedMediaType(
            "missing Content-Type; send application/json, multipart/form-data, or a document type"
                .into(),
        )
        .into()),
        other => {
            let format = Format::from_media_type(other)
                .map_err(|e| Error::UnsupportedMediaType(e.to_string()))?;
            let Query(params) = Query::<RawParams>::try_from_uri(req.uri())?;
            let body = Bytes::from_request(req, &app).await.map_err(|e| {
                let status = e.status();
                let message = e.body_text();
                ApiError(if status == StatusCode::PAYLOAD_TOO_LARGE {
                    Error::TooLarge(message)
                } else {
                    Error::BadRequest(message)
                })
            })?;
            Upload {
                title: params.title.unwrap_or_else(|| "untitled".into()),
                source: None,
                format,
                body,
                metadata: Default::default(),
            }
        }
    };
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(app.add_document(&p, &collection, upload).await?),
    ))
}

/// Lists a collection's documents, paginated; `status` keeps those in one status (`failed`,
/// for the documents whose ingestion gave up, each with its `error`).
#[utoipa::path(get, path = "/v1/collections/{collection}/documents",
    params(("collection" = String, Path, description = "Collection name"), Page),
    responses((status = 200, body = DocumentPage), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(collection): Path<String>,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> Result<ApiJson<DocumentPage>, ApiError> {
    let Query(page) = page?;
    let limit = page.limit.unwrap_or(100);
    let (documents, next_cursor) = app
        .list_documents(&p, &collection, page.status, page.cursor.as_deref(), limit)
        .await?;
    Ok(ApiJson(DocumentPage {
        documents,
        next_cursor,
    }))
}

/// Reads a document's status, chunk count and error.
#[utoipa::path(get, path = "/v1/collections/{collection}/documents/{document}",
    params(("collection" = String, Path), ("document" = String, Path)),
    responses((status = 200, body = Document), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path((collection, document)): Path<(String, String)>,
) -> Result<ApiJson<Document>, ApiError> {
    Ok(ApiJson(app.document(&p, &collection, &document).await?.1))
}

/// Deletes a document and its points.
#[utoipa::path(delete, path = "/v1/collections/{collection}/documents/{document}",
    params(("collection" = String, Path), ("document" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path((collection, document)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    app.delete_document(&p, &collection, &document).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Queues a document for indexing again.
#[utoipa::path(post, path = "/v1/collections/{collection}/documents/{document}/reindex",
    params(("collection" = String, Path), ("document" = String, Path)),
    responses((status = 202, body = Accepted), (status = 404, body = ErrorBody)))]
pub async fn reindex(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path((collection, document)): Path<(String, String)>,
) -> Result<(StatusCode, ApiJson<Accepted>), ApiError> {
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(app.reindex_document(&p, &collection, &document).await?),
    ))
}

/// Reads a job's status.
#[utoipa::path(get, path = "/v1/jobs/{job}", params(("job" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn job(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(job): Path<String>,
) -> Result<ApiJson<Job>, ApiError> {
    Ok(ApiJson(app.job(&p, &job).await?))
}
