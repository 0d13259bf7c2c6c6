// A collection's documents: status, reason and chunk count, updating live while any is being
// indexed; upload by drag and drop or the file picker, several at once with progress; delete
// and re-ingest.

import { del, get, post, seg, upload } from "./api.js";
import { bytes, confirmDialog, describe, errorBox, fill, h, heading, table, toast, when } from "./dom.js";

// Statuses that change without the user: the list refreshes while any document has one. (A
// document being deleted is not listed at all.)
const LIVE = new Set(["queued", "processing"]);
const PAGE = 100;

export async function documents(main, session, collection, signal) {
  const canWrite = session.scope !== "query-only";
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const summary = h("p", { class: "muted", "aria-live": "polite" });
  const uploads = h("ul", { class: "uploads", "aria-label": "Uploads" });
  let limit = PAGE;
  let timer = null;

  const picker = h("input", { type: "file", multiple: true, accept: ".txt,.md,.markdown,.html,.htm,.pdf", class: "sr-only", id: "files", tabindex: "-1", "aria-label": "Files to upload" });
  const drop = h(
    "div",
    { class: "drop", tabindex: "0", role: "button", "aria-describedby": "drop-hint" },
    h("strong", {}, "Drop files here"),
    h("span", { id: "drop-hint" }, " or press Enter to choose them (text, Markdown, HTML, PDF)"),
  );
  drop.addEventListener("click", () => picker.click());
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      picker.click();
    }
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    send([...e.dataTransfer.files]);
  });
  picker.addEventListener("change", () => {
    send([...picker.files]);
    picker.value = "";
  });

  async function send(files) {
    // A few at a time, so a large drop neither floods the server nor waits on one file.
    const queue = files.map((file) => {
      const bar = h("progress", { max: "1", value: "0", "aria-label": `Upload of ${file.name}` });
      const state = h("span", { class: "muted" }, "waiting");
      uploads.appendChild(h("li", {}, h("span", { class: "name" }, file.name), bar, state));
      return { file, bar, state };
    });
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        fill(item.state, "uploading");
        try {
          await upload(collection, item.file, (f) => (item.bar.value = f));
          item.bar.value = 1;
          fill(item.state, "queued for indexing");
        } catch (err) {
          fill(item.state, h("span", { class: "error-text" }, describe(err)));
        }
        refresh();
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  }

  async function act(doc, what) {
    try {
      if (what === "delete") {
        const ok = await confirmDialog(`Delete ${doc.title}? This cannot be undone.`, "Delete document");
        if (!ok) return;
        await del(`/v1/collections/${seg(collection)}/documents/${seg(doc.id)}`);
        toast(`${doc.title} is being deleted`);
      } else {
        await post(`/v1/collections/${seg(collection)}/documents/${seg(doc.id)}/reindex`);
        toast(`${doc.title} queued for re-ingestion`);
      }
    } catch (err) {
      toast(describe(err), "error");
    }
    refresh();
  }

  function row(d) {
    return h(
      "tr",
      { dataset: { id: d.id, status: d.status } },
      h("th", { scope: "row" }, d.title),
      h("td", {}, h("span", { class: `badge ${d.status}` }, d.status)),
      h("td", { class: "reason" }, d.error || ""),
      h("td", { class: "num" }, String(d.chunk_count)),
      h("td", { class: "num" }, bytes(d.size_bytes)),
      h("td", {}, when(d.updated_at)),
      h(
        "td",
        { class: "actions" },
        canWrite && [
          h("button", { type: "button", class: "small", onclick: () => act(d, "reindex"), "aria-label": `Re-ingest ${d.title}` }, "Re-ingest"),
          h("button", { type: "button", class: "small danger", onclick: () => act(d, "delete"), "aria-label": `Delete ${d.title}` }, "Delete"),
        ],
      ),
    );
  }

  async function refresh() {
    clearTimeout(timer);
    if (signal.aborted) return;
    let page;
    try {
      page = await get(`/v1/collections/${seg(collection)}/documents?limit=${limit}`);
    } catch (err) {
      fill(list, errorBox(err));
      return;
    }
    const docs = page.documents;
    const counts = {};
    for (const d of docs) counts[d.status] = (counts[d.status] || 0) + 1;
    fill(
      summary,
      docs.length
        ? Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ") + (page.next_cursor ? ` (first ${docs.length})` : "")
        : "No documents yet.",
    );
    fill(
      list,
      docs.length
        ? table(`Documents of ${collection}`, ["Title", "Status", "Reason", "Chunks", "Size", "Updated", ""], docs.map(row), {
            hideCaption: true,
            className: "documents",
          })
        : null,
      page.next_cursor &&
        h("button", { type: "button", onclick: () => { limit += PAGE; refresh(); } }, "Show more"),
    );
    // Live while anything is in flight: no reload needed to see a job finish.
    if (docs.some((d) => LIVE.has(d.status))) timer = setTimeout(refresh, 1500);
  }
  signal.addEventListener("abort", () => clearTimeout(timer));

  fill(
    main,
    h("p", { class: "crumbs" }, h("a", { href: "#/collections" }, "Collections"), " / "),
    heading(collection),
    canWrite && h("div", { class: "card" }, picker, drop, uploads),
    summary,
    list,
  );
  await refresh();
}
