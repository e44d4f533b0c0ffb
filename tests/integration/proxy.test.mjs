// hubcache in front of the fake Hub: real clients and protocol checks through the proxy.
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/proxy.test.mjs
// Faults (corrupt/cut/stalled CDN, disconnects, upstream down) are in proxy_faults.test.mjs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import * as hub from "@huggingface/hub";
import { startFakeHub, tmpDir, sha256, sha256File, loadTransformers, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, pyHead, Fleet, logTail, assertFetchedOnce } from "./proxy_lib.mjs";

console.debug = () => {}; // hub.js logs "Downloading … to ….incomplete" via console.debug

const REPO = "acme/tiny-model";
// 64 MiB as the foundation issue asks, plus 3 so it is no multiple of any buffer size.
const BIG_SIZE = 64 * 1024 * 1024 + 3;
let fake;
let fleet;
let tiny;
let gated;
let priv;

const enc = (p) => p.split("/").map(encodeURIComponent).join("/");
const resolvePath = (repo, rev, p) => `/${repo}/resolve/${encodeURIComponent(rev)}/${enc(p)}`;
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

/** Runs fn with hubcache's url; on failure prints hubcache's stderr tail. */
async function withHc(fn) {
  const url = await fleet.url();
  try {
    return await fn(url);
  } catch (e) {
    process.stderr.write(`\n===== hubcache stderr (tail) =====\n${logTail(fleet.current.hc.logs(), 12000)}\n===== end =====\n`);
    throw e;
  }
}

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true });
  tiny = fake.repos[REPO];
  gated = fake.repos["acme/gated-model"];
  priv = fake.repos["acme/private-model"];
  fleet = new Fleet({ upstream: fake.hubUrl, args: ["--log-level", "debug", "--public-ttl", "60s", "--upstream-timeout", "10s"] });
  await fleet.start({ name: "main" });
});
after(async () => {
  if (skip) return;
  try {
    for (const r of fleet?.all ?? []) if (r.exit === null) await fleet.stop(r);
  } finally {
    await fake?.close();
  }
});

const noXetHeaders = (r, what) => {
  const xet = Object.keys(r.headers).filter((k) => k.startsWith("x-xet-"));
  assert.deepEqual(xet, [], `${what}: xet headers must be stripped`);
  assert.ok(!/xet-auth|xet-reconstruction-info/.test(r.headers.link ?? ""), `${what}: xet Link rels must be stripped: ${r.headers.link}`);
};

