// hubcache in front of a misbehaving fake Hub/CDN: corrupt, cut and stalled CDN bodies, client
// disconnects, upstream down or hanging. Each test uses its own hubcache (fresh cache dir).
//   HUBCACHE_BIN=/work/build-asan/bin/hubcache node --test tests/integration/proxy_faults.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeHub, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, Fleet, logTail, assertFetchedOnce, withOwnHubcache } from "./proxy_lib.mjs";

const REPO = "acme/tiny-model";
const MiB = 1024 * 1024;
// With --fill-chunk-size 4MiB and 4 workers (parallel fills): chunks of 1, 2 and 3 MiB, one of 4 MiB, then
// 2 MiB + 4 bytes and the last byte alone.
const BIG_SIZE = 12 * MiB + 5;
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

let fake;
let fleet; // hubcaches in front of `fake`
let downFleet; // hubcaches whose upstream is stopped on purpose
let tiny;

const resolvePath = (rev, p) => `/${REPO}/resolve/${encodeURIComponent(rev)}/${p.split("/").map(encodeURIComponent).join("/")}`;
const cdnGets = (s, sha) => s.log.filter((e) => e.host === "cdn" && e.method === "GET" && e.path === `/cdn/lfs/${sha}`);
const cdnLog = (s) => JSON.stringify(s.log.filter((e) => e.host === "cdn").map((e) => `${e.method} ${e.path.slice(9, 21)}… range=${e.headers.range} ${e.status} ${e.bytes}B${e.aborted ? " aborted" : ""}`));

/** A fresh hubcache for one test; prints its stderr if the test fails; stops it afterwards. */

/** The body must not have been delivered as a complete, successful response. */
function assertNotDelivered(r, f, what) {
  assert.ok(!r.timedOut, `${what}: hung (${desc(r)})`);
  assert.ok(!(r.status === 200 && r.complete && r.bytes === f.size), `${what}: a complete 200 body was delivered (sha256 ${r.sha256 === f.sha256 ? "right" : "WRONG"}): ${desc(r)}`);
  assert.ok(!(r.status >= 200 && r.status < 300 && r.complete && r.sha256 !== f.sha256 && r.bytes === f.size), `${what}: wrong bytes delivered as complete`);
}

async function assertRightBytes(url, f, what) {
  const r = await http1(url, "GET", resolvePath("main", f.path), { keepBody: false, timeoutMs: 30000 });
  assert.equal(r.status, 200, `${what}: ${desc(r)}`);
  assert.ok(r.complete, `${what}: ${desc(r)}`);
  assert.equal(r.bytes, f.size, `${what}: size`);
  assert.equal(r.sha256, f.sha256, `${what}: sha256`);
  return r;
}

const withFreshHc = (fn, opts = {}) => withOwnHubcache(opts.on?.() ?? fleet, fn, opts);

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true });
  tiny = fake.repos[REPO];
  const args = ["--log-level", "debug", "--upstream-timeout", "3s", "--fill-chunk-size", "4MiB", "--fill-parallelism", "4"];
  fleet = new Fleet({ upstream: fake.hubUrl, args });
  downFleet = null;
});
after(async () => {
  if (skip) return;
  try {
    for (const f of [fleet, downFleet]) for (const r of f?.all ?? []) if (r.exit === null) await f.stop(r);
  } finally {
    await fake?.close();
  }
});

test("corrupt CDN byte: no client gets a complete body, nothing wrong is cached, the next GET refetches", { skip, timeout: 50000 }, () =>
  withFreshHc(async (url) => {
    const big = tiny.files["big.bin"];
    const st = tiny.files["model.safetensors"];
    fake.reset();
    // three concurrent clients on one corrupt fill of big.bin (slowed down so that they overlap)
    fake.scenario({ cdnCorruptByte: { offset: 3 * MiB + 17, count: "always" }, cdnRate: 32 * MiB });
    const rs = await Promise.all([0, 1, 2].map(() => http1(url, "GET", resolvePath("main", "big.bin"), { keepBody: false, timeoutMs: 30000 })));
    rs.forEach((r, i) => assertNotDelivered(r, big, `corrupt big.bin, client ${i}`));
    // one client on a corrupt model.safetensors (the fault offset must lie inside the file)
    fake.scenario({ cdnCorruptByte: { offset: 1000, count: "always" }, cdnRate: 0 });
    const r1 = await http1(url, "GET", resolvePath("main", "model.safetensors"), { timeoutMs: 20000 });
    assertNotDelivered(r1, st, "corrupt model.safetensors");
    assert.ok(await fake.idle(10000), "hubcache stops fetching the corrupt blob (no endless retry loop)");
    const during = fake.stats();

    fake.reset(); // clears the scenario
    await assertRightBytes(url, big, "big.bin after the corrupt fill");
    await assertRightBytes(url, st, "model.safetensors after the corrupt fill");
    await fake.idle();
    const s = fake.stats();
    assert.ok(cdnGets(s, big.sha256).length >= 1, `big.bin: the CDN must be asked again (log ${cdnLog(s)}; during the fault: ${cdnLog(during)})`);
    assert.ok(cdnGets(s, st.sha256).length >= 1, `model.safetensors: the CDN must be asked again (log ${cdnLog(s)})`);
    assert.ok(s.cdn.bodyBytes >= big.size + st.size, `CDN body bytes ${s.cdn.bodyBytes}`);

    // and now it is cached correctly
    fake.reset();
    await assertRightBytes(url, big, "big.bin from cache");
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "big.bin from cache: no CDN bytes");
  }));

