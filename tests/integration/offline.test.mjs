// hubcache when the Hub is gone, slow to agree or refusing: snapshots through hubcache, the fake Hub
// stopped, hubcache restarted, the same snapshots (by branch and by commit) into empty client caches;
// the Hub back with main moved; stale-while-revalidate; --offline; 429 (Retry-After, RateLimit t=)
// and 5xx that must not reach clients for anything cached.
// The tests run in order and share one cache dir (each phase builds on the previous one).
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/offline.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import * as hub from "@huggingface/hub";
import { startFakeHub, tmpDir, sha256File, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, Fleet, logTail } from "./proxy_lib.mjs";
import { pyApi, parseJson, upstreamDuring, logLines, sleep, hashSafeFetch, pythonSnapshot, pyHeadFile, checkPyHead } from "./metadata_lib.mjs";

console.debug = () => {}; // hub.js logs "Downloading … to ….incomplete" via console.debug

const REPO = "acme/tiny-model";
const DS = "acme/tiny-dataset";
const BIG_SIZE = 2 * 1024 * 1024 + 7;
const REVISION_TTL_S = 3;
const SWR_S = 2;
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

let fake; // replaced when the Hub "comes back" on the same ports
let ports;
let fleet;
let tiny;
let ds;
let cacheDir; // hubcache's cache dir shared by the phases
let hc; // the current hubcache record
let lastOnline = 0; // when phase 1 last talked to the Hub

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true });
  ports = { hubPort: Number(new URL(fake.hubUrl).port), cdnPort: Number(new URL(fake.cdnUrl).port) };
  tiny = fake.repos[REPO];
  ds = fake.repos[DS];
  fleet = new Fleet({
    upstream: fake.hubUrl,
    args: ["--log-level", "debug", "--upstream-timeout", "3s", "--public-ttl", "60s",
      "--revision-ttl", `${REVISION_TTL_S}s`, "--stale-while-revalidate", `${SWR_S}s`],
  });
  cacheDir = await tmpDir("hubcache-cache-");
  hc = await fleet.start({ cacheDir, name: "online" });
});
after(async () => {
  if (skip) return;
  try {
    for (const r of fleet?.all ?? []) if (r.exit === null) await fleet.stop(r);
  } finally {
    await fake?.close();
  }
});

/** Runs fn; on failure prints the stderr tail of `rec` (default: the current hubcache). */
async function withLogsOf(fn, rec = null) {
  try {
    return await fn();
  } catch (e) {
    const r = rec ?? hc;
    process.stderr.write(`\n===== ${r.name} stderr (tail) =====\n${logTail(r.hc.logs(), 14000)}\n===== end =====\n`);
    throw e;
  }
}

const MODEL = { repo: REPO, type: "model" };
const DATASET = { repo: { type: "dataset", name: DS }, type: "dataset" };

/** hub.js snapshotDownload into an empty client cache; checks every file's bytes against the fake's. */
async function hubSnapshot(url, which, revision, wantCommit, what) {
  const name = typeof which.repo === "string" ? which.repo : which.repo.name;
  const clientCache = await tmpDir("hfcache-");
  let snap;
  try {
    snap = await hub.snapshotDownload({ repo: which.repo, hubUrl: url, cacheDir: clientCache, revision, fetch: hashSafeFetch });
  } catch (e) {
    throw new assert.AssertionError({ message: `${what}: snapshotDownload(${name}@${revision}) failed: ${e.message}${e.statusCode ? ` (HTTP ${e.statusCode} ${e.url ?? ""})` : ""}` });
  }
  assert.equal(path.basename(snap), wantCommit, `${what}: ${name}@${revision} snapshot commit`);
  const files = fake.repos[name].filesAt(wantCommit);
  for (const [p, f] of Object.entries(files)) {
    const onDisk = path.join(snap, p);
    assert.ok(fs.existsSync(onDisk), `${what}: ${name}@${revision}: ${p} missing`);
    assert.equal(await sha256File(onDisk), f.sha256, `${what}: ${name}@${revision}: ${p} bytes`);
  }
  return snap;
}

const warningOf = (r) => r.headers.warning ?? null;

