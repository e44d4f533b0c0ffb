// hubcache against an https Hub and an https CDN on another host, signed by a
// throwaway CA: the CA is trusted only through --upstream-ca-file.
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/tls.test.mjs
import { test, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeHub, startHubcache, tmpDir, withLogs, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc } from "./proxy_lib.mjs";

const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;
const REPO = "acme/tiny-model";
const stops = [];
after(async () => {
  for (const stop of stops.reverse()) await stop();
});

test("https upstream and CDN verified with the extra CA file", { skip }, async () => {
  const fake = await startFakeHub({ tls: true, bigSize: 1024 * 1024 });
  stops.push(() => fake.close());
  assert.match(fake.hubUrl, /^https:/);
  assert.match(fake.cdnUrl, /^https:\/\/127\.0\.0\.2:/);
  const files = fake.repos[REPO].files;

  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir(), caFile: fake.caFile });
  stops.push(() => hc.stop());
  await withLogs(hc, async () => {
    for (const name of ["config.json", "model.safetensors", "big.bin"]) {
      const r = await http1(hc.url, "GET", `/${REPO}/resolve/main/${name}`);
      assert.equal(r.status, 200, desc(r));
      assert.equal(r.sha256, files[name].sha256, `${name}: bytes through TLS`);
    }
    const stats = fake.stats();
    assert.ok(stats.cdn.requests >= 1, "LFS bytes came from the https CDN");
    assert.equal(stats.cdn.authorizationSeen ?? 0, 0, "no Authorization to the CDN");
  });
});

test("an upstream certificate from an untrusted CA is refused with a 502 JSON error", { skip }, async () => {
  const fake = await startFakeHub({ tls: true, bigSize: 1024 });
  stops.push(() => fake.close());
  const hc = await startHubcache({ upstream: fake.hubUrl, cacheDir: await tmpDir() });  // no CA file
  stops.push(() => hc.stop());
  await withLogs(hc, async () => {
    const r = await http1(hc.url, "GET", `/${REPO}/resolve/main/config.json`);
    assert.equal(r.status, 502, desc(r));
    assert.match(r.headers["content-type"] ?? "", /application\/json/);
    assert.match(r.body.toString(), /"error"/);
    assert.equal(fake.stats().hub.requests, 0, "no request completed over an unverified connection");
  });
});
