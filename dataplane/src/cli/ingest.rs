//! `ragplane ingest PATH…`: recursive bulk upload with a progress bar and ETA, then (by
//! default) a wait until every uploaded document is indexed or failed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use super::client::{Client, ConnArgs};
use ragplane_parse::Format;

/// Flags of `ragplane ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestArgs {
    /// Server connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Target collection (created when missing).
    #[arg(long, short, env = "RAGPLANE_COLLECTION", default_value = "default")]
    pub collection: String,
    /// Uploads in flight at once.
    #[arg(long, env = "RAGPLANE_INGEST_CONCURRENCY", default_value_t = 4)]
    pub concurrency: usize,
    /// Return after uploading, without waiting for indexing.
    #[arg(long, env = "RAGPLANE_NO_WAIT")]
    pub no_wait: bool,
    /// Give up waiting for indexing after this many seconds.
    #[arg(long, env = "RAGPLANE_INGEST_TIMEOUT_SECS", default_value_t = 1800)]
    pub timeout_secs: u64,
    /// Files or directories (walked recursively; files of unsupported types are skipped).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// Files under `paths` with a supported extension, sorted; and how many were skipped.
pub fn collect_files(paths: &[PathBuf]) -> anyhow::Result<(Vec<PathBuf>, usize)> {
    let mut files = Vec::new();
    let mut skipped = 0;
    for p in paths {
        if !p.exists() {
            bail!("{} does not exist", p.display());
        }
        for entry in walkdir::WalkDir::new(p).follow_links(true) {
            let entry = entry?;
            if !entry.file_type().is_file() {
                continue;
            }
            let name = entry.file_name().to_string_lossy();
            if Format::from_file_name(&name).is_some() {
                files.push(entry.into_path());
            } else {
                skipped += 1;
            }
        }
    }
    files.sort();
    files.dedup();
    Ok((files, skipped))
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let style = ProgressStyle::with_template(&format!(
        "{what:>9} [{{bar:40}}] {{pos}}/{{len}} {{per_sec}} eta {{eta}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    pb.set_style(style.progress_chars("=> "));
    pb
}

async fn upload(client: &Client, collection: &str, path: &Path) -> anyhow::Result<String> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let format = Format::from_file_name(&name).unwrap_or(Format::Text);
    let bytes = bytes::Bytes::from(tokio::fs::read(path).await?);
    // A multipart body is a stream: each attempt (after a busy server's Retry-After) builds
    // its own from the bytes read once.
    let v: Value = client
        .send_with(|| {
            let part = reqwest::multipart::Part::stream(bytes.clone())
                .file_name(name.clone())
                .mime_str(format.media_type())
                .ok()?;
            Some(
                client
                    .request(
                        reqwest::Method::POST,
                        &format!("/v1/collections/{collection}/documents"),
                    )
                    .multipart(reqwest::multipart::Form::new().part("file", part)),
            )
        })
        .await?;
    Ok(v["document"]["id"].as_str().unwrap_or_default().to_string())
}

/// Runs the command.
pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    let (files, skipped) = collect_files(&args.paths)?;
    if files.is_empty() {
        bail!("no .txt, .md, .html or .pdf files under {:?}", args.paths);
    }
    let client = Client::new(&args.conn)?;
    client.ensure_collection(&args.collection).await?;
    let pb = bar(files.len() as u64, "uploading");
    let results: Vec<(PathBuf, anyhow::Result<String>)> = stream::iter(files)
        .map(|f| {
            let client = client.clone();
            let collection = args.collection.clone();
            let pb = pb.clone();
            async move {
                let r = upload(&client, &collection, &f).await;
                pb.inc(1);
                (f, r)
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    pb.finish_with_message("done");
    let mut ids = Vec::new();
    let mut upload_errors = 0;
    for (path, r) in results {
        match r {
            Ok(id) => ids.push(id),
            Err(e) => {
                upload_errors += 1;
                eprintln!("failed to upload {}: {e:#}", path.display());
            }
        }
    }
    println!(
        "uploaded {} documents to {:?} ({skipped} files of other types skipped)",
        ids.len(),
        args.collection
    );
    if args.no_wait {
        if upload_errors > 0 {
            bail!("{upload_errors} uploads failed");
        }
        return Ok(());
    }
    let failed = wait_indexed(
        &client,
        &args.collection,
        &ids,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    if upload_errors + failed > 0 {
        bail!("{upload_errors} uploads failed and {failed} documents failed to index");
    }
    Ok(())
}

/// Flags of `ragplane reindex`.
#[derive(Debug, Clone, Args)]
pub struct ReindexArgs {
    /// Server connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Collection to re-embed.
    #[arg(long, short, env = "RAGPLANE_COLLECTION")]
    pub collection: String,
    /// Return once the documents are queued instead of waiting for them.
    #[arg(long)]
    pub no_wait: bool,
    /// Longest wait for the documents, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_secs: u64,
}

/// `ragplane reindex`: queues every document of the collection for re-embedding, then waits
/// until all are indexed again (non-zero exit when any failed).
pub async fn reindex(args: ReindexArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.conn)?;
    let path = format!("/v1/collections/{}/reindex", args.collection);
    let v: Value = client
        .send(client.request(reqwest::Method::POST, &path))
        .await?;
    let ids: Vec<String> = v["documents"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d.as_str().map(str::to_string))
        .collect();
    println!(
        "{} documents of {} queued for re-embedding",
        ids.len(),
        args.collection
    );
    if args.no_wait || ids.is_empty() {
        return Ok(());
    }
    let failed = wait_indexed(
        &client,
        &args.collection,
        &ids,
        Duration::from_secs(args.timeout_secs),
    )
    .await?;
    if failed > 0 {
        bail!("{failed} documents failed to re-index");
    }
    switched(
        &client,
        &args.collection,
        Duration::from_secs(args.timeout_secs),
    )
    .await
}

/// After a reindex: waits while the collection is still switching to the new model (the
/// worker indexing its last document completes the switch just after), then says which model
/// and dimension it now uses.
async fn switched(client: &Client, collection: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    let path = format!("/v1/collections/{collection}");
    loop {
        let c: Value = client
            .send(client.request(reqwest::Method::GET, &path))
            .await?;
        if c.get("next_model").is_none() {
            println!(
                "{collection} is indexed with {} ({} dimensions, generation {})",
                c["embedding_model"]
                    .as_str()
                    .unwrap_or("an unrecorded model"),
                c["dimension"],
                c["generation"],
            );
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{collection} is still switching to {} after {timeout:?}: documents uploaded \
                 meanwhile are still being indexed",
                c["next_model"]
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Polls until every document is `indexed` or `failed`; prints failures; returns their count.
pub async fn wait_indexed(
    client: &Client,
    collection: &str,
    ids: &[String],
    timeout: Duration,
) -> anyhow::Result<usize> {
    let pb = bar(ids.len() as u64, "indexing");
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pending: Vec<String> = ids.to_vec();
    let mut failed = 0;
    let mut chunks = 0;
    while !pending.is_empty() {
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} documents still not indexed after {timeout:?}",
                pending.len()
            );
        }
        let mut still = Vec::new();
        for id in pending {
            let path = format!("/v1/collections/{collection}/documents/{id}");
            let d: Value = client
                .send(client.request(reqwest::Method::GET, &path))
                .await?;
            match d["status"].as_str() {
                Some("indexed") => {
                    chunks += d["chunk_count"].as_i64().unwrap_or(0);
                    pb.inc(1);
                }
                Some("failed") => {
                    failed += 1;
                    pb.inc(1);
                    pb.println(format!(
                        "{} failed: {}",
                        d["title"].as_str().unwrap_or(&id),
                        d["error"].as_str().unwrap_or("")
                    ));
                }
                _ => still.push(id),
            }
        }
        pending = still;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    pb.finish_with_message(format!("{chunks} chunks"));
    println!(
        "indexed {} documents ({chunks} chunks), {failed} failed",
        ids.len() - failed
    );
    Ok(failed)
}
