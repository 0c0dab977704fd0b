// The page a link holder opens (#/link/<token>), no account needed: asks for the password when the
// link has one, then offers the file, the folder's files, or (a file request) a way to send files.

import { ApiError } from "../lib/api.js";
import { h, mount } from "./dom.js";
import { formatSize } from "./format.js";
import { publicViews } from "./registry.js";

/** @param {import("../lib/api.js").Api} api @param {string} token */
function linkPage(api, token) {
  const body = h("div.link-body");
  const status = h("p.form-error", { role: "alert", id: "link-error" });
  const el = h("main.signin-page", { id: "main" }, h("section.signin.link-page", { "aria-labelledby": "link-title" },
    h("h1", { id: "link-title", text: "Shared with you" }), status, body));
  document.title = "Shared link – Satchel";
  /** @type {string | undefined} */
  let password;
  /** @param {unknown} err */
  const explain = (err) => {
    status.textContent = err instanceof ApiError && err.code === "not_found"
      ? "This link does not work: it may have expired or been revoked." : /** @type {Error} */ (err).message;
  };

  const askPassword = (/** @type {boolean} */ wrong) => {
    const input = /** @type {HTMLInputElement} */ (h("input", { id: "link-password-input", type: "password", required: true, autocomplete: "off" }));
    mount(body, h("form", { onsubmit: (/** @type {Event} */ ev) => { ev.preventDefault(); password = input.value; open(""); } },
      h("p", { text: wrong ? "That password is not right. Try again:" : "This link is protected by a password." }),
      h("label", { for: "link-password-input", text: "Link password" }), input,
      h("button.primary", { type: "submit", text: "Open" })));
    input.focus();
  };

  /** @param {string} path @param {string} name */
  const download = async (path, name) => {
    // Through the browser's download manager (streamed to disk, resumable), never through the
    // page's memory: the plain URL, or for a password link a signed URL that stands for it.
    let href;
    if (!password) {
      const url = new URL(api.publicContentUrl(token), globalThis.location.href);
      if (path) url.searchParams.set("path", path);
      href = url.href;
    } else {
      try {
        href = (await api.publicContentLink(token, { path: path || undefined, password })).url;
      } catch (err) { return explain(err); }
    }
    const a = h("a", { href, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  };

  /** @param {string} path inside the link's folder ("" = the link itself) */
  const open = async (path) => {
    status.textContent = "";
    /** @type {any} */
    let out;
    try {
      out = await api.publicLink(token, { path: path || undefined, password });
    } catch (err) {
      if (err instanceof ApiError && err.code === "password_required") return askPassword(password !== undefined);
      return explain(err);
    }
    if (out.mode === "upload") return mount(body, uploadForm(out.entry.name));
    if (out.entry.kind === "file") {
      return mount(body, h("p", {}, h("strong", { text: out.entry.name }), ` · ${formatSize(out.entry.size)}`),
        h("button.primary", { type: "button", text: `Download ${out.entry.name}`, onclick: () => download(path, out.entry.name) }));
    }
    mount(body, h("p", { text: path ? `Folder ${path}` : "A shared folder" }),
      path ? h("button.small", { type: "button", text: "Up", onclick: () => open(path.split("/").slice(0, -1).join("/")) }) : null,
      h("ul.link-entries", {}, out.entries.map((/** @type {any} */ e) => h("li", {},
        e.kind === "dir"
          ? h("button.link", { type: "button", text: `${e.name}/`, "aria-label": `Open folder ${e.name}`, onclick: () => open(e.path) })
          : h("button.link", { type: "button", text: `${e.name} (${formatSize(e.size)})`, "aria-label": `Download ${e.name}`,
            onclick: () => download(e.path, e.name) })))));
  };

  /** @param {string} folder */
  const uploadForm = (folder) => {
    const input = /** @type {HTMLInputElement} */ (h("input", { id: "link-files", type: "file", multiple: true }));
    const done = h("ul", { role: "status" });
    return h("form", { onsubmit: async (/** @type {Event} */ ev) => {
      ev.preventDefault();
      for (const f of [...(input.files || [])]) {
        try {
          const out = await api.publicUpload(token, f.name, f, { password });
          done.append(h("li", { text: `Sent ${out.name} (${formatSize(out.size)})` }));
        } catch (err) { explain(err); }
      }
      input.value = "";
    } }, h("p", { text: `Send files to ${folder || "this folder"}. You cannot see what is already there.` }),
    h("label", { for: "link-files", text: "Files to send" }), input, h("button.primary", { type: "submit", text: "Send" }), done);
  };

  open("");
  return el;
}

publicViews.set("link", linkPage);
