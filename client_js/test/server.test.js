// The library against a real Satchel server: uploads (resumed after failures), Range downloads,
// and the live channel (push, replay from a cursor, reconnect, presence). tests/web/test_node.py
// starts the server and runs this file with SATCHEL_TEST_SERVER set.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import WebSocket from "ws";

import { Api, ApiError } from "../src/lib/api.js";
import { downloadBlob } from "../src/lib/download.js";
import { LiveClient, LiveError } from "../src/lib/live.js";
import { scanBlob } from "../src/lib/scan.js";
import { packHeader, packsOf, uploadBlob } from "../src/lib/upload.js";

const SERVER = process.env.SATCHEL_TEST_SERVER;
if (!SERVER) throw new Error("SATCHEL_TEST_SERVER is not set: run through `./dev test tests/web/test_node.py`");
const PASSWORD = "correct horse battery";

/** A new user with one logged-in device; `device()` logs in another device of the same user. */
async function newUser() {
  const name = `js${randomBytes(5).toString("hex")}`;
  const api = new Api(SERVER);
  await api.signup(name, PASSWORD);
  await api.login(name, PASSWORD, "node test", "sdk");
  const device = async (label = "second") => {
    const other = new Api(SERVER);
    await other.login(name, PASSWORD, label, "sdk");
    return other;
  };
  return { name, api, device };
}

// One user for the whole file (argon2 makes each sign-up and log-in cost most of a second); each
// test works in its own folder.
let sharedUser;
const user = () => (sharedUser ??= newUser());