// ---------------------------------------------------------------------------------------------- 1
test("@huggingface/hub through hubcache (xet left on in the client): downloadFile, fileDownloadInfo, fileExists, downloadFileToCacheDir, listFiles", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    fake.reset();
    // downloadFile: a git file and an LFS file; no xet:false, hubcache has to keep the client on HTTP
    for (const name of ["config.json", "model.safetensors"]) {
      const f = tiny.files[name];
      const blob = await hub.downloadFile({ repo: REPO, path: name, hubUrl });
      assert.ok(blob, `downloadFile(${name}) returned null`);
      assert.equal(blob.size, f.size, `downloadFile(${name}).size`);
      assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), f.sha256, `downloadFile(${name}) content`);
    }

    // fileDownloadInfo: etag = git sha1 (git), sha256 (LFS), quoted; size; null for a missing file
    let info = await hub.fileDownloadInfo({ repo: REPO, path: "config.json", hubUrl });
    assert.equal(info.etag, `"${tiny.files["config.json"].gitSha1}"`);
    assert.equal(info.size, tiny.files["config.json"].size);
    assert.equal(info.xet, undefined, "no xet info for a git file");
    info = await hub.fileDownloadInfo({ repo: REPO, path: "model.safetensors", hubUrl });
    assert.equal(info.etag, `"${tiny.files["model.safetensors"].sha256}"`);
    assert.equal(info.size, 150000);
    assert.equal(info.xet, undefined, "hubcache must not hand out xet file info");
    assert.ok(info.url.startsWith(hubUrl + "/"), `download url stays on hubcache: ${info.url}`);
    info = await hub.fileDownloadInfo({ repo: REPO, path: "sub/deeper/leaf.txt", hubUrl, revision: tiny.mainCommit });
    assert.equal(info.etag, `"${tiny.files["sub/deeper/leaf.txt"].gitSha1}"`);
    assert.equal(info.size, tiny.files["sub/deeper/leaf.txt"].size);
    assert.equal(await hub.fileDownloadInfo({ repo: REPO, path: "nope.txt", hubUrl }), null, "EntryNotFound -> null");

    // fileExists (HEAD /raw/)
    assert.equal(await hub.fileExists({ repo: REPO, path: "config.json", hubUrl }), true);
    assert.equal(await hub.fileExists({ repo: REPO, path: "model.safetensors", hubUrl }), true);
    assert.equal(await hub.fileExists({ repo: REPO, path: "nope.txt", hubUrl }), false);

    // downloadFileToCacheDir into a temp HF cache
    const cacheDir = await tmpDir("hfcache-");
    for (const name of ["config.json", "model.safetensors", "sub/nested.txt"]) {
      const f = tiny.files[name];
      const p = await hub.downloadFileToCacheDir({ repo: REPO, path: name, hubUrl, cacheDir });
      const base = path.join(cacheDir, "models--acme--tiny-model");
      assert.equal(p, path.join(base, "snapshots", tiny.mainCommit, name));
      assert.equal(fs.realpathSync(p), path.join(fs.realpathSync(base), "blobs", f.etag), `${name}: blob named after the etag`);
      assert.equal(await sha256File(p), f.sha256, `${name}: content`);
    }

    // listFiles (relayed /api/.../tree), one page and paginated through rewritten Link headers
    const want = new Set(Object.keys(tiny.files));
    for (const pageSize of [null, 3]) {
      fake.scenario({ treePageSize: pageSize });
      const got = [];
      for await (const e of hub.listFiles({ repo: REPO, hubUrl, recursive: true })) got.push(e);
      assert.deepEqual(new Set(got.filter((e) => e.type === "file").map((e) => e.path)), want, `listFiles pageSize=${pageSize}`);
      assert.equal(got.find((e) => e.path === "model.safetensors")?.lfs?.oid, tiny.files["model.safetensors"].sha256);
    }
    // A listing not fetched before (the tree at `main` is cached unpaginated
    // from the first loop, and stays fresh for revision_ttl).
    const page = await http1(hubUrl, "GET", `/api/models/${REPO}/tree/${tiny.mainCommit}?recursive=true&expand=false`);
    assert.equal(page.status, 200, desc(page));
    assert.match(page.headers.link ?? "", new RegExp(`^<${hubUrl.replace(/[.]/g, "\\.")}/api/models/${REPO}/tree/${tiny.mainCommit}\\?[^>]*cursor=[^>]+>; rel="next"`),
      `Link rel=next must point at hubcache (${hubUrl}), got: ${page.headers.link}`);
    fake.scenario({ treePageSize: null });

    await fake.idle();
    const s = fake.stats();
    const xetAccept = s.log.filter((e) => e.host === "hub" && (e.headers.accept ?? "").includes("xet-fileinfo"));
    assert.deepEqual(xetAccept.map((e) => e.url), [], "the xet Accept value must not reach upstream");
    assert.deepEqual(s.xet, { fileinfo: 0, readToken: 0, cas: 0 }, "xet counters");
    assert.equal(s.cdn.authorizationSeen, 0);
  }));

// ---------------------------------------------------------------------------------------------- 2
test("transformers.js AutoTokenizer.from_pretrained through hubcache", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const cacheDir = await tmpDir("tjs-cache-");
    const T = await loadTransformers(hubUrl + "/", cacheDir);
    assert.equal(T.env.allowLocalModels, false);
    const tok = await T.AutoTokenizer.from_pretrained(REPO);
    const ids = tok("Hello world, the hub is fast!").input_ids.tolist()[0].map(Number);
    assert.deepEqual(ids, [2, 11, 12, 6, 10, 14, 23, 24, 5, 3]);
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), "hello world, the hub is fast!");
    assert.equal(await sha256File(path.join(cacheDir, REPO, "tokenizer.json")), tiny.files["tokenizer.json"].sha256);
    assert.equal(await sha256File(path.join(cacheDir, REPO, "tokenizer_config.json")), tiny.files["tokenizer_config.json"].sha256);
  }));

