// What the browser would give the SDK, for the tests in Pyodide under Node (runner.mjs):
// IndexedDB (fake-indexeddb, a full in-memory implementation of the spec), WebSocket (ws),
// Web Locks (below), a small HTTP + WebSocket server on 127.0.0.1, and ways to make IndexedDB
// fail. The tests reach it as the JS module `examsync_test_host`.
import "fake-indexeddb/auto";
import http from "node:http";
import { WebSocket, WebSocketServer } from "ws";

globalThis.WebSocket = WebSocket;

// Node 20 has no Web Locks API. This stand-in keeps the browser's rules for what the SDK uses:
// request(name, {mode: "exclusive", signal}, callback), requests granted in order, the lock
// held until the callback's promise settles, an AbortError when the signal fires while
// waiting. The browsers' own is for the Playwright tests.
class LockManager {
  #held = new Set();
  #waiting = new Map();

  request(name, options, callback) {
    return new Promise((resolve, reject) => {
      const grant = async () => {
        this.#held.add(name);
        try {
          resolve(await callback({ name, mode: "exclusive" }));
        } catch (error) {
          reject(error);
        } finally {
          this.#held.delete(name);
          this.#waiting.get(name)?.shift()?.();
        }
      };
      const { signal } = options;
      if (signal?.aborted) return reject(new DOMException("aborted", "AbortError"));
      const queue = this.#waiting.get(name) ?? [];
      this.#waiting.set(name, queue);
      if (!this.#held.has(name) && queue.length === 0) return void grant();
      queue.push(grant);
      signal?.addEventListener("abort", () => {
        const i = queue.indexOf(grant);
        if (i >= 0) {
          queue.splice(i, 1);
          reject(new DOMException("aborted", "AbortError"));
        }
      });
    });
  }
}

// Called after Pyodide has loaded: a global `navigator` makes its loader take Node for a
// browser.
export function installWebLocks() {
  if (!globalThis.navigator?.locks) {
    Object.defineProperty(globalThis, "navigator", {
      value: { ...globalThis.navigator, locks: new LockManager() },
      configurable: true,
    });
  }
}

// --- IndexedDB faults ----------------------------------------------------------------------

const realPut = globalThis.IDBObjectStore.prototype.put;

// While on, every put throws QuotaExceededError, as a browser does when the origin is full.
export function setQuotaExceeded(on) {
  globalThis.IDBObjectStore.prototype.put = on
    ? function put() {
        throw new DOMException("the origin's storage quota is used up", "QuotaExceededError");
      }
    : realPut;
}

// An indexedDB stand-in whose open() fails the way browsers refuse IndexedDB:
// "throw" (Firefox private mode: SecurityError at once), "error" (an error event later),
// "hang" (no answer at all).
export function brokenFactory(mode) {
  return {
    open() {
      if (mode === "throw") throw new DOMException("access denied", "SecurityError");
      const request = {};
      if (mode === "error") {
        setTimeout(() => {
          request.error = new DOMException("backing store failed", "UnknownError");
          request.onerror?.();
        }, 5);
      }
      return request;
    },
  };
}

// --- HTTP + WebSocket server ---------------------------------------------------------------

// HTTP: /echo answers 201 with the request (method, headers, body as text) and a header;
// /status/N answers N with an {"error": ...} body; /slow answers after 5 s.
// WebSocket /ws: as the socket server, waits for the client's auth frame: the token "refused"
// gets an error frame (401 invalid_token) and close 4401; any other is welcomed with
// {"type":"welcome", "query": the URL's query as the server saw it, "auth": the auth frame}.
// Then it echoes text, answers "binary" with bytes, closes with 4001 on "close", and drops
// the TCP connection on "drop".
const server = http.createServer((request, response) => {
  const chunks = [];
  request.on("data", (chunk) => chunks.push(chunk));
  request.on("end", () => {
    const url = new URL(request.url, "http://host");
    if (url.pathname === "/slow") {
      setTimeout(() => response.end("late"), 5000);
      return;
    }
    const status = url.pathname.startsWith("/status/") ? Number(url.pathname.slice(8)) : 201;
    const body =
      status === 201
        ? {
            method: request.method,
            headers: request.headers,
            body: Buffer.concat(chunks).toString("utf8"),
          }
        : { error: { code: "refused", message: "as asked", details: {} } };
    response.writeHead(status, { "Content-Type": "application/json", "X-Echo": "yes" });
    response.end(JSON.stringify(body));
  });
});

const sockets = new WebSocketServer({ server, path: "/ws" });
sockets.on("connection", (socket, request) => {
  let welcomed = false;
  socket.on("message", (data, isBinary) => {
    if (!welcomed) {
      const auth = JSON.parse(data.toString("utf8"));
      if (auth.token === "refused") {
        const error = { code: "invalid_token", message: "refused by the host", details: {} };
        socket.send(JSON.stringify({ type: "error", error, status: 401 }));
        socket.close(4401, "invalid_token");
        return;
      }
      welcomed = true;
      const query = new URL(request.url, "ws://h").search;
      const welcome = { type: "welcome", socketId: "S1", role: "candidate", planId: "P", query };
      socket.send(JSON.stringify({ ...welcome, serverTime: "t", auth }));
      return;
    }
    const text = data.toString("utf8");
    if (isBinary) socket.send(data);
    else if (text === "close") socket.close(4001, "asked to");
    else if (text === "drop") socket.terminate();
    else if (text === "binary") socket.send(Buffer.from([0, 1, 2, 255]));
    else socket.send(text);
  });
});

export async function start() {
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  return { httpUrl: `http://127.0.0.1:${port}`, wsUrl: `ws://127.0.0.1:${port}/ws` };
}

export async function stop() {
  for (const client of sockets.clients) client.terminate();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
}
