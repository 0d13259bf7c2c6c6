// API keys, for tenant and cluster admins: list, create (the secret is shown once), revoke.
// A cluster admin picks the tenant; a tenant admin sees only its own.

import { del, get, post, seg } from "./api.js";
import { confirmDialog, describe, errorBox, field, fill, h, heading, table, toast, when } from "./dom.js";

const SCOPES = ["query-only", "read-write", "tenant-admin", "cluster-admin"];

export async function keys(main, session) {
  if (session.scope !== "tenant-admin" && session.scope !== "cluster-admin") {
    fill(main, heading("API keys"), h("p", { class: "error", role: "alert" }, `Managing keys needs a tenant-admin or cluster-admin key; this one is ${session.scope}.`));
    return;
  }
  const tenant = h("select", { name: "tenant" });
  const name = h("input", { name: "name", required: true, maxlength: "128", autocomplete: "off" });
  const scope = h(
    "select",
    { name: "scope" },
    SCOPES.filter((s) => session.scope === "cluster-admin" || s !== "cluster-admin").map((s) => h("option", { value: s, selected: s === "read-write" }, s)),
  );
  const days = h("input", { type: "number", name: "days", min: "1", max: "36500", placeholder: "never" });
  const secret = h("div", { "aria-live": "polite" });
  const list = h("div", {}, h("p", { class: "muted" }, "Loading…"));
  const form = h(
    "form",
    { class: "card row wrap", "aria-label": "Create a key" },
    field("Name", name),
    field("Scope", scope),
    field("Expires after (days)", days),
    h("button", { type: "submit", class: "primary" }, "Create key"),
  );

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { name: name.value, scope: scope.value };
    if (days.value) body.expires_in_secs = Number(days.value) * 86400;
    try {
      const issued = await post(`/v1/tenants/${seg(tenant.value)}/keys`, body);
      const value = h("input", { readonly: true, value: issued.key, class: "mono", "aria-label": "The new key" });
      fill(
        secret,
        h(
          "div",
          { class: "card secret", role: "alert" },
          h("p", {}, h("strong", {}, `Key ${issued.name || name.value} created. `), "Copy it now: it is shown only this once."),
          h("div", { class: "row" }, value, h("button", { type: "button", onclick: async () => { value.select(); try { await navigator.clipboard.writeText(issued.key); toast("Copied"); } catch { toast("Select the key and copy it", "error"); } } }, "Copy")),
        ),
      );
      value.select();
      form.reset();
      await load();
    } catch (err) {
      toast(describe(err), "error");
    }
  });

  async function revoke(k) {
    if (!(await confirmDialog(`Revoke the key ${k.name} (${k.prefix}…)? Clients using it stop working within seconds.`, "Revoke key"))) return;
    try {
      await del(`/v1/tenants/${seg(tenant.value)}/keys/${seg(k.id)}`);
      toast(`Key ${k.name} revoked`);
      await load();
    } catch (err) {
      toast(describe(err), "error");
    }
  }

  async function load() {
    try {
      const all = await get(`/v1/tenants/${seg(tenant.value)}/keys`);
      const rows = all.map((k) =>
        h(
          "tr",
          { dataset: { id: k.id } },
          h("th", { scope: "row" }, k.name, k.id === session.key_id ? [" ", h("span", { class: "badge" }, "this session")] : null),
          h("td", { class: "mono" }, `${k.prefix}…`),
          h("td", {}, k.scope),
          h("td", {}, when(k.created_at)),
          h("td", {}, k.expires_at ? when(k.expires_at) : "never"),
          h("td", {}, k.revoked_at ? h("span", { class: "badge failed" }, "revoked") : h("span", { class: "badge indexed" }, "active")),
          h("td", { class: "actions" }, !k.revoked_at && h("button", { type: "button", class: "small danger", onclick: () => revoke(k), "aria-label": `Revoke key ${k.name}` }, "Revoke")),
        ),
      );
      fill(list, table("API keys", ["Name", "Prefix", "Scope", "Created", "Expires", "State", ""], rows, { hideCaption: true }));
    } catch (err) {
      fill(list, errorBox(err));
    }
  }

  if (session.scope === "cluster-admin") {
    try {
      const tenants = await get("/v1/tenants");
      fill(tenant, tenants.map((t) => h("option", { value: t.name, selected: t.name === session.tenant }, t.name)));
    } catch (err) {
      fill(main, heading("API keys"), errorBox(err));
      return;
    }
  } else {
    fill(tenant, h("option", { value: session.tenant }, session.tenant));
    tenant.disabled = true;
  }
  tenant.addEventListener("change", load);
  fill(main, heading("API keys"), h("div", { class: "row" }, field("Tenant", tenant)), form, secret, list);
  await load();
}