// ---------------------------------------------------------------------------------------------- 3
test("repeat downloads: an LFS file costs zero CDN bytes, a git file at the commit sha zero hub bytes", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const f = tiny.files["model.safetensors"];
    const p1 = await hub.downloadFileToCacheDir({ repo: REPO, path: "model.safetensors", hubUrl, cacheDir: await tmpDir("hfcache-") });
    assert.equal(await sha256File(p1), f.sha256);
    await fake.idle();
    fake.reset();
    const p2 = await hub.downloadFileToCacheDir({ repo: REPO, path: "model.safetensors", hubUrl, cacheDir: await tmpDir("hfcache-") });
    assert.equal(await sha256File(p2), f.sha256);
    await fake.idle();
    let s = fake.stats();
    assert.equal(s.cdn.bodyBytes, 0, `second LFS download: CDN body bytes (CDN log: ${JSON.stringify(s.log.filter((e) => e.host === "cdn").map((e) => e.url))})`);
    assert.equal(s.cdn.requests, 0, "second LFS download: CDN requests");

    const g = tiny.files["README.md"];
    const url = resolvePath(REPO, tiny.mainCommit, "README.md");
    const r1 = await http1(hubUrl, "GET", url);
    assert.equal(r1.status, 200, desc(r1));
    assert.equal(r1.sha256, g.sha256);
    await fake.idle();
    fake.reset();
    const r2 = await http1(hubUrl, "GET", url);
    assert.equal(r2.status, 200, desc(r2));
    assert.equal(r2.sha256, g.sha256);
    await fake.idle();
    s = fake.stats();
    assert.equal(s.hub.bodyBytes, 0, `git file at the commit, 2nd time: hub body bytes (hub log: ${JSON.stringify(s.log.map((e) => `${e.method} ${e.url} ${e.status}`))})`);
    assert.equal(s.hub.requests, 0, `commit-pinned request of a public repo within --public-ttl: no upstream request at all (hub log: ${JSON.stringify(s.log.map((e) => `${e.method} ${e.url} ${e.status}`))})`);
  }));

// ---------------------------------------------------------------------------------------------- 4
test("8 concurrent cold GETs of big.bin: right bytes for all, every byte fetched from the CDN once", { skip, timeout: 45000 }, () =>
  withHc(async (hubUrl) => {
    const f = tiny.files["big.bin"];
    await fake.idle();
    fake.reset();
    const rs = await Promise.all(
      Array.from({ length: 8 }, () => http1(hubUrl, "GET", resolvePath(REPO, "main", "big.bin"), { keepBody: false, timeoutMs: 40000 })),
    );
    rs.forEach((r, i) => {
      assert.equal(r.status, 200, `client ${i}: ${desc(r)}`);
      assert.equal(r.bytes, f.size, `client ${i}: ${desc(r)}`);
      assert.ok(r.complete, `client ${i}: ${desc(r)}`);
      assert.equal(r.sha256, f.sha256, `client ${i}: sha256`);
    });
    assert.ok(await fake.idle(15000), "upstream transfers finish");
    const s = fake.stats();
    const gets = assertFetchedOnce(s.log, f.sha256, f.size, "8 cold clients");
    assert.ok(gets.length > 1, "a 64 MiB file is filled with parallel ranged requests");
    assert.ok(s.cdn.bodyBytes >= f.size && s.cdn.bodyBytes <= 1.05 * f.size, `CDN body bytes ${s.cdn.bodyBytes} for a ${f.size}-byte file`);
    assert.equal(s.cdn.authorizationSeen, 0);
  }));

