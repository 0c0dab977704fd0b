// The sign-in page (and account creation, when the server allows it).

import { ApiError } from "../lib/api.js";
import { h } from "./dom.js";
import { deviceName } from "./session.js";

/**
 * @param {import("../lib/api.js").Api} api
 * @param {(login: import("../lib/api.js").Login) => void} onSignedIn
 */
export function signInView(api, onSignedIn) {
  let creating = false;
  const name = /** @type {HTMLInputElement} */ (h("input", { id: "signin-name", name: "username", autocomplete: "username",
    required: true, autocapitalize: "none", spellcheck: "false" }));
  const password = /** @type {HTMLInputElement} */ (h("input", { id: "signin-password", name: "password", type: "password",
    autocomplete: "current-password", required: true, minLength: 8 }));
  const error = h("p.form-error", { role: "alert", id: "signin-error" });
  const submit = /** @type {HTMLButtonElement} */ (h("button.primary", { type: "submit", text: "Sign in" }));
  const title = h("h1", { text: "Sign in to Satchel" });
  const toggle = h("button.link", {
    type: "button",
    text: "Create an account",
    onclick: () => {
      creating = !creating;
      title.textContent = creating ? "Create your Satchel account" : "Sign in to Satchel";
      submit.textContent = creating ? "Create account" : "Sign in";
      toggle.textContent = creating ? "I already have an account" : "Create an account";
      password.autocomplete = creating ? "new-password" : "current-password";
      error.textContent = "";
    },
  });
  const form = h("form.signin", {
    "aria-labelledby": "signin-title",
    onsubmit: async (/** @type {SubmitEvent} */ ev) => {
      ev.preventDefault();
      error.textContent = "";
      submit.disabled = true;
      try {
        if (creating) await api.signup(name.value.trim(), password.value);
        onSignedIn(await api.login(name.value.trim(), password.value, deviceName()));
      } catch (err) {
        error.textContent = err instanceof ApiError && err.code === "bad_credentials"
          ? "Wrong user name or password." : /** @type {Error} */ (err).message;
        submit.disabled = false;
        password.focus();
      }
    },
  },
  title,
  h("label", { for: "signin-name", text: "User name" }), name,
  h("label", { for: "signin-password", text: "Password" }), password,
  error, submit, toggle);
  title.id = "signin-title";
  queueMicrotask(() => name.focus());
  return h("main.signin-page", { id: "main" }, form);
}
