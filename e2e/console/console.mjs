// Drives the ragplane web console in a real browser (Debian's chromium through playwright-core)
// against a running `ragplane serve`, as a user would. Run by e2e/tests/console.rs, which
// starts the server and passes:
//   CONSOLE_URL     the server's base URL
//   ADMIN_KEY       a cluster-admin key of the default tenant
//   OTHER_KEY       a key of another tenant
//   CORPUS          a directory of documents to upload (examples/corpus)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   SCREENSHOTS     where to write a screenshot of each page (optional)
// It prints one line per step and a FIGURES line, and exits non-zero at the first failure.

import { readdirSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const base = process.env.CONSOLE_URL;
const adminKey = process.env.ADMIN_KEY;
const otherKey = process.env.OTHER_KEY;
const corpus = process.env.CORPUS;
const shots = process.env.SCREENSHOTS;
const collection = "console-test";
const figures = {};

function check(ok, message) {
  if (!ok) throw new Error(message);
}

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  console.log(`ok: ${name} (${Date.now() - t0} ms)`);
}

async function shot(page, name, fullPage = true) {
  if (shots) await page.screenshot({ path: join(shots, `${name}.png`), fullPage });
}

/** Every form control has a label or an accessible name; none is left unnamed. */
async function labelled(page, where) {
  const unnamed = await page.evaluate(() =>
    [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
      .filter((el) => el.offsetParent !== null || el.type === "file")
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
      .map((el) => el.outerHTML.slice(0, 80)),
  );
  check(unnamed.length === 0, `${where}: controls without a label: ${unnamed.join(", ")}`);
}

/** Nothing is wider than the window. */
async function fits(page, where) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  check(scroll <= width, `${where}: the page is ${scroll}px wide in a ${width}px window`);
}