/** @param {LiveClient} live @param {string} event @param {(x: any) => boolean} pred */
function next(live, event, pred = () => true, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${event} within ${ms} ms`)); }, ms);
    const off = live.on(/** @type {any} */ (event), (x) => { if (pred(x)) { clearTimeout(timer); off(); resolve(x); } });
  });
}

test("upload, then download the same bytes through Range, whole and in part", async () => {
  const { api } = await user();
  const bytes = randomBytes(1_500_000);
  const phases = new Set();
  let last;
  const entry = await uploadBlob(api, new Blob([bytes]), "/docs/big.bin", {
    mime: "application/octet-stream", mtime: 1764000000000,
    onProgress: (p) => { phases.add(p.phase); last = p; },
  });
  assert.equal(entry.size, bytes.length);
  assert.deepEqual([...phases], ["hashing", "uploading", "committing", "done"]);
  assert.equal(last.sent, bytes.length);
  assert.equal(entry.content_hash, (await scanBlob(new Blob([bytes]))).contentHash);
  const whole = await downloadBlob(api, entry.id);
  assert.ok(Buffer.from(await whole.blob.arrayBuffer()).equals(bytes));
  const part = await downloadBlob(api, entry.id, { start: 1000, end: 1_200_000 });
  assert.ok(Buffer.from(await part.blob.arrayBuffer()).equals(bytes.subarray(1000, 1_200_000)));
  const listing = await api.list("/docs");
  assert.deepEqual(listing.entries.map((e) => e.name), ["big.bin"]);
});

test("an upload survives failing chunk PUTs and resumes an interrupted session", async () => {
  const { api: shared } = await user();
  const api = new Api(SERVER, { token: shared.token });  // its own fetch, replaced below
  const bytes = randomBytes(900_000);
  const blob = new Blob([bytes]);
  const realFetch = api.fetch;
  let puts = 0;
  let failures = 0;
  // The network drops every third chunk PUT once: the engine retries with backoff.
  api.fetch = /** @type {typeof fetch} */ (async (url, init) => {
    if (init?.method === "PUT" && ++puts % 3 === 0 && failures < 3) {
      failures++;
      throw new TypeError("fetch failed");
    }
    return realFetch(url, init);
  });
  const entry = await uploadBlob(api, blob, "/flaky.bin", { packs: false });  // a PUT per chunk
  assert.equal(failures, 3);
  assert.equal(entry.size, bytes.length);

  // Interrupted: abort after two chunks are stored, then upload again: only the rest is sent.
  const next = randomBytes(900_000);
  const ctl = new AbortController();
  let stored = 0;
  api.fetch = /** @type {typeof fetch} */ (async (url, init) => {
    const resp = await realFetch(url, init);
    if (init?.method === "PUT" && ++stored === 2) ctl.abort();
    return resp;
  });
  await assert.rejects(uploadBlob(api, new Blob([next]), "/resumed.bin", { signal: ctl.signal, concurrency: 1, packs: false }),
    { name: "AbortError" });
  const { chunks } = await scanBlob(new Blob([next]));
  let resent = 0;
  api.fetch = /** @type {typeof fetch} */ (async (url, init) => {
    if (init?.method === "PUT") resent++;
    return realFetch(url, init);
  });
  const done = await uploadBlob(api, new Blob([next]), "/resumed.bin", { packs: false });
  assert.equal(resent, chunks.length - 2);
  const back = await downloadBlob(api, done.id);
  assert.ok(Buffer.from(await back.blob.arrayBuffer()).equals(next));
});

test("chunks travel in packs when the server offers a pack URL, and a failed pack is sent again", async () => {
  const { api: shared } = await user();
  const api = new Api(SERVER, { token: shared.token });
  const realFetch = api.fetch;
  const bytes = randomBytes(3_000_000);
  const { chunks } = await scanBlob(new Blob([bytes]));
  /** @type {string[]} */
  const puts = [];
  let failed = 0;
  api.fetch = /** @type {typeof fetch} */ (async (url, init) => {
    if (init?.method === "PUT") {
      puts.push(String(url));
      if (failed === 0) { failed++; throw new TypeError("fetch failed"); }
    }
    return realFetch(url, init);
  });
  const entry = await uploadBlob(api, new Blob([bytes]), "/packed.bin");
  assert.equal(entry.content_hash, (await scanBlob(new Blob([bytes]))).contentHash);
  assert.ok(chunks.length > 20);
  if (puts.some((u) => u.includes("/api/v1/blobs/pack/"))) {
    // A server that stores chunks itself: one pack (3 MB < 8 MiB), sent twice (the failure).
    assert.equal(puts.length, 2);
    assert.ok(puts.every((u) => u.includes("/api/v1/blobs/pack/")));
  } else {
    // An object store: no pack URL, a presigned PUT per chunk (plus the one that failed).
    assert.equal(puts.length, chunks.length + 1);
  }
  const back = await downloadBlob(api, entry.id);
  assert.ok(Buffer.from(await back.blob.arrayBuffer()).equals(bytes));
});

test("packHeader and packsOf follow protocol.md's pack layout", () => {
  const h = "ab".repeat(32);
  const head = packHeader([{ hash: h, size: 5 }, { hash: "01".repeat(32), size: 70000 }]);
  assert.equal(head.length, 4 + 2 * 36);
  assert.deepEqual([...head.subarray(0, 4)], [0, 0, 0, 2]);
  assert.equal(Buffer.from(head.subarray(4, 36)).toString("hex"), h);
  assert.deepEqual([...head.subarray(36, 40)], [0, 0, 0, 5]);
  assert.deepEqual([...head.subarray(72, 76)], [0, 1, 0x11, 0x70]);
  const mib = 1024 * 1024;
  const missing = [3, 3, 3, 1, 16].map((n, i) => ({ hash: String(i), size: n * mib, method: "PUT", headers: {}, url: "" }));
  assert.deepEqual(packsOf(missing).map((p) => p.map((m) => m.hash)), [["0", "1"], ["2", "3"], ["4"]]);
  const tiny = Array.from({ length: 4097 }, (_, i) => ({ hash: String(i), size: 1, method: "PUT", headers: {}, url: "" }));
  assert.deepEqual(packsOf(tiny).map((p) => p.length), [4096, 1]);
});

test("a stale parent revision is a conflict carrying the head", async () => {
  const { api } = await user();
  const first = await uploadBlob(api, new Blob(["one"]), "/c.txt");
  await uploadBlob(api, new Blob(["two"]), "/c.txt", { parentRev: first.rev });
  await assert.rejects(uploadBlob(api, new Blob(["three"]), "/c.txt", { parentRev: first.rev }), (err) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, "conflict");
    assert.equal(err.status, 409);
    assert.ok(err.details.head_rev > first.rev);
    return true;
  });
});

test("live: changes from another device arrive, replay from a cursor, and survive a reconnect", async () => {
  const { api, device } = await newUser();
  const other = await device();
  const account = await api.account();
  const ns = account.root_namespace;
  const { cursor } = await api.latest(ns);
  await api.mkdir("/before");  // made before subscribing: replayed from the cursor
  const live = new LiveClient(api, { WebSocket, maxDelayMs: 200 });
  const welcome = await live.connect();
  assert.equal(welcome.user.name, account.name);
  const replayed = next(live, "change", (c) => c.path === "/before");
  const sub = await live.subscribe(ns, cursor);
  assert.equal((await replayed).op, "mkdir");
  assert.equal(sub.ns, ns);

  const started = Date.now();
  const pushed = next(live, "change", (c) => c.path === "/from-other.txt");
  await uploadBlob(other, new Blob(["hi there"]), "/from-other.txt");
  const change = await pushed;
  assert.ok(Date.now() - started < 5000);
  assert.equal(change.op, "create");
  assert.equal(change.size, 8);

  // Drop the connection; a change made meanwhile is replayed after the reconnect.
  const reopened = next(live, "open");
  live.ws.terminate();
  await other.mkdir("/while-away");
  const missed = next(live, "change", (c) => c.path === "/while-away");
  await reopened;
  assert.equal((await missed).op, "mkdir");
  live.close();
});

test("live: presence of another device appears and disappears", async () => {
  const { api, device } = await user();
  const other = await device("tablet");
  const ns = (await api.account()).root_namespace;
  const a = new LiveClient(api, { WebSocket });
  const b = new LiveClient(other, { WebSocket });
  await a.connect();
  await b.connect();
  const first = await a.setPresence(ns, "/", "viewing");
  assert.equal(first.members.length, 1);
  const joined = next(a, "presence_event", (e) => e.event === "join");
  const snap = await b.setPresence(ns, "/", "viewing");
  assert.equal(snap.members.length, 2);
  assert.equal((await joined).member.device, "tablet");
  const left = next(a, "presence_event", (e) => e.event === "leave");
  b.close();
  assert.equal((await left).member.device, "tablet");
  a.close();
});

test("live: a bad token is refused and not retried", async () => {
  const api = new Api(SERVER, { token: `sat_${"A".repeat(43)}` });
  const live = new LiveClient(api, { WebSocket });
  const statuses = [];
  live.on("status", (s) => statuses.push(s));
  await assert.rejects(live.connect(), (err) => err instanceof LiveError && err.code === "unauthorized");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(live.status, "closed");
  assert.ok(!statuses.includes("reconnecting"));
});

test("live: a cursor the server refuses restarts the feed from now with a reset", async () => {
  const { api } = await user();
  const ns = (await api.account()).root_namespace;
  const live = new LiveClient(api, { WebSocket });
  live.subs.set(ns, { ns, seq: null, cursor: `v1.${ns}.999999999` });  // ahead of the journal
  const reset = next(live, "reset");
  await live.connect();
  assert.deepEqual(await reset, { ns, code: "bad_cursor" });
  const pushed = next(live, "change", (c) => c.path === "/after-reset");
  await api.mkdir("/after-reset");
  assert.equal((await pushed).op, "mkdir");
  live.close();
});

test("a download resumes from the last byte received after the connection drops", async () => {
  const { api: shared } = await user();
  const api = new Api(SERVER, { token: shared.token });
  const bytes = randomBytes(1_000_000);
  const entry = await uploadBlob(api, new Blob([bytes]), "/dl/resume.bin");
  const realFetch = api.fetch;
  const ranges = [];
  let dropped = 0;
  api.fetch = /** @type {typeof fetch} */ (async (url, init) => {
    const range = new Headers(init?.headers).get("Range");
    ranges.push(range);
    if (ranges.length === 3 && !dropped++) throw new TypeError("network changed");
    return realFetch(url, init);
  });
  const progress = [];
  const out = await downloadBlob(api, entry.id, { rev: entry.rev, segment: 256 * 1024, onProgress: (n) => progress.push(n) });
  assert.ok(Buffer.from(await out.blob.arrayBuffer()).equals(bytes));
  assert.equal(dropped, 1);
  // Segments of 256 KiB; the third request failed and was repeated from the same byte.
  assert.deepEqual(ranges, ["bytes=0-262143", "bytes=262144-524287", "bytes=524288-786431", "bytes=524288-786431",
    "bytes=786432-999999"]);
  assert.equal(progress.at(-1), bytes.length);
  assert.equal(out.etag, `"${entry.content_hash}"`);
});

test("versions, trash, quota and search through the Api", async () => {
  const { api } = await user();
  const first = await uploadBlob(api, new Blob(["alpha marmalade\n"]), "/hist/jam.txt", { mime: "text/plain" });
  await uploadBlob(api, new Blob(["beta\n"]), "/hist/jam.txt", { parentRev: first.rev });
  const { revisions } = await api.revisions(first.id);
  assert.deepEqual(revisions.map((r) => r.current), [true, false]);
  const restored = await api.restoreRevision(first.id, first.rev);
  assert.equal(restored.content_hash, first.content_hash);
  assert.ok(restored.rev > revisions[0].rev);

  const found = await api.search("marmal", { path: "/hist" });
  assert.deepEqual(found.entries.map((e) => e.path), ["/hist/jam.txt"]);
  await assert.rejects(api.search(""), (err) => err instanceof ApiError && err.code === "bad_request");

  const q = await api.quota();
  assert.ok(q.used >= first.size && q.limit === 0 && q.available === null);

  const gone = await api.delete("/hist/jam.txt");
  const { entries } = await api.trash({ path: "/hist" });
  assert.equal(entries[0].path, "/hist/jam.txt");
  assert.ok(entries[0].deleted_at);
  assert.equal((await api.restoreTrash({ id: gone.id })).path, "/hist/jam.txt");
  await api.delete("/hist/jam.txt");
  assert.equal((await api.purgeTrash({ path: "/hist/jam.txt" })).id, gone.id);
  await assert.rejects(api.restoreTrash({ id: gone.id }), (err) => err instanceof ApiError && err.code === "not_found");
});

test("sharing and links through the Api, and a link with a password read without an account", async () => {
  const owner = await newUser();
  const friend = await newUser();
  await uploadBlob(owner.api, new Blob(["shared bytes"]), "/Crew/list.txt");
  const shared = await owner.api.share("/Crew", [{ user: friend.name, role: "viewer" }]);
  const me = shared.members.find((m) => m.user === friend.name);
  assert.equal(me?.role, "viewer");
  const mine = await friend.api.shares();
  assert.deepEqual(mine.shares.map((s) => [s.path, s.role]), [["/Crew", "viewer"]]);
  await assert.rejects(uploadBlob(friend.api, new Blob(["no"]), "/Crew/no.txt"),
    (err) => err instanceof ApiError && err.code === "forbidden");
  const changed = await owner.api.setMemberRole(shared.ns, /** @type {any} */ (me).user_id, "editor");
  assert.equal(changed.members.find((m) => m.user === friend.name)?.role, "editor");
  await friend.api.leaveShare(shared.ns);
  assert.deepEqual((await friend.api.shares()).shares, []);

  const link = await owner.api.createLink({ path: "/Crew/list.txt", expires: "1d", password: "pass word" });
  assert.ok(link.token?.startsWith("satl_") && link.has_password && link.expires_at);
  const stranger = new Api(SERVER);
  await assert.rejects(stranger.publicLink(link.token), (err) => err instanceof ApiError && err.code === "password_required");
  assert.equal((await stranger.publicLink(link.token, { password: "pass word" })).entry.name, "list.txt");
  const resp = await stranger.publicContent(link.token, { password: "pass word" });
  assert.equal(await resp.text(), "shared bytes");
  assert.deepEqual((await owner.api.links()).links.map((l) => l.id), [link.id]);
  await owner.api.revokeLink(link.id);
  await assert.rejects(stranger.publicLink(link.token, { password: "pass word" }),
    (err) => err instanceof ApiError && err.code === "not_found");
});
