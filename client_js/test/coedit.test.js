// The Yjs provider (DocSession) against a real Satchel server: join and sync, concurrent edits with
// emoji and combining characters converge, awareness, nothing typed offline is lost, the server
// saves a revision, refusals. tests/web/test_node.py runs it with SATCHEL_TEST_SERVER set.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import WebSocket from "ws";

import { Api } from "../src/lib/api.js";
import { DocSession } from "../src/lib/coedit.js";
import { downloadBlob } from "../src/lib/download.js";
import { LiveClient } from "../src/lib/live.js";
import { uploadBlob } from "../src/lib/upload.js";

const SERVER = process.env.SATCHEL_TEST_SERVER;
if (!SERVER) throw new Error("SATCHEL_TEST_SERVER is not set: run through `./dev test tests/web/test_node.py`");
const PASSWORD = "correct horse battery";

/** A user with two logged-in devices, each with its own live channel. */
async function twoDevices() {
  const name = `jc${randomBytes(5).toString("hex")}`;
  const a = new Api(SERVER);
  await a.signup(name, PASSWORD);
  await a.login(name, PASSWORD, "node a", "sdk");
  const b = new Api(SERVER);
  await b.login(name, PASSWORD, "node b", "sdk");
  const la = new LiveClient(a, { WebSocket, maxDelayMs: 200 });
  const lb = new LiveClient(b, { WebSocket, maxDelayMs: 200 });
  await la.connect();
  await lb.connect();
  return { a, b, la, lb };
}

