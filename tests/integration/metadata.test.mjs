// hubcache's metadata API cache (repo info, tree, paths-info, refs, commits) in front of the fake Hub:
// real @huggingface/hub calls, python-shaped requests, cache-key normalisation, access rules,
// --read-only. Offline / stale / 429 / 5xx serving is in offline.test.mjs.
//   HUBCACHE_BIN=/work/build-main/bin/hubcache node --test tests/integration/metadata.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import * as hub from "@huggingface/hub";
import { startFakeHub, tmpDir, sha256File, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, Fleet, logTail, withOwnHubcache } from "./proxy_lib.mjs";
import { pyApi, parseJson, upstreamDuring, logLines, sleep, hashSafeFetch } from "./metadata_lib.mjs";

console.debug = () => {}; // hub.js logs "Downloading … to ….incomplete" via console.debug

const REPO = "acme/tiny-model";
const BIG_DS = "acme/big-dataset";
const skip = !hubcacheBin() ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache" : false;

let fake;
let fleet;
let tiny;
let bigDs;

before(async () => {
  if (skip) return;
  fake = await startFakeHub({ bigSize: 2 * 1024 * 1024 + 7, quiet: true });
  tiny = fake.repos[REPO];
  bigDs = fake.repos[BIG_DS];
  fleet = new Fleet({ upstream: fake.hubUrl, args: ["--log-level", "debug", "--public-ttl", "60s", "--upstream-timeout", "10s", "--revision-ttl", "20s"] });
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

/** Runs fn with the main hubcache's url; on failure prints its stderr tail. */
async function withHc(fn) {
  const url = await fleet.url();
  try {
    return await fn(url);
  } catch (e) {
    process.stderr.write(`\n===== hubcache stderr (tail) =====\n${logTail(fleet.current.hc.logs(), 12000)}\n===== end =====\n`);
    throw e;
  }
}

/** A separate hubcache (own cache dir, extra args) for one test; stopped afterwards. */
const withOwnHc = (name, args, fn) => withOwnHubcache(fleet, fn, { name, args });

const noXetHash = (entries, what) => {
  const withXet = entries.filter((e) => e.xetHash !== undefined).map((e) => e.path);
  assert.deepEqual(withXet, [], `${what}: xetHash must be removed from tree/paths-info entries`);
};
const zeroHub = (d, what) => assert.equal(d.hub.length, 0, `${what}: want zero hub requests, got ${logLines(d.hub)}`);
const oneHub = (d, what) => assert.equal(d.hub.length, 1, `${what}: want exactly one hub request, got ${logLines(d.hub)}`);

// ---------------------------------------------------------------------------------------------- 1
test("listFiles over a dataset of 2,602 files (3 pages) through hubcache: Link on hubcache, repeat costs zero hub requests", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const repo = { type: "dataset", name: BIG_DS };
    const want = Object.keys(bigDs.files).sort();
    assert.ok(want.length > 2500);
    for (const revision of ["main", bigDs.mainCommit]) {
      const list = async () => {
        const got = [];
        for await (const e of hub.listFiles({ repo, hubUrl, recursive: true, revision })) got.push(e);
        return got;
      };
      const first = await upstreamDuring(fake, list);
      const files = first.value.filter((e) => e.type === "file");
      assert.deepEqual(files.map((e) => e.path).sort(), want, `listFiles @${revision}: every file once`);
      assert.deepEqual(first.value.filter((e) => e.type === "directory").map((e) => e.path).sort(),
        ["data", "data/extra", "data/test", "data/train", "data/validation"], `listFiles @${revision}: directories`);
      const f = bigDs.files["data/validation/part-00649.jsonl"];
      assert.equal(files.find((e) => e.path === f.path)?.oid, f.gitSha1, "an entry of the last page");
      const trees = first.hub.filter((e) => e.path.includes("/tree/"));
      assert.equal(trees.length, 3, `listFiles @${revision}: 3 pages fetched upstream through hubcache: ${logLines(first.hub)}`);
      assert.ok(trees.every((e) => e.status === 200), logLines(trees));

      // again: all three pages from hubcache. A client that followed an un-rewritten Link would
      // have gone to the fake directly and shows up here.
      const again = await upstreamDuring(fake, list);
      assert.equal(again.value.length, first.value.length, `listFiles @${revision} again: same entries`);
      zeroHub(again, `listFiles @${revision} again`);
    }

    // the Link header itself: absolute, on hubcache, query kept, cursor kept
    const r = await http1(hubUrl, "GET", `/api/datasets/${BIG_DS}/tree/${bigDs.mainCommit}?recursive=true&expand=false`);
    assert.equal(r.status, 200, desc(r));
    const m = /^<([^>]+)>;\s*rel="next"$/.exec(r.headers.link ?? "");
    assert.ok(m, `Link: ${r.headers.link}`);
    const next = new URL(m[1]);
    assert.equal(next.origin, hubUrl, `Link rel=next must be absolute on hubcache: ${r.headers.link}`);
    assert.equal(next.pathname, `/api/datasets/${BIG_DS}/tree/${bigDs.mainCommit}`);
    assert.equal(next.searchParams.get("recursive"), "true");
    assert.ok(next.searchParams.get("cursor"), "cursor kept");
    // the same cached page asked through another name of hubcache: Link follows the request's Host
    const port = new URL(hubUrl).port;
    const viaName = await http1(hubUrl, "GET", `/api/datasets/${BIG_DS}/tree/${bigDs.mainCommit}?recursive=true&expand=false`, { headers: { Host: `localhost:${port}` } });
    assert.equal(viaName.status, 200, desc(viaName));
    assert.ok((viaName.headers.link ?? "").startsWith(`<http://localhost:${port}/api/datasets/${BIG_DS}/tree/`), `Link for Host localhost:${port}: ${viaName.headers.link}`);

    // a sub-folder listing (one page of 650)
    const sub = [];
    for await (const e of hub.listFiles({ repo, hubUrl, recursive: true, path: "data/train", revision: bigDs.mainCommit })) sub.push(e.path);
    assert.deepEqual(sub.sort(), want.filter((p) => p.startsWith("data/train/")));

    // expand=true pages hold 50 entries: 13 pages for data/test, every Link on hubcache, then cached
    const listExpanded = async () => {
      const out = [];
      for await (const e of hub.listFiles({ repo, hubUrl, path: "data/test", expand: true, revision: bigDs.mainCommit })) out.push(e);
      return out;
    };
    const ex = await upstreamDuring(fake, listExpanded);
    assert.equal(ex.value.length, 650, "expanded listing of data/test");
    assert.ok(ex.value.every((e) => e.lastCommit?.id === bigDs.mainCommit), "expand=true: lastCommit on every entry");
    noXetHash(ex.value, "expanded listing");
    assert.equal(ex.hub.length, 13, `expand=true: 13 pages of 50 through hubcache: ${logLines(ex.hub)}`);
    zeroHub(await upstreamDuring(fake, listExpanded), "expanded listing again (within --metadata-ttl)");
  }));

