// Human-readable sizes, dates, paths and file types for the listing.

const UNITS = ["B", "KB", "MB", "GB", "TB"];

/** @param {number | undefined} n bytes */
export function formatSize(n) {
  if (n === undefined) return "";
  let i = 0;
  let v = n;
  while (v >= 1000 && i < UNITS.length - 1) { v /= 1000; i++; }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${UNITS[i]}`;
}

/** @param {string | undefined} iso */
export function formatDate(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** @param {string} parent @param {string} name */
export function join(parent, name) {
  return parent === "/" ? `/${name}` : `${parent}/${name}`;
}

/** @param {string} path */
export function dirname(path) {
  const i = path.lastIndexOf("/");
  return i <= 0 ? "/" : path.slice(0, i);
}

/** @param {string} path */
export function basename(path) {
  return path.slice(path.lastIndexOf("/") + 1);
}

const KINDS = /** @type {const} */ ([
  ["image", /^image\//, /\.(png|jpe?g|gif|webp|svg|bmp|avif|ico)$/i],
  ["pdf", /^application\/pdf$/, /\.pdf$/i],
  ["text", /^text\/|json|xml|javascript|yaml|toml/, /\.(txt|md|csv|json|xml|ya?ml|toml|ini|log|py|js|ts|c|h|rs|go|java|html?|css|sh)$/i],
  ["audio", /^audio\//, /\.(mp3|wav|ogg|flac|m4a)$/i],
  ["video", /^video\//, /\.(mp4|webm|mkv|mov|avi)$/i],
  ["archive", /zip|tar|gzip|x-7z|rar|bzip/, /\.(zip|tar|gz|tgz|7z|rar|bz2|xz)$/i],
]);

/**
 * The kind of a file, for its icon and preview: by mime type, else by extension.
 * @param {{kind: string, name: string, mime?: string}} entry
 * @returns {"dir" | "image" | "pdf" | "text" | "audio" | "video" | "archive" | "file"}
 */
export function fileType(entry) {
  if (entry.kind === "dir") return "dir";
  const mime = entry.mime && entry.mime !== "application/octet-stream" ? entry.mime : "";
  for (const [kind, byMime, byExt] of KINDS) if ((mime && byMime.test(mime)) || byExt.test(entry.name)) return kind;
  return "file";
}

/** A mime type for an upload, from the browser's guess or the extension. @param {File} file */
export function guessMime(file) {
  if (file.type) return file.type;
  const ext = file.name.split(".").pop()?.toLowerCase() || "";
  const known = /** @type {Record<string, string>} */ ({
    md: "text/markdown", txt: "text/plain", pdf: "application/pdf", png: "image/png", jpg: "image/jpeg",
    jpeg: "image/jpeg", json: "application/json", csv: "text/csv",
  });
  return known[ext] || "application/octet-stream";
}
