// Extension points, so later views plug in without editing the files view:
//   navItems   links in the header (e.g. Trash, Search)            -> {id, label, href}
//   views      hash routes "#/<name>/..." rendered in the main area -> (ctx, rest) => HTMLElement
//   rowActions buttons on a row (e.g. Versions, Share)              -> {id, label, applies(entry), run(ctx, entry)}
//   toolbarActions buttons in the files toolbar                     -> {id, label, run(ctx, folderPath)}

/**
 * @typedef {import("../lib/api.js").Entry} Entry
 * @typedef {{api: import("../lib/api.js").Api, live: import("./live-state.js").LiveState, account: any,
 *            navigate: (hash: string) => void, notify: (msg: string, kind?: "info" | "error") => void}} AppContext
 * @typedef {{id: string, label: string, applies: (e: Entry) => boolean, run: (ctx: AppContext, e: Entry) => void}} RowAction
 * @typedef {{id: string, label: string, run: (ctx: AppContext, folder: string) => void}} ToolbarAction
 */

/** @type {{id: string, label: string, href: string}[]} */
export const navItems = [{ id: "files", label: "Files", href: "#/files/" }];

/** @type {Map<string, (ctx: AppContext, rest: string) => HTMLElement>} */
export const views = new Map();

/** @type {RowAction[]} */
export const rowActions = [];

/** @type {ToolbarAction[]} */
export const toolbarActions = [];
