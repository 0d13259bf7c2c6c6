// Health, from this process's own metrics (`/metrics`), refreshed every few seconds: queue
// depths, the embedding queue's wait, LLM endpoints with their state and time to first token,
// cache hit rates, and, for cluster admins, the recent error responses.

import { get } from "./api.js";
import { errorBox, fill, h, heading, num, table, when } from "./dom.js";

const REFRESH_MS = 3000;

/** Samples of the Prometheus/OpenMetrics text: `{name, labels, value}`. */
export function parseMetrics(text) {
  const out = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*?)\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, "$1");
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

const pick = (samples, name) => samples.filter((s) => s.name === name);
const group = (samples, label) => {
  const g = {};
  for (const s of samples) (g[s.labels[label] || ""] ||= []).push(s);
  return g;
};

/** Mean and 95th percentile (bucket upper bound) of one histogram's samples. */
function histogram(samples, base) {
  const count = samples.find((s) => s.name === `${base}_count`)?.value || 0;
  const sum = samples.find((s) => s.name === `${base}_sum`)?.value || 0;
  const buckets = samples
    .filter((s) => s.name === `${base}_bucket`)
    .map((s) => ({ le: s.labels.le === "+Inf" ? Infinity : Number(s.labels.le), n: s.value }))
    .sort((a, b) => a.le - b.le);
  const p95 = buckets.find((b) => b.n >= 0.95 * count)?.le;
  return { count, mean: count ? sum / count : null, p95: count ? p95 : null };
}

const ms = (s) => (s === null || s === undefined ? "–" : s === Infinity ? "> top bucket" : `${num(s * 1000, s < 0.1 ? 1 : 0)} ms`);


function render(samples) {
  const queues = group(pick(samples, "ragplane_queue_depth"), "queue");
  const inFlight = group(pick(samples, "ragplane_queue_in_flight"), "queue");
  const dead = group(pick(samples, "ragplane_queue_dead_letter"), "queue");
  const queueRows = Object.keys(queues).sort().map((q) => [q, String(queues[q][0].value), String(inFlight[q]?.[0].value ?? 0), String(dead[q]?.[0].value ?? 0)]);

  const wait = group(samples.filter((s) => s.name.startsWith("ragplane_embed_queue_wait_seconds")), "class");
  const depth = group(pick(samples, "ragplane_embed_queue_depth"), "class");
  const embedRows = Object.keys({ ...wait, ...depth }).sort().map((c) => {
    const hist = histogram(wait[c] || [], "ragplane_embed_queue_wait_seconds");
    return [c, String(depth[c]?.[0].value ?? 0), String(hist.count), ms(hist.mean), ms(hist.p95)];
  });

  const healthy = group(pick(samples, "ragplane_llm_endpoint_healthy"), "endpoint");
  const ttft = group(samples.filter((s) => s.name.startsWith("ragplane_llm_time_to_first_token_seconds")), "endpoint");
  const outstanding = group(pick(samples, "ragplane_llm_outstanding_requests"), "endpoint");
  const llmRows = Object.keys(healthy).sort().map((e) => {
    const hist = histogram(ttft[e] || [], "ragplane_llm_time_to_first_token_seconds");
    const up = healthy[e][0].value === 1;
    return [e, h("span", { class: `badge ${up ? "indexed" : "failed"}` }, up ? "healthy" : "ejected"), String(outstanding[e]?.[0].value ?? 0), String(hist.count), ms(hist.mean), ms(hist.p95)];
  });

  const cache = {};
  for (const s of pick(samples, "ragplane_cache_requests_total")) {
    const key = `${s.labels.cache} (${s.labels.layer})`;
    cache[key] ||= { hit: 0, total: 0 };
    cache[key].total += s.value;
    if (s.labels.result === "hit") cache[key].hit += s.value;
  }
  const cacheRows = Object.keys(cache).sort().map((k) => [k, String(cache[k].total), cache[k].total ? `${num((100 * cache[k].hit) / cache[k].total, 1)} %` : "–"]);

  let requests = 0;
  let errors = 0;
  for (const s of pick(samples, "ragplane_http_requests_total")) {
    requests += s.value;
    if (Number(s.labels.status) >= 500) errors += s.value;
  }
  return [
    h("p", { class: "muted" }, `This instance has served ${requests} requests, ${errors} of them with a server error. Updated ${new Date().toLocaleTimeString()}.`),
    h("div", { class: "grid" },
      table("Job queues", ["Queue", "Depth", "In flight", "Dead letters"], queueRows),
      table("Embedding queue (since start)", ["Class", "Waiting", "Requests", "Mean wait", "p95 wait"], embedRows),
      table("LLM endpoints (time to first token since start)", ["Endpoint", "State", "Outstanding", "Requests", "Mean", "p95"], llmRows, { wide: true }),
      table("Caches", ["Cache", "Lookups", "Hit rate"], cacheRows),
    ),
  ];
}

export async function health(main, session, signal) {
  const body = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const errors = h("div", {});
  let timer = null;
  async function refresh() {
    try {
      const resp = await fetch("/metrics", { credentials: "same-origin" });
      if (!resp.ok) throw new Error(`/metrics answered ${resp.status}`);
      fill(body, render(parseMetrics(await resp.text())));
    } catch (err) {
      fill(body, errorBox(err));
    }
    if (session.scope === "cluster-admin") {
      try {
        const recent = await get("/v1/admin/errors");
        fill(errors, table("Recent error responses (newest first)", ["Time", "Status", "Type", "Message", "Request id"], recent.map((e) => [when(e.at), String(e.status), e.type, e.error, e.request_id || ""])));
      } catch (err) {
        fill(errors, errorBox(err));
      }
    }
    if (!signal.aborted) timer = setTimeout(refresh, REFRESH_MS);
  }
  signal.addEventListener("abort", () => clearTimeout(timer));
  fill(main, heading("Health"), body, errors);
  await refresh();
}
