// Server adapter: one fetch wrapper for the REST API. Sends the CSRF token on unsafe methods,
// parses the API's one error shape ({"error": code, "detail": ...}) into ApiError, and turns an
// HTTP 409 into ConflictError so the editor can keep the user's drawing. DOM-free: `fetch` and
// the CSRF token source are injected (the browser passes window.fetch and document.cookie).

export class ApiError extends Error {
  /**
   * @param {number} status  HTTP status (0 for a network failure)
   * @param {string} code    machine-readable error code from the API
   * @param {*} detail       message, list of messages, or {field: [messages]}
   */
  constructor(status, code, detail) {
    super(formatDetail(detail) || `${code} (HTTP ${status})`);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** The server refused a save because the base version is stale: someone else saved first. */
export class ConflictError extends ApiError {
  constructor(code, detail) {
    super(409, code, detail);
    this.name = "ConflictError";
  }
}

/** Human-readable text for an error detail: a string, a list, or field errors. */
export function formatDetail(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map(formatDetail).filter(Boolean).join(" ");
  if (typeof detail === "object") {
    // Services that add numbers to an error put the sentence under "message" (e.g. not_enough_labels).
    if (typeof detail.message === "string") return detail.message;
    return Object.entries(detail)
      .map(([field, msg]) => (field === "non_field_errors" || field === "detail" ? "" : `${field}: `) + formatDetail(msg))
      .join("; ");
  }
  return String(detail);
}

/** The value of Django's csrftoken cookie from a `document.cookie` string. */
export function csrfFromCookie(cookie, name = "csrftoken") {
  for (const part of (cookie || "").split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

const SAFE = new Set(["GET", "HEAD", "OPTIONS"]);

/** Build a query string from an object, skipping null/undefined/"" values. */
export function queryString(params = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === null || v === undefined || v === "") continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.append(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

export class ApiClient {
  /**
   * @param {{fetch?: typeof fetch, baseUrl?: string, csrfToken?: () => string}} options
   */
  constructor({ fetch: fetchFn = globalThis.fetch?.bind(globalThis), baseUrl = "", csrfToken = () => "" } = {}) {
    this.fetch = fetchFn;
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.csrfToken = csrfToken;
  }

  /**
   * @param {string} method
   * @param {string} path  API path, e.g. "/api/projects/"
   * @param {{json?: *, form?: FormData, query?: Object, signal?: AbortSignal, raw?: boolean, keepalive?: boolean}} options
   *   raw: return the Response (for binary downloads) instead of parsed JSON; keepalive: the request may
   *   outlive the page (a last save while navigating away).
   */
  async request(method, path, { json, form, query, signal, raw = false, keepalive = false } = {}) {
    const m = method.toUpperCase();
    const headers = { Accept: "application/json" };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    } else if (form !== undefined) {
      body = form; // the browser sets the multipart boundary
    }
    if (!SAFE.has(m)) headers["X-CSRFToken"] = this.csrfToken();
    let response;
    try {
      response = await this.fetch(this.baseUrl + path + queryString(query), {
        method: m,
        headers,
        body,
        signal,
        keepalive,
        credentials: "same-origin",
      });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new ApiError(0, "network", `Could not reach the server: ${err?.message ?? err}`);
    }
    if (!response.ok) throw await errorFrom(response);
    if (raw) return response;
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    return type.includes("json") ? response.json() : response.text();
  }

  get(path, options) {
    return this.request("GET", path, options);
  }

  post(path, json, options = {}) {
    return this.request("POST", path, { ...options, json });
  }

  patch(path, json, options = {}) {
    return this.request("PATCH", path, { ...options, json });
  }

  put(path, json, options = {}) {
    return this.request("PUT", path, { ...options, json });
  }

  delete(path, options) {
    return this.request("DELETE", path, options);
  }

  upload(path, form, options = {}) {
    return this.request("POST", path, { ...options, form });
  }

  /**
   * POST a multipart form reporting upload progress (fetch cannot): `onProgress(sent, total)` as the
   * bytes go out. Same result and errors as `upload`. `XHR` is injectable (tests pass a fake).
   */
  uploadWithProgress(path, form, { onProgress = () => {}, XHR = globalThis.XMLHttpRequest } = {}) {
    return new Promise((resolve, reject) => {
      const xhr = new XHR();
      xhr.open("POST", this.baseUrl + path);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", this.csrfToken());
      xhr.withCredentials = true;
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) onProgress(e.loaded, e.total);
      });
      xhr.addEventListener("error", () => reject(new ApiError(0, "network", "Could not reach the server")));
      xhr.addEventListener("load", async () => {
        const headers = { "Content-Type": xhr.getResponseHeader("Content-Type") || "" };
        const status = xhr.status === 204 ? 204 : xhr.status;
        const response = new Response(status === 204 ? null : xhr.responseText, { status, headers });
        if (!response.ok) return reject(await errorFrom(response));
        if (status === 204) return resolve(null);
        resolve(headers["Content-Type"].includes("json") ? response.json() : response.text());
      });
      xhr.send(form);
    });
  }

  /** Follow DRF limit/offset pagination (`{results, next}`) or accept a plain list. */
  async list(path, { query, max = 1000 } = {}) {
    const first = await this.get(path, { query });
    if (Array.isArray(first)) return first;
    const items = [...(first.results ?? [])];
    let next = first.next;
    while (next && items.length < max) {
      const url = new URL(next, "http://x");
      const page = await this.get(url.pathname, { query: Object.fromEntries(url.searchParams) });
      items.push(...(page.results ?? []));
      next = page.next;
    }
    return items;
  }
}

async function errorFrom(response) {
  let code = "http_error";
  let detail = response.statusText || `HTTP ${response.status}`;
  const type = response.headers.get("Content-Type") || "";
  try {
    if (type.includes("json")) {
      const body = await response.json();
      if (body && typeof body === "object" && ("error" in body || "detail" in body)) {
        code = body.error ?? code;
        detail = body.detail ?? detail;
      } else {
        detail = body;
      }
    }
  } catch {
    // keep the status text
  }
  if (response.status === 409) return new ConflictError(code, detail);
  return new ApiError(response.status, code, detail);
}