// ---------------------------------------------------------------------------------------------- 2
test("modelInfo (revision HEAD) and datasetInfo; repeats within the TTL and re-ordered expand / expand[] / blobs=True|true|1 share one entry", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const info = () => hub.modelInfo({ name: REPO, hubUrl, additionalFields: ["sha", "siblings"] });
    const a = await upstreamDuring(fake, info);
    assert.equal(a.value.name, REPO);
    assert.equal(a.value.sha, tiny.mainCommit, "modelInfo sha");
    assert.equal(a.value.private, false);
    assert.deepEqual(a.value.siblings.map((s) => s.rfilename).sort(), Object.keys(tiny.files).sort());
    oneHub(a, "modelInfo");
    assert.match(a.hub[0].url, new RegExp(`^/api/models/${REPO}/revision/HEAD\\?`), "modelInfo asks revision/HEAD");
    zeroHub(await upstreamDuring(fake, info), "modelInfo again (within --revision-ttl)");

    const d = await upstreamDuring(fake, () => hub.datasetInfo({ name: BIG_DS, hubUrl, additionalFields: ["sha"] }));
    assert.equal(d.value.sha, bigDs.mainCommit);
    zeroHub(await upstreamDuring(fake, () => hub.datasetInfo({ name: BIG_DS, hubUrl, additionalFields: ["sha"] })), "datasetInfo again");

    // cache-key normalisation (hub-protocol.md §4.2): repeated expand values sorted, expand[] = expand
    const variants = [
      `/api/models/${REPO}/revision/main?expand=sha&expand=private&expand=downloads`,
      `/api/models/${REPO}/revision/main?expand=downloads&expand=sha&expand=private`,
      `/api/models/${REPO}/revision/main?expand%5B%5D=private&expand%5B%5D=downloads&expand%5B%5D=sha`,
      `/api/models/${REPO}/revision/main?expand[]=private&expand[]=sha&expand[]=downloads`,
    ];
    let body0 = null;
    for (const [i, p] of variants.entries()) {
      const d = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", p));
      const r = d.value;
      assert.equal(r.status, 200, `${p}: ${desc(r)}`);
      const j = parseJson(r, p);
      assert.deepEqual(Object.keys(j).sort(), ["_id", "downloads", "id", "private", "sha"], `${p}: exactly the expanded fields`);
      if (i === 0) {
        body0 = j;
        oneHub(d, p);
      } else {
        assert.deepEqual(j, body0, `${p}: same answer`);
        zeroHub(d, `${p} (same normalised query as ${variants[0]})`);
      }
    }
    for (const [i, q] of ["blobs=True", "blobs=true", "blobs=1"].entries()) {
      const p = `/api/models/${REPO}?${q}`;
      const d = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", p));
      assert.equal(d.value.status, 200, desc(d.value));
      const j = parseJson(d.value, p);
      assert.equal(j.siblings.find((s) => s.rfilename === "model.safetensors")?.lfs?.sha256, tiny.files["model.safetensors"].sha256, `${p}: siblings with blobs`);
      if (i === 0) oneHub(d, p);
      else zeroHub(d, `${p} (boolean spelled differently)`);
    }
  }));

// ---------------------------------------------------------------------------------------------- 3
test("paths-info: python's form body and hub.js's JSON body share one cache entry; xetHash removed", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    const st = tiny.files["model.safetensors"];
    for (const revision of [tiny.mainCommit, "main"]) {
      const paths = ["config.json", "model.safetensors", "sub", "does/not/exist.txt"];
      // hub.js: JSON {"paths":[...],"expand":false}
      const js = await upstreamDuring(fake, () => hub.pathsInfo({ repo: REPO, hubUrl, paths, expand: false, revision }));
      oneHub(js, `hub.pathsInfo @${revision}`);
      assert.equal(js.hub[0].method, "POST");
      assert.match(js.hub[0].headers["content-type"] ?? "", /application\/json/);
      const got = js.value;
      assert.deepEqual(got.map((e) => e.path).sort(), ["config.json", "model.safetensors", "sub"], `pathsInfo @${revision}: known paths only`);
      noXetHash(got, `pathsInfo @${revision}`);
      assert.equal(got.find((e) => e.path === "model.safetensors").lfs.oid, st.sha256);
      assert.equal(got.find((e) => e.path === "config.json").oid, tiny.files["config.json"].gitSha1);

      // python (httpx): form, other order, expand=False; (requests): expand=false; paths[]=
      for (const body of [
        "paths=sub&paths=model.safetensors&paths=does%2Fnot%2Fexist.txt&paths=config.json&expand=False",
        "paths=config.json&paths=model.safetensors&paths=sub&paths=does/not/exist.txt&expand=false",
        "paths=config.json&paths=model.safetensors&paths=model.safetensors&paths=sub&paths=does/not/exist.txt&expand=false",
      ]) {
        const d = await upstreamDuring(fake, () => pyApi(hubUrl, "POST", `/api/models/${REPO}/paths-info/${encodeURIComponent(revision)}`, { headers: form, body }));
        assert.equal(d.value.status, 200, `form ${body}: ${desc(d.value)}`);
        const j = parseJson(d.value, "paths-info form");
        assert.deepEqual(j.map((e) => e.path).sort(), ["config.json", "model.safetensors", "sub"], `form @${revision}`);
        noXetHash(j, `paths-info form @${revision}`);
        zeroHub(d, `paths-info form body after the same JSON request @${revision} (${body})`);
      }
    }

    // expand=true is another entry (lastCommit), also without xetHash
    const ex = await upstreamDuring(fake, () => hub.pathsInfo({ repo: REPO, hubUrl, paths: ["model.safetensors"], expand: true, revision: tiny.mainCommit }));
    oneHub(ex, "pathsInfo expand:true");
    assert.equal(ex.value[0].lastCommit?.id, tiny.mainCommit, "expand:true gives lastCommit");
    noXetHash(ex.value, "pathsInfo expand:true");
    const exForm = await upstreamDuring(fake, () =>
      pyApi(hubUrl, "POST", `/api/models/${REPO}/paths-info/${tiny.mainCommit}`, { headers: form, body: "paths=model.safetensors&expand=True" }));
    assert.equal(exForm.value.status, 200, desc(exForm.value));
    zeroHub(exForm, "paths-info form expand=True after JSON expand:true");
  }));

