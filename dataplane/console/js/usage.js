// Usage: queries and LLM tokens of this tenant over the last hour (per minute) or day (per
// hour), as charts, with totals per key and per collection.

import { get } from "./api.js";
import { bars } from "./chart.js";
import { errorBox, fill, h, heading, table } from "./dom.js";

function totals(caption, first, items) {
  const rows = items.map((i) => [i.name ? `${i.name} (${i.id})` : i.id, String(i.queries), String(i.llm_tokens)]);
  return table(caption, [first, "Queries", "LLM tokens"], rows, { numeric: [1, 2] });
}

export async function usage(main, session, signal) {
  const windowSel = h("div", { class: "row", role: "group", "aria-label": "Window" });
  const body = h("div", { "aria-live": "polite" });
  let current = "hour";
  let timer = null;

  async function load() {
    clearTimeout(timer);
    fill(windowSel, ["hour", "day"].map((w) => h("button", { type: "button", "aria-pressed": String(w === current), onclick: () => { current = w; load(); } }, `Last ${w}`)));
    try {
      const r = await get(`/v1/usage?window=${current}`);
      const labels = r.series.map((b) => {
        const d = new Date(b.start);
        return current === "hour" ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleString([], { weekday: "short", hour: "2-digit" });
      });
      fill(
        body,
        h("p", {}, `${r.total.queries} queries and ${r.total.llm_tokens} LLM tokens in the last ${current} (tenant ${session.tenant}).`),
        h("figure", {}, h("figcaption", {}, `Queries per ${current === "hour" ? "minute" : "hour"}`), bars(r.series.map((b) => b.queries), labels, "Queries")),
        h("figure", {}, h("figcaption", {}, `LLM tokens per ${current === "hour" ? "minute" : "hour"}`), bars(r.series.map((b) => b.llm_tokens), labels, "LLM tokens")),
        h("div", { class: "grid" }, totals("Per key", "Key", r.keys), totals("Per collection", "Collection", r.collections)),
      );
    } catch (err) {
      fill(body, errorBox(err));
    }
    if (!signal.aborted) timer = setTimeout(load, 15000);
  }
  signal.addEventListener("abort", () => clearTimeout(timer));
  fill(main, heading("Usage"), windowSel, body);
  await load();
}
