// Relayed (uncached) request bodies stream through hubcache: uploads larger than the old 64 MiB
// buffer reach the Hub byte for byte, with Content-Length and chunked, while hubcache's memory
// stays bounded by its buffers, not by the body.
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/relay.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import { once } from "node:events";
import { startFakeHub, startHubcache, hubcacheBin } from "./harness.mjs";
import { SANITIZER_RE } from "./proxy_lib.mjs";

const MiB = 1 << 20;
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

let fake;
let hc;

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: 1 * MiB, quiet: true });
  hc = await startHubcache({ upstream: fake.hubUrl, args: ["--log-level", "warn"] });
});
after(async () => {
  if (skip) return;
  try {
    await hc?.stop();
  } finally {
    await fake?.close();
  }
});

/**
 * Sends `size` bytes generated on the fly (never held whole) with `method` to `path`; returns the
 * response status, its parsed JSON body and the sha256 of what was sent.
 */
async function upload(base, path, { size, chunked = false, token = null, method = "PUT" }) {
  const u = new URL(path, base);
  const headers = { "Content-Type": "application/octet-stream" };
  if (!chunked) headers["Content-Length"] = String(size);
  if (token) headers.Authorization = `Bearer ${token}`;
  const req = http.request({ host: u.hostname, port: u.port, method, path: u.pathname, headers, agent: false });
  const response = new Promise((resolve, reject) => {
    req.on("response", (res) => {
      const parts = [];
      res.on("data", (d) => parts.push(d));
      res.on("end", () => resolve({ status: res.statusCode, text: Buffer.concat(parts).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
  });
  const hash = crypto.createHash("sha256");
  const block = crypto.randomBytes(MiB);
  for (let sent = 0, i = 0; sent < size; i++) {
    const n = Math.min(block.length, size - sent);
    const piece = Buffer.from(block.subarray(0, n));
    piece.writeUInt32LE(i, 0); // every block differs, so a dropped or repeated block changes the hash
    hash.update(piece);
    sent += n;
    if (!req.write(piece)) await once(req, "drain");
  }
  req.end();
  const r = await response;
  let json = null;
  try {
    json = JSON.parse(r.text);
  } catch {}
  return { status: r.status, json, text: r.text, sha256: hash.digest("hex") };
}

function statusKiB(pid, key) {
  const m = new RegExp(`${key}:\\s+(\\d+) kB`).exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m[1]);
}

test("uploads larger than 64 MiB stream through to the Hub intact, Content-Length and chunked, in bounded memory", { skip, timeout: 120000 }, async () => {
  const cases = [
    { what: "Content-Length", size: 160 * MiB + 4321, chunked: false, token: "hf_owner" },
    { what: "chunked", size: 96 * MiB + 17, chunked: true, token: null },
  ];
  for (const c of cases) {
    const r = await upload(hc.url, "/_fake/sink", c);
    assert.equal(r.status, 200, `${c.what}: ${r.text.slice(0, 300)}\n${hc.logs().slice(-3000)}`);
    assert.equal(r.json.bytes, c.size, `${c.what}: bytes the Hub received`);
    assert.equal(r.json.sha256, r.sha256, `${c.what}: sha256 of what the Hub received`);
    // A known length is passed on as such; an unknown one is re-chunked.
    assert.equal(r.json.chunked, c.chunked, `${c.what}: framing towards the Hub`);
    if (!c.chunked) assert.equal(r.json.contentLength, String(c.size));
    assert.equal(r.json.authorization, c.token ? `Bearer ${c.token}` : null, `${c.what}: the caller's credentials are relayed`);
  }
  // Peak resident memory of the whole process so far: far below either body. Not in a sanitizer
  // build (it maps terabytes of shadow memory and keeps freed memory in quarantine).
  const hwm = statusKiB(hc.proc.pid, "VmHWM") / 1024;
  const sanitized = statusKiB(hc.proc.pid, "VmSize") > 1024 ** 3; // > 1 TiB of address space
  if (!sanitized) {
    assert.ok(hwm < 100, `hubcache VmHWM ${hwm.toFixed(1)} MiB after relaying ${cases.map((c) => c.size).join(" + ")} bytes`);
  }
});

test("a paths-info body is still read whole and limited; small relayed bodies still work", { skip, timeout: 30000 }, async () => {
  const repo = fake.repos["acme/tiny-model"];
  const body = "paths=config.json&expand=false";
  const res = await fetch(`${hc.url}/api/models/acme/tiny-model/paths-info/${repo.mainCommit}`, {
    method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body,
  });
  assert.equal(res.status, 200);
  assert.deepEqual((await res.json()).map((e) => e.path), ["config.json"]);
  const small = await upload(hc.url, "/_fake/sink", { size: 1234, method: "POST" });
  assert.equal(small.status, 200, small.text);
  assert.equal(small.json.sha256, small.sha256);
  const empty = await upload(hc.url, "/_fake/sink", { size: 0, method: "POST" });
  assert.equal(empty.status, 200, empty.text);
  assert.equal(empty.json.bytes, 0);
});

test("hubcache exits cleanly, with no sanitizer report", { skip, timeout: 30000 }, async () => {
  const { code, signal } = await hc.stop(5000);
  assert.equal(code, 0, `exit code (signal ${signal})\n${hc.logs().slice(-3000)}`);
  assert.doesNotMatch(hc.logs(), SANITIZER_RE);
});