const G = "acme/gated-model";
/** Anonymous metadata of the gated repo (public) + its files fetched by hf_granted, at main and at the commit. */
async function fillGated(url) {
  const gated = fake.repos[G];
  const info = await pyApi(url, "GET", `/api/models/${G}/revision/main`);
  assert.equal(info.status, 200, `anonymous gated repo info: ${desc(info)}`);
  const tree = await pyApi(url, "GET", `/api/models/${G}/tree/${gated.mainCommit}?recursive=true&expand=false`);
  assert.equal(tree.status, 200, `anonymous gated tree: ${desc(tree)}`);
  for (const rev of ["main", gated.mainCommit]) {
    for (const f of Object.values(gated.files)) {
      const r = await http1(url, "GET", `/${G}/resolve/${rev}/${f.path}`, { headers: { Authorization: "Bearer hf_granted" } });
      assert.equal(r.sha256, f.sha256, `hf_granted ${f.path}@${rev}: ${desc(r)}`);
    }
  }
}
/** Anonymous requests for the gated repo's files must never get the bytes (whatever upstream is doing). */
async function assertGatedRefused(url, what) {
  const gated = fake.repos[G];
  for (const rev of ["main", gated.mainCommit]) {
    for (const f of [gated.files["config.json"], gated.files["model.safetensors"]]) {
      for (const method of ["GET", "HEAD"]) {
        const r = await http1(url, method, `/${G}/resolve/${rev}/${f.path}`, { headers: { "Accept-Encoding": "identity" } });
        assert.notEqual(r.status, 200, `${what}: anonymous ${method} gated ${f.path}@${rev} (cached for hf_granted only): ${desc(r)}`);
        assert.ok(r.status >= 400, `${what}: anonymous ${method} gated ${f.path}@${rev}: ${desc(r)}`);
        assert.notEqual(r.sha256, f.sha256, `${what}: anonymous got the gated file`);
        assert.equal(r.headers["x-linked-etag"], undefined, `${what}: no file metadata on a refusal`);
      }
    }
  }
}
const isJsonError = (r, what) => {
  assert.match(r.headers["content-type"] ?? "", /application\/json/, `${what}: content-type: ${desc(r)}`);
  assert.equal(typeof parseJson(r, what).error, "string", `${what}: JSON {error}: ${r.body}`);
};

// ---------------------------------------------------------------------------------------------- 1
test("online: python-shaped snapshot (paginated tree, HEAD + GET per file) with the client's required headers; hub.js snapshots by branch and by commit", { skip, timeout: 40000 }, () =>
  withLogsOf(async () => {
    const url = hc.hc.url;
    fake.scenario({ treePageSize: 3 }); // tiny-model: 12 entries -> 4 pages
    const py = await pythonSnapshot(url, { repo: REPO, rev: "main", files: tiny.files, commit: tiny.mainCommit });
    assert.ok(py.pages >= 4, `python tree pages: ${py.pages}`);
    await pythonSnapshot(url, { type: "dataset", repo: DS, rev: "main", files: ds.files, commit: ds.mainCommit });

    // the same replay again: commit-pinned answers of a public repo, no upstream traffic but revision/main
    const again = await upstreamDuring(fake, () => pythonSnapshot(url, { repo: REPO, rev: "main", files: tiny.files, commit: tiny.mainCommit }));
    const notRevision = again.log.filter((e) => !e.path.includes("/revision/"));
    assert.deepEqual(notRevision.map((e) => e.url), [], `repeat of the python sequence: only revision/main may go upstream: ${logLines(again.log)}`);

    for (const which of [MODEL, DATASET]) {
      const v = which === MODEL ? tiny : ds;
      await hubSnapshot(url, which, "main", v.mainCommit, "online");
      await hubSnapshot(url, which, v.mainCommit, v.mainCommit, "online");
    }
    // a private repo's answers, fetched with the owner's token (phase 2 checks they stay private)
    for (const p of [`/api/models/acme/private-model/revision/main`, `/api/models/acme/private-model/tree/${fake.repos["acme/private-model"].mainCommit}?recursive=true&expand=false`]) {
      const r = await pyApi(url, "GET", p, { token: "hf_owner" });
      assert.equal(r.status, 200, `hf_owner ${p}: ${desc(r)}`);
    }
    // a gated repo: its metadata is public (anonymous 200), its files only for hf_granted
    await fillGated(url);
    await fake.idle();
    lastOnline = Date.now();
    assert.equal(fake.stats().cdn.authorizationSeen, 0);
  }));

