// The fill engine through the hubcache binary: parallel ranged fills with many clients on mixed
// ranges, a cold Range's chunk fetched first, a cold footer read answered at once (a resume is not), hubcache chained
// behind another hubcache, fills
// abandoned by their clients, and the bound on concurrent fills.
//   HUBCACHE_BIN=/work/build-asan/bin/hubcache node --test tests/integration/fill.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startFakeHub, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, Fleet, logTail, assertFetchedOnce, withOwnHubcache } from "./proxy_lib.mjs";

const REPO = "acme/tiny-model";
const MiB = 1024 * 1024;
const CHUNK = 2 * MiB;
const BIG_SIZE = 24 * MiB + 77; // with 4 workers: chunks of 0.5, 1 and 1.5 MiB, then of 2 MiB, then the last byte alone
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

let fake;
let fleet;
let big; // {size, sha256, read()}
let bigBytes; // Buffer of big.bin

const resolvePath = (rev, p, repo = REPO) => `/${repo}/resolve/${encodeURIComponent(rev)}/${p.split("/").map(encodeURIComponent).join("/")}`;
const cdnGets = (s, sha) => s.log.filter((e) => e.host === "cdn" && e.method === "GET" && e.path === `/cdn/lfs/${sha}`);
const showCdn = (s) => JSON.stringify(s.log.filter((e) => e.host === "cdn").map((e) => `range=${e.headers.range} ${e.status} ${e.bytes}B${e.aborted ? " aborted" : ""}`));
const fillArgs = ["--log-level", "debug", "--upstream-timeout", "5s", "--fill-chunk-size", "2MiB", "--fill-parallelism", "4"];

/** Polls `cond` every 50 ms until it is true or `ms` passed; returns its last value. */
async function waitFor(cond, ms = 20000) {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  return cond();
}
const filledLine = (hc, sha) => new RegExp(`filled ${sha} \\(\\d+ bytes in (\\d+) chunk`).exec(hc.logs());

/** big.bin's fill by `hc`: CDN requests that ask for every byte once, one per chunk the fill logged (none retried). */
async function assertOneRequestPerChunk(hc, what) {
  assert.ok(await waitFor(() => filledLine(hc, big.sha256)), `${what}: the fill logged its end`);
  assert.ok(await fake.idle(5000), `${what}: no CDN transfer left`);
  const s = fake.stats();
  const gets = assertFetchedOnce(s.log, big.sha256, big.size, what);
  assert.equal(gets.length, Number(filledLine(hc, big.sha256)[1]), `${what}: one request per chunk: ${showCdn(s)}`);
}


const withFreshHc = (fn, opts = {}) => withOwnHubcache(opts.on?.() ?? fleet, fn, opts);

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true });
  big = fake.repos[REPO].files["big.bin"];
  bigBytes = await big.read();
  fleet = new Fleet({ upstream: fake.hubUrl, args: fillArgs });
});
after(async () => {
  if (skip) return;
  try {
    for (const r of fleet?.all ?? []) if (r.exit === null) await fleet.stop(r);
    assert.deepEqual(fleet?.crashes ?? [], [], "no hubcache crashed");
  } finally {
    await fake?.close();
  }
});

test("32 concurrent clients with mixed ranges on one cold blob get exactly their bytes; one fill", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 8 * MiB }); // slow enough that every client joins the running fill
    const size = big.size;
    const ranges = Array.from({ length: 32 }, (_, i) => {
      switch (i % 4) {
        case 0: return null; // whole file
        case 1: { const a = (i * 761_017) % size; return [a, Math.min(size - 1, a + 3 * MiB)]; } // crosses chunks
        case 2: { const a = size - 1 - ((i * 104_729) % (5 * MiB)); return [a, null]; } // open-ended, to the end
        default: { const a = (i * 1_299_709) % size; return [a, a]; } // one byte
      }
    });
    const rs = await Promise.all(ranges.map((rg) => {
      const headers = rg ? { Range: `bytes=${rg[0]}-${rg[1] ?? ""}` } : {};
      return http1(url, "GET", resolvePath("main", "big.bin"), { headers, timeoutMs: 50000 });
    }));
    rs.forEach((r, i) => {
      const rg = ranges[i];
      const first = rg ? rg[0] : 0;
      const last = rg ? (rg[1] ?? size - 1) : size - 1;
      assert.equal(r.status, rg ? 206 : 200, `client ${i} ${JSON.stringify(rg)}: ${desc(r)}`);
      assert.ok(r.complete, `client ${i}: ${desc(r)}`);
      if (rg) assert.equal(r.headers["content-range"], `bytes ${first}-${last}/${size}`, `client ${i}`);
      assert.equal(r.bytes, last - first + 1, `client ${i}: length`);
      assert.ok(r.body.equals(bigBytes.subarray(first, last + 1)), `client ${i} ${JSON.stringify(rg)}: bytes differ`);
    });
    assert.ok(await fake.idle(20000));
    await assertOneRequestPerChunk(rec.hc, "32 mixed clients");
  }));