// ---------------------------------------------------------------------------------------------- 5
test("access: gated and private content is never served without the caller's rights", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    await fake.idle();
    fake.reset();
    const G = "acme/gated-model";
    const P = "acme/private-model";
    const auth = (t) => (t ? { Authorization: `Bearer ${t}` } : {});
    const get = (repo, rev, p, token, extra = {}) => http1(hubUrl, "GET", resolvePath(repo, rev, p), { headers: { ...auth(token), ...extra } });
    const head = (repo, rev, p, token) => http1(hubUrl, "HEAD", resolvePath(repo, rev, p), { headers: auth(token) });
    const denied = async (r, status, code, f, what) => {
      assert.equal(r.status, status, `${what}: ${desc(r)}`);
      assert.equal(r.headers["x-error-code"] ?? null, code, `${what}: X-Error-Code`);
      assert.notEqual(r.sha256, f.sha256, `${what}: got the file`);
      assert.ok(r.bytes < f.size, `${what}: ${r.bytes} body bytes for a ${f.size}-byte file`);
      const head = (await f.read()).subarray(0, 32);
      assert.ok(!r.body.includes(head), `${what}: the body contains the file's first bytes`);
    };

    const gf = gated.files["model.safetensors"];
    const gc = gated.files["config.json"];
    const pf = priv.files["weights.bin"];
    const pc = priv.files["config.json"];

    // cold, anonymous
    await denied(await get(G, "main", "model.safetensors"), 401, "GatedRepo", gf, "anon gated LFS (cold)");
    await denied(await get(G, "main", "config.json"), 401, "GatedRepo", gc, "anon gated git (cold)");
    await denied(await get(P, "main", "weights.bin"), 401, null, pf, "anon private LFS (cold)");
    await denied(await get(P, "main", "config.json"), 401, null, pc, "anon private git (cold)");

    // rightful callers fill the cache
    for (const [repo, f, token] of [[G, gf, "hf_granted"], [G, gc, "hf_granted"], [P, pf, "hf_owner"], [P, pc, "hf_owner"]]) {
      const r = await get(repo, "main", f.path, token);
      assert.equal(r.status, 200, `${token} on ${repo}/${f.path}: ${desc(r)}`);
      assert.equal(r.sha256, f.sha256, `${token} on ${repo}/${f.path}: content`);
    }
    const r0 = await get(G, gated.mainCommit, "model.safetensors", "hf_granted");
    assert.equal(r0.sha256, gf.sha256, "hf_granted at the commit");

    // cached now: still refused to the others, also commit-pinned, HEAD and Range
    for (const [rev, label] of [["main", "main"], [gated.mainCommit, "commit"]]) {
      for (const f of [gf, gc]) {
        await denied(await get(G, rev, f.path), 401, "GatedRepo", f, `anon gated ${f.path}@${label} (cached)`);
        await denied(await get(G, rev, f.path, "hf_nobody"), 403, "GatedRepo", f, `unknown token gated ${f.path}@${label} (cached)`);
        await denied(await get(G, rev, f.path, null, { Range: "bytes=0-99" }), 401, "GatedRepo", f, `anon Range gated ${f.path}@${label} (cached)`);
        const h = await head(G, rev, f.path);
        assert.equal(h.status, 401, `anon HEAD gated ${f.path}@${label}: ${desc(h)}`);
        assert.equal(h.headers["x-error-code"], "GatedRepo");
        assert.equal(h.headers["x-linked-etag"], undefined, "no metadata of the file on a refusal");
      }
    }
    for (const [rev, label] of [["main", "main"], [priv.mainCommit, "commit"]]) {
      for (const f of [pf, pc]) {
        await denied(await get(P, rev, f.path), 401, null, f, `anon private ${f.path}@${label} (cached)`);
        await denied(await get(P, rev, f.path, "hf_granted"), 404, "RepoNotFound", f, `hf_granted private ${f.path}@${label} (cached)`);
        await denied(await get(P, rev, f.path, "hf_nobody"), 401, null, f, `unknown token private ${f.path}@${label} (cached)`);
      }
    }
    // The Hub gives a gated repo's README to anyone: that answer must not make the repo's cached files
    // public, neither while the Hub answers nor when it stops answering (last known state).
    const readme = gated.files["README.md"];
    for (let i = 0; i < 2; i++) {
      const r = await get(G, gated.mainCommit, "README.md");
      assert.equal(r.status, 200, `anon gated README.md (the Hub allows it): ${desc(r)}`);
      assert.equal(r.sha256, readme.sha256, "anon gated README.md: content");
    }
    for (const f of [gf, gc]) {
      await denied(await get(G, gated.mainCommit, f.path), 401, "GatedRepo", f, `anon gated ${f.path} after its README`);
      const h = await head(G, gated.mainCommit, f.path);
      assert.equal(h.status, 401, `anon HEAD gated ${f.path} after its README: ${desc(h)}`);
    }
    fake.scenario({ hubStatus: { status: 503, count: "always" } });
    try {
      for (const f of [gf, gc]) {
        const r = await get(G, gated.mainCommit, f.path);
        assert.ok(r.status >= 500, `anon gated ${f.path}, Hub down after its README: ${desc(r)}`);
        await denied(r, r.status, r.headers["x-error-code"] ?? null, f, `anon gated ${f.path}, Hub down`);
      }
    } finally {
      fake.scenario({ hubStatus: null });
    }

    // and the rightful callers still get it (from cache: no CDN bytes)
    await fake.idle();
    fake.reset();
    const again = await get(P, priv.mainCommit, "weights.bin", "hf_owner");
    assert.equal(again.sha256, pf.sha256, "hf_owner again");
    await fake.idle();
    assert.equal(fake.stats().cdn.bodyBytes, 0, "cached private file: no CDN bytes");
    assert.equal(fake.stats().cdn.authorizationSeen, 0, "the CDN never sees Authorization");
  }));