// ---------------------------------------------------------------------------------------------- 4
test("tree: recursive=True/true/1 share an entry; a commit-pinned tree is served with zero hub requests; xetHash removed; EntryNotFound reused", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const base = `/api/models/${REPO}/tree/${tiny.mainCommit}`;
    // what the Hub says, minus xetHash
    const direct = await http1(fake.hubUrl, "GET", `${base}?recursive=true&expand=false`);
    const want = JSON.parse(direct.body.toString()).map(({ xetHash, ...rest }) => rest);
    assert.ok(JSON.parse(direct.body.toString()).some((e) => e.xetHash), "the fake does send xetHash");

    const qs = ["recursive=True&expand=False", "recursive=true&expand=false", "recursive=1&expand=false", "recursive=1&expand=0", "expand=false&recursive=true", "recursive=true&expand=False&"];
    for (const [i, q] of qs.entries()) {
      const d = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", `${base}?${q}`));
      assert.equal(d.value.status, 200, `${q}: ${desc(d.value)}`);
      const j = parseJson(d.value, q);
      assert.deepEqual(j, want, `tree?${q}: the Hub's listing without xetHash`);
      assert.ok(!d.value.body.includes("xetHash"), `tree?${q}: no xetHash anywhere in the body`);
      if (i === 0) oneHub(d, `tree?${q}`);
      else zeroHub(d, `tree?${q} (same normalised query as ${qs[0]})`);
    }
    // hub.js spelling of the same listing, non-recursive listing is another entry
    const js = await upstreamDuring(fake, async () => {
      const out = [];
      for await (const e of hub.listFiles({ repo: REPO, hubUrl, recursive: true, revision: tiny.mainCommit })) out.push(e);
      return out;
    });
    assert.equal(js.value.length, want.length);
    noXetHash(js.value, "listFiles");
    zeroHub(js, "hub.listFiles of an already cached commit-pinned tree");
    const flat = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", `${base}?recursive=false&expand=false`));
    assert.equal(flat.value.status, 200);
    assert.ok(parseJson(flat.value).every((e) => !e.path.includes("/")), "non-recursive listing");
    oneHub(flat, "non-recursive tree (a different entry)");

    // expand=true listing: xetHash removed as well
    const exp = await pyApi(hubUrl, "GET", `${base}/sub?recursive=true&expand=true`);
    assert.equal(exp.status, 200, desc(exp));
    const ej = parseJson(exp);
    assert.ok(ej.length > 0 && ej.every((e) => e.lastCommit), "expand=true entries carry lastCommit");
    const lfsExp = parseJson(await pyApi(hubUrl, "GET", `${base}?recursive=false&expand=true`));
    noXetHash(lfsExp, "tree expand=true");
    assert.ok(lfsExp.find((e) => e.path === "model.safetensors")?.lfs, "LFS entry kept");

    // python encodes '/' in the folder path and in the revision (%2F), hub.js does not: one entry each
    const pairs = [
      [`${base}/sub%2Fdeeper?recursive=false&expand=false`, `${base}/sub/deeper?recursive=false&expand=false`, ["sub/deeper/leaf.txt"]],
      [`/api/models/${REPO}/tree/refs%2Fpr%2F1?recursive=false&expand=false`, `/api/models/${REPO}/tree/refs/pr/1?recursive=false&expand=false`, null],
      [`/api/models/${REPO}/revision/refs%2Fpr%2F1`, `/api/models/${REPO}/revision/refs/pr/1`, null],
    ];
    for (const [py, js, paths] of pairs) {
      const a = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", py));
      assert.equal(a.value.status, 200, `${py}: ${desc(a.value)}`);
      const ja = parseJson(a.value, py);
      if (paths) assert.deepEqual(ja.map((e) => e.path), paths, py);
      if (py.includes("/revision/")) assert.equal(ja.sha, tiny.prCommit, `${py}: sha`);
      else if (py.includes("refs%2Fpr")) assert.equal(ja.find((e) => e.path === "config.json")?.oid, tiny.filesAt("refs/pr/1")["config.json"].gitSha1, `${py}: the PR's config.json`);
      oneHub(a, py);
      const b = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", js));
      assert.equal(b.value.status, 200, `${js}: ${desc(b.value)}`);
      assert.deepEqual(parseJson(b.value, js), ja, `${js}: same answer as ${py}`);
      zeroHub(b, `${js} after ${py} (same decoded revision/path)`);
    }

    // EntryNotFound at a commit: 404 with X-Error-Code, then reused (--negative-ttl)
    const missing = `${base}/no-such-folder?recursive=false&expand=false`;
    const n1 = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", missing));
    assert.equal(n1.value.status, 404, desc(n1.value));
    assert.equal(n1.value.headers["x-error-code"], "EntryNotFound");
    oneHub(n1, "EntryNotFound, first");
    const n2 = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", missing));
    assert.equal(n2.value.status, 404, desc(n2.value));
    assert.equal(n2.value.headers["x-error-code"], "EntryNotFound", "the cached 404 keeps X-Error-Code");
    zeroHub(n2, "EntryNotFound at a commit, again within --negative-ttl");
  }));

// ---------------------------------------------------------------------------------------------- 5
test("snapshotDownload of a model and of a dataset through hubcache: files byte-identical; a repeat into an empty cache costs no CDN bytes", { skip, timeout: 40000 }, () =>
  withHc(async (hubUrl) => {
    for (const [repo, name] of [[REPO, REPO], [{ type: "dataset", name: "acme/tiny-dataset" }, "acme/tiny-dataset"]]) {
      const view = fake.repos[name];
      for (const round of [1, 2]) {
        const cacheDir = await tmpDir("hfcache-");
        const d = await upstreamDuring(fake, () => hub.snapshotDownload({ repo, hubUrl, cacheDir, fetch: hashSafeFetch }));
        const snap = d.value;
        assert.equal(path.basename(snap), view.mainCommit, `${name}: snapshot folder named after the commit`);
        const onDisk = [];
        const walk = (dir, pre = "") => {
          for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
            const p = pre ? `${pre}/${e.name}` : e.name;
            if (e.isDirectory()) walk(path.join(dir, e.name), p);
            else onDisk.push(p);
          }
        };
        walk(snap);
        assert.deepEqual(onDisk.sort(), Object.keys(view.files).sort(), `${name}: every file in the snapshot`);
        for (const [p, f] of Object.entries(view.files)) {
          assert.equal(await sha256File(path.join(snap, p)), f.sha256, `${name} round ${round}: ${p} bytes`);
          assert.equal(fs.realpathSync(path.join(snap, p)).split(path.sep).at(-1), f.etag, `${name}: ${p} blob named after its etag`);
        }
        const cas = d.hub.filter((e) => /xet-read-token|\/cas\//.test(e.path));
        assert.deepEqual(cas, [], "no xet traffic");
        if (round === 2) {
          const cdnBytes = d.cdn.reduce((a, e) => a + e.bytes, 0);
          assert.equal(cdnBytes, 0, `${name}: repeat snapshot into an empty client cache, CDN: ${logLines(d.cdn)}`);
          const fileHub = d.hub.filter((e) => !e.path.startsWith("/api/"));
          assert.deepEqual(fileHub.map((e) => e.url), [], `${name}: repeat snapshot (commit-pinned files of a public repo): no file request upstream`);
        }
      }
    }
    assert.equal(fake.stats().cdn.authorizationSeen, 0);
  }));

