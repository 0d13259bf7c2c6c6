// Sign-in with an API key. The key goes to the server once; the browser keeps only an
// HttpOnly session cookie, which scripts cannot read.

import { ApiError } from "./api.js";
import { describe, fill, field, h, heading } from "./dom.js";

export function signIn(main, onSignedIn, reason) {
  const key = h("input", {
    type: "password",
    name: "key",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const message = h("p", { class: "error", role: "alert", hidden: !reason }, reason || "");
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    field("API key", key, "A ragplane API key, for example rp_…. It is not stored in the browser."),
    message,
    button,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    button.disabled = true;
    message.hidden = true;
    try {
      const resp = await fetch("/ui/session", {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ key: key.value }),
        credentials: "same-origin",
      });
      const body = await resp.json().catch(() => null);
      if (!resp.ok) throw new ApiError(resp.status, body);
      key.value = "";
      onSignedIn(body);
    } catch (err) {
      fill(message, describe(err));
      message.hidden = false;
      key.focus();
    } finally {
      button.disabled = false;
    }
  });
  const title = heading("Sign in to ragplane");
  title.id = "signin-title";
  fill(main, h("div", { class: "center" }, title, form));
  key.focus();
}
