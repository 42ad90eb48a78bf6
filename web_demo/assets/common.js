// What the three pages share: element lookup, bilingual labels, times, the JSON API.

export const $ = (selector, root = document) => root.querySelector(selector);

// Labels are shown in Korean and English together ("저장됨 · Saved"): an exam room may have
// either, and nobody has to find a language switch under stress.
export const both = (ko, en) => `${ko} · ${en}`;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// Why the server's sign-in limits refused a login (429), in words; null for other refusals.
export function signInRefusal(code, details = {}) {
  if (code === "too_many_attempts") {
    const wait = Math.max(1, Math.ceil(details.retryAfter ?? 60));
    return both(
      `로그인 실패가 너무 많습니다. ${wait}초 후에 다시 시도하세요`,
      `Too many failed sign-ins. Try again in ${wait} s`,
    );
  }
  if (code === "locked_out") {
    const until = timeOfDay(details.lockedUntil);
    return both(
      `로그인 실패가 계속되어 잠겼습니다. 감독관에게 해제를 요청하거나 ${until}까지 기다리세요`,
      `Locked after repeated failed sign-ins. Ask your supervisor to unlock it, or wait until ${until}`,
    );
  }
  return null;
}

export function show(node, visible) {
  node.hidden = !visible;
}

// "1:05:09" / "04:09": what is left of a stage.
export function clock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

// "12 s", "3 min": how long ago, for people.
export function age(seconds) {
  if (seconds < 60) return `${Math.max(0, Math.round(seconds))} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

export function timeOfDay(value) {
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  return Number.isNaN(date.getTime()) ? "—" : date.toLocaleTimeString();
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = body?.error ?? {};
    super(error.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = error.code ?? `http_${status}`;
    this.details = error.details ?? {};
  }
}

// One call to the API: JSON in and out, `{"error": ...}` bodies thrown as ApiError.
export async function api(method, path, { token, json, body, headers = {} } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers } };
  if (token) init.headers.Authorization = `Bearer ${token}`;
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (body !== undefined) {
    init.body = body;
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) throw new ApiError(response.status, parsed);
  return parsed;
}

export async function sha256Hex(data) {
  const digest = await crypto.subtle.digest("SHA-256", data);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A status line that screen readers announce (role="status" on the element).
export function say(node, text, kind = "info") {
  node.textContent = text;
  node.dataset.kind = kind;
}
