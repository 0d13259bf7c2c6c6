// Usage: queries and LLM tokens of this tenant over the last hour (per minute) or day (per
// hour), as charts, with totals per key and per collection.

import { get } from "./api.js";
import { bars } from "./chart.js";
import { errorBox, fill, h, heading } from "./dom.js";

function totals(caption, first, items) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, [first, "Queries", "LLM tokens"].map((t) => h("th", { scope: "col" }, t)))),
      h("tbody", {}, items.length ? items.map((i) => h("tr", {}, h("th", { scope: "row" }, i.name ? `${i.name} (${i.id})` : i.id), h("td", { class: "num" }, String(i.queries)), h("td", { class: "num" }, String(i.llm_tokens)))) : h("tr", {}, h("td", { colspan: "3", class: "muted" }, "none"))),
    ),
  );
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
        h("div", { class: "grid" }, totals("Per key", "Key", r.keys.map((k) => ({ ...k }))), totals("Per collection", "Collection", r.collections)),
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