test("a Range request on a cold blob gets its own chunk fetched first", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 4 * MiB });
    const offset = 20 * MiB + 5; // in the 12th chunk of 15
    const r = await http1(url, "GET", resolvePath("main", "big.bin"), { headers: { Range: `bytes=${offset}-${offset + 999}` }, timeoutMs: 30000 });
    assert.equal(r.status, 206, desc(r));
    assert.ok(r.body.equals(bigBytes.subarray(offset, offset + 1000)), "range bytes");
    assert.ok(await waitFor(() => filledLine(rec.hc, big.sha256), 30000), "the rest of the fill finishes");
    assert.ok(await fake.idle(5000));
    const gets = cdnGets(fake.stats(), big.sha256);
    const [first, last] = /^bytes=(\d+)-(\d+)$/.exec(gets[0].headers.range).slice(1).map(Number);
    assert.ok(first <= offset && offset + 999 <= last && last - first < CHUNK, `the first CDN request is the client's chunk: ${showCdn(fake.stats())}`);
    await assertOneRequestPerChunk(rec.hc, "whole blob still filled");

    // and the blob is complete and verified in the cache now
    fake.reset();
    const all = await http1(url, "GET", resolvePath("main", "big.bin"), { keepBody: false, timeoutMs: 20000 });
    assert.equal(all.sha256, big.sha256);
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "served from cache");
  }));

test("a cold footer read (closed range at the file's end) is answered from upstream at once; a resume (bytes=N-) waits for the verified fill", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 1 * MiB }); // a fill takes seconds; the tail is 1000 bytes
    const first = big.size - 1000;
    const tail = `bytes=${first}-${big.size - 1}`;
    const r = await http1(url, "GET", resolvePath("main", "big.bin"), { headers: { Range: tail }, timeoutMs: 30000 });
    assert.equal(r.status, 206, desc(r));
    assert.equal(r.headers["content-range"], `bytes ${first}-${big.size - 1}/${big.size}`);
    assert.ok(r.complete && r.body.equals(bigBytes.subarray(first)), `tail bytes: ${desc(r)}`);
    // One upstream request for exactly that range, and no fill started for it.
    assert.ok(await fake.idle(5000));
    const footerGets = cdnGets(fake.stats(), big.sha256);
    assert.deepEqual(footerGets.map((e) => e.headers.range), [tail], `only the tail was fetched: ${showCdn(fake.stats())}`);
    assert.equal(filledLine(rec.hc, big.sha256), null, "no fill for a footer read");

    // A resume of the same tail (open-ended) is served from a fill: its last byte only once the whole
    // blob is verified, so by the time it completes the CDN has sent the whole file.
    fake.reset();
    const resumed = await http1(url, "GET", resolvePath("main", "big.bin"), { headers: { Range: `bytes=${first}-` }, timeoutMs: 50000 });
    assert.equal(resumed.status, 206, desc(resumed));
    assert.ok(resumed.complete && resumed.body.equals(bigBytes.subarray(first)), `resumed bytes: ${desc(resumed)}`);
    assert.ok(fake.stats().cdn.bodyBytes >= big.size, `the resume waited for the whole fill: ${showCdn(fake.stats())}`);
    assert.ok(await fake.idle(5000));
    await assertOneRequestPerChunk(rec.hc, "the fill behind the resume");

    // Cached now (or verified and still committing): the footer costs nothing upstream.
    fake.reset();
    const again = await http1(url, "GET", resolvePath("main", "big.bin"), { headers: { Range: tail }, timeoutMs: 20000 });
    assert.ok(again.body.equals(bigBytes.subarray(first)), "the tail again, now from the cache");
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "served from cache");
  }));