// ---------------------------------------------------------------------------------------------- 6
test("refs and commits at a branch are cached for --revision-ttl; whoami-v2 is relayed with the caller's token, never cached", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const cases = [
      [`/api/models/${REPO}/refs`, (j) => assert.equal(j.branches.find((b) => b.name === "main")?.targetCommit, tiny.mainCommit)],
      [`/api/models/${REPO}/refs?include_prs=1`, (j) => assert.equal(j.pullRequests?.[0]?.targetCommit, tiny.prCommit)],
      [`/api/models/${REPO}/refs?include_prs=true`, (j) => assert.equal(j.pullRequests?.[0]?.targetCommit, tiny.prCommit)],
      [`/api/models/${REPO}/commits/main`, (j) => assert.equal(j[0].id, tiny.mainCommit)],
      [`/api/models/${REPO}/commits/refs%2Fpr%2F1`, (j) => assert.deepEqual(j.map((c) => c.id), [tiny.prCommit, tiny.mainCommit])],
    ];
    for (const [i, [p, check]] of cases.entries()) {
      const a = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", p));
      assert.equal(a.value.status, 200, `${p}: ${desc(a.value)}`);
      check(parseJson(a.value, p));
      if (p.includes("/commits/")) assert.ok(a.value.headers["x-total-count"], `${p}: X-Total-Count kept`);
      if (i !== 2) oneHub(a, p);
      else zeroHub(a, `${p} (include_prs=true after include_prs=1)`);
      const b = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", p));
      assert.equal(b.value.status, 200);
      assert.deepEqual(parseJson(b.value), parseJson(a.value), `${p}: same answer`);
      zeroHub(b, `${p} again`);
    }

    for (const round of [1, 2]) {
      const w = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", "/api/whoami-v2", { token: "hf_owner" }));
      assert.equal(w.value.status, 200, desc(w.value));
      assert.equal(parseJson(w.value).name, "acme-owner");
      oneHub(w, `whoami-v2 round ${round} (relayed each time)`);
      assert.equal(w.hub[0].token, "hf_owner", "the caller's token reaches upstream");
      const anon = await upstreamDuring(fake, () => pyApi(hubUrl, "GET", "/api/whoami-v2"));
      assert.equal(anon.value.status, 401, `anonymous whoami after hf_owner's: ${desc(anon.value)}`);
      oneHub(anon, "anonymous whoami");
    }
  }));

// ---------------------------------------------------------------------------------------------- 7
test("private and gated: cached metadata and revision mappings are never served to callers without the right", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    const P = "acme/private-model";
    const priv = fake.repos[P];
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    const reqs = [
      ["GET", `/api/models/${P}`],
      ["GET", `/api/models/${P}/revision/main`],
      ["GET", `/api/models/${P}/revision/main?expand=sha`],
      ["GET", `/api/models/${P}/tree/${priv.mainCommit}?recursive=true&expand=false`],
      ["GET", `/api/models/${P}/tree/main?recursive=true&expand=false`],
      ["POST", `/api/models/${P}/paths-info/${priv.mainCommit}`, "paths=weights.bin&paths=config.json&expand=false"],
      ["GET", `/api/models/${P}/refs`],
      ["GET", `/api/models/${P}/commits/main`],
    ];
    const call = (m, p, body, token) => pyApi(hubUrl, m, p, { token, body, headers: body ? form : {} });
    // the owner fills the cache, then gets it again from hubcache
    for (const [m, p, body] of reqs) {
      const r = await call(m, p, body, "hf_owner");
      assert.equal(r.status, 200, `hf_owner ${m} ${p}: ${desc(r)}`);
    }
    const again = await upstreamDuring(fake, async () => {
      for (const [m, p, body] of reqs) assert.equal((await call(m, p, body, "hf_owner")).status, 200);
    });
    zeroHub(again, "hf_owner repeats its own requests (answers reused for that token)");

    const secret = [priv.mainCommit, "weights.bin", priv.files["weights.bin"].sha256];
    for (const [token, status, code] of [[null, 401, null], ["hf_granted", 404, "RepoNotFound"], ["hf_nobody", 401, null]]) {
      for (const [m, p, body] of reqs) {
        const d = await upstreamDuring(fake, () => call(m, p, body, token));
        const r = d.value;
        const what = `${token ?? "anonymous"} ${m} ${p} after hf_owner cached it`;
        assert.equal(r.status, status, `${what}: ${desc(r)}`);
        assert.equal(r.headers["x-error-code"] ?? null, code, `${what}: X-Error-Code`);
        for (const s of secret) assert.ok(!r.body.includes(s), `${what}: the body leaks ${s}`);
        oneHub(d, `${what}: must be asked upstream`);
      }
    }

    // gated: metadata is public on the Hub, file content is not. Neither a revision->commit mapping
    // learned from hf_granted's requests nor an anonymous 200 on the repo's metadata (what python's
    // snapshot_download asks first) may open the files to anonymous callers.
    const G = "acme/gated-model";
    const gated = fake.repos[G];
    for (const p of ["config.json", "model.safetensors"]) {
      for (const rev of ["main", gated.mainCommit]) {
        const r = await http1(hubUrl, "GET", `/${G}/resolve/${rev}/${p}`, { headers: { Authorization: "Bearer hf_granted" } });
        assert.equal(r.status, 200, `hf_granted ${p}@${rev}: ${desc(r)}`);
      }
    }
    const gi = await pyApi(hubUrl, "GET", `/api/models/${G}/revision/main`, { token: "hf_granted" });
    assert.equal(gi.status, 200);
    const checkAnonFiles = async (when) => {
      for (const p of ["config.json", "model.safetensors"]) {
        for (const rev of ["main", gated.mainCommit]) {
          for (const method of ["GET", "HEAD"]) {
            const r = await http1(hubUrl, method, `/${G}/resolve/${rev}/${p}`);
            assert.equal(r.status, 401, `anonymous ${method} gated ${p}@${rev} ${when}: ${desc(r)}`);
            assert.equal(r.headers["x-error-code"], "GatedRepo", `anonymous ${method} gated ${p}@${rev} ${when}: X-Error-Code`);
            assert.notEqual(r.sha256, gated.files[p].sha256, `anonymous ${method} gated ${p}@${rev} ${when}: got the file`);
          }
        }
      }
    };
    await checkAnonFiles("after hf_granted fetched them");
    const anonInfo = await pyApi(hubUrl, "GET", `/api/models/${G}/revision/main`);
    assert.equal(anonInfo.status, 200, "gated repo info is public on the Hub");
    assert.equal(parseJson(anonInfo).gated, "auto");
    const anonTree = await pyApi(hubUrl, "GET", `/api/models/${G}/tree/${gated.mainCommit}?recursive=true&expand=false`);
    assert.equal(anonTree.status, 200, "gated repo tree is public on the Hub");
    await checkAnonFiles("after an anonymous revision/main + tree of the gated repo (python snapshot_download's first calls)");
  }));

