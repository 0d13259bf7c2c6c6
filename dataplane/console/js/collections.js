// Collections: the list with document counts by status, creation and deletion.

import { del, get, post, seg } from "./api.js";
import { confirmDialog, errorBox, field, fill, h, heading, num, table, toast, describe } from "./dom.js";

const STATUSES = ["indexed", "queued", "processing", "failed", "deleting"];

export async function collections(main, session) {
  const canWrite = session.scope !== "query-only";
  const list = h("div", { "aria-live": "polite" }, h("p", { class: "muted" }, "Loading…"));
  const name = h("input", {
    name: "name",
    required: true,
    pattern: "[a-z0-9][a-z0-9_\\-]{0,63}",
    autocomplete: "off",
  });
  const description = h("input", { name: "description", autocomplete: "off" });
  const create = h(
    "form",
    { class: "card row wrap", "aria-label": "Create a collection" },
    field("New collection", name, "a-z, 0-9, - and _; up to 64"),
    field("Description", description),
    h("button", { type: "submit", class: "primary" }, "Create"),
  );
  create.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      await post("/v1/collections", { name: name.value, description: description.value });
      toast(`Collection ${name.value} created`);
      create.reset();
      await load();
    } catch (err) {
      toast(describe(err), "error");
      name.focus();
    }
  });

  async function remove(c) {
    const ok = await confirmDialog(
      `Delete the collection ${c.name} and all ${c.documents?.total ?? ""} of its documents? This cannot be undone.`,
      "Delete collection",
    );
    if (!ok) return;
    try {
      await del(`/v1/collections/${seg(c.name)}`);
      toast(`Collection ${c.name} deleted`);
      await load();
    } catch (err) {
      toast(describe(err), "error");
    }
  }

  async function load() {
    let items;
    try {
      const all = await get("/v1/collections");
      items = await Promise.all(all.map((c) => get(`/v1/collections/${seg(c.name)}`)));
    } catch (err) {
      fill(list, errorBox(err));
      return;
    }
    if (!items.length) {
      fill(list, h("p", { class: "muted" }, "No collections yet."));
      return;
    }
    const rows = items.map((c) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, h("a", { href: `#/collections/${seg(c.name)}` }, c.name)),
        h("td", {}, c.description || ""),
        h("td", { class: "num" }, num(c.documents?.total ?? 0, 0)),
        h(
          "td",
          {},
          STATUSES.filter((s) => c.documents?.[s]).map((s) =>
            h("span", { class: `badge ${s}` }, `${c.documents[s]} ${s}`),
          ),
        ),
        h("td", { class: "num" }, num(c.points, 0)),
        h(
          "td",
          { class: "actions" },
          canWrite &&
            h(
              "button",
              { type: "button", class: "danger small", onclick: () => remove(c), "aria-label": `Delete collection ${c.name}` },
              "Delete",
            ),
        ),
      ),
    );
    fill(list, table("Collections", ["Name", "Description", "Documents", "Status", "Chunks", ""], rows, { hideCaption: true }));
  }

  fill(main, heading("Collections"), canWrite && create, list);
  await load();
}