// ---------------------------------------------------------------------------------------------- 2
test("Hub stopped, hubcache restarted: the same snapshots (branch and commit) into empty client caches, same commit and bytes; stale answers carry Warning 110/111", { skip, timeout: 40000 }, async () => {
  await fake.close();
  const e = await fleet.stop(hc);
  assert.equal(e.code, 0, `SIGTERM exit code (signal ${e.signal})`);
  hc = await fleet.start({ cacheDir, name: "restarted, Hub down" });
  await withLogsOf(async () => {
    const url = hc.hc.url;
    // let the branch answers expire (--revision-ttl): they must come from the "last known" path now
    const wait = lastOnline + REVISION_TTL_S * 1000 + 300 - Date.now();
    if (wait > 0) await sleep(wait);

    for (const which of [MODEL, DATASET]) {
      const v = which === MODEL ? tiny : ds;
      await hubSnapshot(url, which, "main", v.mainCommit, "Hub down");
      await hubSnapshot(url, which, v.mainCommit, v.mainCommit, "Hub down");
    }
    const t0 = Date.now();
    const py = await pythonSnapshot(url, { repo: REPO, rev: "main", files: tiny.files, commit: tiny.mainCommit });
    const rev = py.responses.find((x) => x.what === "revision/main").r;
    assert.match(warningOf(rev) ?? "", /^11[01] /, `revision/main served from the last known answer must carry Warning 110/111: ${desc(rev)}; warning=${warningOf(rev)}`);
    assert.ok(Date.now() - t0 < 15000, "the python sequence with the Hub down took too long");
    // a branch HEAD on a file: the last known mapping, all the headers python needs, and a Warning
    const { final: h, hops } = await pyHeadFile(url, `/${REPO}/resolve/main/config.json`);
    checkPyHead(h, tiny.files["config.json"], tiny.mainCommit, `HEAD resolve/main/config.json, Hub down [${hops.join(" ; ")}]`);
    assert.match(warningOf(h) ?? "", /^11[01] /, `HEAD resolve/main with the Hub down: Warning 110/111 expected: ${desc(h)}`);

    // nothing known: 502/503/504 JSON, quickly
    for (const [m, p] of [
      ["GET", "/api/spaces/acme/tiny-space"],
      ["GET", "/api/spaces/acme/tiny-space/tree/main?recursive=true&expand=false"],
      ["GET", "/spaces/acme/tiny-space/resolve/main/app.py"],
      ["GET", `/api/models/${REPO}/tree/${tiny.mainCommit}/sub?recursive=false&expand=true`],
    ]) {
      const r = await pyApi(url, m, p);
      assert.ok([502, 503, 504].includes(r.status), `${m} ${p} (never cached), Hub down: want 502/503/504: ${desc(r)}`);
      isJsonError(r, `${m} ${p}`);
      assert.ok(r.ms < 5000, `${m} ${p}: ${r.ms} ms`);
    }
    // the private repo's answers were fetched with a token: never to an anonymous caller
    const priv = fake.repos["acme/private-model"];
    for (const p of [`/api/models/acme/private-model/revision/main`, `/api/models/acme/private-model/tree/${priv.mainCommit}?recursive=true&expand=false`]) {
      const r = await pyApi(url, "GET", p);
      assert.notEqual(r.status, 200, `anonymous ${p}, Hub down, cached only for hf_owner: ${desc(r)}`);
      assert.ok(!r.body.includes("weights.bin"), `anonymous ${p}: the body leaks the private listing`);
    }
    // gated files were fetched by hf_granted only (last: a failure here must not hide the rest)
    await assertGatedRefused(url, "Hub down");
  });
});

