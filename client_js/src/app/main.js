// The web app's entry: sign-in or the signed-in shell (header, navigation, live status, the
// current view). Routes live in the URL hash: #/files/<path>, or a view registered in registry.js.

import { Api, ApiError } from "../lib/api.js";
import { h, mount } from "./dom.js";
import { FilesView, folderHash } from "./files.js";
import { LiveState } from "./live-state.js";
import "./features.js";
import { headerItems, navItems, publicViews, views } from "./registry.js";
import { loadSession, saveSession } from "./session.js";
import { signInView } from "./signin.js";

const root = /** @type {HTMLElement} */ (document.getElementById("app"));
const api = new Api("");

function start() {
  const [, name = "", ...rest] = (location.hash || "").slice(1).split("/");
  const publicView = publicViews.get(name);
  if (publicView) {  // a link holder's page: no account needed
    mount(root, publicView(new Api(""), rest.map(decodeURIComponent).join("/")));
    return;
  }
  const session = loadSession();
  if (!session) return showSignIn();
  api.token = session.token;
  signedIn(session.user).catch((err) => {
    if (err instanceof ApiError && err.status === 401) {
      saveSession(null);
      return showSignIn();
    }
    mount(root, h("main", { id: "main" }, h("p.form-error", { role: "alert", text: `Satchel is unreachable: ${err.message}` })));
  });
}

function showSignIn() {
  document.title = "Sign in – Satchel";
  mount(root, signInView(api, (login) => {
    saveSession({ token: login.token, user: login.user, device_id: login.device_id });
    if (!location.hash.startsWith("#/files")) history.replaceState(null, "", folderHash("/"));
    start();
  }));
}

/** @param {{id: number, name: string}} user */
async function signedIn(user) {
  const account = await api.account();
  const { cursor } = await api.latest(account.root_namespace);
  const live = new LiveState(api, account.root_namespace);
  const status = h("span.live-status", { role: "status", id: "live-status" });
  const toasts = h("div.toasts", { role: "status", "aria-live": "polite", id: "toasts" });
  const errors = h("div.toasts.errors", { role: "alert", id: "errors" });
  /** @type {import("./registry.js").AppContext} */
  const ctx = {
    api, live, account,
    navigate: (hash) => { if (location.hash !== hash) location.hash = hash; else route(); },
    notify: (msg, kind = "info", action) => {
      const box = kind === "error" ? errors : toasts;
      const t = h("p.toast", { class: kind }, msg, action
        ? h("button.small.toast-action", { type: "button", text: action.label, onclick: () => { t.remove(); action.run(); } }) : null);
      box.append(t);
      setTimeout(() => t.remove(), kind === "error" || action ? 10_000 : 4_000);
      return t;
    },
  };
  const showStatus = (/** @type {string} */ s) => {
    const live = s === "open";
    status.textContent = live ? "Live" : s === "closed" ? "Offline" : "Reconnecting…";
    status.className = `live-status ${live ? "ok" : "stale"}`;
    status.title = live ? "Changes from other devices appear as they happen"
      : "Not connected: the listing may be stale until the connection is back";
    document.body.classList.toggle("offline", !live);
  };
  live.client.on("status", showStatus);
  live.on("ended", (m) => ctx.notify(`Your access to the shared folder ${m.path} ended.`, "error"));
  live.client.on("closed", (c) => {
    if (c.code === 4001) { saveSession(null); live.stop(); showSignIn(); }
  });
  showStatus("connecting");
  const signOut = async () => {
    live.stop();
    try { await api.logout(); } catch { /* the token is forgotten either way */ }
    saveSession(null);
    location.hash = "";
    showSignIn();
  };
  const nav = h("nav.main-nav", { "aria-label": "Main" }, h("ul", {}, navItems.map((n) => h("li", {}, h("a", { href: n.href, "data-nav": n.id, text: n.label })))));
  const header = h("header.app-header", {},
    h("a.brand", { href: folderHash("/"), text: "Satchel" }), nav,
    h("div.header-right", {}, headerItems.map((item) => item(ctx)), status,
      h("span.user", { text: user.name, title: `Signed in as ${user.name}` }),
      h("button.small", { type: "button", text: "Sign out", onclick: signOut })));
  const area = h("div.view");
  mount(root, header, area, toasts, errors);

  /** @type {FilesView | null} */
  let files = null;
  /** @type {(() => void) | undefined} a view's clean-up (e.g. the editor leaving its document) */
  let dispose;
  const route = () => {
    dispose?.();
    dispose = undefined;
    const hash = location.hash || "#/files/";
    const [, name = "files", ...rest] = hash.slice(1).split("/");
    for (const a of nav.querySelectorAll("a")) a.toggleAttribute("aria-current", a.dataset.nav === name);
    if (name === "files") {
      if (!files) files = new FilesView(ctx);
      if (area.firstChild !== files.el) mount(area, files.el);
      const path = `/${rest.filter(Boolean).map(decodeURIComponent).join("/")}`;
      if (files.path !== path || !files.entries.size) files.show(path);
      return;
    }
    const view = views.get(name);
    files?.destroy();
    files = null;
    const el = view ? view(ctx, rest.map(decodeURIComponent).join("/")) : h("main", { id: "main" }, h("h1", { text: "Not found" }));
    dispose = /** @type {{dispose?: () => void}} */ (el).dispose;
    mount(area, el);
  };
  window.onhashchange = route;
  route();
  live.start(cursor).catch(() => {});  // reconnects by itself; the status shows the state
}

start();
