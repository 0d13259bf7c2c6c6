// Building the page without HTML strings: every value from the server goes in as text, so a
// document title or chunk can never become markup.

/** An element: `h("button", {class: "x", onclick: f}, "Label", child, [more])`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      el.className = value;
    } else if (name === "dataset") {
      Object.assign(el.dataset, value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** Replaces an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
/** A labelled control: the label names it for screen readers and clicks focus it. */
export function field(label, control, hint) {
  if (!control.id) control.id = `f${++ids}`;
  const hintEl = hint ? h("span", { class: "hint", id: `${control.id}-hint` }, hint) : null;
  if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
  return h("div", { class: "field" }, h("label", { for: control.id }, label), control, hintEl);
}

/** A short message in the live region. */
export function toast(message, kind = "info") {
  const box = document.getElementById("toast");
  const item = h("div", { class: `toast ${kind}` }, message);
  box.appendChild(item);
  setTimeout(() => item.remove(), kind === "error" ? 8000 : 4000);
}

/** An error shown where the content would be. */
export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, describe(err));
}

/** What went wrong, in words, with the request id when there is one. */
export function describe(err) {
  if (err && err.requestId) return `${err.message} (request ${err.requestId})`;
  return err && err.message ? err.message : String(err);
}

/** A time as the reader's locale shows it. */
export function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** A byte count with a unit. */
export function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let v = Number(n) || 0;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v : v.toFixed(1)} ${units[u]}`;
}

/** A number with at most `digits` decimals; a dash for none. */
export function num(v, digits = 3) {
  if (v === null || v === undefined) return "–";
  return Number(v).toFixed(digits).replace(/\.?0+$/, "") || "0";
}

/** A page heading that takes focus, so keyboard and screen-reader users land on it. */
export function heading(text) {
  return h("h1", { tabindex: "-1", class: "page-title" }, text);
}

/** Asks before something that cannot be undone; resolves true when confirmed. */
export function confirmDialog(message, action) {
  return new Promise((resolve) => {
    const dialog = h("dialog", { class: "confirm", "aria-labelledby": "confirm-text" });
    const done = (ok) => {
      dialog.close();
      dialog.remove();
      resolve(ok);
    };
    fill(
      dialog,
      h("p", { id: "confirm-text" }, message),
      h(
        "div",
        { class: "row end" },
        h("button", { type: "button", onclick: () => done(false) }, "Cancel"),
        h("button", { type: "button", class: "danger", onclick: () => done(true) }, action),
      ),
    );
    dialog.addEventListener("cancel", (e) => {
      e.preventDefault();
      done(false);
    });
    document.body.appendChild(dialog);
    dialog.showModal();
    dialog.querySelector("button").focus();
  });
}

/**
 * A captioned table: `head` names the columns; each row is a list of cells, the first a row
 * header, or a `<tr>` built by the caller (for rows with their own attributes or controls);
 * "none" when there are no rows. `wide` spans a grid's columns; `numeric` lists the columns to
 * right-align; `hideCaption` leaves the caption to screen readers; `className` classes the table.
 */
export function table(caption, head, rows, { wide = false, numeric = [], hideCaption = false, className = null } = {}) {
  const cell = (c, i) => (i === 0 ? h("th", { scope: "row" }, c) : h("td", { class: numeric.includes(i) ? "num" : null }, c));
  const row = (r) => (r instanceof Node ? r : h("tr", {}, r.map(cell)));
  return h(
    "div",
    { class: wide ? "table-wrap wide" : "table-wrap" },
    h(
      "table",
      { class: className },
      h("caption", { class: hideCaption ? "sr-only" : null }, caption),
      h("thead", {}, h("tr", {}, head.map((t) => h("th", { scope: "col" }, t)))),
      h(
        "tbody",
        {},
        rows.length ? rows.map(row) : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "none")),
      ),
    ),
  );
}