test("CDN connection cut mid-body, again and again: the fill resumes each range where it stopped; right bytes", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    const st = tiny.files["model.safetensors"];
    const big = tiny.files["big.bin"];
    fake.reset();
    // every CDN response dies after 40000 (1.5 MiB) body bytes: only resuming gets a file through
    fake.scenario({ cdnCutAfter: { bytes: 40000, count: "always" } });
    await assertRightBytes(url, st, "cut model.safetensors");
    fake.scenario({ cdnCutAfter: { bytes: 1.5 * MiB, count: "always" } });
    await assertRightBytes(url, big, "cut big.bin");
    assert.ok(await fake.idle(10000), "no upstream transfer left running");
    const s = fake.stats();
    // A resumed request starts where the one it resumes was cut: 1.5 MiB after that one's start.
    const starts = cdnGets(s, big.sha256).map((e) => Number(/^bytes=(\d+)-/.exec(e.headers.range ?? "")?.[1] ?? -1));
    const resumed = starts.filter((a) => starts.includes(a - 1.5 * MiB));
    assert.ok(resumed.length >= 3, `big.bin: ranges resumed mid-chunk: ${cdnLog(s)}`);
    assert.ok(s.cdn.bodyBytes <= 1.05 * (st.size + big.size), `nothing fetched twice: ${s.cdn.bodyBytes} CDN bytes`);

    fake.reset();
    await assertRightBytes(url, big, "big.bin from cache");
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "cached after the resumed fill");
  }));

test("5xx on some chunk requests: retried with backoff, right bytes", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    const big = tiny.files["big.bin"];
    fake.reset();
    fake.scenario({ cdnStatus: { status: 503, count: 3 } });
    await assertRightBytes(url, big, "big.bin through 503s");
    assert.ok(await fake.idle(10000));
    const s = fake.stats();
    assert.equal(cdnGets(s, big.sha256).filter((e) => e.status === 503).length, 3, `three 503s seen: ${cdnLog(s)}`);
    assertFetchedOnce(s.log.filter((e) => e.status !== 503), big.sha256, big.size, "after the 503s");
  }));

test("a CDN that keeps cutting before any byte: the fill gives up; clean error, nothing cached", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    const st = tiny.files["model.safetensors"];
    fake.reset();
    fake.scenario({ cdnStatus: { status: 500, count: 1000 } });
    const r = await http1(url, "GET", resolvePath("main", "model.safetensors"), { timeoutMs: 30000 });
    // A 502 when the fill fails before the head is due; after that the head has gone out and the
    // body ends short.
    assert.ok(r.status === 502 || (r.status === 200 && !r.complete), `a clean failure: ${desc(r)}`);
    assertNotDelivered(r, st, "always failing CDN");
    assert.ok(await fake.idle(10000), "no endless retry loop");
    const tries = cdnGets(fake.stats(), st.sha256).length;
    assert.ok(tries >= 2 && tries <= 10, `bounded attempts: ${tries}`);
    fake.reset();
    await assertRightBytes(url, st, "after the CDN recovers");
  }));

