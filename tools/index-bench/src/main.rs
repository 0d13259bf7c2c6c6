//! index-bench: measures embedded vector index crates for the ragplane data plane.
//!
//! Usage (release build):
//!   index-bench <usearch|usearch-tenant|hnsw|arroy|data> [--n 100000] [--dim 384] [--queries 1000]
//!       [--m 16] [--efc 128] [--ef 16,32,64,128] [--quant f32|f16|i8|bf16]
//!       [--threads 2] [--trees 0] [--search-k 500,1000] [--data clustered|uniform]
//!       [--rank 48] [--clusters 1000] [--seed 42] [--dir <work dir>] [--serve-only]
//!
//! `usearch-tenant` builds one usearch index per tenant instead of one shared index.
//! `data` only generates the data set and the exact ground truth (cached under
//! target/bench-data). The other modes build the index, measure it, persist it,
//! reopen it and run the functional checks (delete, re-add, incremental insert,
//! filtered search), printing markdown tables.
//! `--serve-only` reopens an index saved by an earlier run (same `--dir`) and only
//! runs the query sweep, printing the resident memory added by the reopened index
//! (`--view` memory-maps a usearch file instead of loading it).

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 10;
/// Number of tenants: tenant filter selects ~10% of points.
const TENANTS: u32 = 10;
/// Collections per tenant: collection filter selects ~1% of points.
const COLL_PER_TENANT: u32 = 10;
/// Chunks per document: document filter selects 20 points.
const CHUNKS_PER_DOC: usize = 20;

// ---------------------------------------------------------------- arguments

#[derive(Clone, Debug)]
struct Args {
    index: String,
    n: usize,
    dim: usize,
    queries: usize,
    m: usize,
    efc: usize,
    ef: Vec<usize>,
    quant: String,
    threads: usize,
    trees: usize,
    search_k: Vec<usize>,
    data: String,
    rank: usize,
    clusters: usize,
    seed: u64,
    dir: PathBuf,
    serve_only: bool,
    view: bool,
    filter_ef: Vec<usize>,
    filter_queries: usize,
}

