// Modal dialogs on <dialog>: focus moves in, Escape closes, focus returns to what opened it.

import { h } from "./dom.js";

/**
 * Ask for one line of text. Resolves to the text, or null when cancelled.
 * @param {string} title @param {string} label @param {string} [value] @param {string} [confirm]
 * @returns {Promise<string | null>}
 */
export function promptDialog(title, label, value = "", confirm = "OK") {
  return new Promise((resolve) => {
    const opener = /** @type {HTMLElement | null} */ (document.activeElement);
    const input = /** @type {HTMLInputElement} */ (h("input", { id: "dialog-input", value, required: true, autocomplete: "off" }));
    const dialog = /** @type {HTMLDialogElement} */ (h("dialog.prompt", { "aria-labelledby": "dialog-title" },
      h("form", { method: "dialog" },
        h("h2", { id: "dialog-title", text: title }),
        h("label", { for: "dialog-input", text: label }), input,
        h("div.dialog-buttons", {},
          h("button", { type: "button", value: "cancel", text: "Cancel", onclick: () => dialog.close("cancel") }),
          h("button.primary", { type: "submit", value: "ok", text: confirm })))));
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok" && input.value.trim() !== "";
      dialog.remove();
      opener?.focus();
      resolve(ok ? input.value.trim() : null);
    });
    document.body.append(dialog);
    dialog.showModal();
    input.select();
  });
}

/**
 * Ask yes or no. @param {string} title @param {string} message @param {string} confirm
 * @returns {Promise<boolean>}
 */
export function confirmDialog(title, message, confirm) {
  return new Promise((resolve) => {
    const opener = /** @type {HTMLElement | null} */ (document.activeElement);
    const dialog = /** @type {HTMLDialogElement} */ (h("dialog.confirm", { "aria-labelledby": "dialog-title", "aria-describedby": "dialog-message" },
      h("form", { method: "dialog" },
        h("h2", { id: "dialog-title", text: title }),
        h("p", { id: "dialog-message", text: message }),
        h("div.dialog-buttons", {},
          h("button", { type: "submit", value: "cancel", text: "Cancel", autofocus: true }),
          h("button.danger", { type: "submit", value: "ok", text: confirm })))));
    dialog.addEventListener("close", () => {
      dialog.remove();
      opener?.focus();
      resolve(dialog.returnValue === "ok");
    });
    document.body.append(dialog);
    dialog.showModal();
  });
}

/**
 * Give focus back to what opened a dialog; if the listing was redrawn meanwhile (a live change),
 * to its replacement: the button with the same accessible name. @param {HTMLElement | null} opener
 */
export function refocus(opener) {
  const label = opener?.getAttribute("aria-label");
  const target = opener?.isConnected ? opener
    : label ? /** @type {HTMLElement | null} */ (document.querySelector(`[aria-label="${CSS.escape(label)}"]`)) : null;
  target?.focus();
}
