// The console's shell: finds out whether this browser is signed in, then routes `#/…` to a
// page. Each page gets the session and an AbortSignal that fires when the reader leaves it, so
// live refreshes stop.

import { setCsrf } from "./api.js";
import { collections } from "./collections.js";
import { documents } from "./documents.js";
import { describe, fill, h, toast } from "./dom.js";
import { health } from "./health.js";
import { keys } from "./keys.js";
import { playground } from "./playground.js";
import { signIn } from "./signin.js";
import { usage } from "./usage.js";

const main = document.getElementById("main");
const top = document.getElementById("top");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
const signOutBtn = document.getElementById("signout");

const PAGES = [
  ["collections", "Collections"],
  ["playground", "Playground"],
  ["keys", "Keys"],
  ["health", "Health"],
  ["usage", "Usage"],
];

let session = null;
let leaving = null;

function signedIn(s) {
  session = s;
  setCsrf(s.csrf_token || null);
  top.hidden = false;
  signOutBtn.hidden = s.auth_disabled;
  fill(who, `${s.tenant} · ${s.scope}`);
  fill(
    nav,
    h(
      "ul",
      {},
      PAGES.filter(([id]) => id !== "keys" || s.scope === "tenant-admin" || s.scope === "cluster-admin").map(([id, label]) =>
        h("li", {}, h("a", { href: `#/${id}`, dataset: { page: id } }, label)),
      ),
    ),
  );
  route();
}

function signedOut(reason) {
  session = null;
  setCsrf(null);
  if (leaving) leaving.abort();
  top.hidden = true;
  signIn(main, (s) => {
    if (!location.hash || location.hash === "#/") location.hash = "#/collections";
    signedIn(s);
  }, reason);
}

async function route() {
  // The skip link's target is not a page.
  if (!session || location.hash === "#main") return;
  if (leaving) leaving.abort();
  leaving = new AbortController();
  const signal = leaving.signal;
  const [path] = (location.hash.replace(/^#\/?/, "") || "collections").split("?");
  const [page, arg] = path.split("/").map(decodeURIComponent);
  for (const a of nav.querySelectorAll("a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  try {
    if (page === "collections" && arg) await documents(main, session, arg, signal);
    else if (page === "collections") await collections(main, session);
    else if (page === "playground") await playground(main, session, signal);
    else if (page === "keys") await keys(main, session);
    else if (page === "health") await health(main, session, signal);
    else if (page === "usage") await usage(main, session, signal);
    else fill(main, h("h1", {}, "Not found"), h("p", {}, h("a", { href: "#/collections" }, "Go to collections")));
  } catch (err) {
    fill(main, h("div", { class: "error", role: "alert" }, describe(err)));
  }
  // Focus moves to the new page (its title, unless the page put it on a control), so that
  // keyboard and screen-reader users start there rather than on the link they followed.
  const title = main.querySelector("h1");
  if (title && !main.contains(document.activeElement)) title.focus();
}

signOutBtn.addEventListener("click", async () => {
  try {
    const resp = await fetch("/ui/session", {
      method: "DELETE",
      headers: session && session.csrf_token ? { "x-csrf-token": session.csrf_token } : {},
      credentials: "same-origin",
    });
    if (!resp.ok && resp.status !== 401) throw new Error(`sign-out failed (${resp.status})`);
    signedOut("Signed out.");
  } catch (err) {
    toast(describe(err), "error");
  }
});

window.addEventListener("hashchange", route);
window.addEventListener("signed-out", (e) => {
  if (session) signedOut((e.detail && e.detail.message) || "Your session ended; sign in again.");
});

(async () => {
  try {
    const resp = await fetch("/ui/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (resp.ok) signedIn(await resp.json());
    else signedOut(null);
  } catch (err) {
    signedOut(`Cannot reach the server: ${err.message}`);
  }
})();