/** Resolve when `pred()` holds, polling. @param {() => boolean} pred */
async function until(pred, what, ms = 8000) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** @param {DocSession} s @param {string} event */
function once(s, event, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${event} within ${ms} ms`)); }, ms);
    const off = s.on(/** @type {any} */ (event), (x) => { clearTimeout(timer); off(); resolve(x); });
  });
}

test("two sessions: initial text, concurrent edits at one place with emoji and combining marks converge and are saved", async () => {
  const { a, b, la, lb } = await twoDevices();
  const entry = await uploadBlob(a, new Blob(["héllo 👋\n"]), "/notes.md");
  const sa = new DocSession(la, "/notes.md", { user: { name: "a", color: "#1f6feb" } });
  const sb = new DocSession(lb, "/notes.md", { user: { name: "b", color: "#c2410c" } });
  const ja = await sa.join();
  assert.equal(ja.role, "editor");
  assert.equal(ja.file_id, entry.id);
  assert.equal(sa.text.toString(), "héllo 👋\n");
  await sb.join();
  assert.equal(sb.text.toString(), "héllo 👋\n");

  // Both insert at the same place in the same tick, then keep typing at random places.
  sa.text.insert(0, "A👍");
  sb.text.insert(0, "e\u0301B");
  await until(() => sa.text.toString() === sb.text.toString() && sa.text.length > 12, "the same-spot inserts");
  assert.ok(["A👍e\u0301Bhéllo 👋\n", "e\u0301BA👍héllo 👋\n"].includes(sa.text.toString()));
  let seed = 7;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % n; };
  const pieces = ["x", "👩‍👩‍👧", "n\u0303", "日本", "\n", "🙂"];
  for (let i = 0; i < 60; i++) {
    const s = i % 2 ? sa : sb;
    const len = s.text.length;
    if (rnd(4) === 0 && len > 2) {
      // Delete whole UTF-16 units only where no surrogate pair is cut (Yjs would store half a pair).
      const at = rnd(len - 1);
      const str = s.text.toString();
      const cut = (k) => k > 0 && k < str.length && /[\uDC00-\uDFFF]/.test(str[k]);
      if (!cut(at) && !cut(at + 1)) s.text.delete(at, 1);
    } else {
      let at = rnd(len + 1);
      const str = s.text.toString();
      if (at > 0 && at < str.length && /[\uDC00-\uDFFF]/.test(str[at])) at -= 1;
      s.text.insert(at, pieces[rnd(pieces.length)]);
    }
    if (i % 7 === 0) await new Promise((r) => setTimeout(r, 5));
  }
  await until(() => sa.text.toString() === sb.text.toString(), "convergence");
  const text = sa.text.toString();

  const saved = await once(sa, "saved");
  assert.ok(saved.rev > entry.rev);
  const { blob } = await downloadBlob(a, entry.id);
  assert.equal(await blob.text(), text);
  await sa.destroy();
  await sb.destroy();
  la.close();
  lb.close();
});

test("awareness: the other session's user and cursor arrive, and go when it leaves", async () => {
  const { a, la, lb } = await twoDevices();
  await uploadBlob(a, new Blob(["abc"]), "/aware.txt");
  const sa = new DocSession(la, "/aware.txt", { user: { name: "ann", color: "#1f6feb" } });
  const sb = new DocSession(lb, "/aware.txt", { user: { name: "bob", color: "#c2410c" } });
  await sa.join();
  await sb.join();
  sb.awareness.setLocalStateField("cursor", { anchor: 1, head: 2 });
  const bobOnA = () => [...sa.awareness.getStates().values()].find((s) => s.user?.name === "bob");
  await until(() => bobOnA()?.cursor?.head === 2, "bob's cursor on a");
  assert.ok([...sb.awareness.getStates().values()].some((s) => s.user?.name === "ann"));
  await sb.destroy();
  await until(() => !bobOnA(), "bob gone from a");
  await sa.destroy();
  la.close();
  lb.close();
});

test("offline: edits typed while disconnected reach the other session after the reconnect", async () => {
  const { a, la, lb } = await twoDevices();
  await uploadBlob(a, new Blob(["start\n"]), "/offline.txt");
  const sa = new DocSession(la, "/offline.txt");
  const sb = new DocSession(lb, "/offline.txt");
  await sa.join();
  await sb.join();
  const offline = once(sa, "status");
  la.ws.terminate();
  assert.equal(await offline, "offline");
  sa.text.insert(sa.text.length, "typed offline 👋\n");
  sb.text.insert(0, "meanwhile ");
  const rejoined = once(sa, "joined");
  await rejoined;
  await until(() => sa.text.toString() === sb.text.toString(), "convergence after reconnect");
  assert.equal(sb.text.toString(), "meanwhile start\ntyped offline 👋\n");
  await sa.destroy();
  await sb.destroy();
  la.close();
  lb.close();
});

test("a folder shared while its document is open: editing goes on, and a rejoin finds the file in the share", async () => {
  const { a, la, lb } = await twoDevices();
  const friend = new Api(SERVER);
  const friendName = `jf${randomBytes(5).toString("hex")}`;
  await friend.signup(friendName, PASSWORD);
  await a.mkdir("/Team");
  await uploadBlob(a, new Blob(["plan\n"]), "/Team/plan.md");
  const sa = new DocSession(la, "/Team/plan.md");
  const sb = new DocSession(lb, "/Team/plan.md");
  const before = await sa.join();
  await sb.join();
  const shared = await a.share("/Team", [{ user: friendName, role: "editor" }]);
  sa.text.insert(sa.text.length, "after the share\n");
  await until(() => sb.text.toString() === "plan\nafter the share\n", "the edit made after the share");
  // The old namespace no longer holds the file: a rejoin by path there would fail; by id it works.
  const offline = once(sa, "status");
  la.ws.terminate();
  assert.equal(await offline, "offline");
  sa.text.insert(0, "offline ");
  const rejoined = await once(sa, "joined");
  assert.equal(rejoined.ns, shared.ns);
  assert.notEqual(rejoined.ns, before.ns);
  await until(() => sb.text.toString() === "offline plan\nafter the share\n", "the offline edit after the rejoin");
  assert.equal(sa.status, "synced");
  await sa.destroy();
  await sb.destroy();
  la.close();
  lb.close();
});

test("over a frame: 2 MB typed offline is sent as several updates; a late joiner gets a doc_joined over 1 MiB", async () => {
  const { a, b, la, lb } = await twoDevices();
  await uploadBlob(a, new Blob(["top\n"]), "/long.txt");
  const sa = new DocSession(la, "/long.txt");
  const sb = new DocSession(lb, "/long.txt");
  await sa.join();
  await sb.join();
  const offline = once(sa, "status");
  la.ws.terminate();
  assert.equal(await offline, "offline");
  const line = "é👍 offline typing, one transaction at a time\n".repeat(2000);  // ~100 KB each
  for (let i = 0; i < 20; i++) sa.text.insert(sa.text.length, line);
  const expected = sa.text.toString();
  assert.ok(new TextEncoder().encode(expected).byteLength > 1_500_000);
  await once(sa, "joined", 15_000);
  await until(() => sb.text.length === sa.text.length, "the offline text on b", 20_000);
  assert.equal(sb.text.toString(), expected);
  // A third session joining now receives the whole state in one doc_joined over 1 MiB.
  const lc = new LiveClient(b, { WebSocket });
  await lc.connect();
  const sc = new DocSession(lc, "/long.txt");
  await sc.join();
  assert.equal(sc.text.toString(), expected);
  for (const s of [sa, sb, sc]) await s.destroy();
  for (const l of [la, lb, lc]) l.close();
});

test("refusals: not text, no such file; the session is closed with the reason", async () => {
  const { a, la, lb } = await twoDevices();
  lb.close();
  await uploadBlob(a, new Blob([new Uint8Array([0xff, 0xfe, 0x00, 0x81, 0x00, 0xc3])]), "/blob.bin");
  const bin = new DocSession(la, "/blob.bin");
  const closed = once(bin, "closed");
  await assert.rejects(bin.join(), (err) => err.code === "not_text");
  assert.equal((await closed).reason, "not_text");
  assert.equal(bin.status, "closed");
  const none = new DocSession(la, "/nope.txt");
  await assert.rejects(none.join(), (err) => err.code === "not_found");
  await bin.destroy();  // frees the awareness timer too
  await none.destroy();
  la.close();
});
