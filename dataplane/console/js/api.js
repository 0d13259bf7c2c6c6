// Calls to the ragplane API with the session cookie. State-changing calls carry the session's
// CSRF token; a 401 anywhere means the session ended, and the console returns to sign-in.

let csrf = null;

/** Sets the CSRF token of the signed-in session. */
export function setCsrf(token) {
  csrf = token;
}

/** An error answer of the API: its message, type and request id. */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.error) || fallback || `the server answered ${status}`);
    this.status = status;
    this.type = body && body.type;
    this.requestId = body && body.request_id;
  }
}

function headers(json) {
  const h = { Accept: "application/json" };
  if (json) h["Content-Type"] = "application/json";
  if (csrf) h["x-csrf-token"] = csrf;
  return h;
}

async function failure(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // Not JSON (a proxy's page, say): the status says enough.
  }
  const retry = resp.headers.get("Retry-After");
  const err = new ApiError(resp.status, body, retry ? `busy; retry in ${retry} s` : null);
  if (resp.status === 401) window.dispatchEvent(new CustomEvent("signed-out", { detail: err }));
  return err;
}

/** `method path` with an optional JSON body; resolves to the JSON answer (null for 204). */
export async function call(method, path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: headers(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (e) {
    throw new ApiError(0, null, `cannot reach the server (${e.message})`);
  }
  if (!resp.ok) throw await failure(resp);
  if (resp.status === 204) return null;
  return resp.json();
}

export const get = (path) => call("GET", path);
export const post = (path, body) => call("POST", path, body === undefined ? {} : body);
export const del = (path) => call("DELETE", path);

/** A path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);

/** Uploads one file; `progress(fraction)` follows the bytes sent. Resolves to the answer. */
export function upload(collection, file, progress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `/v1/collections/${seg(collection)}/documents`);
    xhr.setRequestHeader("Accept", "application/json");
    if (csrf) xhr.setRequestHeader("x-csrf-token", csrf);
    xhr.upload.onprogress = (e) => e.lengthComputable && progress(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, null, "the upload could not reach the server"));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("signed-out"));
        reject(new ApiError(xhr.status, body));
      }
    };
    const form = new FormData();
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/**
 * POSTs `body` and yields the Server-Sent Events of the answer as `{event, data}`, `data`
 * parsed as JSON. `signal` aborts it.
 */
export async function* events(path, body, signal) {
  let resp;
  try {
    resp = await fetch(path, {
      method: "POST",
      headers: { ...headers(true), Accept: "text/event-stream" },
      body: JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (e) {
    if (e.name === "AbortError") return;
    throw new ApiError(0, null, `cannot reach the server (${e.message})`);
  }
  if (!resp.ok) throw await failure(resp);
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}
