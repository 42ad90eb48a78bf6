// The Web Locks API as one awaitable, for examsync.pyodide.locks (evaluated with run_js).
(() => ({
  // Resolves with a release function once `name` is held exclusively by this tab, or with
  // undefined (None in Python; null would be jsnull) if `waitMs` passes first (null or
  // undefined: wait as long as it takes). The browser frees the lock when the tab closes or
  // crashes, so a waiting tab takes over from a closed one.
  acquire(locks, name, waitMs) {
    return new Promise((resolve, reject) => {
      const controller = waitMs == null ? null : new AbortController();
      const timer = controller && setTimeout(() => controller.abort(), waitMs);
      locks
        .request(name, { mode: "exclusive", signal: controller?.signal }, () => {
          clearTimeout(timer);
          return new Promise((release) => resolve(release));
        })
        .catch((error) => (error?.name === "AbortError" ? resolve(undefined) : reject(error)));
    });
  },
}))();