test("signed CDN URL expires mid-fill: hubcache asks the Hub for a new one and the fill continues", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    const big = tiny.files["big.bin"];
    fake.reset();
    // URLs live 1 s; at 2 MiB/s per connection each 4 MiB chunk takes 2 s and two run at a time, so
    // the third and fourth chunk requests carry an expired URL and get 403.
    fake.scenario({ urlTtl: 1, cdnRate: 2 * MiB });
    await assertRightBytes(url, big, "big.bin across URL expiry");
    assert.ok(await fake.idle(10000));
    const s = fake.stats();
    const refused = cdnGets(s, big.sha256).filter((e) => e.status === 403);
    assert.ok(refused.length >= 1, `some chunk requests hit the expired URL: ${cdnLog(s)}`);
    const resolves = s.log.filter((e) => e.host === "hub" && e.method === "HEAD" && e.path.includes("/resolve/") && e.path.endsWith("/big.bin"));
    assert.ok(resolves.length >= 2, `the Hub was asked again for a URL: ${resolves.length} HEADs`);
    assertFetchedOnce(s.log.filter((e) => e.status !== 403), big.sha256, big.size, "after re-resolving");
  }, { args: ["--fill-parallelism", "2"] }));

// The upstream timeout is 30 s here: only the stall timeout (1 s) can bring the client its file within
// its 15 s, as a huggingface_hub client (10 s without a byte) needs.
test("CDN stalls mid-body: the quiet request is dropped after --fill-stall-timeout, long before --upstream-timeout, and resumed; right bytes", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    const st = tiny.files["model.safetensors"];
    fake.reset();
    fake.scenario({ cdnStallAfter: { bytes: 60000, count: 1 } });
    const r = await http1(url, "GET", resolvePath("main", st.path), { keepBody: false, timeoutMs: 15000 });
    assert.ok(r.complete && r.bytes === st.size && r.sha256 === st.sha256, `stalled model.safetensors: ${desc(r)}`);
    assert.ok(await fake.idle(10000), "hubcache closes the stalled upstream connection");
    const gets = cdnGets(fake.stats(), st.sha256);
    assert.ok(gets.length >= 2 && /^bytes=60000-/.test(gets.at(-1).headers.range ?? ""), `resumed at the stall: ${cdnLog(fake.stats())}`);
  }, { args: ["--upstream-timeout", "30s", "--fill-stall-timeout", "1s"] }));

test("a client that disconnects mid-stream does not disturb a concurrent client; the fill completes", { skip, timeout: 50000 }, () =>
  withFreshHc(async (url) => {
    const big = tiny.files["big.bin"];
    fake.reset();
    fake.scenario({ cdnRate: 2 * MiB }); // ~2 s per 4 MiB chunk: the abort happens mid-fill
    const p = resolvePath("main", "big.bin");
    const [a, b] = await Promise.all([
      http1(url, "GET", p, { keepBody: false, abortAfterBytes: 1 * MiB, timeoutMs: 40000 }),
      http1(url, "GET", p, { keepBody: false, timeoutMs: 40000 }),
    ]);
    assert.equal(a.status, 200, `aborting client: ${desc(a)}`);
    assert.ok(a.bytes >= 1 * MiB && a.bytes < big.size, `aborting client got ${a.bytes} bytes`);
    assert.equal(b.status, 200, `second client: ${desc(b)}`);
    assert.ok(b.complete, `second client: ${desc(b)}`);
    assert.equal(b.bytes, big.size, "second client: size");
    assert.equal(b.sha256, big.sha256, "second client: sha256");
    assert.ok(await fake.idle(20000), "the fill finishes");
    assertFetchedOnce(fake.stats().log, big.sha256, big.size, "one fill, not restarted by the disconnect");

    fake.reset();
    const c = await assertRightBytes(url, big, "later request");
    await fake.idle();
    const s = fake.stats();
    assert.equal(s.cdn.bodyBytes, 0, `later request: CDN body bytes (${cdnLog(s)})`);
    assert.ok(c.complete);
  }));

test("SIGTERM while a cold fill streams: exit 0 within a few seconds, and the restarted cache serves right bytes", { skip, timeout: 40000 }, async () => {
  const big = tiny.files["big.bin"];
  const rec = await fleet.start({ args: ["--shutdown-grace", "2s"] });
  try {
    fake.reset();
    fake.scenario({ cdnRate: 4 * MiB }); // ~4 s for the file: SIGTERM lands mid-fill
    let started;
    const gotFirst = new Promise((r) => (started = r));
    const pending = http1(rec.hc.url, "GET", resolvePath("main", "big.bin"), { keepBody: false, timeoutMs: 20000, onBytes: (n) => n >= MiB && started() });
    await Promise.race([gotFirst, pending]);
    const e = await fleet.stop(rec);
    const r = await pending;
    assert.ok(!r.timedOut, `client during shutdown hung: ${desc(r)}`);
    assert.ok(!(r.complete && r.sha256 !== big.sha256), `client during shutdown got wrong bytes as complete: ${desc(r)}`);
    assert.ok(await fake.idle(10000), "upstream transfer closed after the exit");

    fake.reset();
    const again = await fleet.start({ cacheDir: rec.cacheDir, name: `${rec.name}-restarted` });
    try {
      await assertRightBytes(again.hc.url, big, "after the restart");
    } finally {
      await fleet.stop(again);
    }
    // the exit status last, so that a failure here still tells whether the cache stayed sound
    assert.ok(e.ms < 5000, `exit took ${e.ms} ms with --shutdown-grace 2s`);
    assert.equal(e.code, 0, `exit after SIGTERM mid-fill: code ${e.code} signal ${e.signal}`);
  } catch (err) {
    process.stderr.write(`\n===== ${rec.name} stderr (tail) =====\n${logTail(rec.hc.logs(), 12000)}\n===== end =====\n`);
    throw err;
  } finally {
    if (rec.exit === null) await fleet.stop(rec);
  }
});