fn parse_list(s: &str) -> Vec<usize> {
    s.split(',').map(|x| x.trim().parse().expect("bad number in list")).collect()
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let index = it.next().unwrap_or_else(|| {
        eprintln!("usage: index-bench <usearch|hnsw|arroy|data> [--n N] [--dim D] ...");
        std::process::exit(2)
    });
    let mut a = Args {
        index,
        n: 100_000,
        dim: 384,
        queries: 1000,
        m: 16,
        efc: 128,
        ef: vec![16, 32, 64, 128],
        quant: "f32".into(),
        threads: 2,
        trees: 0,
        search_k: vec![],
        data: "clustered".into(),
        rank: 48,
        clusters: 1000,
        seed: 42,
        dir: PathBuf::new(),
        serve_only: false,
        view: false,
        filter_ef: vec![10, 32, 64],
        filter_queries: 200,
    };
    while let Some(flag) = it.next() {
        if flag == "--serve-only" {
            a.serve_only = true;
            continue;
        }
        if flag == "--view" {
            a.view = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| panic!("missing value for {flag}"));
        match flag.as_str() {
            "--n" => a.n = v.parse().unwrap(),
            "--dim" => a.dim = v.parse().unwrap(),
            "--queries" => a.queries = v.parse().unwrap(),
            "--m" => a.m = v.parse().unwrap(),
            "--efc" => a.efc = v.parse().unwrap(),
            "--ef" => a.ef = parse_list(&v),
            "--quant" => a.quant = v,
            "--threads" => a.threads = v.parse().unwrap(),
            "--trees" => a.trees = v.parse().unwrap(),
            "--search-k" => a.search_k = parse_list(&v),
            "--data" => a.data = v,
            "--rank" => a.rank = v.parse().unwrap(),
            "--clusters" => a.clusters = v.parse().unwrap(),
            "--seed" => a.seed = v.parse().unwrap(),
            "--dir" => a.dir = PathBuf::from(v),
            "--filter-ef" => a.filter_ef = parse_list(&v),
            "--filter-queries" => a.filter_queries = v.parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    if a.dir.as_os_str().is_empty() {
        a.dir = PathBuf::from(format!("target/bench-index/{}", a.index));
    }
    a
}

// ---------------------------------------------------------------- data set

/// Vectors, caller-held payload and exact ground truth.
struct Data {
    dim: usize,
    n: usize,
    base: Vec<f32>,
    queries: Vec<f32>,
    /// payload: tenant per point (0..TENANTS)
    tenant: Vec<u32>,
    /// payload: collection per point (tenant * COLL_PER_TENANT + c)
    collection: Vec<u32>,
    // payload: the document of a point is implicit, key / CHUNKS_PER_DOC (see doc_of)
    /// per query: tenant, collection and document used for the filtered runs
    q_tenant: Vec<u32>,
    q_collection: Vec<u32>,
    q_doc: Vec<u32>,
    /// exact top-K keys per query: unfiltered, tenant, collection, document
    gt: Vec<Vec<u32>>,
    gt_tenant: Vec<Vec<u32>>,
    gt_collection: Vec<Vec<u32>>,
    gt_doc: Vec<Vec<u32>>,
    /// mean similarity of the 1st and 10th exact neighbour (data sanity figures)
    sim1: f32,
    sim10: f32,
}

impl Data {
    fn v(&self, i: usize) -> &[f32] {
        &self.base[i * self.dim..(i + 1) * self.dim]
    }
    fn q(&self, i: usize) -> &[f32] {
        &self.queries[i * self.dim..(i + 1) * self.dim]
    }
    fn nq(&self) -> usize {
        self.queries.len() / self.dim
    }
}

fn doc_of(key: u64) -> u32 {
    (key as usize / CHUNKS_PER_DOC) as u32
}

fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

fn gauss(rng: &mut ChaCha8Rng) -> f32 {
    StandardNormal.sample(rng)
}

/// Embedding-like generator.
///
/// * an orthonormal basis B of `rank` directions in R^dim (Gram-Schmidt of
///   gaussian vectors);
/// * `clusters` centres c_j ~ N(0, I_rank); cluster weights w_j ~ U(0.2, 1.8)
///   (unequal cluster sizes); per-cluster spread s_j ~ U(0.35, 0.75);
/// * a point of cluster j: z = c_j + s_j * N(0, I_rank),
///   x = B^T z + sigma * N(0, I_dim) with sigma chosen so that the isotropic
///   noise carries ~10% of the signal energy, then x is L2-normalised;
/// * queries come from the same distribution (fresh draws, not in the index).
///
/// `uniform` instead draws every coordinate from N(0,1) and normalises
/// (isotropic, no neighbourhood structure), for comparison only.
fn generate(a: &Args, n: usize, nq: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let dim = a.dim;
    let total = n + nq;
    let mut out = vec![0f32; total * dim];
    if a.data == "uniform" {
        for row in out.chunks_mut(dim) {
            row.iter_mut().for_each(|x| *x = gauss(&mut rng));
            normalize(row);
        }
    } else {
        let r = a.rank;
        // orthonormal basis, r rows of length dim
        let mut basis = vec![0f32; r * dim];
        for i in 0..r {
            let mut v: Vec<f32> = (0..dim).map(|_| gauss(&mut rng)).collect();
            for j in 0..i {
                let b = &basis[j * dim..(j + 1) * dim];
                let d: f32 = v.iter().zip(b).map(|(x, y)| x * y).sum();
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= d * y);
            }
            normalize(&mut v);
            basis[i * dim..(i + 1) * dim].copy_from_slice(&v);
        }
        let c = a.clusters;
        let centres: Vec<f32> = (0..c * r).map(|_| gauss(&mut rng)).collect();
        let spread: Vec<f32> = (0..c).map(|_| rng.gen_range(0.35f32..0.75)).collect();
        let weights: Vec<f32> = (0..c).map(|_| rng.gen_range(0.2f32..1.8)).collect();
        let mut cum = Vec::with_capacity(c);
        let mut acc = 0f32;
        for w in &weights {
            acc += w;
            cum.push(acc);
        }
        // signal energy ~ r * (1 + E[s^2]); noise energy = dim * sigma^2 = 10% of it
        let es2 = (0.35f32 * 0.35 + 0.35 * 0.75 + 0.75 * 0.75) / 3.0;
        let sigma = (0.1 * r as f32 * (1.0 + es2) / dim as f32).sqrt();
        let mut z = vec![0f32; r];
        for row in out.chunks_mut(dim) {
            let u = rng.gen_range(0.0..acc);
            let j = cum.partition_point(|&x| x < u).min(c - 1);
            for t in 0..r {
                z[t] = centres[j * r + t] + spread[j] * gauss(&mut rng);
            }
            row.iter_mut().for_each(|x| *x = sigma * gauss(&mut rng));
            for t in 0..r {
                let b = &basis[t * dim..(t + 1) * dim];
                let zt = z[t];
                row.iter_mut().zip(b).for_each(|(x, y)| *x += zt * y);
            }
            normalize(row);
        }
    }
    let queries = out.split_off(n * dim);
    (out, queries)
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let ca = a.chunks_exact(16);
    let cb = b.chunks_exact(16);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Keeps the K best (highest similarity) keys, sorted best first.
#[derive(Clone)]
struct TopK {
    items: Vec<(f32, u32)>,
}
impl TopK {
    fn new() -> Self {
        TopK { items: Vec::with_capacity(K + 1) }
    }
    #[inline]
    fn push(&mut self, s: f32, key: u32) {
        if self.items.len() == K && s <= self.items[K - 1].0 {
            return;
        }
        let pos = self.items.partition_point(|&(x, _)| x >= s);
        self.items.insert(pos, (s, key));
        self.items.truncate(K);
    }
    fn keys(&self) -> Vec<u32> {
        self.items.iter().map(|x| x.1).collect()
    }
}

fn write_u32s(f: &mut impl Write, v: &[u32]) {
    f.write_all(&(v.len() as u64).to_le_bytes()).unwrap();
    for x in v {
        f.write_all(&x.to_le_bytes()).unwrap();
    }
}
fn read_u32s(buf: &[u8], pos: &mut usize) -> Vec<u32> {
    let n = u64::from_le_bytes(buf[*pos..*pos + 8].try_into().unwrap()) as usize;
    *pos += 8;
    let v = buf[*pos..*pos + 4 * n]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    *pos += 4 * n;
    v
}
fn f32s_as_u32s(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
fn u32s_as_f32s(v: Vec<u32>) -> Vec<f32> {
    v.into_iter().map(f32::from_bits).collect()
}

fn load_or_make_data(a: &Args) -> Data {
    let name = format!(
        "{}-n{}-d{}-q{}-r{}-c{}-s{}.bin",
        a.data, a.n, a.dim, a.queries, a.rank, a.clusters, a.seed
    );
    let path = Path::new("target/bench-data").join(name);
    let t0 = Instant::now();
    if let Ok(mut f) = fs::File::open(&path) {
        let mut buf = Vec::new();
        f.read_to_end(&mut buf).unwrap();
        let mut p = 0;
        let base = u32s_as_f32s(read_u32s(&buf, &mut p));
        let queries = u32s_as_f32s(read_u32s(&buf, &mut p));
        let tenant = read_u32s(&buf, &mut p);
        let collection = read_u32s(&buf, &mut p);
        let q_tenant = read_u32s(&buf, &mut p);
        let q_collection = read_u32s(&buf, &mut p);
        let q_doc = read_u32s(&buf, &mut p);
        let nq = q_tenant.len();
        let mut lists = Vec::new();
        for _ in 0..4 {
            let flat = read_u32s(&buf, &mut p);
            lists.push(flat.chunks(K).map(|c| c.to_vec()).collect::<Vec<_>>());
        }
        let sims = u32s_as_f32s(read_u32s(&buf, &mut p));
        assert_eq!(lists[0].len(), nq);
        let gt_doc = lists.pop().unwrap();
        let gt_collection = lists.pop().unwrap();
        let gt_tenant = lists.pop().unwrap();
        let gt = lists.pop().unwrap();
        eprintln!("data: loaded {} in {:.1}s", path.display(), t0.elapsed().as_secs_f64());
        return Data {
            dim: a.dim,
            n: a.n,
            base,
            queries,
            tenant,
            collection,
            q_tenant,
            q_collection,
            q_doc,
            gt,
            gt_tenant,
            gt_collection,
            gt_doc,
            sim1: sims[0],
            sim10: sims[1],
        };
    }
    let (base, queries) = generate(a, a.n, a.queries);
    eprintln!("data: generated in {:.1}s", t0.elapsed().as_secs_f64());
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed ^ 0x5eed_0f_7e4a47);
    let tenant: Vec<u32> = (0..a.n).map(|_| rng.gen_range(0..TENANTS)).collect();
    let collection: Vec<u32> =
        tenant.iter().map(|t| t * COLL_PER_TENANT + rng.gen_range(0..COLL_PER_TENANT)).collect();
    let nq = a.queries;
    let ndocs = a.n.div_ceil(CHUNKS_PER_DOC) as u32;
    let q_tenant: Vec<u32> = (0..nq).map(|i| i as u32 % TENANTS).collect();
    let q_collection: Vec<u32> =
        q_tenant.iter().map(|t| t * COLL_PER_TENANT + rng.gen_range(0..COLL_PER_TENANT)).collect();
    let q_doc: Vec<u32> = (0..nq).map(|_| rng.gen_range(0..ndocs)).collect();

    // exact ground truth, queries split over threads
    let t1 = Instant::now();
    let dim = a.dim;
    let threads = a.threads.max(1);
    let mut results: Vec<(TopK, TopK, TopK, TopK)> = vec![(TopK::new(), TopK::new(), TopK::new(), TopK::new()); nq];
    std::thread::scope(|s| {
        let chunk = nq.div_ceil(threads);
        for (ci, part) in results.chunks_mut(chunk).enumerate() {
            let (base, queries, tenant, collection) = (&base, &queries, &tenant, &collection);
            let (q_tenant, q_collection, q_doc) = (&q_tenant, &q_collection, &q_doc);
            s.spawn(move || {
                for (off, r) in part.iter_mut().enumerate() {
                    let qi = ci * chunk + off;
                    let q = &queries[qi * dim..(qi + 1) * dim];
                    let (qt, qc, qd) = (q_tenant[qi], q_collection[qi], q_doc[qi]);
                    for i in 0..base.len() / dim {
                        let sim = dot(q, &base[i * dim..(i + 1) * dim]);
                        r.0.push(sim, i as u32);
                        if tenant[i] == qt {
                            r.1.push(sim, i as u32);
                            if collection[i] == qc {
                                r.2.push(sim, i as u32);
                            }
                        }
                        if doc_of(i as u64) == qd {
                            r.3.push(sim, i as u32);
                        }
                    }
                }
            });
        }
    });
    let sim1 = results.iter().map(|r| r.0.items[0].0).sum::<f32>() / nq as f32;
    let sim10 = results.iter().map(|r| r.0.items[K - 1].0).sum::<f32>() / nq as f32;
    eprintln!("data: exact ground truth in {:.1}s", t1.elapsed().as_secs_f64());
    let gt: Vec<Vec<u32>> = results.iter().map(|r| r.0.keys()).collect();
    let gt_tenant: Vec<Vec<u32>> = results.iter().map(|r| r.1.keys()).collect();
    let gt_collection: Vec<Vec<u32>> = results.iter().map(|r| r.2.keys()).collect();
    let gt_doc: Vec<Vec<u32>> = results.iter().map(|r| r.3.keys()).collect();
    fs::create_dir_all("target/bench-data").unwrap();
    let mut f = std::io::BufWriter::new(fs::File::create(&path).unwrap());
    write_u32s(&mut f, &f32s_as_u32s(&base));
    write_u32s(&mut f, &f32s_as_u32s(&queries));
    write_u32s(&mut f, &tenant);
    write_u32s(&mut f, &collection);
    write_u32s(&mut f, &q_tenant);
    write_u32s(&mut f, &q_collection);
    write_u32s(&mut f, &q_doc);
    for l in [&gt, &gt_tenant, &gt_collection, &gt_doc] {
        let flat: Vec<u32> = l.iter().flat_map(|v| {
            let mut v = v.clone();
            v.resize(K, u32::MAX);
            v
        }).collect();
        write_u32s(&mut f, &flat);
    }
    write_u32s(&mut f, &f32s_as_u32s(&[sim1, sim10]));
    drop(f);
    Data {
        dim,
        n: a.n,
        base,
        queries,
        tenant,
        collection,
        q_tenant,
        q_collection,
        q_doc,
        gt,
        gt_tenant,
        gt_collection,
        gt_doc,
        sim1,
        sim10,
    }
}

// ---------------------------------------------------------------- measuring helpers

fn recall(found: &[u64], truth: &[u32]) -> f64 {
    let truth: Vec<u32> = truth.iter().copied().filter(|&x| x != u32::MAX).collect();
    if truth.is_empty() {
        return 1.0;
    }
    let hit = found.iter().filter(|k| truth.contains(&(**k as u32))).count();
    hit as f64 / truth.len() as f64
}

/// Runs every query once, single-threaded, returns (recall@10, queries/s).
fn run_queries(
    d: &Data,
    truth: &[Vec<u32>],
    search: impl FnMut(usize, &[f32]) -> Vec<u64>,
) -> (f64, f64) {
    run_queries_n(d, truth, d.nq(), search)
}

/// Same as `run_queries` over the first `limit` queries (used for the slow filtered runs).
fn run_queries_n(
    d: &Data,
    truth: &[Vec<u32>],
    limit: usize,
    mut search: impl FnMut(usize, &[f32]) -> Vec<u64>,
) -> (f64, f64) {
    let nq = limit.min(d.nq());
    // warm-up pass over a few queries (page-in, caches)
    for qi in 0..nq.min(20) {
        std::hint::black_box(search(qi, d.q(qi)));
    }
    let t = Instant::now();
    let mut rsum = 0.0;
    for qi in 0..nq {
        let found = search(qi, d.q(qi));
        rsum += recall(&found, &truth[qi]);
    }
    let secs = t.elapsed().as_secs_f64();
    (rsum / nq as f64, nq as f64 / secs)
}

/// Caller-side payload index: keys per tenant and per collection.
fn key_lists(d: &Data) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
    let mut by_tenant = vec![Vec::new(); TENANTS as usize];
    let mut by_coll = vec![Vec::new(); (TENANTS * COLL_PER_TENANT) as usize];
    for i in 0..d.n {
        by_tenant[d.tenant[i] as usize].push(i as u64);
        by_coll[d.collection[i] as usize].push(i as u64);
    }
    (by_tenant, by_coll)
}

fn doc_keys(d: &Data, doc: u32) -> std::ops::Range<u64> {
    let s = doc as usize * CHUNKS_PER_DOC;
    s as u64..((s + CHUNKS_PER_DOC).min(d.n)) as u64
}

fn proc_status(field: &str) -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            let kb: u64 = rest.trim_start_matches(':').trim().trim_end_matches("kB").trim().parse().unwrap_or(0);
            return kb / 1024;
        }
    }
    0
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            total += if m.is_dir() { dir_size(&e.path()) } else { m.len() };
        }
    } else if let Ok(m) = fs::metadata(p) {
        total = m.len();
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn check(name: &str, ok: bool, detail: String) {
    println!("| check | {name} | {} | {detail} |", if ok { "ok" } else { "FAILED" });
}

fn print_sweep_header(knob: &str) {
    println!();
    println!("| index | {knob} | recall@10 | queries/s (1 thread) |");
    println!("|---|---|---|---|");
}

fn print_filter_header() {
    println!();
    println!("| index | filter | selectivity | knob | recall@10 | queries/s (1 thread) |");
    println!("|---|---|---|---|---|---|");
}

fn print_summary_header() {
    println!();
    println!("| index | params | build s | recall@10 | queries/s | disk MiB | reopen ms | RSS after build MiB |");
    println!("|---|---|---|---|---|---|---|---|");
}

fn data_line(d: &Data, a: &Args) {
    eprintln!(
        "data: {} n={} dim={} rank={} clusters={} seed={} queries={} | mean sim to 1st NN {:.3}, to 10th NN {:.3}",
        a.data, d.n, d.dim, a.rank, a.clusters, a.seed, d.nq(), d.sim1, d.sim10
    );
    println!(
        "\ndata: `{}` n={} dim={} rank={} clusters={} seed={} queries={}; mean cosine to 1st NN {:.3}, to 10th NN {:.3}",
        a.data, d.n, d.dim, a.rank, a.clusters, a.seed, d.nq(), d.sim1, d.sim10
    );
}

// ---------------------------------------------------------------- usearch

#[cfg(feature = "usearch")]
mod bench_usearch {
    use super::*;
    use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

    pub fn scalar(q: &str) -> ScalarKind {
        match q {
            "f32" => ScalarKind::F32,
            "f16" => ScalarKind::F16,
            "bf16" => ScalarKind::BF16,
            "i8" => ScalarKind::I8,
            other => panic!("unknown quantization {other}"),
        }
    }

    fn filtered(index: &Index, q: &[f32], pred: impl Fn(u64) -> bool) -> Vec<u64> {
        index.filtered_search(q, K, pred).unwrap().keys
    }

    /// ef_search sweep; returns (ef, recall, qps) of the first ef with recall >= 0.95
    /// (or the last one).
    fn sweep(a: &Args, d: &Data, index: &Index, label: &str) -> (usize, f64, f64) {
        print_sweep_header("ef_search");
        let mut chosen = None;
        let mut last = (0, 0.0, 0.0);
        for &ef in &a.ef {
            index.change_expansion_search(ef);
            let (r, qps) = run_queries(d, &d.gt, |_, q| index.search(q, K).unwrap().keys);
            println!("| {label} | {ef} | {r:.4} | {qps:.0} |");
            last = (ef, r, qps);
            if r >= 0.95 && chosen.is_none() {
                chosen = Some(last);
            }
        }
        chosen.unwrap_or(last)
    }

    pub fn run(a: &Args, d: &Data) {
        let label = format!("usearch {} {}", usearch::version(), a.quant);
        let path = a.dir.join("index.usearch");
        fs::create_dir_all(&a.dir).unwrap();
        let opts = IndexOptions {
            dimensions: a.dim,
            metric: MetricKind::IP,
            quantization: scalar(&a.quant),
            connectivity: a.m,
            expansion_add: a.efc,
            expansion_search: a.ef[0],
            multi: false,
        };
        if a.serve_only {
            let rss0 = proc_status("VmRSS");
            let t = Instant::now();
            let index = if a.view {
                Index::restore_view(path.to_str().unwrap()).unwrap()
            } else {
                Index::restore(path.to_str().unwrap()).unwrap()
            };
            println!("reopen (load) {:.0} ms, size {}", t.elapsed().as_secs_f64() * 1e3, index.size());
            sweep(a, d, &index, &label);
            println!("\nserving RSS: {} MiB before reopen, {} MiB after the sweep (delta {} MiB)", rss0, proc_status("VmRSS"), proc_status("VmRSS") as i64 - rss0 as i64);
            return;
        }
        eprintln!("usearch: hardware acceleration: {}", usearch::hardware_acceleration_available());
        let index = Index::new(&opts).unwrap();
        // capacity for the base set plus the incremental inserts below; contexts for
        // `threads` concurrent callers (one extra for the concurrency check).
        index.reserve_capacity_and_threads(d.n + d.nq() + 1000, a.threads.max(2)).unwrap();
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..a.threads {
                let index = &index;
                s.spawn(move || {
                    for i in (th..d.n).step_by(a.threads) {
                        index.add(i as u64, d.v(i)).unwrap();
                    }
                });
            }
        });
        let build_s = t.elapsed().as_secs_f64();
        let rss_build = proc_status("VmRSS");
        eprintln!("usearch: built {} in {build_s:.1}s, memory_usage {} MiB", index.size(), mb(index.memory_usage() as u64));
        println!("\nhardware acceleration: `{}`", index.hardware_acceleration());
        let (ef_f, r, qps) = sweep(a, d, &index, &label);

        // filtered search: tenant (~10%), collection (~1%), document (20 points)
        print_filter_header();
        let (by_tenant, by_coll) = key_lists(d);
        let fq = a.filter_queries;
        for &ef in &a.filter_ef {
            index.change_expansion_search(ef);
            let (rt, qt) = run_queries_n(d, &d.gt_tenant, fq, |qi, q| {
                let t = d.q_tenant[qi];
                filtered(&index, q, |k| d.tenant[k as usize] == t)
            });
            println!("| {label} | tenant, filtered_search | 10% | ef={ef} | {rt:.4} | {qt:.0} |");
            let (rc, qc) = run_queries_n(d, &d.gt_collection, fq, |qi, q| {
                let c = d.q_collection[qi];
                filtered(&index, q, |k| d.collection[k as usize] == c)
            });
            println!("| {label} | collection, filtered_search | 1% | ef={ef} | {rc:.4} | {qc:.0} |");
            let (rd, qd) = run_queries_n(d, &d.gt_doc, fq.min(50), |qi, q| {
                let doc = d.q_doc[qi];
                filtered(&index, q, |k| doc_of(k) == doc)
            });
            println!("| {label} | document, filtered_search | 0.02% | ef={ef} | {rd:.4} | {qd:.0} |");
        }
        // the same filters answered by an exact scan over the caller-held key list,
        // vectors fetched from the index with `get`.
        let mut buf = vec![0f32; a.dim];
        let mut scan = |q: &[f32], keys: &mut dyn Iterator<Item = u64>| -> Vec<u64> {
            let mut top = TopK::new();
            for k in keys {
                if index.get(k, &mut buf).unwrap() == 1 {
                    top.push(dot(q, &buf), k as u32);
                }
            }
            top.keys().into_iter().map(|k| k as u64).collect()
        };
        let (rt, qt) = run_queries_n(d, &d.gt_tenant, fq, |qi, q| scan(q, &mut by_tenant[d.q_tenant[qi] as usize].iter().copied()));
        println!("| {label} | tenant, exact scan via get | 10% | - | {rt:.4} | {qt:.0} |");
        let (rc, qc) = run_queries_n(d, &d.gt_collection, fq, |qi, q| scan(q, &mut by_coll[d.q_collection[qi] as usize].iter().copied()));
        println!("| {label} | collection, exact scan via get | 1% | - | {rc:.4} | {qc:.0} |");
        let (rx, qx) = run_queries(d, &d.gt_doc, |qi, q| scan(q, &mut doc_keys(d, d.q_doc[qi])));
        println!("| {label} | document, exact scan via get | 0.02% | - | {rx:.4} | {qx:.0} |");

        // persist
        index.change_expansion_search(ef_f);
        let t = Instant::now();
        index.save(path.to_str().unwrap()).unwrap();
        let save_ms = t.elapsed().as_secs_f64() * 1e3;
        let size = dir_size(&path);
        drop(index);
        let t = Instant::now();
        let index = Index::restore(path.to_str().unwrap()).unwrap();
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let view = Index::restore_view(path.to_str().unwrap()).unwrap();
        let view_ms = t.elapsed().as_secs_f64() * 1e3;
        index.change_expansion_search(ef_f);
        view.change_expansion_search(ef_f);
        let (r2, _) = run_queries(d, &d.gt, |_, q| index.search(q, K).unwrap().keys);
        let (r3, q3) = run_queries(d, &d.gt, |_, q| view.search(q, K).unwrap().keys);
        println!();
        println!("| check | name | result | detail |");
        println!("|---|---|---|---|");
        check(
            "save + reopen (load)",
            index.size() == d.n && (r2 - r).abs() < 0.005,
            format!("save {save_ms:.0} ms, {:.1} MiB; load {reopen_ms:.0} ms; recall after load {r2:.4}", mb(size)),
        );
        check(
            "reopen (view, mmap, read-only)",
            view.size() == d.n && (r3 - r).abs() < 0.005,
            format!("view {view_ms:.1} ms; recall {r3:.4}, {q3:.0} q/s"),
        );
        let view_reserve = view.reserve(d.n + 10);
        let view_add = view.add(u64::MAX - 1, d.q(0));
        check(
            "reserve + add on a viewed (mmap) index",
            view_add.is_err(),
            format!("reserve: {:?}; add: {:?}", view_reserve.err().map(|e| e.to_string()), view_add.err().map(|e| e.to_string())),
        );
        drop(view);
        // a loaded index has capacity == size: must reserve before adding again
        let cap_before = index.capacity();
        let add_without_reserve = index.add(u64::MAX - 1, d.q(0)).is_ok();
        check(
            "add after load without reserve",
            true,
            format!("capacity after load {cap_before}; add succeeded: {add_without_reserve}"),
        );
        if add_without_reserve {
            index.remove(u64::MAX - 1).unwrap();
        }
        index.reserve_capacity_and_threads(d.n + d.nq() + 1000, 2).unwrap();

        // delete: remove the exact top-1 neighbour of every query
        let victims: Vec<u64> = d.gt.iter().map(|g| g[0] as u64).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let t = Instant::now();
        let mut removed = 0;
        for &k in &victims {
            removed += index.remove(k).unwrap();
        }
        let rm_us = t.elapsed().as_secs_f64() * 1e6 / victims.len() as f64;
        let mut leaked = 0;
        for qi in 0..d.nq() {
            let found = index.search(d.q(qi), K).unwrap().keys;
            leaked += found.iter().filter(|k| victims.binary_search(k).is_ok()).count();
        }
        check(
            "remove",
            removed == victims.len() && leaked == 0 && index.size() == d.n - victims.len(),
            format!("removed {removed}/{} keys ({rm_us:.1} us each); deleted keys returned by later searches: {leaked}; size {}", victims.len(), index.size()),
        );
        // re-add the same keys with their vectors
        let mut readd_err = None;
        for &k in &victims {
            if let Err(e) = index.add(k, d.v(k as usize)) {
                readd_err = Some(e.to_string());
                break;
            }
        }
        let (r4, _) = run_queries(d, &d.gt, |_, q| index.search(q, K).unwrap().keys);
        check(
            "remove + re-add same key",
            readd_err.is_none() && index.size() == d.n && (r4 - r).abs() < 0.01,
            format!("error: {:?}; size {}; recall after re-add {r4:.4}", readd_err, index.size()),
        );
        // incremental insert: add the queries themselves as new points, each must be its own top-1
        let t = Instant::now();
        for qi in 0..d.nq() {
            index.add((d.n + qi) as u64, d.q(qi)).unwrap();
        }
        let add_us = t.elapsed().as_secs_f64() * 1e6 / d.nq() as f64;
        let found = (0..d.nq()).filter(|&qi| index.search(d.q(qi), 1).unwrap().keys.first() == Some(&((d.n + qi) as u64))).count();
        check(
            "incremental insert",
            found == d.nq(),
            format!("{} new points, {add_us:.0} us per add (1 thread); found as own top-1: {found}", d.nq()),
        );
        // duplicate key
        let dup = index.add(0, d.v(0));
        check("duplicate key rejected", dup.is_err(), format!("{:?}", dup.err().map(|e| e.to_string())));
        // concurrent search while adding
        let extra = 500;
        let start = (d.n + d.nq()) as u64;
        let searches = std::sync::atomic::AtomicUsize::new(0);
        let errs = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            let index = &index;
            let errs = &errs;
            let searches = &searches;
            let h = s.spawn(move || {
                for i in 0..extra {
                    if index.add(start + i as u64, d.v(i % d.n)).is_err() {
                        errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
            while !h.is_finished() {
                for qi in 0..20 {
                    if index.search(d.q(qi % d.nq()), K).is_err() {
                        errs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    searches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
        check(
            "concurrent add + search (2 threads, shared &Index)",
            errs.load(std::sync::atomic::Ordering::Relaxed) == 0,
            format!("{extra} adds alongside {} searches, errors {}", searches.load(std::sync::atomic::Ordering::Relaxed), errs.load(std::sync::atomic::Ordering::Relaxed)),
        );
        // more concurrent callers than reserved thread contexts (2 were reserved above;
        // reserve() never shrinks the number of contexts)
        let contexts_err = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let index = &index;
                let contexts_err = &contexts_err;
                s.spawn(move || {
                    for qi in 0..200 {
                        if index.search(d.q(qi % d.nq()), K).is_err() {
                            contexts_err.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        check(
            "4 searching threads, 2 reserved thread contexts",
            true,
            format!("failed searches: {} of 800 (an operation that finds no free context fails, it does not wait)", contexts_err.into_inner()),
        );
        let hwm = proc_status("VmHWM");
        print_summary_header();
        println!(
            "| {label} | M={} ef_c={} ef_s={ef_f} | {build_s:.1} | {r:.4} | {qps:.0} | {:.1} | {reopen_ms:.0} (view {view_ms:.1}) | {rss_build} (peak {hwm}) |",
            a.m, a.efc, mb(size)
        );
    }
}

#[cfg(feature = "usearch")]
mod bench_usearch_tenant {
    use super::*;
    use usearch::{Index, IndexOptions, MetricKind};

    /// One usearch index per tenant: the tenant filter becomes the choice of index,
    /// the collection filter selects ~10% of that index.
    pub fn run(a: &Args, d: &Data) {
        let label = format!("usearch {} {} per tenant", usearch::version(), a.quant);
        fs::create_dir_all(&a.dir).unwrap();
        let (by_tenant, _) = key_lists(d);
        let opts = IndexOptions {
            dimensions: a.dim,
            metric: MetricKind::IP,
            quantization: super::bench_usearch::scalar(&a.quant),
            connectivity: a.m,
            expansion_add: a.efc,
            expansion_search: a.ef[0],
            multi: false,
        };
        let indexes: Vec<Index> = by_tenant
            .iter()
            .map(|keys| {
                let ix = Index::new(&opts).unwrap();
                ix.reserve_capacity_and_threads(keys.len(), a.threads.max(2)).unwrap();
                ix
            })
            .collect();
        let t = Instant::now();
        std::thread::scope(|s| {
            for th in 0..a.threads {
                let (indexes, by_tenant) = (&indexes, &by_tenant);
                s.spawn(move || {
                    for (ti, keys) in by_tenant.iter().enumerate() {
                        for &k in keys.iter().skip(th).step_by(a.threads) {
                            indexes[ti].add(k, d.v(k as usize)).unwrap();
                        }
                    }
                });
            }
        });
        let build_s = t.elapsed().as_secs_f64();
        let rss_build = proc_status("VmRSS");
        print_sweep_header("ef_search (tenant query = search in that tenant's index)");
        let mut chosen = None;
        for &ef in &a.ef {
            indexes.iter().for_each(|ix| ix.change_expansion_search(ef));
            let (r, qps) = run_queries(d, &d.gt_tenant, |qi, q| indexes[d.q_tenant[qi] as usize].search(q, K).unwrap().keys);
            println!("| {label} | {ef} | {r:.4} | {qps:.0} |");
            if r >= 0.95 && chosen.is_none() {
                chosen = Some((ef, r, qps));
            }
        }
        print_filter_header();
        for &ef in &a.filter_ef {
            indexes.iter().for_each(|ix| ix.change_expansion_search(ef));
            let (rc, qc) = run_queries_n(d, &d.gt_collection, a.filter_queries, |qi, q| {
                let c = d.q_collection[qi];
                indexes[d.q_tenant[qi] as usize].filtered_search(q, K, |k| d.collection[k as usize] == c).unwrap().keys
            });
            println!("| {label} | collection within tenant index, filtered_search | 1% (10% of the tenant) | ef={ef} | {rc:.4} | {qc:.0} |");
        }
        let t = Instant::now();
        let mut size = 0;
        for (ti, ix) in indexes.iter().enumerate() {
            let p = a.dir.join(format!("tenant-{ti}.usearch"));
            ix.save(p.to_str().unwrap()).unwrap();
            size += dir_size(&p);
        }
        let save_ms = t.elapsed().as_secs_f64() * 1e3;
        drop(indexes);
        let t = Instant::now();
        let reopened: Vec<Index> = (0..TENANTS).map(|ti| Index::restore(a.dir.join(format!("tenant-{ti}.usearch")).to_str().unwrap()).unwrap()).collect();
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let (ef_f, r, qps) = chosen.unwrap_or((0, 0.0, 0.0));
        reopened.iter().for_each(|ix| ix.change_expansion_search(ef_f.max(1)));
        let (r2, _) = run_queries(d, &d.gt_tenant, |qi, q| reopened[d.q_tenant[qi] as usize].search(q, K).unwrap().keys);
        println!();
        println!("| check | name | result | detail |");
        println!("|---|---|---|---|");
        check("save + reopen 10 indexes", (r2 - r).abs() < 0.005, format!("save {save_ms:.0} ms, load {reopen_ms:.0} ms, recall {r2:.4}"));
        print_summary_header();
        println!(
            "| {label} | M={} ef_c={} ef_s={ef_f} | {build_s:.1} | {r:.4} (tenant-scoped) | {qps:.0} | {:.1} | {reopen_ms:.0} | {rss_build} (peak {}) |",
            a.m, a.efc, mb(size), proc_status("VmHWM")
        );
    }
}

// ---------------------------------------------------------------- hnsw_rs

#[cfg(feature = "hnsw")]
mod bench_hnsw {
    use super::*;
    use hnsw_rs::prelude::*;

    fn sweep(a: &Args, d: &Data, h: &Hnsw<f32, DistDot>, label: &str) -> (usize, f64, f64) {
        print_sweep_header("ef_search");
        let mut chosen = None;
        let mut last = (0, 0.0, 0.0);
        for &ef in &a.ef {
            let (r, qps) = run_queries(d, &d.gt, |_, q| {
                h.search(q, K, ef).iter().map(|n| n.d_id as u64).collect()
            });
            println!("| {label} | {ef} | {r:.4} | {qps:.0} |");
            last = (ef, r, qps);
            if r >= 0.95 && chosen.is_none() {
                chosen = Some(last);
            }
        }
        chosen.unwrap_or(last)
    }

    pub fn run(a: &Args, d: &Data) {
        let label = "hnsw_rs 0.3.5".to_string();
        if !a.serve_only {
            // file_dump does not overwrite: start from an empty directory
            let _ = fs::remove_dir_all(&a.dir);
        }
        fs::create_dir_all(&a.dir).unwrap();
        let basename = "index";
        if a.serve_only {
            let rss0 = proc_status("VmRSS");
            let t = Instant::now();
            let mut io = HnswIo::new(&a.dir, basename);
            let h: Hnsw<f32, DistDot> = io.load_hnsw().unwrap();
            println!("reopen {:.0} ms, points {}", t.elapsed().as_secs_f64() * 1e3, h.get_nb_point());
            sweep(a, d, &h, &label);
            println!("\nserving RSS: {} MiB before reopen, {} MiB after the sweep (delta {} MiB)", rss0, proc_status("VmRSS"), proc_status("VmRSS") as i64 - rss0 as i64);
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(a.threads).build().unwrap();
        let max_layer = 16;
        let mut h: Hnsw<f32, DistDot> = Hnsw::new(a.m, d.n + d.nq(), max_layer, a.efc, DistDot {});
        let items: Vec<(&[f32], usize)> = (0..d.n).map(|i| (d.v(i), i)).collect();
        let t = Instant::now();
        pool.install(|| h.parallel_insert_slice(&items));
        let build_s = t.elapsed().as_secs_f64();
        h.set_searching_mode(true);
        let rss_build = proc_status("VmRSS");
        eprintln!("hnsw_rs: built {} in {build_s:.1}s", h.get_nb_point());
        let (ef_f, r, qps) = sweep(a, d, &h, &label);

        print_filter_header();
        let fq = a.filter_queries;
        for &ef in &a.filter_ef {
            let (rt, qt) = run_queries_n(d, &d.gt_tenant, fq, |qi, q| {
                let t = d.q_tenant[qi];
                let f = |id: &usize| d.tenant[*id] == t;
                h.search_filter(q, K, ef, Some(&f)).iter().map(|n| n.d_id as u64).collect()
            });
            println!("| {label} | tenant, search_filter | 10% | ef={ef} | {rt:.4} | {qt:.0} |");
            let (rc, qc) = run_queries_n(d, &d.gt_collection, fq, |qi, q| {
                let c = d.q_collection[qi];
                let f = |id: &usize| d.collection[*id] == c;
                h.search_filter(q, K, ef, Some(&f)).iter().map(|n| n.d_id as u64).collect()
            });
            println!("| {label} | collection, search_filter | 1% | ef={ef} | {rc:.4} | {qc:.0} |");
            let (rd, qd) = run_queries_n(d, &d.gt_doc, fq.min(50), |qi, q| {
                let doc = d.q_doc[qi];
                let f = |id: &usize| doc_of(*id as u64) == doc;
                h.search_filter(q, K, ef, Some(&f)).iter().map(|n| n.d_id as u64).collect()
            });
            println!("| {label} | document, search_filter | 0.02% | ef={ef} | {rd:.4} | {qd:.0} |");
        }

        // persist
        let t = Instant::now();
        let used = h.file_dump(&a.dir, basename).unwrap();
        let save_ms = t.elapsed().as_secs_f64() * 1e3;
        let size = dir_size(&a.dir.join(format!("{used}.hnsw.graph"))) + dir_size(&a.dir.join(format!("{used}.hnsw.data")));
        drop(h);
        let t = Instant::now();
        let mut io = HnswIo::new(&a.dir, &used);
        let mut h: Hnsw<f32, DistDot> = io.load_hnsw().unwrap();
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let (r2, _) = run_queries(d, &d.gt, |_, q| h.search(q, K, ef_f).iter().map(|n| n.d_id as u64).collect());
        println!();
        println!("| check | name | result | detail |");
        println!("|---|---|---|---|");
        check(
            "file_dump + reload",
            h.get_nb_point() == d.n && (r2 - r).abs() < 0.005,
            format!("dump {save_ms:.0} ms as `{used}`, {:.1} MiB; reload {reopen_ms:.0} ms; recall {r2:.4}", mb(size)),
        );
        check("remove", false, "no delete API in hnsw_rs 0.3.5; only a caller-side tombstone filter via search_filter".into());
        // incremental insert after reload
        h.set_searching_mode(false);
        let t = Instant::now();
        for qi in 0..d.nq() {
            h.insert_slice((d.q(qi), d.n + qi));
        }
        let add_us = t.elapsed().as_secs_f64() * 1e6 / d.nq() as f64;
        h.set_searching_mode(true);
        let found = (0..d.nq()).filter(|&qi| h.search(d.q(qi), 1, ef_f).first().map(|n| n.d_id) == Some(d.n + qi)).count();
        check(
            "incremental insert",
            found == d.nq(),
            format!("{} new points, {add_us:.0} us per add (1 thread); found as own top-1: {found}", d.nq()),
        );
        // same id inserted twice
        h.set_searching_mode(false);
        h.insert_slice((d.v(0), 0));
        h.set_searching_mode(true);
        let dup = h.search(d.v(0), 3, ef_f).iter().filter(|n| n.d_id == 0).count();
        check("duplicate id", dup <= 1, format!("id 0 inserted twice, returned {dup} times for its own vector"));
        let hwm = proc_status("VmHWM");
        print_summary_header();
        println!(
            "| {label} | M={} ef_c={} ef_s={ef_f} | {build_s:.1} | {r:.4} | {qps:.0} | {:.1} | {reopen_ms:.0} | {rss_build} (peak {hwm}) |",
            a.m, a.efc, mb(size)
        );
    }
}

// ---------------------------------------------------------------- arroy

#[cfg(feature = "arroy")]
mod bench_arroy {
    use super::*;
    use arroy::distances::Cosine;
    use arroy::{Database, Reader, Writer};
    use heed::{CommitOrAbort, EnvOpenOptions};
    use rand10::SeedableRng as _;
    use roaring::RoaringBitmap;
    use std::num::NonZeroUsize;

    fn open_env(dir: &Path) -> heed::Env {
        unsafe { EnvOpenOptions::new().map_size(16 << 30).open(dir) }.unwrap()
    }

    fn open_db(env: &heed::Env) -> Database<'static, Cosine> {
        let rtxn = env.read_txn().unwrap();
        env.open_databases_and_commit(rtxn, |dbo, rtxn| -> heed::Result<_> {
            dbo.open_database(rtxn, None).map(CommitOrAbort::<_, ()>::Commit)
        })
        .unwrap()
        .unwrap_commit()
        .expect("unnamed database exists")
    }

    fn nns(reader: &Reader<Cosine>, rtxn: &heed::RoTxn, q: &[f32], sk: usize, cand: Option<&RoaringBitmap>) -> Vec<u64> {
        nns_k(reader, rtxn, q, K, sk, cand)
    }

    fn nns_k(reader: &Reader<Cosine>, rtxn: &heed::RoTxn, q: &[f32], k: usize, sk: usize, cand: Option<&RoaringBitmap>) -> Vec<u64> {
        let mut qb = reader.nns(k);
        qb.search_k(NonZeroUsize::new(sk).unwrap());
        if let Some(c) = cand {
            qb.candidates(c);
        }
        qb.by_vector(rtxn, q).unwrap().into_iter().map(|(id, _)| id as u64).collect()
    }

    fn sweep(a: &Args, d: &Data, env: &heed::Env, db: Database<'static, Cosine>, label: &str) -> (f64, f64, usize) {
        let rtxn = env.read_txn().unwrap();
        let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
        let trees = reader.n_trees();
        print_sweep_header("search_k");
        let mut last = (0.0, 0.0, 0);
        let mut chosen = None;
        // default: multiples of K * trees; `--search-k` gives absolute values
        let list: Vec<(usize, String)> = if a.search_k.is_empty() {
            [1, 2, 4, 8].iter().map(|x| (K * trees * x, format!(" (K*trees*{x})"))).collect()
        } else {
            a.search_k.iter().map(|&v| (v, String::new())).collect()
        };
        for (sk, note) in list {
            let (r, qps) = run_queries(d, &d.gt, |_, q| nns(&reader, &rtxn, q, sk, None));
            println!("| {label} | {sk}{note} | {r:.4} | {qps:.0} |");
            last = (r, qps, sk);
            if r >= 0.95 && chosen.is_none() {
                chosen = Some(last);
            }
        }
        chosen.unwrap_or(last)
    }

    pub fn run(a: &Args, d: &Data) {
        let label = format!("arroy 0.9.0 (trees {})", if a.trees == 0 { "auto".to_string() } else { a.trees.to_string() });
        if a.serve_only {
            let rss0 = proc_status("VmRSS");
            let t = Instant::now();
            let env = open_env(&a.dir);
            let db = open_db(&env);
            println!("reopen {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
            sweep(a, d, &env, db, &label);
            println!("\nserving RSS: {} MiB before reopen, {} MiB after the sweep (delta {} MiB)", rss0, proc_status("VmRSS"), proc_status("VmRSS") as i64 - rss0 as i64);
            return;
        }
        let _ = fs::remove_dir_all(&a.dir);
        fs::create_dir_all(&a.dir).unwrap();
        rayon::ThreadPoolBuilder::new().num_threads(a.threads).build_global().ok();
        let env = open_env(&a.dir);
        let wtxn = env.write_txn().unwrap();
        let db: Database<Cosine> = env
            .create_databases_and_commit(wtxn, |dbo, wtxn| -> heed::Result<_> {
                dbo.create_database(wtxn, None).map(CommitOrAbort::<_, ()>::Commit)
            })
            .unwrap()
            .unwrap_commit();
        let mut wtxn = env.write_txn().unwrap();
        let writer = Writer::<Cosine>::new(db, 0, a.dim);
        let t = Instant::now();
        for i in 0..d.n {
            writer.add_item(&mut wtxn, i as u32, d.v(i)).unwrap();
        }
        let mut rng = rand10::rngs::StdRng::seed_from_u64(a.seed);
        let mut b = writer.builder(&mut rng);
        if a.trees > 0 {
            b.n_trees(a.trees);
        }
        b.build(&mut wtxn).unwrap();
        wtxn.commit().unwrap();
        let build_s = t.elapsed().as_secs_f64();
        let rss_build = proc_status("VmRSS");
        eprintln!("arroy: built in {build_s:.1}s");
        let (r, qps, sk) = sweep(a, d, &env, db, &label);

        // filtered: candidates bitmaps (caller builds them from its payload)
        let mut by_tenant = vec![RoaringBitmap::new(); TENANTS as usize];
        let mut by_coll = vec![RoaringBitmap::new(); (TENANTS * COLL_PER_TENANT) as usize];
        for i in 0..d.n {
            by_tenant[d.tenant[i] as usize].insert(i as u32);
            by_coll[d.collection[i] as usize].insert(i as u32);
        }
        print_filter_header();
        {
            let rtxn = env.read_txn().unwrap();
            let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
            let (rt, qt) = run_queries_n(d, &d.gt_tenant, a.filter_queries, |qi, q| nns(&reader, &rtxn, q, sk, Some(&by_tenant[d.q_tenant[qi] as usize])));
            println!("| {label} | tenant | 10% | search_k={sk} | {rt:.4} | {qt:.0} |");
            let (rc, qc) = run_queries_n(d, &d.gt_collection, a.filter_queries, |qi, q| nns(&reader, &rtxn, q, sk, Some(&by_coll[d.q_collection[qi] as usize])));
            println!("| {label} | collection | 1% | search_k={sk} | {rc:.4} | {qc:.0} |");
            let (rd, qd) = run_queries_n(d, &d.gt_doc, a.filter_queries, |qi, q| {
                let doc = d.q_doc[qi] as u32;
                let bm: RoaringBitmap = ((doc * CHUNKS_PER_DOC as u32)..((doc + 1) * CHUNKS_PER_DOC as u32).min(d.n as u32)).collect();
                nns(&reader, &rtxn, q, sk, Some(&bm))
            });
            println!("| {label} | document | 0.02% | search_k={sk} | {rd:.4} | {qd:.0} |");
        }

        // persistence: LMDB env on disk; close and reopen
        env.prepare_for_closing().wait();
        let size = dir_size(&a.dir);
        let t = Instant::now();
        let env = open_env(&a.dir);
        let db = open_db(&env);
        let rtxn = env.read_txn().unwrap();
        let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
        let reopen_ms = t.elapsed().as_secs_f64() * 1e3;
        let (r2, _) = run_queries(d, &d.gt, |_, q| nns(&reader, &rtxn, q, sk, None));
        drop(reader);
        drop(rtxn);
        println!();
        println!("| check | name | result | detail |");
        println!("|---|---|---|---|");
        check("close + reopen", (r2 - r).abs() < 0.005, format!("{:.1} MiB on disk; reopen {reopen_ms:.1} ms; recall {r2:.4}", mb(size)));

        // mutate a copy, so that the saved index stays the freshly built one for --serve-only
        env.prepare_for_closing().wait();
        let mdir = a.dir.with_extension("mutated");
        let _ = fs::remove_dir_all(&mdir);
        fs::create_dir_all(&mdir).unwrap();
        fs::copy(a.dir.join("data.mdb"), mdir.join("data.mdb")).unwrap();
        let env = open_env(&mdir);
        let db = open_db(&env);

        // delete the exact top-1 of every query, then rebuild (incremental)
        let victims: Vec<u32> = d.gt.iter().map(|g| g[0]).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
        let writer = Writer::<Cosine>::new(db, 0, a.dim);
        let t = Instant::now();
        let mut wtxn = env.write_txn().unwrap();
        let mut removed = 0;
        for &k in &victims {
            removed += writer.del_item(&mut wtxn, k).unwrap() as usize;
        }
        let mut rng = rand10::rngs::StdRng::seed_from_u64(a.seed + 1);
        writer.builder(&mut rng).build(&mut wtxn).unwrap();
        wtxn.commit().unwrap();
        let del_s = t.elapsed().as_secs_f64();
        let rtxn = env.read_txn().unwrap();
        let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
        let mut leaked = 0;
        for qi in 0..d.nq() {
            leaked += nns(&reader, &rtxn, d.q(qi), sk, None).iter().filter(|k| victims.binary_search(&(**k as u32)).is_ok()).count();
        }
        drop(reader);
        drop(rtxn);
        check("remove (del_item + build)", removed == victims.len() && leaked == 0, format!("removed {removed}; leaked {leaked}; delete+build {del_s:.1} s"));
        // re-add same ids, then new points; each needs build() before it is searchable
        let t = Instant::now();
        let mut wtxn = env.write_txn().unwrap();
        for &k in &victims {
            writer.add_item(&mut wtxn, k, d.v(k as usize)).unwrap();
        }
        for qi in 0..d.nq() {
            writer.add_item(&mut wtxn, (d.n + qi) as u32, d.q(qi)).unwrap();
        }
        writer.builder(&mut rng).build(&mut wtxn).unwrap();
        wtxn.commit().unwrap();
        let add_s = t.elapsed().as_secs_f64();
        let rtxn = env.read_txn().unwrap();
        let reader = Reader::<Cosine>::open(&rtxn, 0, db).unwrap();
        let found = (0..d.nq()).filter(|&qi| nns(&reader, &rtxn, d.q(qi), sk, None).first() == Some(&((d.n + qi) as u64))).count();
        // recall against the original ground truth: ask for K+1 and drop the query's own new point
        let (r4, _) = run_queries(d, &d.gt, |qi, q| {
            let mut v = nns_k(&reader, &rtxn, q, K + 1, sk, None);
            v.retain(|&k| k != (d.n + qi) as u64);
            v.truncate(K);
            v
        });
        check(
            "re-add + incremental insert (add_item + build)",
            found == d.nq(),
            format!("{} re-added + {} new, add+build {add_s:.1} s; new found as own top-1: {found}; recall after {r4:.4}", victims.len(), d.nq()),
        );
        let hwm = proc_status("VmHWM");
        print_summary_header();
        println!(
            "| {label} | trees={} search_k={sk} | {build_s:.1} | {r:.4} | {qps:.0} | {:.1} | {reopen_ms:.1} | {rss_build} (peak {hwm}) |",
            reader.n_trees(), mb(size)
        );
    }
}

fn main() {
    let a = parse_args();
    let mut d = load_or_make_data(&a);
    data_line(&d, &a);
    if a.serve_only {
        // serving runs need only queries and ground truth
        d.base = Vec::new();
    }
    println!("rss after data load: {} MiB", proc_status("VmRSS"));
    match a.index.as_str() {
        "data" => {}
        #[cfg(feature = "usearch")]
        "usearch" => bench_usearch::run(&a, &d),
        #[cfg(feature = "usearch")]
        "usearch-tenant" => bench_usearch_tenant::run(&a, &d),
        #[cfg(feature = "hnsw")]
        "hnsw" => bench_hnsw::run(&a, &d),
        #[cfg(feature = "arroy")]
        "arroy" => bench_arroy::run(&a, &d),
        other => panic!("unknown or not compiled in: {other}"),
    }
}
