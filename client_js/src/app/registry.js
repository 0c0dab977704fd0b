// Extension points, so later views plug in without editing the files view:
//   navItems   links in the header (e.g. Trash, Search)            -> {id, label, href}
//   views      hash routes "#/<name>/..." rendered in the main area -> (ctx, rest) => HTMLElement
//              (an element with a `dispose` function has it called when the route changes)
//   rowActions buttons on a row (e.g. Versions, Share)              -> {id, label, applies(entry), run(ctx, entry)}
//   toolbarActions buttons in the files toolbar                     -> {id, label, run(ctx, folderPath)}
//   headerItems  widgets in the header (e.g. quota, search box)     -> (ctx) => HTMLElement
//   publicViews  hash routes shown without signing in (e.g. a link) -> (api, rest) => HTMLElement

/**
 * @typedef {import("../lib/api.js").Entry} Entry
 * @typedef {{api: import("../lib/api.js").Api, live: import("./live-state.js").LiveState, account: any,
 *            navigate: (hash: string) => void,
 *            notify: (msg: string, kind?: "info" | "error", action?: {label: string, run: () => void}) => HTMLElement}} AppContext
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

/** @type {((ctx: AppContext) => HTMLElement)[]} */
export const headerItems = [];

/** @type {Map<string, (api: import("../lib/api.js").Api, rest: string) => HTMLElement>} */
export const publicViews = new Map();