test("upstream hangs (no response headers): a cold request gets 504/502 JSON after --upstream-timeout, not a hang", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    fake.reset();
    fake.scenario({ hubDelayMs: 9000 });
    const r = await http1(url, "GET", resolvePath("main", "sub/nested.txt"), { timeoutMs: 12000 });
    assert.ok(!r.timedOut, `hung: ${desc(r)}`);
    assert.ok([502, 504].includes(r.status), `want 504/502: ${desc(r)}`);
    assert.match(r.headers["content-type"] ?? "", /application\/json/, desc(r));
    assert.equal(typeof JSON.parse(r.body.toString() || "null")?.error, "string", `JSON {error}: ${r.body}`);
    assert.ok(r.ms < 9000, `answered after ${r.ms} ms with --upstream-timeout 3s`);
    fake.scenario({ hubDelayMs: 0 });
    assert.ok(await fake.idle(15000), "fake idle again");
  }));

test("upstream down: cold requests get 502/504 JSON quickly; a cached public commit-pinned file is still served", { skip, timeout: 40000 }, async () => {
  const fake2 = await startFakeHub({ bigSize: 1 * MiB, quiet: true });
  downFleet = new Fleet({ upstream: fake2.hubUrl, args: ["--log-level", "debug", "--upstream-timeout", "3s", "--public-ttl", "60s"] });
  const t2 = fake2.repos[REPO];
  try {
    await withFreshHc(async (url) => {
      const st = t2.files["model.safetensors"];
      const cfg = t2.files["config.json"];
      for (const f of [st, cfg]) {
        const r = await http1(url, "GET", resolvePath(t2.mainCommit, f.path));
        assert.equal(r.sha256, f.sha256, `fill ${f.path}: ${desc(r)}`);
      }
      await fake2.idle();
      await fake2.close();

      const cached = await http1(url, "GET", resolvePath(t2.mainCommit, "model.safetensors"), { timeoutMs: 10000 });
      assert.equal(cached.status, 200, `cached public file at the commit, upstream down: ${desc(cached)}`);
      assert.equal(cached.sha256, st.sha256);

      const cold = [
        ["GET", resolvePath("main", "README.md")],
        ["HEAD", resolvePath("main", "README.md")],
        ["GET", resolvePath(t2.mainCommit, "sub/nested.txt")],
        ["GET", resolvePath("main", "big.bin")],
        ["GET", `/api/models/${REPO}`],
        ["GET", `/api/models/${REPO}/tree/main?recursive=true`],
      ];
      for (const [m, p] of cold) {
        const r = await http1(url, m, p, { timeoutMs: 10000 });
        assert.ok(!r.timedOut, `${m} ${p} hung: ${desc(r)}`);
        assert.ok([502, 504].includes(r.status), `${m} ${p}: want 502/504, got ${desc(r)}`);
        assert.ok(r.ms < 5000, `${m} ${p}: answered after ${r.ms} ms (connection refused should be immediate)`);
        if (m === "GET") {
          assert.match(r.headers["content-type"] ?? "", /application\/json/, `${m} ${p}: ${desc(r)}`);
          let j = null;
          try {
            j = JSON.parse(r.body.toString("utf8"));
          } catch {}
          assert.equal(typeof j?.error, "string", `${m} ${p}: body must be JSON {error}: ${r.body}`);
        }
      }
    }, { on: () => downFleet });
  } finally {
    await fake2.close();
  }
});

test("every hubcache process: no crash, SIGTERM -> exit 0 within 5 s, no sanitizer report", { skip, timeout: 30000 }, async () => {
  const problems = [...(await fleet.shutdownAndCheck(5000)), ...((await downFleet?.shutdownAndCheck(5000)) ?? [])];
  if (problems.length) assert.fail(`${problems.length} problem(s):\n\n${problems.join("\n\n")}`);
});
