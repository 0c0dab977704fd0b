// The share dialog: people (add with a role, change a role, remove) and links (with expiry and
// password; list, copy, revoke) for a file or folder. Members of a share can leave it.

import { confirmDialog, refocus } from "./dialogs.js";
import { h, mount } from "./dom.js";
import { formatDate } from "./format.js";
import { rowActions } from "./registry.js";

/** @typedef {import("../lib/api.js").Entry} Entry @typedef {import("../lib/api.js").Members} Members */

const EXPIRY = [["", "Never expires"], ["1h", "Expires in 1 hour"], ["1d", "Expires in 1 day"], ["7d", "Expires in 7 days"], ["30d", "Expires in 30 days"]];

/** The address a link holder opens: the web app's link page (it asks for the password if any). @param {string} token */
export const linkPageUrl = (token) => new URL(`#/link/${token}`, location.href).href;

/** @param {import("./registry.js").AppContext} ctx @param {Entry} entry */
export function openShare(ctx, entry) {
  const opener = /** @type {HTMLElement | null} */ (document.activeElement);
  const owner = !entry.share || entry.share.role === "owner";
  const canShare = owner || !!entry.share?.can_reshare;
  const error = h("p.form-error", { role: "alert", id: "share-error" });
  const fail = (/** @type {unknown} */ err) => { error.textContent = /** @type {Error} */ (err).message; };
  /** @type {number | null} */
  let ns = entry.share?.ns ?? null;
  const what = entry.kind === "dir" ? "folder" : "file";

  // ---- people
  const memberList = h("ul.members", { "aria-label": "People with access" });
  const who = /** @type {HTMLInputElement} */ (h("input", { id: "share-user", autocomplete: "off", required: true }));
  const role = /** @type {HTMLSelectElement} */ (h("select", { id: "share-role" },
    h("option", { value: "viewer", text: "Viewer (can look and download)" }), h("option", { value: "editor", text: "Editor (can also change)" })));
  const people = h("section.share-people", { "aria-labelledby": "share-people-title" },
    h("h3", { id: "share-people-title", text: "People" }),
    memberList,
    canShare ? h("form.share-add", { onsubmit: (/** @type {Event} */ ev) => { ev.preventDefault(); addMember(); } },
      h("label", { for: "share-user", text: "Add a person (user name)" }), who,
      h("label", { for: "share-role", text: "Role" }), role,
      h("button.primary", { type: "submit", text: "Add person" })) : null);

  /** @param {Members} m */
  const showMembers = (m) => {
    ns = m.ns;
    mount(memberList, m.members.map((p) => {
      const isOwner = p.role === "owner";
      const sel = /** @type {HTMLSelectElement} */ (h("select", { "aria-label": `Role of ${p.user}`, disabled: !owner || isOwner,
        onchange: () => changeRole(p.user_id, /** @type {"viewer" | "editor"} */ (sel.value)) },
      (isOwner ? ["owner"] : ["viewer", "editor"]).map((r) => h("option", { value: r, text: r, selected: r === p.role }))));
      return h("li.member", { "data-user": p.user }, h("span.member-name", { text: p.user }), sel,
        owner && !isOwner ? h("button.small.danger", { type: "button", text: "Remove", "aria-label": `Remove ${p.user}`,
          onclick: () => removeMember(p.user_id, p.user) }) : null);
    }));
  };
  const loadMembers = async () => {
    if (ns === null) { mount(memberList, h("li.muted", { text: `Only you. Add a person to share this ${what}.` })); return; }
    try { showMembers(await ctx.api.members(ns)); } catch (err) { fail(err); }
  };
  const addMember = async () => {
    error.textContent = "";
    try {
      showMembers(await ctx.api.share(entry.path, [{ user: who.value.trim(), role: /** @type {"viewer" | "editor"} */ (role.value) }]));
      ctx.notify(`Shared ${entry.name} with ${who.value.trim()}`);
      who.value = "";
      who.focus();
    } catch (err) { fail(err); }
  };
  /** @param {number} userId @param {"viewer" | "editor"} r */
  const changeRole = async (userId, r) => {
    error.textContent = "";
    try { showMembers(await ctx.api.setMemberRole(/** @type {number} */ (ns), userId, r)); } catch (err) { fail(err); await loadMembers(); }
  };
  /** @param {number} userId @param {string} name */
  const removeMember = async (userId, name) => {
    error.textContent = "";
    try {
      await ctx.api.removeMember(/** @type {number} */ (ns), userId);
      ctx.notify(`${name} no longer has access to ${entry.name}`);
      await loadMembers();
      who.focus();
    } catch (err) { fail(err); }
  };

  // ---- links
  const linkList = h("ul.links", { "aria-label": "Links" });
  const expiry = /** @type {HTMLSelectElement} */ (h("select", { id: "link-expiry" }, EXPIRY.map(([v, t]) => h("option", { value: v, text: t }))));
  const password = /** @type {HTMLInputElement} */ (h("input", { id: "link-password", type: "password", autocomplete: "new-password" }));
  const fresh = h("div.new-link", { role: "status" });
  const links = !canShare ? null : h("section.share-links", { "aria-labelledby": "share-links-title" },
    h("h3", { id: "share-links-title", text: "Links" }),
    h("p.muted", { text: "Anyone with a link can download; the address is shown once." }),
    h("form.share-add", { onsubmit: (/** @type {Event} */ ev) => { ev.preventDefault(); createLink(); } },
      h("label", { for: "link-expiry", text: "Expiry" }), expiry,
      h("label", { for: "link-password", text: "Password (optional)" }), password,
      h("button.primary", { type: "submit", text: "Create link" })),
    fresh, linkList);

  const loadLinks = async () => {
    try {
      const all = (await ctx.api.links()).links.filter((l) => l.path === entry.path);
      mount(linkList, all.length ? all.map((l) => h("li.link", { "data-id": String(l.id) },
        h("span", { text: `${l.mode === "upload" ? "File request" : "Download"} link, made ${formatDate(l.created_at)}`
          + `${l.has_password ? ", with password" : ""}, ${l.expires_at ? `expires ${formatDate(l.expires_at)}` : "never expires"}` }),
        h("button.small.danger", { type: "button", text: "Revoke", "aria-label": `Revoke link ${l.id}`, onclick: () => revoke(l.id) })))
        : h("li.muted", { text: "No links yet." }));
    } catch (err) { fail(err); }
  };
  const createLink = async () => {
    error.textContent = "";
    try {
      const link = await ctx.api.createLink({ path: entry.path, expires: expiry.value || undefined, password: password.value || undefined });
      const url = linkPageUrl(/** @type {string} */ (link.token));
      const field = /** @type {HTMLInputElement} */ (h("input", { id: "link-url", readonly: true, value: url }));
      mount(fresh, h("label", { for: "link-url", text: "New link (copy it now: it is not shown again)" }), field,
        h("button.small", { type: "button", text: "Copy link", onclick: () => navigator.clipboard?.writeText(url).then(
          () => ctx.notify("Link copied"), () => { field.select(); ctx.notify("Select and copy the address", "info"); }) }));
      password.value = "";
      field.focus();
      field.select();
      await loadLinks();
    } catch (err) { fail(err); }
  };
  /** @param {number} id */
  const revoke = async (id) => {
    error.textContent = "";
    try {
      await ctx.api.revokeLink(id);
      ctx.notify("Link revoked");
      await loadLinks();
      /** @type {HTMLElement} */ (dialog.querySelector("#link-expiry")).focus();
    } catch (err) { fail(err); }
  };

  const dialog = /** @type {HTMLDialogElement} */ (h("dialog.share-dialog", { "aria-labelledby": "share-title" },
    h("div.preview-head", {},
      h("h2", { id: "share-title", text: `Share ${entry.name}` }),
      h("button.small", { type: "button", text: "Close", onclick: () => dialog.close() })),
    !canShare ? h("p", { text: `You are a ${entry.share?.role} of this ${what}; only its owner can share it.` }) : null,
    error, people, links));
  dialog.addEventListener("close", () => { dialog.remove(); refocus(opener); });
  document.body.append(dialog);
  dialog.showModal();
  if (people) loadMembers();
  if (links) loadLinks();
  return dialog;
}

/** Leave a folder or file someone shared with you (your copy of the mount goes away; theirs stays). @param {import("./registry.js").AppContext} ctx @param {Entry} entry */
async function leave(ctx, entry) {
  if (!entry.share || !await confirmDialog(`Leave ${entry.name}?`, "It disappears from your files; the owner keeps it.", "Leave")) return;
  try {
    await ctx.api.leaveShare(entry.share.ns);
    ctx.notify(`Left ${entry.name}`);
  } catch (err) {
    ctx.notify(`Could not leave ${entry.name}: ${/** @type {Error} */ (err).message}`, "error");
  }
}

rowActions.push({ id: "share", label: "Share", applies: () => true, run: openShare });
rowActions.push({ id: "leave", label: "Leave", applies: (e) => !!e.share && e.share.role !== "owner", run: leave });
