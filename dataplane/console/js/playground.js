// The retrieval playground: a query with k, mode and a metadata filter; each hit with its
// scores, document, page or heading, and its text with the query's terms marked; an answer
// streamed with numbered citations linked to the hits, and the exact prompt the LLM was sent.

import { events, get, post } from "./api.js";
import { describe, errorBox, field, fill, h, heading, num } from "./dom.js";

// Words too common to be worth marking.
const STOP = new Set("the and for are was were has have had how what when where which who why with from that this these those can could does did not but its into than then them they their there about after before over under between been being will would should may might also such very just only other some any all each more most".split(" "));

/** The query's words worth marking: 3 letters or more and not a stop word, longest first. */
function terms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]{3,}/gu) || [];
  return [...new Set(words)].filter((w) => !STOP.has(w)).sort((a, b) => b.length - a.length);
}

/** `text` with every whole-word occurrence of `words` wrapped in <mark>, as DOM nodes. */
export function marked(text, words) {
  if (!words.length) return [text];
  const escaped = words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const re = new RegExp(`(?<![\\p{L}\\p{N}])(${escaped.join("|")})(?![\\p{L}\\p{N}])`, "giu");
  return text.split(re).map((part, i) => (i % 2 ? h("mark", {}, part) : part));
}

function where(hit) {
  const p = hit.provenance;
  if (!p) return `chunk ${hit.chunk}`;
  const parts = [];
  if (p.page) parts.push(`page ${p.page}`);
  if (p.headings && p.headings.length) parts.push(p.headings.join(" › "));
  parts.push(`chunk ${hit.chunk}`);
  return parts.join(" · ");
}

function hitCard(hit, n, words) {
  return h(
    "li",
    { class: "hit card", id: `hit-${n}`, tabindex: "-1" },
    h(
      "div",
      { class: "hit-head" },
      h("span", { class: "rank" }, `[${n}]`),
      h("strong", { class: "title" }, hit.title),
      h("span", { class: "muted where" }, where(hit)),
    ),
    h(
      "dl",
      { class: "scores" },
      h("dt", {}, "score"), h("dd", {}, num(hit.score, 4)),
      h("dt", {}, "dense"), h("dd", {}, num(hit.dense_score, 4)),
      h("dt", {}, "keyword"), h("dd", {}, num(hit.keyword_score, 4)),
      hit.rerank_score !== null && hit.rerank_score !== undefined && [h("dt", {}, "rerank"), h("dd", {}, num(hit.rerank_score, 4))],
    ),
    h("p", { class: "chunk" }, marked(hit.text, words)),
  );
}

/** The answer's text with `[n]` turned into links to hit n. */
function cited(text, count) {
  return text.split(/(\[\d+\])/).map((part) => {
    const m = /^\[(\d+)\]$/.exec(part);
    const n = m && Number(m[1]);
    if (!n || n > count) return part;
    return h("a", { href: `#hit-${n}`, class: "cite", onclick: (e) => { e.preventDefault(); const t = document.getElementById(`hit-${n}`); t.scrollIntoView({ block: "nearest" }); t.focus(); } }, part);
  });
}