// ---------------------------------------------------------------------------------------------- 8
test("a public repo that turns private: after --public-ttl its cached answers are no longer served anonymously", { skip, timeout: 30000 }, () =>
  withOwnHc("public-ttl-1s", ["--public-ttl", "1s"], async (url) => {
    const D = "acme/tiny-dataset";
    const ds = fake.repos[D];
    const reqs = [
      ["GET", `/api/datasets/${D}/tree/${ds.mainCommit}?recursive=true&expand=false`],
      ["GET", `/api/datasets/${D}/revision/main`],
      ["GET", `/api/datasets/${D}`],
      ["POST", `/api/datasets/${D}/paths-info/${ds.mainCommit}`, "paths=README.md&expand=false"],
      ["GET", `/datasets/${D}/resolve/${ds.mainCommit}/README.md`],
      ["GET", `/datasets/${D}/resolve/main/data/train.csv`],
    ];
    const call = (m, p, body, token) =>
      pyApi(url, m, p, { token, body, headers: body ? { "Content-Type": "application/x-www-form-urlencoded" } : {} });
    for (const [m, p, body] of reqs) assert.equal((await call(m, p, body)).status, 200, `fill ${m} ${p}`);
    try {
      fake.scenario({ privateRepos: [D] });
      await sleep(2200); // > --public-ttl 1s
      for (const [m, p, body] of reqs) {
        const r = await call(m, p, body);
        assert.equal(r.status, 401, `anonymous ${m} ${p}, repo private now, public-ttl over: ${desc(r)}`);
        for (const leak of [ds.files["data/train.csv"].sha256, "# tiny dataset", "sample 1 of the tiny dataset"]) {
          assert.ok(!r.body.includes(leak), `anonymous ${m} ${p}: the body leaks ${JSON.stringify(leak)}`);
        }
      }
      const g = await call("GET", reqs[0][1], null, "hf_granted");
      assert.equal(g.status, 404, `hf_granted after the change: ${desc(g)}`);
      const o = await call("GET", reqs[0][1], null, "hf_owner");
      assert.equal(o.status, 200, `hf_owner after the change: ${desc(o)}`);
    } finally {
      fake.scenario({ privateRepos: null });
    }
  }));

// ---------------------------------------------------------------------------------------------- 9
test("--read-only: writes get 405 JSON and never reach the Hub; reads (incl. paths-info POST) still work", { skip, timeout: 30000 }, () =>
  withOwnHc("read-only", ["--read-only"], async (url) => {
    const auth = { Authorization: "Bearer hf_owner" };
    const writes = [
      ["POST", `/api/models/${REPO}/commit/main`, { ...auth, "Content-Type": "application/x-ndjson" },
        '{"key":"header","value":{"summary":"x","description":""}}\n{"key":"file","value":{"content":"aGk=","path":"x.txt","encoding":"base64"}}\n'],
      ["POST", `/api/models/${REPO}/preupload/main`, { ...auth, "Content-Type": "application/json" }, '{"files":[{"path":"x.txt","size":2,"sample":"aGk="}]}'],
      ["POST", "/api/repos/create", { ...auth, "Content-Type": "application/json" }, '{"name":"new-repo","organization":"acme","type":"model"}'],
      ["DELETE", "/api/repos/delete", { ...auth, "Content-Type": "application/json" }, '{"name":"tiny-model","organization":"acme"}'],
      ["PUT", `/api/models/${REPO}/settings`, { ...auth, "Content-Type": "application/json" }, '{"private":true}'],
    ];
    for (const [m, p, headers, body] of writes) {
      const d = await upstreamDuring(fake, () => http1(url, m, p, { headers, body }));
      const r = d.value;
      assert.equal(r.status, 405, `${m} ${p}: ${desc(r)}`);
      assert.match(r.headers["content-type"] ?? "", /application\/json/, `${m} ${p}: content-type`);
      assert.equal(typeof parseJson(r, `${m} ${p}`).error, "string", `${m} ${p}: JSON {error}`);
      zeroHub(d, `${m} ${p} under --read-only`);
    }
    const reads = [
      ["GET", `/api/models/${REPO}/revision/main`],
      ["GET", "/api/whoami-v2"],
      ["POST", `/api/models/${REPO}/paths-info/main`, "paths=config.json&expand=false"],
    ];
    for (const [m, p, body] of reads) {
      const r = await pyApi(url, m, p, { token: "hf_owner", body, headers: body ? { "Content-Type": "application/x-www-form-urlencoded" } : {} });
      assert.equal(r.status, 200, `${m} ${p} under --read-only: ${desc(r)}`);
    }
    const g = await http1(url, "GET", `/${REPO}/resolve/main/config.json`);
    assert.equal(g.status, 200, desc(g));
    assert.equal(g.sha256, tiny.files["config.json"].sha256);
  }));