// ---------------------------------------------------------------------------------------------- 6
/** The final HEAD answer python's hf_hub_download needs (docs/real-clients.md §6.1, hub-protocol.md §4.4). */
function checkPythonHead(r, f, commit, what) {
  assert.equal(r.status, 200, `${what}: ${desc(r)}`);
  assert.equal(r.headers["x-repo-commit"], commit, `${what}: X-Repo-Commit`);
  assert.equal(r.headers.etag, `"${f.etag}"`, `${what}: ETag (strong, quoted)`);
  if (f.lfs) {
    assert.equal(r.headers["x-linked-etag"], `"${f.sha256}"`, `${what}: X-Linked-Etag`);
    assert.equal(r.headers["x-linked-size"], String(f.size), `${what}: X-Linked-Size`);
  }
  assert.equal(r.headers["content-length"], String(f.size), `${what}: Content-Length`);
  assert.equal(r.headers["accept-ranges"], "bytes", `${what}: Accept-Ranges`);
  assert.equal(r.headers["content-encoding"], undefined, `${what}: Content-Encoding`);
  assert.equal(r.headers.location, undefined, `${what}: Location`);
  noXetHeaders(r, what);
}

test("HEAD answers meet the python client's requirements (git, LFS, branch, commit, PR, odd names, renames)", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const pr = tiny.filesAt("refs/pr/1");
    const cases = [
      [REPO, "main", "config.json", tiny.files["config.json"], tiny.mainCommit],
      [REPO, "main", "model.safetensors", tiny.files["model.safetensors"], tiny.mainCommit],
      [REPO, tiny.mainCommit, "config.json", tiny.files["config.json"], tiny.mainCommit],
      [REPO, tiny.mainCommit, "model.safetensors", tiny.files["model.safetensors"], tiny.mainCommit],
      [REPO, "v1.0", "sub/deeper/leaf.txt", tiny.files["sub/deeper/leaf.txt"], tiny.mainCommit],
      [REPO, "main", "dir with space/file +#ü.txt", tiny.files["dir with space/file +#ü.txt"], tiny.mainCommit],
      [REPO, "refs/pr/1", "config.json", pr["config.json"], tiny.prCommit],
      ["acme/old-name", "main", "config.json", tiny.files["config.json"], tiny.mainCommit],
      ["acme/old-name", "main", "model.safetensors", tiny.files["model.safetensors"], tiny.mainCommit],
      ["tiny", "main", "config.json", tiny.files["config.json"], tiny.mainCommit],
      ["tiny", "main", "model.safetensors", tiny.files["model.safetensors"], tiny.mainCommit],
    ];
    for (const [repo, rev, p, f, commit] of cases) {
      const what = `HEAD ${repo}@${rev}/${p}`;
      const { final, hops } = await pyHead(hubUrl, resolvePath(repo, rev, p));
      checkPythonHead(final, f, commit, `${what} [${hops.join(" ; ")}]`);
      // GET: the same file (redirects followed, staying on hubcache), no Content-Encoding even if asked
      const g = await fetch(hubUrl + resolvePath(repo, rev, p), { headers: { "Accept-Encoding": "gzip, deflate, br" } });
      const body = Buffer.from(await g.arrayBuffer());
      assert.equal(g.status, 200, `GET ${repo}@${rev}/${p}`);
      assert.ok(g.url.startsWith(hubUrl + "/"), `GET ${repo}@${rev}/${p} ended on ${g.url}`);
      assert.equal(g.headers.get("content-encoding"), null, `GET ${repo}@${rev}/${p}: Content-Encoding`);
      assert.equal(sha256(body), f.sha256, `GET ${repo}@${rev}/${p}: content`);
      assert.equal(g.headers.get("x-repo-commit"), commit, `GET ${repo}@${rev}/${p}: X-Repo-Commit`);
    }

    // percent-encoded PR revision: the PR commit's config.json
    const prGet = await http1(hubUrl, "GET", `/${REPO}/resolve/refs%2Fpr%2F1/config.json`);
    assert.equal(prGet.status, 200, desc(prGet));
    assert.equal(prGet.sha256, pr["config.json"].sha256, "refs%2Fpr%2F1 -> the PR's config.json");
    assert.notEqual(pr["config.json"].sha256, tiny.files["config.json"].sha256);
    assert.equal(prGet.headers["x-repo-commit"], tiny.prCommit);
    const prHead = await http1(hubUrl, "HEAD", `/${REPO}/resolve/refs%2Fpr%2F1/config.json`);
    checkPythonHead(prHead, pr["config.json"], tiny.prCommit, "HEAD refs%2Fpr%2F1/config.json");
    const prRaw = await http1(hubUrl, "GET", `/${REPO}/resolve/refs/pr/1/config.json`);
    assert.equal(prRaw.status, 200, `unencoded refs/pr/1: ${desc(prRaw)}`);
    assert.equal(prRaw.sha256, pr["config.json"].sha256, "unencoded refs/pr/1 -> the PR's config.json");

    // errors keep the Hub's codes
    const enf = await http1(hubUrl, "HEAD", resolvePath(REPO, "main", "nope.txt"));
    assert.equal(enf.status, 404, desc(enf));
    assert.equal(enf.headers["x-error-code"], "EntryNotFound");
    assert.equal(enf.headers["x-repo-commit"], tiny.mainCommit, "EntryNotFound keeps X-Repo-Commit");
    const enfGet = await http1(hubUrl, "GET", resolvePath(REPO, tiny.mainCommit, "nope.txt"));
    assert.equal(enfGet.status, 404, desc(enfGet));
    assert.equal(enfGet.headers["x-error-code"], "EntryNotFound");
    assert.equal(enfGet.headers["x-repo-commit"], tiny.mainCommit);
    for (const rev of ["no-such-branch", "0123456789abcdef0123456789abcdef01234567"]) {
      const rnf = await http1(hubUrl, "HEAD", resolvePath(REPO, rev, "config.json"));
      assert.equal(rnf.status, 404, `rev ${rev}: ${desc(rnf)}`);
      assert.equal(rnf.headers["x-error-code"], "RevisionNotFound", `rev ${rev}`);
    }

    // path traversal: 400 JSON {error}, nothing relayed
    for (const p of [
      `/${REPO}/resolve/main/sub/../config.json`,
      `/${REPO}/resolve/main/../../../../etc/passwd`,
      `/${REPO}/resolve/main/%2E%2E/%2e%2e/etc/passwd`,
      `/${REPO}/raw/main/sub/../../config.json`,
    ]) {
      await fake.idle();
      fake.reset();
      const r = await http1(hubUrl, "GET", p);
      assert.equal(r.status, 400, `GET ${p}: ${desc(r)}`);
      assert.match(r.headers["content-type"] ?? "", /application\/json/, `GET ${p}: content-type`);
      let j = null;
      try {
        j = JSON.parse(r.body.toString("utf8"));
      } catch {}
      assert.equal(typeof j?.error, "string", `GET ${p}: body must be JSON {error}: ${r.body}`);
      await fake.idle();
      assert.equal(fake.stats().hub.requests, 0, `GET ${p} must not reach upstream`);
    }
  }));

