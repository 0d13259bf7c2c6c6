//! `ragplane eval DIR`: retrieval quality on a BEIR-format folder (`corpus.jsonl`,
//! `queries.jsonl`, `qrels/test.tsv`). The corpus is uploaded to a fresh collection (or an
//! earlier upload is reused), indexed, and every query with judgements is searched with
//! `group_by: document` (a document ranks at its best chunk), one at a time, in the chosen mode.
//! The rankings are scored with nDCG@10 and recall@k, and each search's latency is recorded.
//!
//! Each mean comes with its standard error over the queries. `--per-query FILE` keeps every
//! query's figures as JSON lines; `--baseline FILE` pairs this run's queries with such a file
//! from an earlier run (another mode, setting or model on the same set) and reports the mean
//! difference with its paired standard error, and on how many queries each side won.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use serde::Deserialize;
use serde_json::{json, Value};

use super::client::{Client, ConnArgs};
use super::ingest::wait_indexed;

/// Flags of `ragplane eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Server connection.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Collection to create for the corpus (must not exist yet).
    #[arg(long, short, env = "RAGPLANE_EVAL_COLLECTION", default_value = "eval")]
    pub collection: String,
    /// Cut-off for recall@k.
    #[arg(long, short = 'k', env = "RAGPLANE_EVAL_K", default_value_t = 10)]
    pub k: usize,
    /// Retrieval mode (default: the server's `search.default_mode`).
    #[arg(long, short, env = "RAGPLANE_SEARCH_MODE", value_parser = super::SEARCH_MODES)]
    pub mode: Option<String>,
    /// Fusion of hybrid mode, as the JSON of the request's `fusion` object, for example
    /// `{"method":"rrf","k":60}`.
    #[arg(long, env = "RAGPLANE_EVAL_FUSION")]
    pub fusion: Option<String>,
    /// Use the collection as an earlier run left it (its documents' sources are the corpus
    /// ids) instead of creating and filling it.
    #[arg(long)]
    pub reuse: bool,
    /// Write each query's nDCG@10, recall@k and latency to this file, one JSON object per
    /// line (the input of `--baseline`).
    #[arg(long, value_name = "FILE")]
    pub per_query: Option<PathBuf>,
    /// Compare with an earlier run's `--per-query` file, query by query.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long, env = "RAGPLANE_JSON")]
    pub json: bool,
    /// The BEIR folder.
    pub dir: PathBuf,
}

#[derive(Deserialize)]
struct CorpusDoc {
    #[serde(rename = "_id")]
    id: String,
    #[serde(default)]
    title: String,
    text: String,
}

#[derive(Deserialize)]
struct QueryLine {
    #[serde(rename = "_id")]
    id: String,
    text: String,
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> anyhow::Result<Vec<T>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .with_context(|| format!("{}:{}: invalid line", path.display(), i + 1))
        })
        .collect()
}

/// Relevance judgements: query id → document id → grade.
pub type Qrels = HashMap<String, HashMap<String, f64>>;

/// Reads `qrels/test.tsv` (`query-id corpus-id score`, with a header line).
pub fn read_qrels(path: &Path) -> anyhow::Result<Qrels> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let mut out: Qrels = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let cols: Vec<&str> = line.split('\t').collect();
        if i == 0 && cols.first().is_some_and(|c| c.contains("query")) {
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let [q, d, s] = cols[..] else {
            bail!(
                "{}:{}: expected 3 tab-separated columns",
                path.display(),
                i + 1
            )
        };
        let grade: f64 = s
            .trim()
            .parse()
            .with_context(|| format!("{}:{}: bad score", path.display(), i + 1))?;
        out.entry(q.to_string())
            .or_default()
            .insert(d.to_string(), grade);
    }
    Ok(out)
}