// ---------------------------------------------------------------------------------------------- 3
test("the Hub comes back with main moved: new commit seen within --revision-ttl + --stale-while-revalidate; a stale answer is served at once with Warning 110 and refreshed", { skip, timeout: 40000 }, () =>
  withLogsOf(async () => {
    const url = hc.hc.url;
    fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true, ...ports });
    assert.equal(fake.repos[REPO].mainCommit, tiny.mainCommit, "same content after the restart");
    fake.scenario({ mainCommit: "refs/pr/1" });
    const back = Date.now();
    const bound = (REVISION_TTL_S + SWR_S + 1) * 1000;
    const prFiles = tiny.filesAt("refs/pr/1");
    // poll as a client would, python's revision/main and a branch file
    let seen = null;
    const trail = [];
    while (Date.now() - back < bound + 2000) {
      const r = await pyApi(url, "GET", `/api/models/${REPO}/revision/main`);
      const f = await http1(url, "GET", `/${REPO}/resolve/main/config.json`);
      const sha = r.status === 200 ? parseJson(r).sha : null;
      trail.push(`${Date.now() - back}ms: revision ${r.status} ${sha?.slice(0, 8)} warning=${warningOf(r)}; config ${f.status} ${f.headers["x-repo-commit"]?.slice(0, 8)}`);
      if (sha === tiny.prCommit && f.headers["x-repo-commit"] === tiny.prCommit) {
        assert.equal(f.sha256, prFiles["config.json"].sha256, "config.json at the new main: the new bytes");
        seen = Date.now() - back;
        break;
      }
      await sleep(200);
    }
    assert.ok(seen !== null && seen <= bound, `main moved: the new commit must be visible within ${bound} ms (revision-ttl ${REVISION_TTL_S}s + swr ${SWR_S}s + 1s); seen after ${seen} ms; trail:\n${trail.join("\n")}`);

    // clients see the new commit
    await hubSnapshot(url, MODEL, "main", tiny.prCommit, "main moved");
    await hubSnapshot(url, MODEL, tiny.prCommit, tiny.prCommit, "main moved");
    await pythonSnapshot(url, { repo: REPO, rev: "main", files: prFiles, commit: tiny.prCommit });

    // stale-while-revalidate: move main back; once --revision-ttl is over, the old answer comes at
    // once with Warning 110, a background refresh follows, and then the new commit
    fake.scenario({ mainCommit: null });
    const moved = Date.now();
    const events = [];
    let staleSeen = false;
    let refreshed = null;
    while (Date.now() - moved < (REVISION_TTL_S + SWR_S + 2) * 1000) {
      const r = await pyApi(url, "GET", `/api/models/${REPO}/revision/main`);
      assert.equal(r.status, 200, desc(r));
      const sha = parseJson(r).sha;
      const w = warningOf(r);
      events.push(`${Date.now() - moved}ms ${sha.slice(0, 8)} warning=${w} age=${r.headers.age} (${r.ms} ms)`);
      assert.ok(r.ms < 1500, `revision/main took ${r.ms} ms: a stale answer must be served at once`);
      if (sha === tiny.mainCommit) {
        refreshed = Date.now() - moved;
        break;
      }
      if (w) {
        assert.match(w, /^110 /, `stale answer within --stale-while-revalidate: Warning 110 (${events.at(-1)})`);
        staleSeen = true;
      }
      await sleep(150);
    }
    assert.ok(staleSeen, `no stale (Warning 110) answer was served between --revision-ttl and the refresh: ${events.join(" | ")}`);
    assert.ok(refreshed !== null && refreshed <= (REVISION_TTL_S + SWR_S + 1) * 1000, `after the background refresh the new commit: ${events.join(" | ")}`);
  }));