test("chaining: a hubcache whose upstream is another hubcache fills with ranged requests and verifies", { skip, timeout: 60000 }, async () => {
  const regional = await fleet.start({ name: "regional", makeCurrent: false });
  const sidecarFleet = new Fleet({ upstream: regional.hc.url, args: fillArgs });
  const sidecar = await sidecarFleet.start({ name: "sidecar" });
  try {
    fake.reset();
    const p = resolvePath("main", "big.bin");
    // HEAD through the chain carries the Hub's file headers
    const h = await http1(sidecar.hc.url, "HEAD", p);
    assert.equal(h.status, 200, desc(h));
    assert.equal(h.headers["x-linked-etag"], `"${big.sha256}"`);
    assert.equal(h.headers["x-linked-size"], String(big.size));
    const r = await http1(sidecar.hc.url, "GET", p, { keepBody: false, timeoutMs: 40000 });
    assert.equal(r.status, 200, desc(r));
    assert.equal(r.sha256, big.sha256, "bytes through the chain");
    assert.ok(await fake.idle(20000));
    assertFetchedOnce(fake.stats().log, big.sha256, big.size, "the regional cache filled once from the CDN");
    assert.ok(await waitFor(() => filledLine(sidecar.hc, big.sha256)), "the sidecar logged its fill");
    assert.ok(Number(filledLine(sidecar.hc, big.sha256)[1]) >= 15, "the sidecar filled from the regional cache in ranged chunks");

    // a gated file: the caller's token travels down the chain; anonymous callers stay refused
    const G = "acme/gated-model";
    const gp = resolvePath("main", "model.safetensors", G);
    const gf = fake.repos[G].files["model.safetensors"];
    const anon = await http1(sidecar.hc.url, "GET", gp);
    assert.equal(anon.status, 401, `anonymous gated through the chain: ${desc(anon)}`);
    const ok = await http1(sidecar.hc.url, "GET", gp, { headers: { Authorization: "Bearer hf_granted" } });
    assert.equal(ok.status, 200, desc(ok));
    assert.equal(ok.sha256, gf.sha256);
    const anon2 = await http1(sidecar.hc.url, "GET", gp);
    assert.equal(anon2.status, 401, `anonymous after a granted fill: ${desc(anon2)}`);

    // everything is now in the sidecar: the regional cache is not asked for bytes again
    fake.reset();
    const again = await http1(sidecar.hc.url, "GET", `/${REPO}/resolve/${h.headers["x-repo-commit"]}/big.bin`, { keepBody: false });
    assert.equal(again.sha256, big.sha256);
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0);
  } catch (e) {
    process.stderr.write(`\n===== sidecar =====\n${logTail(sidecar.hc.logs(), 8000)}\n===== regional =====\n${logTail(regional.hc.logs(), 8000)}\n`);
    throw e;
  } finally {
    await sidecarFleet.stop(sidecar);
    await fleet.stop(regional);
    assert.deepEqual(sidecarFleet.crashes, []);
  }
});

test("an upstream that ignores Range: the fill reads its 200 as one stream", { skip, timeout: 40000 }, () =>
  withFreshHc(async (url) => {
    fake.reset();
    fake.scenario({ cdnIgnoreRange: true });
    const r = await http1(url, "GET", resolvePath("main", "big.bin"), { keepBody: false, timeoutMs: 30000 });
    assert.equal(r.status, 200, desc(r));
    assert.equal(r.sha256, big.sha256);
    assert.ok(await fake.idle(10000));
    const gets = cdnGets(fake.stats(), big.sha256);
    assert.equal(gets.length, 1, `one request, read whole: ${showCdn(fake.stats())}`);
    assert.equal(gets[0].status, 200);
    assert.equal(gets[0].bytes, big.size);
  }));

test("--abandon-fill-above: a fill whose clients all left stops; the next request fills afresh", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 1 * MiB }); // ~6 s for the file with 4 connections
    const p = resolvePath("main", "big.bin");
    const a = await http1(url, "GET", p, { keepBody: false, abortAfterBytes: 256 * 1024, timeoutMs: 30000 });
    assert.ok(a.bytes < big.size, "the client left early");
    assert.ok(await waitFor(() => rec.hc.logs().includes(`fill of ${big.sha256} stopped: no client is left`), 15000),
      "the fill stopped after its only client left");
    assert.ok(await fake.idle(10000), "its requests ended");
    const during = fake.stats();
    assert.ok(during.cdn.bodyBytes < big.size / 2, `the abandoned fill stopped early: ${during.cdn.bodyBytes} CDN bytes`);

    fake.reset();
    const r = await http1(url, "GET", p, { keepBody: false, timeoutMs: 40000 });
    assert.equal(r.sha256, big.sha256, "a later client gets the right bytes");
  }, { args: ["--abandon-fill-above", "1MiB"] }));

test("by default a fill finishes after its client left, and is cached", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 4 * MiB });
    const p = resolvePath("main", "big.bin");
    const a = await http1(url, "GET", p, { keepBody: false, abortAfterBytes: 256 * 1024, timeoutMs: 30000 });
    assert.ok(a.bytes < big.size);
    assert.ok(await waitFor(() => filledLine(rec.hc, big.sha256), 30000), "the fill completed");
    assert.ok(await fake.idle(5000));
    await assertOneRequestPerChunk(rec.hc, "the fill went on without its client");
    fake.reset();
    const r = await http1(url, "GET", p, { keepBody: false, timeoutMs: 20000 });
    assert.equal(r.sha256, big.sha256);
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "cached");
  }));

