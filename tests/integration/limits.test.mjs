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

test("a file larger than the cache gets 507 JSON before any 200 is promised", { skip }, async () => {
  const fake = await startFakeHub({ bigSize: 1024 });
  stops.push(() => fake.close());
  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir(), args: ["--max-cache-size", "64KiB"] });
  stops.push(() => hc.stop());
  await withLogs(hc, async () => {
    const r = await http1(hc.url, "GET", `/${REPO}/resolve/main/model.safetensors`);  // 150 000 bytes
    assert.equal(r.status, 507, desc(r));
    assert.match(r.body.toString(), /"error"/);
    // A file that fits is still served.
    const ok = await http1(hc.url, "GET", `/${REPO}/resolve/main/config.json`);
    assert.equal(ok.status, 200, desc(ok));
    assert.equal(ok.sha256, fake.repos[REPO].files["config.json"].sha256);
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
