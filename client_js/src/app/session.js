// The signed-in device's token, kept in localStorage so a reload stays signed in.

const KEY = "satchel.session";

/** @typedef {{token: string, user: {id: number, name: string}, device_id: number}} Session */

/** @returns {Session | null} */
export function loadSession() {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) || "null");
    return s && typeof s.token === "string" ? s : null;
  } catch {
    return null;
  }
}

/** @param {Session | null} s */
export function saveSession(s) {
  if (s) localStorage.setItem(KEY, JSON.stringify(s));
  else localStorage.removeItem(KEY);
}

/** A device name the user can recognize in their device list. */
export function deviceName() {
  const ua = navigator.userAgent;
  const browser = /Firefox\//.test(ua) ? "Firefox" : /Edg\//.test(ua) ? "Edge" : /Chrom(e|ium)\//.test(ua) ? "Chromium"
    : /Safari\//.test(ua) ? "Safari" : "Browser";
  return `${browser} web app`;
}