test("Range: 0-0, suffix and unsatisfiable ranges, on cached and cold files; If-Range", { skip, timeout: 40000 }, () =>
  withHc(async (hubUrl) => {
    const ranges = (N) => [
      ["bytes=0-0", 206, `bytes 0-0/${N}`, (b) => b.subarray(0, 1)],
      ["bytes=-10", 206, `bytes ${N - 10}-${N - 1}/${N}`, (b) => b.subarray(N - 10)],
      [`bytes=${N}-`, 416, `bytes */${N}`, null],
    ];
    const check = async (url, base, f, range, status, cr, slice, what) => {
      const r = await http1(url, "GET", base, { headers: { Range: range } });
      assert.equal(r.status, status, `${what} ${range}: ${desc(r)}`);
      assert.equal(r.headers["content-range"], cr, `${what} ${range}: Content-Range`);
      if (slice) {
        assert.ok(r.complete, `${what} ${range}: body not complete: ${desc(r)}`);
        const want = slice(await f.read());
        assert.deepEqual(r.body, want, `${what} ${range}: body`);
        assert.equal(r.headers["content-length"], String(want.length), `${what} ${range}: Content-Length`);
      } else {
        assert.ok(r.bytes < 1024, `${what} ${range}: a 416 carries no file bytes`);
      }
    };

    // cached: fill first
    for (const name of ["model.safetensors", "config.json"]) {
      const f = tiny.files[name];
      const full = await http1(hubUrl, "GET", resolvePath(REPO, tiny.mainCommit, name));
      assert.equal(full.sha256, f.sha256, `fill ${name}: ${desc(full)}`);
      await fake.idle();
      for (const [range, status, cr, slice] of ranges(f.size)) {
        await check(hubUrl, resolvePath(REPO, tiny.mainCommit, name), f, range, status, cr, slice, `cached ${name}`);
        await check(hubUrl, resolvePath(REPO, "main", name), f, range, status, cr, slice, `cached ${name}@main`);
      }
      // If-Range: the range only while the file is the version the client names (a resumed download
      // of a branch whose file changed gets the whole new file, not a mix of two).
      const base = resolvePath(REPO, "main", name);
      const same = await http1(hubUrl, "GET", base, { headers: { Range: "bytes=0-0", "If-Range": `"${f.etag}"` } });
      assert.equal(same.status, 206, `${name} If-Range current ETag: ${desc(same)}`);
      for (const other of [`"${"0".repeat(f.etag.length)}"`, `W/"${f.etag}"`, "Wed, 21 Oct 2015 07:28:00 GMT"]) {
        const r = await http1(hubUrl, "GET", base, { headers: { Range: "bytes=0-0", "If-Range": other } });
        assert.equal(r.status, 200, `${name} If-Range ${other}: ${desc(r)}`);
        assert.equal(r.headers["content-range"], undefined, `${name} If-Range ${other}: Content-Range`);
        assert.equal(r.sha256, f.sha256, `${name} If-Range ${other}: the whole file`);
      }
      assert.equal(same.headers["content-security-policy"], "default-src 'none'; sandbox", `${name}: CSP as the Hub sends it`);
    }

    // cold: a fresh hubcache (empty cache); each range form is the first request for its file
    const cold = await fleet.start({ name: "cold-range", makeCurrent: false });
    try {
      const ds = fake.repos["acme/tiny-dataset"];
      const files = [
        // [repo-prefixed base path, file, which range form first]
        [resolvePath(REPO, "main", "model.safetensors"), tiny.files["model.safetensors"], 0],
        [`/datasets${resolvePath("acme/tiny-dataset", "main", "data/train.csv")}`, ds.files["data/train.csv"], 1],
        [resolvePath(REPO, "main", "big.bin"), tiny.files["big.bin"], 2],
        [resolvePath(REPO, tiny.mainCommit, "config.json"), tiny.files["config.json"], 0],
        [resolvePath(REPO, "main", "README.md"), tiny.files["README.md"], 1],
        [resolvePath(REPO, "main", "sub/nested.txt"), tiny.files["sub/nested.txt"], 2],
      ];
      for (const [base, f, k] of files) {
        const rs = ranges(f.size);
        const [range, status, cr, slice] = rs[k];
        await check(cold.hc.url, base, f, range, status, cr, slice, `cold ${f.path}`);
        for (const [range2, status2, cr2, slice2] of rs) await check(cold.hc.url, base, f, range2, status2, cr2, slice2, `after cold ${f.path}`);
        const full = await http1(cold.hc.url, "GET", base, { keepBody: false, timeoutMs: 30000 });
        assert.equal(full.status, 200, `full GET after ranges ${f.path}: ${desc(full)}`);
        assert.equal(full.sha256, f.sha256, `full GET after ranges ${f.path}`);
      }
    } catch (e) {
      process.stderr.write(`\n===== cold-range hubcache stderr (tail) =====\n${logTail(cold.hc.logs(), 12000)}\n===== end =====\n`);
      throw e;
    } finally {
      if (cold.exit === null) await fleet.stop(cold);
    }
  }));

