// Build the web app into dist/: index.html (no-cache) + assets/ with content-hashed names (immutable).
// The scan worker is built first so the app can be told its hashed URL.
import * as esbuild from "esbuild";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { basename } from "node:path";

const dist = new URL("./dist/", import.meta.url).pathname;
const common = {
  bundle: true, format: /** @type {const} */ ("esm"), minify: true, sourcemap: /** @type {const} */ ("linked"),
  target: ["chrome110", "firefox115", "safari16"], outdir: `${dist}assets`, entryNames: "[name]-[hash]",
  metafile: true, logLevel: /** @type {const} */ ("warning"), legalComments: /** @type {const} */ ("none"),
};

/** @param {esbuild.Metafile} meta @param {string} ext @param {string} entry the source it is built from */
function output(meta, ext, entry) {
  // The app build is split (the editor is a chunk loaded on demand): the page names the entry only.
  const names = Object.keys(meta.outputs).filter((o) => o.endsWith(ext) && meta.outputs[o].entryPoint === entry);
  if (names.length !== 1) throw new Error(`expected one ${ext} output, got ${names}`);
  return `/assets/${basename(names[0])}`;
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(`${dist}assets`, { recursive: true });
const worker = await esbuild.build({ ...common, entryPoints: { "scan-worker": "src/app/scan-worker.js" } });
const app = await esbuild.build({
  ...common,
  entryPoints: { app: "src/app/main.js", styles: "src/app/styles.css" },
  splitting: true, chunkNames: "[name]-[hash]",  // flat names: /assets/{name} serves no folders
  define: { SCAN_WORKER_URL: JSON.stringify(output(worker.metafile, ".js", "src/app/scan-worker.js")) },
});
const html = readFileSync("src/app/index.html", "utf8")
  .replace("{{APP_JS}}", output(app.metafile, ".js", "src/app/main.js"))
  .replace("{{STYLES_CSS}}", output(app.metafile, ".css", "src/app/styles.css"));
writeFileSync(`${dist}index.html`, html);
console.log(`built ${dist}: ${Object.keys({ ...worker.metafile.outputs, ...app.metafile.outputs }).length} assets`);