// ---------------------------------------------------------------------------------------------- 10
test("concurrent cold metadata requests: every caller gets the full, right answer", { skip, timeout: 30000 }, () =>
  withOwnHc("concurrent", [], async (url) => {
    const want = Object.keys(bigDs.files).filter((p) => p.startsWith("data/validation/")).sort();
    const list = async () => {
      const out = [];
      for await (const e of hub.listFiles({ repo: { type: "dataset", name: BIG_DS }, hubUrl: url, path: "data/validation", revision: "main" })) out.push(e.path);
      return out.sort();
    };
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    const body = "paths=README.md&paths=data%2Fextra%2Fpart-00001.jsonl&expand=false";
    const d = await upstreamDuring(fake, () => Promise.all([
      ...Array.from({ length: 12 }, list),
      ...Array.from({ length: 12 }, () => pyApi(url, "POST", `/api/datasets/${BIG_DS}/paths-info/${bigDs.mainCommit}`, { headers: form, body })),
      ...Array.from({ length: 12 }, () => pyApi(url, "GET", `/api/datasets/${BIG_DS}/revision/main?expand=sha`)),
    ]));
    const lists = d.value.slice(0, 12);
    const infos = d.value.slice(12, 24);
    const revs = d.value.slice(24);
    lists.forEach((l, i) => assert.deepEqual(l, want, `concurrent listFiles #${i}`));
    infos.forEach((r, i) => {
      assert.equal(r.status, 200, `concurrent paths-info #${i}: ${desc(r)}`);
      assert.deepEqual(parseJson(r).map((e) => e.path).sort(), ["README.md", "data/extra/part-00001.jsonl"], `concurrent paths-info #${i}`);
    });
    revs.forEach((r, i) => {
      assert.equal(r.status, 200, `concurrent revision/main #${i}: ${desc(r)}`);
      assert.equal(parseJson(r).sha, bigDs.mainCommit, `concurrent revision/main #${i}`);
    });
    if (process.env.HUBCACHE_IT_VERBOSE) console.log(`36 concurrent cold requests -> ${d.hub.length} upstream requests`);
  }));

// ---------------------------------------------------------------------------------------------- 10b
test("concurrent identical cold misses share one upstream request, never across credentials", { skip, timeout: 30000 }, () =>
  withOwnHc("coalesce", [], async (url) => {
    const N = 12;
    const form = { "Content-Type": "application/x-www-form-urlencoded" };
    // Upstream answers after 300 ms, so all N callers of a route are waiting at once.
    fake.scenario({ hubDelayMs: 300 });
    try {
      const routes = [
        ["GET", `/api/models/${REPO}/revision/main`, null],
        ["GET", `/api/models/${REPO}/tree/${tiny.mainCommit}?recursive=true&expand=false`, null],
        ["POST", `/api/models/${REPO}/paths-info/${tiny.mainCommit}`, "paths=config.json&paths=README.md&expand=false"],
      ];
      const d = await upstreamDuring(fake, () => Promise.all(routes.flatMap(([m, p, body]) =>
        Array.from({ length: N }, () => pyApi(url, m, p, { body, headers: body ? form : {} })))));
      routes.forEach(([m, p], k) => {
        const rs = d.value.slice(k * N, (k + 1) * N);
        rs.forEach((r, i) => assert.equal(r.status, 200, `${m} ${p} #${i}: ${desc(r)}`));
        assert.ok(rs.every((r) => r.sha256 === rs[0].sha256), `${m} ${p}: every caller gets the same body`);
        const up = d.hub.filter((e) => e.method === m && e.url.startsWith(p.split("?")[0]));
        assert.equal(up.length, 1, `${N} concurrent ${m} ${p}: want one hub request, got ${logLines(up)}`);
      });

      // Callers with different credentials each get their own answer: a private repo answers
      // 200 to its owner, 404 to another user and 401 to anonymous callers.
      const p = "/api/models/acme/private-model/revision/main";
      const callers = [[null, 401], ["hf_granted", 404], ["hf_owner", 200]];
      const t = await upstreamDuring(fake, () => Promise.all(callers.flatMap(([token]) =>
        Array.from({ length: N }, () => pyApi(url, "GET", p, { token })))));
      callers.forEach(([token, status], k) => {
        t.value.slice(k * N, (k + 1) * N).forEach((r, i) => assert.equal(r.status, status, `${token ?? "anonymous"} #${i}: ${desc(r)}`));
      });
      const tokens = t.hub.filter((e) => e.url.startsWith(p)).map((e) => e.token ?? "anonymous").sort();
      assert.deepEqual(tokens, ["anonymous", "hf_granted", "hf_owner"], `one hub request per credential: ${logLines(t.hub)}`);
    } finally {
      fake.scenario({ hubDelayMs: null });
    }
  }));

// ---------------------------------------------------------------------------------------------- 10c
test("a caller's If-None-Match is not sent upstream: the shared and cached answer is the whole document", { skip, timeout: 30000 }, () =>
  withOwnHc("conditional", [], async (url) => {
    const p = `/api/models/${REPO}/revision/main`;
    const direct = await pyApi(fake.hubUrl, "GET", p);
    const etag = direct.headers.etag;
    assert.ok(etag, `the Hub's answer has an ETag: ${desc(direct)}`);
    // The conditional caller leads the upstream request; an unconditional one joins it.
    fake.scenario({ hubDelayMs: 300 });
    try {
      const conditional = pyApi(url, "GET", p, { headers: { "If-None-Match": etag } });
      await sleep(50);
      const plain = pyApi(url, "GET", p);
      const [c, u] = await Promise.all([conditional, plain]);
      assert.ok([200, 304].includes(c.status), `conditional caller: ${desc(c)}`);
      assert.equal(u.status, 200, `the caller that joined: ${desc(u)}`);
      assert.equal(parseJson(u).sha, tiny.mainCommit);
    } finally {
      fake.scenario({ hubDelayMs: null });
    }
    const later = await pyApi(url, "GET", p);
    assert.equal(later.status, 200, `a later caller: ${desc(later)}`);
    assert.equal(parseJson(later).sha, tiny.mainCommit);
  }));

