// The candidate page's service worker: a reload while offline still works.
//
// On install it keeps the page, its assets, Pyodide's files and the SDK wheel (their URLs
// from /web/config.json). Afterwards:
//   - the page, its assets, the config and the exam package: the network first, the copy
//     kept from the last answer when the network fails (so online is always current);
//   - Pyodide and the wheel: the copy first (their URLs carry a version or digest);
//   - everything else (the API, the socket): not touched, so the SDK sees the network as it is.
// Answers do not go through here: the SDK keeps them in IndexedDB until the server has them.

const CACHE = "examsync-candidate-v1";
const PAGE = [
  "/candidate",
  "/web/config.json",
  "/assets/style.css",
  "/assets/candidate.js",
  "/assets/common.js",
  "/assets/boot.js",
  "/assets/tabs.js",
  "/assets/camera.js",
  "/assets/candidate_page.py",
];
const NETWORK_FIRST = [
  /^\/candidate$/,
  /^\/web\/config\.json$/,
  /^\/assets\//,
  /^\/api\/v1\/plans\/[^/]+\/package$/,
];
const CACHE_FIRST = [/^\/pyodide\//, /^\/wheels\//];

self.addEventListener("install", (event) => {
  event.waitUntil(
    (async () => {
      const config = await (await fetch("/web/config.json", { cache: "no-cache" })).json();
      const runtime = config.pyodideFiles.map((name) => config.pyodideUrl + name);
      const cache = await caches.open(CACHE);
      await cache.addAll([...PAGE, ...runtime, config.wheelUrl]);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener("activate", (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== location.origin) return;
  if (CACHE_FIRST.some((pattern) => pattern.test(url.pathname))) {
    event.respondWith(cacheFirst(event.request));
  } else if (NETWORK_FIRST.some((pattern) => pattern.test(url.pathname))) {
    event.respondWith(networkFirst(event.request));
  }
});

async function cacheFirst(request) {
  const kept = await caches.match(request);
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok) await (await caches.open(CACHE)).put(request, response.clone());
  return response;
}

async function networkFirst(request) {
  try {
    const response = await fetch(request);
    // A 304 (the SDK's If-None-Match for the package) has no body worth keeping.
    if (response.status === 200) await (await caches.open(CACHE)).put(request, response.clone());
    return response;
  } catch (error) {
    // `ignoreSearch`: /candidate?plan=... is the same page.
    const kept = await caches.match(request, { ignoreSearch: request.mode === "navigate" });
    if (kept) return kept;
    throw error;
  }
}