/// The corpus ids of a search's hits, best first, without the query's own id, cut to `depth`.
///
/// As BEIR's evaluator does by default (`ignore_identical_ids`): in sets whose queries are
/// themselves corpus documents (ArguAna's counter-argument task), the query's own document is
/// never a judged answer, and ranking it first would cost every system the same first place.
pub fn ranking(found: impl Iterator<Item = String>, query_id: &str, depth: usize) -> Vec<String> {
    found.filter(|id| id != query_id).take(depth).collect()
}

/// nDCG@k of a ranking against graded judgements (linear gain, log2 discount).
pub fn ndcg_at_k(ranked: &[String], rel: &HashMap<String, f64>, k: usize) -> f64 {
    let dcg: f64 = ranked
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, d)| rel.get(d).copied().unwrap_or(0.0) / ((i + 2) as f64).log2())
        .sum();
    let mut ideal: Vec<f64> = rel.values().copied().filter(|g| *g > 0.0).collect();
    ideal.sort_by(|a, b| b.total_cmp(a));
    let idcg: f64 = ideal
        .iter()
        .take(k)
        .enumerate()
        .map(|(i, g)| g / ((i + 2) as f64).log2())
        .sum();
    if idcg == 0.0 {
        0.0
    } else {
        dcg / idcg
    }
}

/// Fraction of relevant documents found in the top `k`.
pub fn recall_at_k(ranked: &[String], rel: &HashMap<String, f64>, k: usize) -> f64 {
    let relevant = rel.values().filter(|g| **g > 0.0).count();
    if relevant == 0 {
        return 0.0;
    }
    let found = ranked
        .iter()
        .take(k)
        .filter(|d| rel.get(*d).is_some_and(|g| *g > 0.0))
        .count();
    found as f64 / relevant as f64
}

/// One query's figures, as `--per-query` writes them and `--baseline` reads them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct QueryResult {
    /// The query's id in `queries.jsonl`.
    pub query_id: String,
    /// The query's text (empty in files from before it was kept).
    #[serde(default)]
    pub query: String,
    /// nDCG@10 of its ranking.
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    /// Recall at the run's `k`.
    pub recall: f64,
    /// How long its search took, in milliseconds.
    pub latency_ms: f64,
}

/// Mean and standard error of the mean of `values` (the error is 0 for fewer than two).
pub fn mean_and_stderr(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, (variance / n).sqrt())
}

/// This run against a baseline, over the queries both have.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// Queries in both runs.
    pub queries: usize,
    /// Mean of (this run − baseline) nDCG@10.
    pub ndcg_difference: f64,
    /// Standard error of that mean difference (paired).
    pub ndcg_difference_stderr: f64,
    /// Queries whose nDCG@10 is higher in this run.
    pub better: usize,
    /// Queries whose nDCG@10 is lower in this run.
    pub worse: usize,
    /// The queries that gained most, largest gain first (at most [`SHOWN_CHANGES`]).
    pub largest_gains: Vec<Change>,
    /// The queries that lost most, largest loss first (at most [`SHOWN_CHANGES`]).
    pub largest_losses: Vec<Change>,
}

/// How many of the largest gains and losses a comparison names.
pub const SHOWN_CHANGES: usize = 5;

/// Differences of nDCG@10 this small are rounding, neither a gain nor a loss.
const TIE: f64 = 1e-12;

/// One query's change of nDCG@10 against the baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    /// The query's id.
    pub query_id: String,
    /// Its text.
    pub query: String,
    /// This run's nDCG@10 minus the baseline's.
    pub difference: f64,
}

/// Writes `results` to `path`, one JSON object per line.
fn write_per_query(path: &Path, results: &[QueryResult]) -> anyhow::Result<()> {
    let lines: String = results
        .iter()
        .map(|r| serde_json::to_string(r).map(|l| l + "\n"))
        .collect::<Result<_, _>>()?;
    std::fs::write(path, lines).with_context(|| format!("failed to write {}", path.display()))
}