// ---------------------------------------------------------------------------------------------- 11
test("/resolve at a branch: the revision->commit mapping (from revision/{rev} answers and from resolve HEADs) is reused within --revision-ttl", { skip, timeout: 30000 }, () =>
  withOwnHc("mapping", ["--revision-ttl", "30s"], async (url) => {
    const names = ["README.md", "model.safetensors"];
    // fill the files at the commit, then learn main -> commit from a revision/main answer
    for (const n of names) {
      const r = await http1(url, "GET", `/${REPO}/resolve/${tiny.mainCommit}/${n}`);
      assert.equal(r.sha256, tiny.files[n].sha256, `fill ${n}: ${desc(r)}`);
    }
    const rev = await pyApi(url, "GET", `/api/models/${REPO}/revision/main`);
    assert.equal(rev.status, 200, desc(rev));
    const d = await upstreamDuring(fake, async () => {
      for (const n of names) {
        for (const method of ["HEAD", "GET"]) {
          const r = await http1(url, method, `/${REPO}/resolve/main/${n}`, { headers: { "Accept-Encoding": "identity" } });
          assert.equal(r.status, 200, `${method} main/${n}: ${desc(r)}`);
          assert.equal(r.headers["x-repo-commit"], tiny.mainCommit, `${method} main/${n}: X-Repo-Commit`);
          if (method === "GET") assert.equal(r.sha256, tiny.files[n].sha256, `GET main/${n}: bytes`);
        }
      }
    });
    zeroHub(d, "cached files at main right after a revision/main answer (mapping reused)");

    // learned from a resolve HEAD: the second round at a branch costs nothing upstream
    const n = "tokenizer_config.json";
    const h1 = await http1(url, "GET", `/${REPO}/resolve/v1.0/${n}`);
    assert.equal(h1.sha256, tiny.files[n].sha256, desc(h1));
    const d2 = await upstreamDuring(fake, async () => {
      for (const method of ["HEAD", "GET"]) {
        const r = await http1(url, method, `/${REPO}/resolve/v1.0/${n}`);
        assert.equal(r.status, 200, `${method} v1.0/${n}: ${desc(r)}`);
        assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
      }
    });
    zeroHub(d2, "a cached file at tag v1.0, asked again within --revision-ttl");
  }));

// ---------------------------------------------------------------------------------------------- 12
test("answers fetched with a token are reused for that token only, even for a public repo", { skip, timeout: 30000 }, () =>
  withOwnHc("token-answers", [], async (url) => {
    const p = `/api/datasets/${BIG_DS}/tree/${bigDs.mainCommit}/data?recursive=false&expand=false`;
    const own = await upstreamDuring(fake, () => pyApi(url, "GET", p, { token: "hf_owner" }));
    assert.equal(own.value.status, 200, desc(own.value));
    oneHub(own, "hf_owner, cold");
    assert.equal(own.hub[0].token, "hf_owner");
    zeroHub(await upstreamDuring(fake, () => pyApi(url, "GET", p, { token: "hf_owner" })), "hf_owner again");
    for (const token of ["hf_granted", null]) {
      const other = await upstreamDuring(fake, () => pyApi(url, "GET", p, { token }));
      assert.equal(other.value.status, 200, desc(other.value));
      oneHub(other, `${token ?? "anonymous"} after hf_owner: not served from hf_owner's answer`);
      assert.equal(other.hub[0].token, token, `${token ?? "anonymous"}: upstream sees the caller's own credentials`);
      if (token === null) zeroHub(await upstreamDuring(fake, () => pyApi(url, "GET", p)), "anonymous again: the anonymous answer is shared");
    }
  }));

test("refs and commits at a branch follow --revision-ttl, not --metadata-ttl: where a branch points changes", { skip, timeout: 30000 }, () =>
  withOwnHc("refs-ttl", ["--revision-ttl", "2s", "--metadata-ttl", "1h", "--stale-while-revalidate", "0"], async (url) => {
    // Answers' ages are kept in whole seconds: 2 s, so that "at once" is within it.
    for (const p of [`/api/models/${REPO}/refs`, `/api/models/${REPO}/commits/main`]) {
      oneHub(await upstreamDuring(fake, () => pyApi(url, "GET", p)), `${p} cold`);
      zeroHub(await upstreamDuring(fake, () => pyApi(url, "GET", p)), `${p} again at once`);
    }
    await sleep(2300); // > --revision-ttl 2s
    for (const p of [`/api/models/${REPO}/refs`, `/api/models/${REPO}/commits/main`]) {
      oneHub(await upstreamDuring(fake, () => pyApi(url, "GET", p)), `${p} after --revision-ttl`);
    }
    // A commit's history never changes: it keeps --metadata-ttl.
    const pinned = `/api/models/${REPO}/commits/${tiny.mainCommit}`;
    oneHub(await upstreamDuring(fake, () => pyApi(url, "GET", pinned)), "commits at a commit, cold");
    await sleep(2300);
    zeroHub(await upstreamDuring(fake, () => pyApi(url, "GET", pinned)), "commits at a commit, after --revision-ttl");
  }));

test("a repo gated after it was public: its README's answer ends the files' public status, also for serving while the Hub is down", { skip, timeout: 30000 }, () =>
  withOwnHc("gated-later", ["--public-ttl", "1s"], async (url) => {
    const at = (p) => `/${REPO}/resolve/${tiny.mainCommit}/${p}`;
    const weights = tiny.files["model.safetensors"];
    try {
      const first = await http1(url, "GET", at("config.json"));
      assert.equal(first.status, 200, `public: ${desc(first)}`); // the repo info says public: markers written
      fake.scenario({ gatedRepos: [REPO] });
      const granted = await http1(url, "GET", at("model.safetensors"), { headers: { Authorization: "Bearer hf_granted" } });
      assert.equal(granted.sha256, weights.sha256, `hf_granted fills the weights: ${desc(granted)}`);
      await sleep(1300); // > --public-ttl 1s
      const readme = await http1(url, "GET", at("README.md"));
      assert.equal(readme.status, 200, `the README answers anyone: ${desc(readme)}`);
      fake.scenario({ hubStatus: { status: 503, count: "always" } });
      for (const p of ["model.safetensors", "config.json"]) {
        const r = await http1(url, "GET", at(p));
        assert.ok(r.status >= 500, `anonymous ${p} with the Hub down: ${desc(r)}`);
        assert.notEqual(r.sha256, tiny.files[p].sha256, `anonymous ${p}: not served`);
      }
    } finally {
      fake.scenario({ gatedRepos: null, hubStatus: null });
    }
  }));

test("an anonymous RevisionNotFound (file or API) does not end a public repo's status", { skip, timeout: 30000 }, () =>
  withOwnHc("revision-not-found", [], async (url) => {
    const f = `/${REPO}/resolve/${tiny.mainCommit}/config.json`;
    assert.equal((await http1(url, "GET", f)).status, 200, "fill");
    zeroHub(await upstreamDuring(fake, () => http1(url, "GET", f)), "a public repo's cached file");
    const file = await http1(url, "GET", `/${REPO}/resolve/no-such-branch/config.json`);
    assert.equal(file.status, 404, desc(file));
    assert.equal(file.headers["x-error-code"], "RevisionNotFound");
    const api = await pyApi(url, "GET", `/api/models/${REPO}/revision/no-such-branch`);
    assert.equal(api.status, 404, desc(api));
    assert.equal(api.headers["x-error-code"], "RevisionNotFound");
    zeroHub(await upstreamDuring(fake, () => http1(url, "GET", f)), "still served without asking the Hub");
  }));