export async function playground(main, session, signal) {
  const collection = h("select", { name: "collection", required: true });
  const query = h("textarea", { name: "query", rows: "2", required: true, maxlength: "4096" });
  const k = h("input", { type: "number", name: "k", min: "1", max: "100", value: "5" });
  const mode = h("select", { name: "mode" }, h("option", { value: "" }, "server default"), ["dense", "keyword", "hybrid"].map((m) => h("option", { value: m }, m)));
  const filter = h("textarea", { name: "filter", rows: "1", placeholder: '{"lang": "en"}', spellcheck: "false" });
  const searchBtn = h("button", { type: "submit", class: "primary", value: "search" }, "Search");
  const answerBtn = h("button", { type: "submit", value: "answer" }, "Answer");
  const status = h("p", { class: "muted", "aria-live": "polite", id: "timing" });
  const answer = h("section", { class: "answer", "aria-label": "Answer", "aria-live": "polite" });
  const results = h("div", {});
  const form = h(
    "form",
    { class: "card playground", "aria-label": "Search or ask" },
    h("div", { class: "row wrap" }, field("Collection", collection), field("Results (k)", k), field("Mode", mode)),
    field("Query", query),
    field("Metadata filter (JSON, optional)", filter, 'For example {"lang": "en"} or {"year": {"gte": 2020}}'),
    h("div", { class: "row" }, searchBtn, answerBtn),
  );
  let running = null;

  function request() {
    const body = { collection: collection.value, query: query.value, top_k: Number(k.value) || 5 };
    if (mode.value) body.mode = mode.value;
    if (filter.value.trim()) {
      let f;
      try {
        f = JSON.parse(filter.value);
      } catch (e) {
        throw new Error(`the filter is not JSON: ${e.message}`);
      }
      if (typeof f !== "object" || f === null || Array.isArray(f)) throw new Error("the filter must be a JSON object");
      body.filter = f;
    }
    return body;
  }

  function showHits(hits, words) {
    fill(
      results,
      hits.length ? h("ol", { class: "hits", "aria-label": "Retrieved chunks" }, hits.map((hit, i) => hitCard(hit, i + 1, words))) : h("p", { class: "muted" }, "No hits."),
    );
  }

  async function search(body) {
    const t0 = performance.now();
    const resp = await post("/v1/search", body);
    const api = performance.now() - t0;
    showHits(resp.hits, terms(body.query));
    const shown = performance.now() - t0;
    status.dataset.total = shown.toFixed(1);
    status.dataset.api = api.toFixed(1);
    fill(status, `${resp.hits.length} hits in ${shown.toFixed(0)} ms (the API call took ${api.toFixed(0)} ms)`);
  }

  async function ask(body, aborted) {
    const text = h("div", { class: "answer-text" });
    const prompt = h("details", { class: "prompt" }, h("summary", {}, "Prompt sent to the LLM"));
    const meta = h("p", { class: "muted answer-meta" }, "Retrieving and generating…");
    fill(answer, h("h2", {}, "Answer"), text, meta, prompt);
    let raw = "";
    let count = 0;
    const t0 = performance.now();
    for await (const ev of events("/v1/query", { ...body, stream: true, include_prompt: true }, aborted)) {
      if (ev.event === "prompt") {
        count = ev.data.sources.length;
        showHits(ev.data.sources, terms(body.query));
        for (const m of ev.data.messages) prompt.appendChild(h("div", { class: "message" }, h("h3", {}, m.role), h("pre", {}, m.content)));
      } else if (ev.event === "delta") {
        if (!raw) fill(meta, `first token after ${(performance.now() - t0).toFixed(0)} ms…`);
        raw += ev.data.text;
        fill(text, raw);
      } else if (ev.event === "done") {
        const d = ev.data;
        if (d.generation === "not_configured") {
          // No prompt was sent; every retrieved source is in `sources`, in order.
          showHits(d.sources, terms(body.query));
          fill(text, h("p", { class: "muted" }, "Generation is not configured on this server; these are the sources."));
        } else {
          fill(text, cited(d.answer || raw, count));
        }
        fill(meta, [d.model && `${d.model}`, d.usage && `${d.usage.prompt_tokens} prompt + ${d.usage.completion_tokens} completion tokens`, `cited ${d.cited.length ? d.cited.map((n) => `[${n}]`).join(" ") : "nothing"}`, `${(performance.now() - t0).toFixed(0)} ms`].filter(Boolean).join(" · "));
      } else if (ev.event === "error") {
        fill(meta, h("span", { class: "error-text", role: "alert" }, describe({ message: ev.data.error, requestId: ev.data.request_id })));
      }
    }
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const which = e.submitter ? e.submitter.value : "search";
    if (running) running.abort();
    running = new AbortController();
    signal.addEventListener("abort", () => running && running.abort(), { once: true });
    let body;
    try {
      body = request();
    } catch (err) {
      fill(results, errorBox(err));
      return;
    }
    searchBtn.disabled = answerBtn.disabled = true;
    try {
      if (which === "answer") {
        fill(results);
        await ask(body, running.signal);
      } else {
        fill(answer);
        await search(body);
      }
    } catch (err) {
      fill(results, errorBox(err));
    } finally {
      searchBtn.disabled = answerBtn.disabled = false;
    }
  });

  fill(main, heading("Retrieval playground"), form, status, answer, results);
  try {
    const list = await get("/v1/collections");
    fill(collection, list.map((c) => h("option", { value: c.name }, c.name)));
    if (!list.length) fill(results, h("p", { class: "muted" }, "Create a collection and upload documents first."));
    const wanted = new URLSearchParams(location.hash.split("?")[1] || "").get("collection");
    if (wanted) collection.value = wanted;
  } catch (err) {
    fill(results, errorBox(err));
  }
  query.focus();
}
