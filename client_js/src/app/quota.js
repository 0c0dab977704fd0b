// The user's storage use in the header: a meter with "used of limit" (or just "used" when unlimited).

import { h } from "./dom.js";
import { formatSize } from "./format.js";
import { headerItems } from "./registry.js";

/** @param {import("./registry.js").AppContext} ctx */
function quotaMeter(ctx) {
  const label = h("span.quota-label", { id: "quota-label" });
  const meter = /** @type {HTMLMeterElement} */ (h("meter.quota-meter", { min: 0, max: 1, value: 0, "aria-labelledby": "quota-label", hidden: true }));
  const el = h("span.quota", { id: "quota", title: "Storage used (old versions and the trash do not count)" }, meter, label);
  const refresh = async () => {
    try {
      const q = await ctx.api.quota();
      label.textContent = q.limit ? `${formatSize(q.used)} of ${formatSize(q.limit)} used` : `${formatSize(q.used)} used`;
      meter.hidden = !q.limit;
      if (q.limit) { meter.max = q.limit; meter.high = q.limit * 0.9; meter.value = q.used; }
    } catch {
      label.textContent = "";  // not worth an error toast: the next change tries again
    }
  };
  // Usage moves with every change the user (or a sharer) makes: re-read it, at most once a second.
  let timer = 0;
  ctx.live.client.on("change", () => { if (!timer) timer = window.setTimeout(() => { timer = 0; refresh(); }, 1000); });
  refresh();
  return el;
}

headerItems.push(quotaMeter);