test("a token's cached answer is asked again after --public-ttl: the token's rights may have changed", { skip, timeout: 30000 }, () =>
  withOwnHc("token-recheck", ["--public-ttl", "2s"], async (url) => {
    // A listing at a commit never changes, yet hf_owner's access to it may.
    const p = `/api/datasets/${BIG_DS}/tree/${bigDs.mainCommit}/data?recursive=false&expand=false`;
    oneHub(await upstreamDuring(fake, () => pyApi(url, "GET", p, { token: "hf_owner" })), "hf_owner, cold");
    zeroHub(await upstreamDuring(fake, () => pyApi(url, "GET", p, { token: "hf_owner" })), "hf_owner again, within --public-ttl");
    await sleep(2500); // > --public-ttl 2s
    const later = await upstreamDuring(fake, () => pyApi(url, "GET", p, { token: "hf_owner" }));
    assert.equal(later.value.status, 200, desc(later.value));
    oneHub(later, "hf_owner after --public-ttl: asked again");
    assert.equal(later.hub[0].token, "hf_owner", "with the caller's own token");
  }));

// ---------------------------------------------------------------------------------------------- 13
test("repeated cached metadata and file requests cost zero hub requests and answer identically", { skip, timeout: 30000 }, () =>
  withHc(async (hubUrl) => {
    // Timing belongs to tests/bench (no timed assertions here): this checks
    // that hits stay hits, request after request.
    const api = `/api/models/${REPO}/tree/${tiny.mainCommit}?recursive=true&expand=false`;
    const file = `/${REPO}/resolve/${tiny.mainCommit}/config.json`;
    const first = await http1(hubUrl, "GET", api);
    assert.equal(first.status, 200);
    assert.equal((await http1(hubUrl, "GET", file)).status, 200);
    const d = await upstreamDuring(fake, async () => {
      for (let i = 0; i < 15; i++) {
        const r = await http1(hubUrl, "GET", api);
        assert.equal(r.status, 200);
        assert.equal(r.sha256, first.sha256, "same body every time");
        assert.equal((await http1(hubUrl, "HEAD", file)).status, 200);
      }
    });
    zeroHub(d, "cache hits");
  }));

// ---------------------------------------------------------------------------------------------- 14
test("concurrent requests for one file share one Hub check per credential, and each gets its own answer", { skip, timeout: 30000 }, () =>
  withOwnHc("shared-checks", ["--public-ttl", "1s"], async (url) => {
    // Once --public-ttl runs out, every request in flight for a public file
    // must ask the Hub again; under load that was one HEAD per request.
    const G = "acme/gated-model";
    const gated = fake.repos[G];
    const files = ["config.json", "model.safetensors"];
    const at = (repo, p) => `/${repo.id}/resolve/${repo.mainCommit}/${p}`;
    const bearer = (token) => (token ? { headers: { Authorization: `Bearer ${token}` } } : {});
    for (const p of files) {
      assert.equal((await http1(url, "GET", at(tiny, p))).status, 200, `fill ${p}`);
      assert.equal((await http1(url, "GET", at(gated, p), bearer("hf_granted"))).status, 200, `fill gated ${p}`);
    }
    await sleep(1300); // > --public-ttl 1s
    // Each Hub answer takes 2 s, so every request below arrives while the
    // first check for its file is still in flight (even on a slow, busy machine).
    fake.scenario({ hubDelayMs: 2000 });
    try {
      const plan = [];
      for (const p of files) {
        for (let i = 0; i < 8; i++) {
          plan.push({ repo: tiny, p, method: i % 2 ? "HEAD" : "GET", token: null });
          plan.push({ repo: gated, p, method: "GET", token: i % 2 ? "hf_granted" : null });
        }
      }
      const d = await upstreamDuring(fake, () =>
        Promise.all(plan.map((q) => http1(url, q.method, at(q.repo, q.p), bearer(q.token)))));
      plan.forEach((q, i) => {
        const r = d.value[i];
        const what = `${q.method} ${q.repo.id}/${q.p} as ${q.token ?? "anonymous"}`;
        if (q.repo === gated && !q.token) {
          assert.equal(r.status, 401, `${what}: ${desc(r)}`);
          assert.equal(r.headers["x-error-code"], "GatedRepo", what);
          assert.notEqual(r.sha256, gated.files[q.p].sha256, `${what}: got the file`);
        } else {
          assert.equal(r.status, 200, `${what}: ${desc(r)}`);
          if (q.method === "GET") assert.equal(r.sha256, q.repo.files[q.p].sha256, what);
        }
      });
      for (const p of files) {
        for (const [repo, token] of [[tiny, null], [gated, null], [gated, "hf_granted"]]) {
          const checks = d.hub.filter((e) => e.path === at(repo, p) && e.token === token);
          const n = plan.filter((q) => q.repo === repo && q.p === p && q.token === token).length;
          assert.equal(checks.length, 1, `${repo.id}/${p} as ${token ?? "anonymous"}: one Hub check for ${n} concurrent ` +
            `requests, got ${logLines(checks)}`);
        }
      }
      // The anonymous answers for the public repo's files renew its public status only after the
      // Hub's repo info says it is neither private nor gated: one anonymous check for all of them.
      const infos = d.hub.filter((e) => e.path.startsWith(`/api/models/${tiny.id}/revision/${tiny.mainCommit}`));
      assert.equal(infos.length, 1, `one repo-info check for ${tiny.id}: ${logLines(infos)}`);
      assert.equal(infos[0].token, null, "asked anonymously");
      assert.equal(d.hub.length, 7, `no other Hub request: ${logLines(d.hub)}`);
    } finally {
      fake.scenario({ hubDelayMs: 0 });
    }
  }));

// ---------------------------------------------------------------------------------------------- last
test("every hubcache process: no crash, SIGTERM -> exit 0 within 5 s, no sanitizer report", { skip, timeout: 30000 }, async () => {
  const problems = await fleet.shutdownAndCheck(5000);
  if (problems.length) assert.fail(`${problems.length} problem(s):\n\n${problems.join("\n\n")}`);
});