// ---------------------------------------------------------------------------------------------- 4
test("--offline: cached snapshots (by branch and by commit) work, anything uncached gets 503 JSON, the Hub sees nothing", { skip, timeout: 40000 }, async () => {
  const e = await fleet.stop(hc);
  assert.equal(e.code, 0, `SIGTERM exit code (signal ${e.signal})`);
  hc = await fleet.start({ cacheDir, name: "offline", args: ["--offline"] });
  await withLogsOf(async () => {
    const url = hc.hc.url;
    await fake.idle();
    fake.reset();
    // hub.js's revision/main entry last said prCommit (test 3), python's said mainCommit
    await hubSnapshot(url, MODEL, "main", tiny.prCommit, "offline");
    await hubSnapshot(url, MODEL, tiny.mainCommit, tiny.mainCommit, "offline");
    await hubSnapshot(url, MODEL, tiny.prCommit, tiny.prCommit, "offline");
    await hubSnapshot(url, DATASET, "main", ds.mainCommit, "offline");
    await hubSnapshot(url, DATASET, ds.mainCommit, ds.mainCommit, "offline");
    await pythonSnapshot(url, { repo: REPO, rev: "main", files: tiny.files, commit: tiny.mainCommit });
    await pythonSnapshot(url, { repo: REPO, rev: tiny.prCommit, files: tiny.filesAt("refs/pr/1"), commit: tiny.prCommit });

    for (const [m, p, headers, body] of [
      ["GET", "/api/spaces/acme/tiny-space", {}],
      ["GET", "/spaces/acme/tiny-space/resolve/main/app.py", {}],
      ["GET", `/api/models/${REPO}/tree/${tiny.mainCommit}/sub?recursive=false&expand=true`, {}],
      ["GET", `/api/models/${REPO}/refs?include_prs=1`, {}],
      ["GET", "/api/whoami-v2", { authorization: "Bearer hf_owner" }],
      ["POST", `/api/models/${REPO}/paths-info/${tiny.mainCommit}`, { "Content-Type": "application/x-www-form-urlencoded" }, "paths=never-asked.txt&expand=false"],
    ]) {
      const r = await pyApi(url, m, p, { headers, body });
      assert.equal(r.status, 503, `--offline, never cached: ${m} ${p}: ${desc(r)}`);
      isJsonError(r, `${m} ${p}`);
    }
    const h = await http1(url, "HEAD", "/spaces/acme/tiny-space/resolve/main/app.py");
    assert.equal(h.status, 503, `--offline HEAD never cached: ${desc(h)}`);

    await fake.idle();
    const s = fake.stats();
    assert.equal(s.hub.requests + s.cdn.requests, 0, `--offline must never contact upstream: ${logLines(s.log)}`);
    await assertGatedRefused(url, "--offline");
  });
});

// ---------------------------------------------------------------------------------------------- 5
/** Everything a client did before, against a fresh client cache: must all succeed with right data. */
async function cachedWorkload(url, what, { snapshot = true } = {}) {
  const py = await pythonSnapshot(url, { repo: REPO, rev: "main", files: tiny.files, commit: tiny.mainCommit }).catch((e) => {
    e.message = `${what}: python sequence: ${e.message}`;
    throw e;
  });
  const info = await hub.modelInfo({ name: REPO, hubUrl: url, additionalFields: ["sha"] });
  assert.equal(info.sha, tiny.mainCommit, `${what}: modelInfo sha`);
  const listed = [];
  for await (const e of hub.listFiles({ repo: REPO, hubUrl: url, recursive: true })) listed.push(e.path);
  assert.ok(listed.includes("sub/deeper/leaf.txt"), `${what}: listFiles`);
  const pi = await hub.pathsInfo({ repo: REPO, hubUrl: url, paths: ["model.safetensors"], revision: tiny.mainCommit });
  assert.equal(pi[0]?.lfs?.oid, tiny.files["model.safetensors"].sha256, `${what}: pathsInfo`);
  if (snapshot) await hubSnapshot(url, MODEL, "main", tiny.mainCommit, what);
  // a branch HEAD (the revision mapping is older than --revision-ttl here)
  const { final: h, hops } = await pyHeadFile(url, `/${REPO}/resolve/main/model.safetensors`);
  checkPyHead(h, tiny.files["model.safetensors"], tiny.mainCommit, `${what}: HEAD resolve/main/model.safetensors [${hops.join(" ; ")}]`);
  return py;
}