// ---------------------------------------------------------------------------------------------- 8
test("restart: SIGTERM exits 0 promptly; on the same cache dir a commit-pinned public file costs zero CDN bytes", { skip, timeout: 40000 }, () =>
  withHc(async (hubUrl) => {
    const lfs = tiny.files["model.safetensors"];
    const git = tiny.files["tokenizer_config.json"];
    for (const f of [lfs, git]) {
      const r = await http1(hubUrl, "GET", resolvePath(REPO, tiny.mainCommit, f.path));
      assert.equal(r.sha256, f.sha256, `fill ${f.path}: ${desc(r)}`);
    }
    await fake.idle();
    const old = fleet.current;
    const e = await fleet.stop(old);
    assert.equal(e.code, 0, `exit code after SIGTERM (signal ${e.signal}); stderr tail:\n${logTail(old.hc.logs(), 3000)}`);
    assert.ok(e.ms < 5000, `SIGTERM -> exit took ${e.ms} ms`);

    const nu = await fleet.start({ cacheDir: old.cacheDir, name: "main-restarted" });
    const url = nu.hc.url;
    fake.reset();
    // first request after the restart: one anonymous upstream check, bytes from disk
    const r1 = await http1(url, "GET", resolvePath(REPO, tiny.mainCommit, lfs.path));
    assert.equal(r1.status, 200, desc(r1));
    assert.equal(r1.sha256, lfs.sha256);
    await fake.idle();
    let s = fake.stats();
    assert.equal(s.cdn.bodyBytes, 0, `after restart: CDN body bytes (log ${JSON.stringify(s.log.map((x) => `${x.host} ${x.method} ${x.url.slice(0, 60)} ${x.status}`))})`);
    assert.equal(s.cdn.requests, 0, "after restart: CDN requests");
    fake.reset();
    for (const f of [lfs, git]) {
      const r = await http1(url, "GET", resolvePath(REPO, tiny.mainCommit, f.path));
      assert.equal(r.status, 200, desc(r));
      assert.equal(r.sha256, f.sha256, f.path);
    }
    await fake.idle();
    s = fake.stats();
    assert.equal(s.cdn.bodyBytes + s.hub.bodyBytes, 0, "after the anonymous check: no upstream bytes");
    assert.equal(s.hub.requests, 0, `after the anonymous check, within --public-ttl: no upstream request (log ${JSON.stringify(s.log.map((x) => `${x.method} ${x.url.slice(0, 60)}`))})`);
  }));

// ---------------------------------------------------------------------------------------------- last
test("every hubcache process: no crash, SIGTERM -> exit 0 within 5 s, no sanitizer report", { skip, timeout: 30000 }, async () => {
  const problems = await fleet.shutdownAndCheck(5000);
  if (problems.length) assert.fail(`${problems.length} problem(s):\n\n${problems.join("\n\n")}`);
});
