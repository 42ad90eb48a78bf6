// Pyodide, the examsync wheel and the page's Python module (candidate_page.py), all from this
// server (or, offline, from the service worker's cache). The URLs come from /web/config.json.

export async function bootSdk() {
  const timings = { start: performance.now() };
  const config = await (await fetch("/web/config.json")).json();
  if (!config.pyodideUrl || !config.wheelUrl) {
    throw new Error("the server has no Pyodide or SDK wheel to serve (see web_demo/README.md)");
  }
  const { loadPyodide } = await import(`${config.pyodideUrl}pyodide.mjs`);
  const pyodide = await loadPyodide({ indexURL: config.pyodideUrl });
  timings.pyodide = performance.now();
  await pyodide.loadPackage(config.wheelUrl, { messageCallback: () => {} });
  const source = await (await fetch("/assets/candidate_page.py")).text();
  const sitePackages = pyodide.runPython("import site; site.getsitepackages()[0]");
  pyodide.FS.writeFile(`${sitePackages}/candidate_page.py`, source);
  const module = pyodide.pyimport("candidate_page");
  timings.sdk = performance.now();
  return { pyodide, module, config, timings };
}