async function signIn(page, key) {
  await page.goto(`${base}/ui`);
  await page.getByLabel("API key").fill(key);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("navigation").waitFor();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: ["--disable-background-networking", "--no-sandbox", "--disable-dev-shm-usage"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
page.setDefaultTimeout(20000);
const consoleErrors = [];
page.on("pageerror", (e) => consoleErrors.push(String(e)));

try {
  await step("first load: the sign-in page, and what it weighs", async () => {
    const cdp = await context.newCDPSession(page);
    await cdp.send("Network.enable");
    let transferred = 0;
    cdp.on("Network.loadingFinished", (e) => (transferred += e.encodedDataLength));
    await page.goto(`${base}/ui`, { waitUntil: "networkidle" });
    await page.getByLabel("API key").waitFor();
    figures.first_load_bytes = transferred;
    check(transferred < 100 * 1024, `the first load transferred ${transferred} bytes, over 100 KB`);
    await labelled(page, "sign-in");
    await shot(page, "sign-in");
  });

  await step("a wrong key is refused with a readable message", async () => {
    await page.getByLabel("API key").fill("rp_not_a_real_key");
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await alert.filter({ hasText: "unknown or revoked API key" }).waitFor();
  });

  await step("sign in; the session cookie is HttpOnly and SameSite=Strict", async () => {
    await signIn(page, adminKey);
    const cookie = (await context.cookies()).find((c) => c.name === "ragplane_session");
    check(cookie && cookie.httpOnly && cookie.sameSite === "Strict", `session cookie: ${JSON.stringify(cookie)}`);
    check(cookie.expires > Date.now() / 1000, "the session cookie has no expiry");
    const readable = await page.evaluate(() => document.cookie);
    check(!readable.includes("ragplane_session"), "scripts can read the session cookie");
  });

  await step("a state-changing request without the CSRF token is refused", async () => {
    const status = await page.evaluate(async () => {
      const r = await fetch("/v1/collections", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: "csrf-probe" }) });
      return r.status;
    });
    check(status === 403, `POST without x-csrf-token answered ${status}`);
  });

  await step("create a collection", async () => {
    await page.getByLabel("New collection").fill(collection);
    await page.getByLabel("Description").fill("made in the browser test");
    await page.getByRole("button", { name: "Create" }).click();
    await page.getByRole("link", { name: collection }).waitFor();
    await labelled(page, "collections");
  });

  await step("upload the example corpus at once and watch every document reach indexed", async () => {
    await page.getByRole("link", { name: collection }).click();
    const files = readdirSync(corpus).map((f) => join(corpus, f));
    await page.locator("#files").setInputFiles(files);
    const rows = page.locator("table.documents tbody tr");
    await page.waitForFunction((n) => {
      const r = [...document.querySelectorAll("table.documents tbody tr")];
      return r.length === n && r.every((tr) => tr.dataset.status === "indexed");
    }, files.length, { timeout: 120000 });
    check((await rows.count()) === files.length, "not every file became a document");
    await labelled(page, "documents");
    await shot(page, "documents");
  });

  await step("drop a file on the page; re-ingest one document and delete another", async () => {
    // A real drop event carrying a file, as the browser makes when a file is dragged in.
    await page.evaluate(() => {
      const dt = new DataTransfer();
      dt.items.add(new File(["Dropped notes: the harbour pilot boards at the fairway buoy."], "dropped-notes.txt", { type: "text/plain" }));
      const zone = document.querySelector(".drop");
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: dt, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
    });
    const dropped = page.locator("table.documents tbody tr", { hasText: "dropped-notes.txt" });
    await dropped.and(page.locator("[data-status=indexed]")).waitFor({ timeout: 60000 });
    await page.getByRole("button", { name: "Re-ingest honeybees.html" }).click();
    await page.getByText("honeybees.html queued for re-ingestion").waitFor();
    await page.locator("table.documents tbody tr[data-status=indexed]", { hasText: "honeybees.html" }).waitFor({ timeout: 60000 });
    await page.getByRole("button", { name: "Delete dropped-notes.txt" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();
    check((await dropped.count()) === 1, "cancelling the confirmation deleted the document");
    await page.getByRole("button", { name: "Delete dropped-notes.txt" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete document" }).click();
    await dropped.waitFor({ state: "detached", timeout: 60000 });
  });

  await step("the collection list counts them", async () => {
    await page.getByRole("link", { name: "Collections", exact: true }).first().click();
    await page.getByText(/\d+ indexed/).first().waitFor();
    await shot(page, "collections");
  });

  await step("search: the known fact ranks first, within 50 ms of the API's own time", async () => {
    await page.getByRole("link", { name: "Playground" }).click();
    await page.getByRole("heading", { name: "Retrieval playground" }).waitFor();
    await page.getByLabel("Collection", { exact: true }).selectOption(collection);
    await page.getByLabel("Query", { exact: true }).fill("How far away can the Skerry Point light be seen?");
    const overheads = [];
    for (let i = 0; i < 5; i++) {
      await page.locator("#timing").evaluate((el) => delete el.dataset.total);
      await page.getByRole("button", { name: "Search" }).click();
      await page.locator("#timing[data-total]").waitFor();
      const first = await page.locator("#hit-1 .title").textContent();
      check(first === "skerry-point-lighthouse.md", `the first hit is ${first}`);
      const t = await page.locator("#timing").evaluate((el) => ({ total: Number(el.dataset.total), api: Number(el.dataset.api) }));
      overheads.push(t.total - t.api);
    }
    overheads.sort((a, b) => a - b);
    figures.playground_overhead_ms_median = overheads[2];
    check(overheads[2] < 50, `submit to first hit took ${overheads[2]} ms above the API call`);
    // Errors read as messages: a filter that is not JSON, then one the API refuses.
    await page.getByLabel("Metadata filter (JSON, optional)").fill("{lang: en}");
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByRole("alert").filter({ hasText: "the filter is not JSON" }).waitFor();
    await page.getByLabel("Metadata filter (JSON, optional)").fill('{"year": {"gte": 2020, "near": 1}}');
    await page.getByRole("button", { name: "Search" }).click();
    const refused = await page.getByRole("alert").filter({ hasText: "near" }).textContent();
    console.log(`  refused filter: ${refused}`);
    await page.getByLabel("Metadata filter (JSON, optional)").fill('{"lang": "en"}');
    await page.getByRole("button", { name: "Search" }).click();
    await page.getByText("No hits.").waitFor();
    await page.getByLabel("Metadata filter (JSON, optional)").fill("");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#hit-1").waitFor();
    const marks = await page.locator("#hit-1 mark").count();
    check(marks > 0, "the query's terms are not marked in the first hit");
    await labelled(page, "playground");
  });

  await step("stream an answer with numbered sources and the prompt it was given", async () => {
    await page.getByRole("button", { name: "Answer" }).click();
    const meta = page.locator(".answer-meta");
    await page.waitForFunction(() => /cited/.test(document.querySelector(".answer-meta")?.textContent || ""), null, { timeout: 120000 });
    const text = (await page.locator(".answer-text").textContent()).trim();
    check(text.length > 0, "the answer is empty");
    check((await page.locator("#hit-1").count()) === 1, "the sources are not shown as hits");
    const prompt = await page.locator("details.prompt").textContent();
    check(prompt.includes("Skerry Point"), "the prompt shown does not hold the retrieved source");
    const links = await page.locator(".answer-text a.cite").count();
    figures.answer_citation_links = links;
    if (links > 0) {
      await page.locator(".answer-text a.cite").first().click();
      const focused = await page.evaluate(() => document.activeElement.id);
      check(/^hit-\d+$/.test(focused), `a citation link moved focus to ${focused}`);
    }
    console.log(`  meta: ${await meta.textContent()}`);
    await page.locator("details.prompt summary").click();
    await shot(page, "playground");
  });

  await step("create a key (shown once) and revoke it", async () => {
    await page.getByRole("link", { name: "Keys" }).click();
    await page.getByRole("heading", { name: "API keys" }).waitFor();
    await page.getByLabel("Name", { exact: true }).fill("made-in-browser");
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = await page.getByLabel("The new key").inputValue();
    check(secret.startsWith("rp_"), `the new key is ${secret}`);
    const ok = await page.evaluate(async (k) => (await fetch("/v1/collections", { headers: { Authorization: `Bearer ${k}` } })).status, secret);
    check(ok === 200, `the new key got ${ok}`);
    await labelled(page, "keys");
    await shot(page, "keys");
    await page.getByRole("button", { name: "Revoke key made-in-browser" }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Revoke key" }).click();
    await page.locator("tr", { hasText: "made-in-browser" }).getByText("revoked").waitFor();
    // The server trusts a key it verified for auth.key_cache_secs (10 s by default).
    let status = 200;
    for (let i = 0; i < 30 && status !== 401; i++) {
      status = await page.evaluate(async (k) => (await fetch("/v1/collections", { headers: { Authorization: `Bearer ${k}` } })).status, secret);
      if (status !== 401) await page.waitForTimeout(1000);
    }
    check(status === 401, `the revoked key still gets ${status}`);
  });

  await step("health and usage pages show live figures", async () => {
    await page.getByRole("link", { name: "Health" }).click();
    await page.getByRole("heading", { name: "Health" }).waitFor();
    await page.getByText("Job queues").waitFor();
    await page.getByText("LLM endpoints").waitFor();
    await page.getByText("Recent error responses").waitFor();
    await shot(page, "health");
    await page.getByRole("link", { name: "Usage" }).click();
    await page.getByRole("heading", { name: "Usage" }).waitFor();
    await page.getByText(/[1-9]\d* queries and \d+ LLM tokens in the last hour/).waitFor();
    await page.getByRole("rowheader", { name: collection }).first().waitFor();
    await shot(page, "usage");
  });

  await step("keyboard: the skip link first, focus on the page title, Tab and Enter move through it", async () => {
    await page.goto(`${base}/ui#/collections`);
    await page.getByRole("heading", { name: "Collections" }).waitFor();
    // Once the page has loaded its data, focus is on its title.
    await page.waitForFunction(() => document.activeElement.tagName === "H1" && document.activeElement.textContent === "Collections");
    const first = await page.evaluate(() => document.querySelector("a[href], button, input, select, textarea")?.textContent);
    check(first === "Skip to content", `the first focusable element is ${first}`);
    await page.keyboard.press("Tab");
    const next = await page.evaluate(() => document.activeElement.getAttribute("aria-label") || document.activeElement.name);
    check(next === "name", `Tab from the title goes to ${next}, not the first field`);
    await page.keyboard.press("Shift+Tab");
    await page.keyboard.press("Shift+Tab");
    check(await page.evaluate(() => document.activeElement.closest("header") !== null), "Shift+Tab from the page does not reach the header");
    await page.getByRole("link", { name: "Playground" }).focus();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { name: "Retrieval playground" }).waitFor();
  });

  await step("no layout break at 390×844", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const p of ["collections", `collections/${collection}`, "playground", "keys", "health", "usage"]) {
      await page.goto(`${base}/ui#/${p}`);
      await page.locator("h1").first().waitFor();
      await page.waitForLoadState("networkidle");
      await fits(page, `${p} at 390px`);
    }
    await page.goto(`${base}/ui#/playground`);
    await page.locator("select[name=collection] option").first().waitFor({ state: "attached" });
    await page.getByLabel("Query", { exact: true }).fill("How far away can the Skerry Point light be seen?");
    await page.getByRole("button", { name: "Search" }).click();
    await page.locator("#hit-1").waitFor();
    await fits(page, "playground with hits at 390px");
    await shot(page, "playground-phone", false);
    await page.setViewportSize({ width: 1280, height: 800 });
    for (const p of ["collections", "playground", "health"]) {
      await page.goto(`${base}/ui#/${p}`);
      await page.locator("h1").first().waitFor();
      await fits(page, `${p} at 1280px`);
    }
  });

  await step("sign out: the session ends on the server too", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
    const status = await page.evaluate(async () => (await fetch("/ui/session")).status);
    check(status === 401, `after sign-out /ui/session answered ${status}`);
  });

  await step("another tenant's collection is refused", async () => {
    await signIn(page, otherKey);
    await page.getByRole("heading", { name: "Collections" }).waitFor();
    check((await page.getByRole("link", { name: collection }).count()) === 0, "another tenant sees the collection in its list");
    await page.goto(`${base}/ui#/collections/${collection}`);
    await page.getByRole("alert").filter({ hasText: "not found" }).waitFor();
    await page.goto(`${base}/ui#/keys`);
    await page.getByRole("alert").filter({ hasText: "needs a tenant-admin" }).waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("API key").waitFor();
  });

  check(consoleErrors.length === 0, `script errors on the page: ${consoleErrors.join("; ")}`);
  console.log(`FIGURES ${JSON.stringify(figures)}`);
} catch (err) {
  if (shots) await page.screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
  console.error(`FAILED: ${err.message}`);
  console.error(`page: ${page.url()}`);
  console.error((await page.locator("main").textContent().catch(() => "")).slice(0, 2000));
  await browser.close();
  process.exit(1);
}
await browser.close();
