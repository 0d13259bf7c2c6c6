//! Collection endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ErrorBody};
use super::{ApiJson, AppState, Auth};
use crate::metadata::Collection;

/// Body of `POST /v1/collections`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollection {
    /// Name, unique per tenant: 1-64 of a-z, 0-9, '-', '_'.
    pub name: String,
    /// Free-form description.
    #[serde(default)]
    pub description: String,
}

/// A collection with its current point count.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CollectionInfo {
    /// The collection.
    #[serde(flatten)]
    pub collection: Collection,
    /// Points (indexed chunks) in the vector index, in the generation searches use.
    pub points: u64,
    /// While the collection switches to another model: points written so far into the
    /// generation being built.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_points: Option<u64>,
    /// Average chunk length in analysed terms, which keyword search normalises lengths
    /// against: the live figure on the embedded and PostgreSQL-backed indexes, absent on Qdrant
    /// (whose `keyword_average_terms` setting this is the figure for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keyword_average_terms: Option<f32>,
    /// How many of its documents are in each status (`queued`, `processing`, `indexed`,
    /// `failed`, `deleting`), and `total`.
    #[schema(value_type = Object)]
    pub documents: std::collections::BTreeMap<String, i64>,
}

/// Creates a collection.
#[utoipa::path(post, path = "/v1/collections", request_body = CreateCollection,
    responses((status = 201, body = Collection), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(app): State<AppState>,
    Auth(p): Auth,
    ApiJson(body): ApiJson<CreateCollection>,
) -> Result<(StatusCode, ApiJson<Collection>), ApiError> {
    Ok((
        StatusCode::CREATED,
        ApiJson(
            app.create_collection(&p, &body.name, &body.description)
                .await?,
        ),
    ))
}

/// Lists the caller's collections.
#[utoipa::path(get, path = "/v1/collections", responses((status = 200, body = Vec<Collection>)))]
pub async fn list(
    State(app): State<AppState>,
    Auth(p): Auth,
) -> Result<ApiJson<Vec<Collection>>, ApiError> {
    Ok(ApiJson(app.list_collections(&p).await?))
}

/// Reads a collection.
#[utoipa::path(get, path = "/v1/collections/{collection}",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 200, body = CollectionInfo), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> Result<ApiJson<CollectionInfo>, ApiError> {
    let collection = app.collection(&p, &name).await?;
    let key = crate::app::key_of(&collection);
    let next = crate::app::next_key_of(&collection);
    let (points, keyword_average_terms, next_points) = futures::try_join!(
        app.vectors.count(&key, None),
        app.vectors.keyword_average_terms(&key),
        async {
            match &next {
                Some(k) => app.vectors.count(k, None).await.map(Some),
                None => Ok(None),
            }
        },
    )
    .map_err(crate::error::Error::from)?;
    let mut documents: std::collections::BTreeMap<String, i64> = app
        .metadata
        .document_status_counts(&collection.id)
        .await
        .map_err(crate::error::Error::from)?
        .into_iter()
        .collect();
    documents.insert("total".into(), documents.values().sum());
    Ok(ApiJson(CollectionInfo {
        collection,
        points,
        next_points,
        keyword_average_terms,
        documents,
    }))
}

/// Answer of `POST /v1/collections/{collection}/reindex`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReindexAccepted {
    /// The collection, with the model it is now recorded under.
    pub collection: String,
    /// Ids of the documents queued for re-embedding.
    pub documents: Vec<String>,
}

/// Re-embeds every document of a collection with the configured model (see docs/api.md).
#[utoipa::path(post, path = "/v1/collections/{collection}/reindex",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 202, body = ReindexAccepted), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn reindex(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> Result<(StatusCode, ApiJson<ReindexAccepted>), ApiError> {
    let documents = app.reindex_collection(&p, &name).await?;
    Ok((
        StatusCode::ACCEPTED,
        ApiJson(ReindexAccepted {
            collection: name,
            documents,
        }),
    ))
}

/// Deletes a collection with all its documents.
#[utoipa::path(delete, path = "/v1/collections/{collection}",
    params(("collection" = String, Path, description = "Collection name")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(app): State<AppState>,
    Auth(p): Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.delete_collection(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