test("429 and 5xx from the Hub never reach clients for anything cached; Retry-After and RateLimit t= stop upstream requests meanwhile", { skip, timeout: 60000 }, async () => {
  const rec = await fleet.start({
    name: "short-ttls",
    makeCurrent: false,
    args: ["--revision-ttl", "1s", "--metadata-ttl", "1s", "--public-ttl", "1s", "--stale-while-revalidate", "0"],
  });
  await withLogsOf(async () => {
    const url = rec.hc.url;
    fake.reset();
    await cachedWorkload(url, "fill");
    await fillGated(url);

    for (const status of [500, 502, 503]) {
      await sleep(1300); // every TTL over: each request now asks upstream first
      fake.scenario({ hubStatus: { status, count: "always" } });
      const d = await upstreamDuring(fake, () => cachedWorkload(url, `Hub answers ${status}`));
      fake.scenario({ hubStatus: null });
      const failed = d.hub.filter((e) => e.status === status);
      assert.ok(failed.length > 0, `the fault was not exercised (hubcache did not ask upstream): ${logLines(d.hub)}`);
      const rev = d.value.responses.find((x) => x.what === "revision/main").r;
      assert.match(warningOf(rev) ?? "", /^11[01] /, `revision/main after upstream ${status}: Warning 110/111: ${desc(rev)}`);
      // nothing cached: an error, JSON
      fake.scenario({ hubStatus: { status, count: "always" } });
      const cold = await pyApi(url, "GET", "/api/spaces/acme/tiny-space");
      fake.scenario({ hubStatus: null });
      assert.ok(cold.status >= 500, `never cached, upstream ${status}: ${desc(cold)}`);
      isJsonError(cold, `never cached, upstream ${status}`);
    }

    for (const [label, fault, waitS, coldPath] of [
      ["Retry-After: 5", { status: 429, count: 1, retryAfter: 5 }, 5, "/api/spaces/acme/tiny-space?expand=likes"],
      ["RateLimit t=4 only", { status: 429, count: 1, retryAfter: 4, rateLimitOnly: true }, 4, "/api/spaces/acme/tiny-space?expand=sdk"],
      ["429 on a /resolve request, Retry-After: 4", { status: 429, count: 1, retryAfter: 4, match: "/resolve/" }, 4, "/api/spaces/acme/tiny-space?expand=author"],
    ]) {
      await sleep(1300);
      fake.scenario({ hubStatus: fault });
      const onFile = !!fault.match;
      const first = await upstreamDuring(fake, async () =>
        onFile ? (await pyHeadFile(url, `/${REPO}/resolve/main/config.json`)).final : pyApi(url, "GET", `/api/models/${REPO}/revision/main`));
      const t429 = Date.now();
      assert.equal(first.value.status, 200, `${label}: the request that met the 429 gets the cached answer: ${desc(first.value)}`);
      if (onFile) checkPyHead(first.value, tiny.files["config.json"], tiny.mainCommit, `${label}: HEAD resolve/main/config.json`);
      else assert.equal(parseJson(first.value).sha, tiny.mainCommit);
      assert.match(warningOf(first.value) ?? "", /^11[01] /, `${label}: Warning on the answer served instead of the 429`);
      assert.deepEqual(first.hub.map((e) => e.status), [429], `${label}: ${logLines(first.hub)}`);

      // during the wait: cached answers from hubcache, uncached ones 429 JSON, upstream untouched
      const during = await upstreamDuring(fake, async () => {
        await cachedWorkload(url, `${label}, backing off`, { snapshot: false });
        const cold = await pyApi(url, "GET", coldPath);
        assert.equal(cold.status, 429, `${label}: never cached while backing off: ${desc(cold)}`);
        isJsonError(cold, `${label}: 429`);
        assert.ok(cold.headers["retry-after"], `${label}: 429 carries Retry-After`);
      });
      const elapsed = Date.now() - t429;
      assert.ok(elapsed < waitS * 1000, `the back-off checks took ${elapsed} ms, longer than the ${waitS}s wait: inconclusive`);
      assert.deepEqual(during.hub.map((e) => e.url), [], `${label}: hubcache must not ask upstream during the wait`);

      // afterwards: upstream again
      await sleep(waitS * 1000 - (Date.now() - t429) + 700);
      const afterWait = await upstreamDuring(fake, () => pyApi(url, "GET", coldPath));
      assert.equal(afterWait.value.status, 200, `${label}: after the wait: ${desc(afterWait.value)}`);
      assert.ok(afterWait.hub.length >= 1, `${label}: after the wait hubcache asks upstream again`);
    }

    // gated files were fetched by hf_granted only: an upstream 5xx must not open them to anonymous callers
    await sleep(1300);
    fake.scenario({ hubStatus: { status: 503, count: "always" } });
    try {
      await assertGatedRefused(url, "Hub answers 503");
    } finally {
      fake.scenario({ hubStatus: null });
    }
  }, rec);
  await fleet.stop(rec);
});

// ---------------------------------------------------------------------------------------------- last
test("every hubcache process: no crash, SIGTERM -> exit 0 within 5 s, no sanitizer report", { skip, timeout: 30000 }, async () => {
  const problems = await fleet.shutdownAndCheck(5000);
  if (problems.length) assert.fail(`${problems.length} problem(s):\n\n${problems.join("\n\n")}`);
});
