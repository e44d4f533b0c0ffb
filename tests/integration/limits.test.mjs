// Cache space and request framing at the edges: a file that cannot fit gets a
// clean 507 (not a 200 with a short body), and a client's Expect: 100-continue
// never desynchronises hubcache's pooled upstream connections.
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/limits.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";
import { startFakeHub, startHubcache, tmpDir, withLogs, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc } from "./proxy_lib.mjs";

const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;
const REPO = "acme/tiny-model";
const stops = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});

test("a file larger than the cache is streamed through, verified, uncached; a range of it gets 507 JSON", { skip }, async () => {
  const fake = await startFakeHub({ bigSize: 1024 });
  stops.push(() => fake.close());
  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir(), args: ["--max-cache-size", "64KiB"] });
  stops.push(() => hc.stop());
  const f = fake.repos[REPO].files["model.safetensors"];  // 150 000 bytes, more than the cache
  await withLogs(hc, async () => {
    for (const round of [1, 2]) {
      fake.reset();
      const r = await http1(hc.url, "GET", `/${REPO}/resolve/main/model.safetensors`);
      assert.equal(r.status, 200, desc(r));
      assert.equal(r.sha256, f.sha256, `round ${round}: right bytes`);
      assert.equal(fake.stats().cdn.bodyBytes, f.size, `round ${round}: streamed from the CDN, not cached`);
    }
    // A range cannot be verified on the way: refused cleanly instead of a short body.
    const ranged = await http1(hc.url, "GET", `/${REPO}/resolve/main/model.safetensors`, { headers: { Range: "bytes=0-99" } });
    assert.equal(ranged.status, 507, desc(ranged));
    assert.match(ranged.body.toString(), /"error"/);
    // A file that fits is still cached and served.
    const ok = await http1(hc.url, "GET", `/${REPO}/resolve/main/config.json`);
    assert.equal(ok.status, 200, desc(ok));
    assert.equal(ok.sha256, fake.repos[REPO].files["config.json"].sha256);
  });
});

test("a corrupted byte in a streamed-through file: the client's body ends short", { skip }, async () => {
  const fake = await startFakeHub({ bigSize: 1024 });
  stops.push(() => fake.close());
  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir(), args: ["--max-cache-size", "64KiB"] });
  stops.push(() => hc.stop());
  const f = fake.repos[REPO].files["model.safetensors"];
  await withLogs(hc, async () => {
    fake.scenario({ cdnCorruptByte: 1000 });
    const r = await http1(hc.url, "GET", `/${REPO}/resolve/main/model.safetensors`);
    assert.ok(r.bytes < f.size, `must not deliver a complete wrong file (got ${r.bytes} of ${f.size})`);
  });
});

// Sends raw HTTP/1.1 on one socket and returns everything received until the
// server closes or `ms` pass.
function raw(url, text, ms = 3000) {
  const u = new URL(url);
  return new Promise((resolve) => {
    const chunks = [];
    const s = net.connect(Number(u.port), u.hostname, () => s.write(text));
    s.on("data", (d) => chunks.push(d));
    const done = () => resolve(Buffer.concat(chunks).toString("latin1"));
    s.on("close", done);
    s.on("error", done);
    setTimeout(() => s.destroy(), ms);
  });
}

test("Expect: 100-continue on a relayed POST answers this client only; the next caller gets its own answer", { skip }, async () => {
  const fake = await startFakeHub({ bigSize: 1024 });
  stops.push(() => fake.close());
  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir() });
  stops.push(() => hc.stop());
  await withLogs(hc, async () => {
    const body = JSON.stringify({ name: "x" });
    const out = await raw(hc.url,
      `POST /api/repos/create HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer hf_owner\r\nContent-Type: application/json\r\n` +
      `Expect: 100-continue\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`);
    const finals = out.split("\r\n").filter((l) => /^HTTP\/1\.1 [2-5]\d\d /.test(l));
    assert.equal(finals.length, 1, `exactly one final answer for the POST: ${JSON.stringify(out.slice(0, 400))}`);
    // Then an anonymous whoami over hubcache's pool: its own answer (the fake's 401), not the POST's.
    const who = await http1(hc.url, "GET", "/api/whoami-v2");
    assert.equal(who.status, 401, desc(who));
  });
});
