// In-page previews: images, PDFs and the start of text files, fetched through HTTP Range.

import { downloadBlob } from "../lib/download.js";
import { h } from "./dom.js";
import { fileType, formatSize } from "./format.js";

const TEXT_PREVIEW = 256 * 1024;

/**
 * @param {import("./registry.js").AppContext} ctx @param {import("../lib/api.js").Entry} entry
 * @returns {{dialog: HTMLDialogElement, markStale: (rev: number) => void}}
 */
export function openPreview(ctx, entry) {
  const opener = /** @type {HTMLElement | null} */ (document.activeElement);
  const body = h("div.preview-body", { "aria-busy": "true" }, h("p", { text: "Loading…" }));
  const stale = h("span.badge.stale", { hidden: true, text: "Newer version available" });
  /** @type {string[]} */
  const urls = [];
  const controller = new AbortController();
  const dialog = /** @type {HTMLDialogElement} */ (h("dialog.preview", { "aria-labelledby": "preview-title" },
    h("header.preview-head", {},
      h("h2", { id: "preview-title", text: entry.name }), stale,
      h("button", { type: "button", text: "Close", onclick: () => dialog.close() })),
    body));
  dialog.addEventListener("close", () => {
    controller.abort();
    for (const u of urls) URL.revokeObjectURL(u);
    dialog.remove();
    opener?.focus();
  });
  document.body.append(dialog);
  dialog.showModal();

  const type = fileType(entry);
  const size = entry.size || 0;
  const load = async () => {
    if (!["image", "pdf", "text"].includes(type)) {
      body.replaceChildren(h("p", { text: `No preview for this kind of file (${formatSize(size)}).` }));
      return;
    }
    const end = type === "text" ? Math.min(size, TEXT_PREVIEW) : size;
    const { blob } = size === 0 ? { blob: new Blob([]) }
      : await downloadBlob(ctx.api, entry.id, { rev: entry.rev, end, signal: controller.signal });
    if (type === "text") {
      const text = new TextDecoder("utf-8", { fatal: false }).decode(await blob.arrayBuffer());
      body.replaceChildren(h("pre.preview-text", { tabindex: "0", "aria-label": `Contents of ${entry.name}`, text }));
      if (size > end) body.append(h("p.muted", { text: `Showing the first ${formatSize(end)} of ${formatSize(size)}.` }));
      return;
    }
    const url = URL.createObjectURL(new Blob([blob], { type: type === "pdf" ? "application/pdf" : entry.mime || "" }));
    urls.push(url);
    body.replaceChildren(type === "image"
      ? h("img.preview-image", { src: url, alt: entry.name })
      : h("iframe.preview-pdf", { src: url, title: `PDF: ${entry.name}` }));
  };
  load().then(() => body.removeAttribute("aria-busy"), (err) => {
    if (err?.name !== "AbortError") body.replaceChildren(h("p.form-error", { role: "alert", text: `Could not load the preview: ${err.message}` }));
  });
  return {
    dialog,
    markStale: (rev) => { if (rev !== entry.rev) stale.hidden = false; },
  };
}
