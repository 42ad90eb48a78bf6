// IndexedDB as promises, for examsync.pyodide.idb (evaluated once with pyodide.code.run_js).
//
// Records cross into Python as JSON text, so no JS proxy has to be freed and no conversion
// rule applies; binary values (the exam package) go as Uint8Array. Every write is one
// readwrite transaction with strict durability: it resolves only once the browser reports the
// transaction complete, and any failure (a quota error included) aborts all of it.
(() => {
  const abortError = (tx) => tx.error ?? new DOMException("transaction aborted", "AbortError");

  function open(factory, name, version, storesJson) {
    const stores = JSON.parse(storesJson);
    return new Promise((resolve, reject) => {
      const request = factory.open(name, version);
      request.onupgradeneeded = () => {
        const db = request.result;
        for (const store of stores) {
          if (!db.objectStoreNames.contains(store)) db.createObjectStore(store);
        }
      };
      request.onsuccess = () => {
        const db = request.result;
        // A newer schema opening in another tab asks us to let go: do not block it.
        db.onversionchange = () => db.close();
        resolve(db);
      };
      request.onerror = () => reject(request.error);
    });
  }

  function readAll(db, storesJson) {
    const stores = JSON.parse(storesJson);
    return new Promise((resolve, reject) => {
      const tx = db.transaction(stores, "readonly");
      const requests = stores.map((store) => {
        const objectStore = tx.objectStore(store);
        return [store, objectStore.getAllKeys(), objectStore.getAll()];
      });
      tx.oncomplete = () => {
        const out = {};
        for (const [store, keys, values] of requests) {
          out[store] = keys.result.map((key, i) => [key, values.result[i]]);
        }
        resolve(JSON.stringify(out));
      };
      tx.onabort = () => reject(abortError(tx));
    });
  }

  // ops: {store: {put: [[key, value], ...], delete: [key, ...]}}; deletes go first.
  function write(db, opsJson, blobs) {
    const ops = JSON.parse(opsJson);
    return new Promise((resolve, reject) => {
      let tx;
      try {
        tx = db.transaction(Object.keys(ops), "readwrite", { durability: "strict" });
        tx.oncomplete = () => resolve();
        tx.onabort = () => reject(abortError(tx));
        for (const [store, op] of Object.entries(ops)) {
          const objectStore = tx.objectStore(store);
          for (const key of op.delete ?? []) objectStore.delete(key);
          for (const [key, value] of op.put ?? []) objectStore.put(value, key);
        }
        for (const [store, key, bytes] of blobs ?? []) tx.objectStore(store).put(bytes, key);
      } catch (error) {
        // A put can throw at once (a quota or clone error): nothing of the transaction stays.
        try {
          tx?.abort();
        } catch {
          // already finished
        }
        reject(error);
      }
    });
  }

  function get(db, store, key) {
    return new Promise((resolve, reject) => {
      const request = db.transaction([store], "readonly").objectStore(store).get(key);
      // undefined, not null: Pyodide turns undefined into None (null into jsnull).
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  const getJson = async (db, store, key) => JSON.stringify((await get(db, store, key)) ?? null);
  const getBytes = get; // a Uint8Array, or undefined

  return { open, readAll, write, getJson, getBytes };
})();
