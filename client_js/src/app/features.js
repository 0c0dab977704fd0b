// The views beyond the files listing; each registers itself in registry.js when imported.
import "./trash.js";
import "./versions.js";
import "./quota.js";
import "./search.js";
import "./share.js";
import "./public-link.js";
import "./editor.js";
