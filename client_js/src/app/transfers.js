// The uploads panel: a queue of files with a progress bar each and one for the total. Files are
// scanned in a worker and sent with the library's resumable upload (retries with backoff when the
// network drops); two files upload at a time.

import { ApiError } from "../lib/api.js";
import { uploadBlob } from "../lib/upload.js";
import { h } from "./dom.js";
import { formatSize, guessMime } from "./format.js";
import { scanInWorker } from "./scan.js";

const PARALLEL_FILES = 2;

/**
 * @typedef {{file: File, path: string, parentRev: number | null, sent: number, state: string,
 *            row: HTMLElement, bar: HTMLProgressElement, label: HTMLElement, controller: AbortController}} Job
 */

export class Transfers {
  /** @param {import("./registry.js").AppContext} ctx */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {Job[]} */
    this.jobs = [];
    this.running = 0;
    this.totalBar = /** @type {HTMLProgressElement} */ (h("progress", { id: "total-progress", max: 1, value: 0, "aria-label": "Total upload progress" }));
    this.totalLabel = h("span.total-label", { id: "total-label" });
    this.list = h("ul.transfer-list", { "aria-label": "Uploads" });
    this.el = h("section.transfers", { "aria-labelledby": "transfers-title", hidden: true },
      h("div.transfers-head", {},
        h("h2", { id: "transfers-title", text: "Uploads" }),
        h("button", { type: "button", text: "Clear finished", onclick: () => this.clearDone() })),
      h("div.total", {}, this.totalBar, this.totalLabel),
      this.list);
  }

  /** Queue files. @param {{file: File, path: string, parentRev?: number | null}[]} items */
  add(items) {
    for (const { file, path, parentRev = null } of items) {
      const bar = /** @type {HTMLProgressElement} */ (h("progress", { max: Math.max(1, file.size), value: 0, "aria-label": `Progress of ${path}` }));
      const label = h("span.transfer-state", { text: "Waiting" });
      const controller = new AbortController();
      const cancel = h("button.small.cancel", { type: "button", text: "Cancel", "aria-label": `Cancel upload of ${path}`, onclick: () => controller.abort() });
      const row = h("li.transfer", { "data-path": path }, h("span.transfer-name", { text: path }), bar, label, cancel);
      controller.signal.addEventListener("abort", () => { cancel.hidden = true; });
      this.jobs.push({ file, path, parentRev, sent: 0, state: "waiting", row, bar, label, controller });
      this.list.append(row);
    }
    this.el.hidden = false;
    this.#update();
    this.#pump();
  }

  #pump() {
    while (this.running < PARALLEL_FILES) {
      const job = this.jobs.find((j) => j.state === "waiting");
      if (!job) return;
      this.running++;
      job.state = "running";
      this.#run(job).finally(() => {
        /** @type {HTMLElement} */ (job.row.querySelector(".cancel")).hidden = true;
        this.running--;
        this.#update();
        this.#pump();
      });
    }
  }

  /** @param {Job} job */
  async #run(job) {
    const { file, path } = job;
    /** @type {string | undefined} */
    let uploadId;
    const options = {
      parentRev: job.parentRev, mtime: file.lastModified, mime: guessMime(file), scan: scanInWorker,
      signal: job.controller.signal,
      onProgress: (/** @type {import("../lib/upload.js").UploadProgress} */ p) => {
        uploadId = p.uploadId || uploadId;
        job.sent = p.sent;
        job.bar.value = p.phase === "hashing" ? 0 : p.sent;
        job.label.textContent = p.phase === "hashing" ? `Scanning ${percent(p.hashed, p.total)}`
          : p.phase === "done" ? "Done" : p.phase === "committing" ? "Saving" : percent(p.sent, p.total);
        this.#update();
      },
    };
    try {
      try {
        await uploadBlob(this.ctx.api, file, path, options);
      } catch (err) {
        // The file exists already (or changed meanwhile): replace the newest version.
        if (!(err instanceof ApiError && err.code === "conflict")) throw err;
        const head = err.details.head_rev ?? (await this.ctx.api.stat(path)).rev;
        await uploadBlob(this.ctx.api, file, path, { ...options, parentRev: head });
      }
      job.state = "done";
      job.sent = file.size;
      job.bar.value = job.bar.max;
      job.label.textContent = "Done";
      job.row.classList.add("done");
    } catch (err) {
      job.state = "failed";
      const aborted = /** @type {Error} */ (err)?.name === "AbortError" || job.controller.signal.aborted;
      job.label.textContent = aborted ? "Cancelled" : `Failed: ${/** @type {Error} */ (err).message}`;
      // Cancelled for good: let the server drop the session now rather than when it expires.
      if (aborted && uploadId) this.ctx.api.abandon(uploadId).catch(() => {});
      job.row.classList.add("failed");
      if (!aborted) this.ctx.notify(`Upload of ${path} failed: ${/** @type {Error} */ (err).message}`, "error");
    }
  }

  #update() {
    const total = this.jobs.reduce((n, j) => n + j.file.size, 0);
    const sent = this.jobs.reduce((n, j) => n + (j.state === "done" ? j.file.size : j.sent), 0);
    const done = this.jobs.filter((j) => j.state === "done").length;
    this.totalBar.max = Math.max(1, total);
    this.totalBar.value = total ? sent : (done === this.jobs.length ? 1 : 0);
    this.totalLabel.textContent = `${done} of ${this.jobs.length} files · ${formatSize(sent)} of ${formatSize(total)} · ${percent(sent, total, done === this.jobs.length)}`;
  }

  clearDone() {
    for (const j of this.jobs.filter((x) => x.state === "done" || x.state === "failed")) j.row.remove();
    this.jobs = this.jobs.filter((x) => x.state !== "done" && x.state !== "failed");
    this.el.hidden = this.jobs.length === 0;
    this.#update();
  }
}

/** @param {number} n @param {number} total @param {boolean} [complete] */
function percent(n, total, complete = false) {
  return `${total ? Math.floor((100 * n) / total) : complete ? 100 : 0}%`;
}