/// Pairs `run` with `baseline` by query id.
pub fn compare(run: &[QueryResult], baseline: &[QueryResult]) -> anyhow::Result<Comparison> {
    let before: HashMap<&str, f64> = baseline
        .iter()
        .map(|r| (r.query_id.as_str(), r.ndcg))
        .collect();
    let mut changes: Vec<Change> = run
        .iter()
        .filter_map(|r| {
            before.get(r.query_id.as_str()).map(|b| Change {
                query_id: r.query_id.clone(),
                query: r.query.clone(),
                difference: r.ndcg - b,
            })
        })
        .collect();
    if changes.is_empty() {
        bail!("the baseline has none of this run's queries");
    }
    let differences: Vec<f64> = changes.iter().map(|c| c.difference).collect();
    let (ndcg_difference, ndcg_difference_stderr) = mean_and_stderr(&differences);
    // Largest gain first, so the gains lead and the losses trail.
    changes.sort_by(|a, b| b.difference.total_cmp(&a.difference));
    let gains: Vec<&Change> = changes.iter().take_while(|c| c.difference > TIE).collect();
    let losses: Vec<&Change> = changes
        .iter()
        .rev()
        .take_while(|c| c.difference < -TIE)
        .collect();
    let shown = |l: &[&Change]| l.iter().take(SHOWN_CHANGES).map(|c| (*c).clone()).collect();
    Ok(Comparison {
        queries: changes.len(),
        ndcg_difference,
        ndcg_difference_stderr,
        better: gains.len(),
        worse: losses.len(),
        largest_gains: shown(&gains),
        largest_losses: shown(&losses),
    })
}

/// Creates the collection and uploads the corpus (the title as the title, the text as the
/// body, the corpus id as the source); returns document id → corpus id.
async fn upload_corpus(
    client: &Client,
    collection: &str,
    corpus: &[CorpusDoc],
) -> anyhow::Result<HashMap<String, String>> {
    let _: Value = client
        .send(
            client
                .request(reqwest::Method::POST, "/v1/collections")
                .json(&json!({ "name": collection })),
        )
        .await
        .context(
            "failed to create the evaluation collection (use --reuse to search an earlier upload)",
        )?;
    let path = format!("/v1/collections/{collection}/documents");
    let mut by_doc_id: HashMap<String, String> = HashMap::new();
    let mut ids = Vec::new();
    for d in corpus {
        let body = json!({ "text": d.text, "title": d.title, "source": d.id, "metadata": { "beir_id": d.id } });
        let v: Value = client
            .send(client.request(reqwest::Method::POST, &path).json(&body))
            .await?;
        let id = v["document"]["id"].as_str().unwrap_or_default().to_string();
        by_doc_id.insert(id.clone(), d.id.clone());
        ids.push(id);
    }
    let failed = wait_indexed(client, collection, &ids, Duration::from_secs(3600)).await?;
    if failed > 0 {
        bail!("{failed} corpus documents failed to index");
    }
    Ok(by_doc_id)
}