test("--max-fills 1: fills of different files queue instead of failing", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    fake.scenario({ cdnRate: 8 * MiB });
    const files = ["big.bin", "model.safetensors"].map((p) => fake.repos[REPO].files[p]);
    const rs = await Promise.all(files.map((f) => http1(url, "GET", resolvePath("main", f.path), { keepBody: false, timeoutMs: 40000 })));
    rs.forEach((r, i) => {
      assert.equal(r.status, 200, desc(r));
      assert.equal(r.sha256, files[i].sha256, files[i].path);
    });
    assert.ok(await waitFor(() => files.every((f) => filledLine(rec.hc, f.sha256))));
    // one fill at a time: the second one's first CDN request comes after the first one finished
    const logs = rec.hc.logs();
    const order = files
      .map((f) => ({ f, filled: logs.indexOf(`filled ${f.sha256}`), firstGet: logs.indexOf(`/cdn/lfs/${f.sha256}`) }))
      .sort((a, b) => a.firstGet - b.firstGet);
    assert.ok(order[0].firstGet >= 0 && order[1].firstGet >= 0, "both fills logged their CDN requests");
    assert.ok(order[0].filled < order[1].firstGet, `the fills overlapped: ${JSON.stringify(order.map((o) => [o.f.path, o.firstGet, o.filled]))}`);
  }, { args: ["--max-fills", "1"] }));

/**
 * The most requests open at one moment in fake-Hub log entries: from arrival until the fake wrote the last byte
 * (hubcache cannot have had it earlier, so this is never above hubcache's own count). An end and a start in the
 * same ms do not overlap.
 */
function peakOpen(entries) {
  const events = entries.flatMap((e) => [[e.time, 1], [e.lastByteAt ?? e.endTime ?? Infinity, -1]]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let open = 0;
  let peak = 0;
  for (const [, step] of events) peak = Math.max(peak, (open += step));
  return peak;
}

test("--upstream-connections-per-host bounds fills and files streamed through together; the excess queues (with its head sent) and completes", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url) => {
    fake.reset();
    fake.scenario({ cdnRate: 16 * MiB });
    // big.bin (24 MiB) does not fit the 16 MiB cache: each client's copy is streamed through on its own
    // request. model.safetensors fits: one fill.
    const st = fake.repos[REPO].files["model.safetensors"];
    const get = (f) => http1(url, "GET", resolvePath("main", f.path), { keepBody: false, timeoutMs: 50000 });
    const rs = await Promise.all([get(big), get(big), get(big), get(st)]);
    rs.forEach((r, i) => {
      const f = i < 3 ? big : st;
      assert.ok(r.status === 200 && r.complete && r.sha256 === f.sha256, `client ${i} (${f.path}): ${desc(r)}`);
    });
    assert.ok(await fake.idle(5000), "no CDN transfer left");
    const gets = fake.stats().log.filter((e) => e.host === "cdn" && e.method === "GET");
    assert.equal(gets.filter((e) => e.path === `/cdn/lfs/${big.sha256}`).length, 3, `one stream per client of big.bin: ${showCdn(fake.stats())}`);
    assert.equal(peakOpen(gets), 2, `at most 2 CDN requests at once, and the bound was reached: ${showCdn(fake.stats())}`);
    // A streamed-through client queued for a slot has its head at once, not after another client's whole
    // file (a Python client sent nothing for 10 s gives up). (A fill's client gets its head within 3 s.)
    const firstDone = Math.min(...rs.slice(0, 3).map((r) => r.ms));
    rs.slice(0, 3).forEach((r, i) => assert.ok(r.headMs < firstDone, `client ${i}: head at ${r.headMs} ms, first file done at ${firstDone} ms`));
  }, { args: ["--upstream-connections-per-host", "2", "--max-cache-size", "16MiB"] }));

test("a client whose fill waits behind --max-fills longer than the stall timeout still gets its file", { skip, timeout: 60000 }, () =>
  withFreshHc(async (url, rec) => {
    fake.reset();
    // big.bin takes ~6 s (4 connections at 1 MiB/s); the client of model.safetensors waits in the queue
    // for all of that, well past 2 x --upstream-timeout (2 s) without any progress of its own fill.
    fake.scenario({ cdnRate: 1 * MiB });
    const bigReq = http1(url, "GET", resolvePath("main", "big.bin"), { keepBody: false, timeoutMs: 40000 });
    await waitFor(() => rec.hc.logs().includes("/cdn/lfs/"), 10000);
    const st = fake.repos[REPO].files["model.safetensors"];
    const r = await http1(url, "GET", resolvePath("main", "model.safetensors"), { keepBody: false, timeoutMs: 40000 });
    assert.equal(r.status, 200, desc(r));
    assert.ok(r.complete, `queued client: ${desc(r)}`);
    assert.equal(r.sha256, st.sha256);
    assert.equal((await bigReq).sha256, big.sha256);
  }, { args: ["--max-fills", "1", "--upstream-timeout", "1s"] }));