/// Document id → corpus id of an earlier upload, from the documents' sources.
async fn existing_corpus(
    client: &Client,
    collection: &str,
) -> anyhow::Result<HashMap<String, String>> {
    let mut by_doc_id = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/collections/{collection}/documents?limit=1000");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page: Value = client
            .send(client.request(reqwest::Method::GET, &path))
            .await
            .with_context(|| format!("failed to list the documents of {collection}"))?;
        for d in page["documents"].as_array().into_iter().flatten() {
            if d["status"] != "indexed" {
                bail!(
                    "document {} of {collection} is {}, not indexed",
                    d["id"],
                    d["status"]
                );
            }
            if let (Some(id), Some(source)) = (d["id"].as_str(), d["source"].as_str()) {
                by_doc_id.insert(id.to_string(), source.to_string());
            }
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    if by_doc_id.is_empty() {
        bail!("collection {collection} has no documents to reuse");
    }
    Ok(by_doc_id)
}

/// Runs the command.
pub async fn run(args: EvalArgs) -> anyhow::Result<()> {
    let corpus: Vec<CorpusDoc> = read_jsonl(&args.dir.join("corpus.jsonl"))?;
    let queries: Vec<QueryLine> = read_jsonl(&args.dir.join("queries.jsonl"))?;
    let qrels = read_qrels(&args.dir.join("qrels").join("test.tsv"))?;
    if corpus.is_empty() || qrels.is_empty() {
        bail!(
            "{} has an empty corpus or no judgements",
            args.dir.display()
        );
    }
    // A baseline that cannot be read is refused before any upload or search.
    let baseline: Option<Vec<QueryResult>> = match &args.baseline {
        Some(p) => Some(read_jsonl(p)?),
        None => None,
    };
    let client = Client::new(&args.conn)?;
    let by_doc_id = if args.reuse {
        existing_corpus(&client, &args.collection).await?
    } else {
        upload_corpus(&client, &args.collection, &corpus).await?
    };
    let fusion: Option<Value> = match &args.fusion {
        Some(f) => Some(serde_json::from_str(f).context("--fusion is not a JSON object")?),
        None => None,
    };
    let depth = args.k.max(10);
    let corpus_ids: HashSet<&str> = by_doc_id.values().map(String::as_str).collect();
    let mut results: Vec<QueryResult> = Vec::new();
    for q in queries.iter().filter(|q| qrels.contains_key(&q.id)) {
        // A query that is itself a corpus document asks for one more, for the one `ranking` drops.
        let asked = depth + usize::from(corpus_ids.contains(q.id.as_str()));
        let mut body = json!({
            "collection": args.collection,
            "query": q.text,
            "top_k": asked,
            "group_by": "document",
        });
        if let Some(mode) = &args.mode {
            body["mode"] = json!(mode);
        }
        if let Some(f) = &fusion {
            body["fusion"] = f.clone();
        }
        let started = Instant::now();
        let v: Value = client
            .send(
                client
                    .request(reqwest::Method::POST, "/v1/search")
                    .json(&body),
            )
            .await
            .context("search failed; a --k above the server's limits.max_top_k is refused")?;
        let latency = started.elapsed();
        let found = v["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["document_id"].as_str())
            .filter_map(|id| by_doc_id.get(id).cloned());
        let ranked = ranking(found, &q.id, depth);
        let rel = &qrels[&q.id];
        results.push(QueryResult {
            query_id: q.id.clone(),
            query: q.text.clone(),
            ndcg: ndcg_at_k(&ranked, rel, 10),
            recall: recall_at_k(&ranked, rel, args.k),
            latency_ms: latency.as_secs_f64() * 1000.0,
        });
    }
    if results.is_empty() {
        bail!("no query in queries.jsonl has judgements in qrels/test.tsv");
    }
    let n = results.len();
    let ndcgs: Vec<f64> = results.iter().map(|r| r.ndcg).collect();
    let recalls: Vec<f64> = results.iter().map(|r| r.recall).collect();
    let (ndcg, ndcg_stderr) = mean_and_stderr(&ndcgs);
    let (recall, recall_stderr) = mean_and_stderr(&recalls);
    let comparison = baseline
        .as_deref()
        .map(|b| compare(&results, b))
        .transpose()?;
    if let Some(path) = &args.per_query {
        write_per_query(path, &results)?;
    }
    let mut latencies: Vec<f64> = results.iter().map(|r| r.latency_ms).collect();
    latencies.sort_by(f64::total_cmp);
    let ms = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    let (p50, p95) = (ms(0.50), ms(0.95));
    let mode = args.mode.as_deref().unwrap_or("server default");
    // What a Qdrant backend's `keyword_average_terms` should be for this corpus.
    let info: Value = client
        .send(client.request(
            reqwest::Method::GET,
            &format!("/v1/collections/{}", args.collection),
        ))
        .await
        .context("failed to read the evaluation collection")?;
    let average_terms = info["keyword_average_terms"].as_f64();
    if args.json {
        println!(
            "{}",
            json!({
                "mode": mode,
                "queries": n,
                "documents": corpus.len(),
                "ndcg@10": ndcg,
                "ndcg@10_stderr": ndcg_stderr,
                format!("recall@{}", args.k): recall,
                format!("recall@{}_stderr", args.k): recall_stderr,
                "baseline": comparison,
                "search_p50_ms": p50,
                "search_p95_ms": p95,
                "chunks": info["points"],
                "keyword_average_terms": average_terms,
            })
        );
    } else {
        println!("mode: {mode}  queries: {n}  documents: {}", corpus.len());
        println!("nDCG@10:   {ndcg:.4} (standard error {ndcg_stderr:.4})");
        println!(
            "recall@{}: {recall:.4} (standard error {recall_stderr:.4})",
            args.k
        );
        if let Some(c) = &comparison {
            println!(
                "against the baseline, over {} queries: nDCG@10 {:+.4} (paired standard error \
                 {:.4}); better on {}, worse on {}",
                c.queries, c.ndcg_difference, c.ndcg_difference_stderr, c.better, c.worse
            );
            for (heading, list) in [
                ("largest gains", &c.largest_gains),
                ("largest losses", &c.largest_losses),
            ] {
                if !list.is_empty() {
                    println!("{heading}:");
                }
                for ch in list {
                    println!("  {:+.4}  {}  {}", ch.difference, ch.query_id, ch.query);
                }
            }
        }
        println!("search latency, one at a time: p50 {p50:.1} ms, p95 {p95:.1} ms");
        if let Some(avg) = average_terms {
            println!(
                "chunks: {}  average chunk length: {avg:.1} terms",
                info["points"]
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(pairs: &[(&str, f64)]) -> HashMap<String, f64> {
        pairs.iter().map(|(d, g)| (d.to_string(), *g)).collect()
    }

    fn ranked(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn perfect_ranking_scores_one() {
        let r = rel(&[("a", 2.0), ("b", 1.0)]);
        assert!((ndcg_at_k(&ranked(&["a", "b", "c"]), &r, 10) - 1.0).abs() < 1e-12);
        assert_eq!(recall_at_k(&ranked(&["a", "b"]), &r, 10), 1.0);
    }

    #[test]
    fn ndcg_matches_a_hand_computation() {
        // Relevant doc at rank 2 only: DCG = 1/log2(3), IDCG = 1/log2(2) = 1.
        let r = rel(&[("a", 1.0)]);
        let v = ndcg_at_k(&ranked(&["x", "a"]), &r, 10);
        assert!((v - 1.0 / 3f64.log2()).abs() < 1e-12, "{v}");
        assert_eq!(ndcg_at_k(&ranked(&["x", "a"]), &r, 1), 0.0);
    }

    #[test]
    fn the_query_s_own_document_is_not_ranked() {
        let found = ["q1", "a", "b", "c"].map(String::from).into_iter();
        assert_eq!(ranking(found, "q1", 2), ranked(&["a", "b"]));
        let found = ["a", "b", "c"].map(String::from).into_iter();
        assert_eq!(ranking(found, "q1", 2), ranked(&["a", "b"]));
    }

    #[test]
    fn recall_counts_only_the_cutoff() {
        let r = rel(&[("a", 1.0), ("b", 1.0), ("z", 0.0)]);
        assert_eq!(recall_at_k(&ranked(&["a", "x", "b"]), &r, 2), 0.5);
    }

    #[test]
    fn the_standard_error_is_the_sample_deviation_over_root_n() {
        let (mean, se) = mean_and_stderr(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(mean, 2.5);
        // Sample variance 5/3, over 4 values.
        assert!((se - (5.0f64 / 3.0 / 4.0).sqrt()).abs() < 1e-12, "{se}");
        assert_eq!(mean_and_stderr(&[0.7]), (0.7, 0.0));
        assert_eq!(mean_and_stderr(&[]), (0.0, 0.0));
    }

    fn result(id: &str, ndcg: f64) -> QueryResult {
        QueryResult {
            query_id: id.into(),
            query: format!("text of {id}"),
            ndcg,
            recall: 0.0,
            latency_ms: 1.0,
        }
    }

    #[test]
    fn a_baseline_is_compared_query_by_query() {
        let baseline = [result("q1", 0.5), result("q2", 0.5), result("q3", 0.2)];
        // q4 is not in the baseline and is left out.
        let run = [
            result("q1", 0.7),
            result("q2", 0.5),
            result("q3", 0.1),
            result("q4", 1.0),
        ];
        let c = compare(&run, &baseline).unwrap();
        assert_eq!((c.queries, c.better, c.worse), (3, 1, 1));
        assert!((c.ndcg_difference - 0.1 / 3.0).abs() < 1e-12, "{c:?}");
        let (_, se) = mean_and_stderr(&[0.2, 0.0, -0.1]);
        assert!((c.ndcg_difference_stderr - se).abs() < 1e-12);
        // The unchanged query is neither a gain nor a loss.
        let named = |l: &[Change]| -> Vec<(String, String)> {
            l.iter()
                .map(|c| (c.query_id.clone(), c.query.clone()))
                .collect()
        };
        assert_eq!(
            named(&c.largest_gains),
            [("q1".into(), "text of q1".into())]
        );
        assert_eq!(
            named(&c.largest_losses),
            [("q3".into(), "text of q3".into())]
        );
        let err = compare(&run, &[result("other", 0.1)]).unwrap_err();
        assert!(
            err.to_string().contains("none of this run's queries"),
            "{err}"
        );
    }

    #[test]
    fn the_largest_changes_come_first_and_are_capped() {
        let baseline: Vec<QueryResult> = (0..8).map(|i| result(&format!("q{i}"), 0.5)).collect();
        // q0 gains 0.00 (unchanged), q1 0.05, … q7 0.35.
        let run: Vec<QueryResult> = (0..8)
            .map(|i| result(&format!("q{i}"), 0.5 + f64::from(i) * 0.05))
            .collect();
        let c = compare(&run, &baseline).unwrap();
        let ids: Vec<&str> = c
            .largest_gains
            .iter()
            .map(|c| c.query_id.as_str())
            .collect();
        assert_eq!(ids, ["q7", "q6", "q5", "q4", "q3"]);
        assert!(c.largest_losses.is_empty());
        let c = compare(&baseline, &run).unwrap();
        let ids: Vec<&str> = c
            .largest_losses
            .iter()
            .map(|c| c.query_id.as_str())
            .collect();
        assert_eq!(ids, ["q7", "q6", "q5", "q4", "q3"]);
        assert!(c.largest_gains.is_empty());
    }

    #[test]
    fn per_query_lines_read_back_as_a_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("dense.jsonl");
        let r = QueryResult {
            query_id: "PLAIN-1".into(),
            query: "vitamin d".into(),
            ndcg: 0.25,
            recall: 0.5,
            latency_ms: 3.5,
        };
        write_per_query(&p, std::slice::from_ref(&r)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains("\"ndcg@10\":0.25"), "{text}");
        assert_eq!(read_jsonl::<QueryResult>(&p).unwrap(), vec![r]);
        // A file without the query text still reads.
        std::fs::write(
            &p,
            "{\"query_id\":\"q\",\"ndcg@10\":0.5,\"recall\":1.0,\"latency_ms\":2.0}\n",
        )
        .unwrap();
        assert_eq!(read_jsonl::<QueryResult>(&p).unwrap()[0].query, "");
    }

    #[test]
    fn qrels_header_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.tsv");
        std::fs::write(&p, "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t2\n").unwrap();
        let q = read_qrels(&p).unwrap();
        assert_eq!(q["q1"]["d2"], 2.0);
        std::fs::write(&p, "q1 d1\n").unwrap();
        assert!(read_qrels(&p).is_err());
    }
}
