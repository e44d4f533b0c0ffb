// The real npm clients run DIRECTLY against the fake Hub (no proxy): proves the fake is faithful
// enough for @huggingface/hub 2.17.5 and @huggingface/transformers 4.3.1.
//   node --test tests/integration/clients_direct.test.mjs
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import fsp from "node:fs/promises";
import path from "node:path";
import * as hub from "@huggingface/hub";
import { startFakeHub, tmpDir, sha256, sha256File, loadTransformers } from "./harness.mjs";

console.debug = () => {}; // hub.js logs "Downloading … to ….incomplete" via console.debug

const REPO = "acme/tiny-model";
let fake;
let hubUrl;
let tiny;

before(async () => {
  fake = await startFakeHub({ bigSize: 2 * 1024 * 1024 + 5, quiet: true });
  hubUrl = fake.hubUrl;
  tiny = fake.repos[REPO];
});
after(async () => {
  await fake?.close();
});

const cdnLog = () => fake.stats().log.filter((e) => e.host === "cdn");

describe("@huggingface/hub", () => {
  test("fileDownloadInfo: git file, LFS file, missing file", async () => {
    const cfg = tiny.files["config.json"];
    let info = await hub.fileDownloadInfo({ repo: REPO, path: "config.json", hubUrl });
    assert.equal(info.etag, `"${cfg.gitSha1}"`);
    assert.equal(info.size, cfg.size);
    assert.equal(info.xet, undefined);
    // the 307 to /api/resolve-cache is followed; that URL is same-origin, so hub.js keeps it
    assert.ok(info.url.startsWith(`${hubUrl}/api/resolve-cache/models/${REPO}/${tiny.mainCommit}/config.json?`));

    const st = tiny.files["model.safetensors"];
    info = await hub.fileDownloadInfo({ repo: REPO, path: "model.safetensors", hubUrl });
    // hub.js asks for application/vnd.xet-fileinfo+json and the (fake) Hub honours it, like the real one
    assert.equal(info.etag, `"${st.sha256}"`);
    assert.equal(info.size, 150000);
    assert.equal(info.xet.hash, st.xetHash);

    info = await hub.fileDownloadInfo({ repo: REPO, path: "nope.txt", hubUrl });
    assert.equal(info, null);

    info = await hub.fileDownloadInfo({ repo: REPO, path: "config.json", revision: "refs/pr/1", hubUrl });
    assert.equal(info.etag, `"${tiny.filesAt("refs/pr/1")["config.json"].gitSha1}"`);
  });

  test("downloadFile (xet:false): git file and LFS file, content fetched lazily", async () => {
    fake.reset();
    const cfg = tiny.files["config.json"];
    const blob = await hub.downloadFile({ repo: REPO, path: "config.json", hubUrl, xet: false });
    await fake.idle();
    const probes = fake.stats().log;
    assert.ok(probes.every((e) => e.headers.range === "bytes=0-0"), "only the Range 0-0 probe before arrayBuffer()");
    const buf = Buffer.from(await blob.arrayBuffer());
    assert.equal(sha256(buf), cfg.sha256);

    fake.reset();
    for (const name of ["model.safetensors", "big.bin"]) {
      const f = tiny.files[name];
      const b = await hub.downloadFile({ repo: REPO, path: name, hubUrl, xet: false });
      assert.equal(b.size, f.size);
      assert.equal(sha256(Buffer.from(await b.arrayBuffer())), f.sha256, name);
    }
    await fake.idle();
    const s = fake.stats();
    assert.equal(s.cdn.bodyBytes, 150000 + tiny.files["big.bin"].size);
    assert.equal(s.cdn.authorizationSeen, 0);
    assert.equal(s.xet.readToken, 0);
    assert.equal(s.xet.cas, 0);
  });

  test("downloadFile with a token: Authorization goes to the Hub, never to the CDN", async () => {
    fake.reset();
    const f = fake.repos["acme/gated-model"].files["model.safetensors"];
    const b = await hub.downloadFile({ repo: "acme/gated-model", path: "model.safetensors", hubUrl, xet: false, accessToken: "hf_granted" });
    assert.equal(sha256(Buffer.from(await b.arrayBuffer())), f.sha256);
    await fake.idle();
    const s = fake.stats();
    assert.ok(s.log.some((e) => e.host === "hub" && e.headers.authorization));
    assert.ok(s.cdn.requests > 0);
    assert.equal(s.cdn.authorizationSeen, 0);
  });

  test("gated and private files: refused without rights", async () => {
    const status = async (p) => {
      try {
        const b = await hub.downloadFile({ xet: false, hubUrl, ...p });
        return b ? 200 : 404;
      } catch (e) {
        return e.statusCode ?? String(e);
      }
    };
    assert.equal(await status({ repo: "acme/gated-model", path: "config.json" }), 401);
    assert.equal(await status({ repo: "acme/gated-model", path: "config.json", accessToken: "hf_nobody" }), 403);
    assert.equal(await status({ repo: "acme/gated-model", path: "config.json", accessToken: "hf_granted" }), 200);
    assert.equal(await status({ repo: "acme/private-model", path: "config.json" }), 401);
    assert.equal(await status({ repo: "acme/private-model", path: "config.json", accessToken: "hf_granted" }), 404);
    assert.equal(await status({ repo: "acme/private-model", path: "weights.bin", accessToken: "hf_owner" }), 200);
    const pw = await hub.downloadFile({ repo: "acme/private-model", path: "weights.bin", hubUrl, xet: false, accessToken: "hf_owner" });
    assert.equal(sha256(Buffer.from(await pw.arrayBuffer())), fake.repos["acme/private-model"].files["weights.bin"].sha256);
  });

  test("fileExists uses HEAD /raw/", async () => {
    fake.reset();
    assert.equal(await hub.fileExists({ repo: REPO, path: "config.json", hubUrl }), true);
    assert.equal(await hub.fileExists({ repo: REPO, path: "model.safetensors", hubUrl }), true);
    assert.equal(await hub.fileExists({ repo: REPO, path: "nope.txt", hubUrl }), false);
    await fake.idle();
    const log = fake.stats().log;
    assert.deepEqual(log.map((e) => `${e.method} ${e.path} ${e.status}`), [
      `HEAD /${REPO}/raw/main/config.json 200`,
      `HEAD /${REPO}/raw/main/model.safetensors 200`,
      `HEAD /${REPO}/raw/main/nope.txt 404`,
    ]);
  });

  test("downloadFileToCacheDir: python-compatible cache layout", async () => {
    const cacheDir = await tmpDir("hfcache-");
    for (const name of ["config.json", "model.safetensors", "sub/nested.txt"]) {
      const f = tiny.files[name];
      const p = await hub.downloadFileToCacheDir({ repo: REPO, path: name, hubUrl, cacheDir, xet: false });
      const base = path.join(cacheDir, "models--acme--tiny-model");
      // snapshot folder = lastCommit.id from paths-info (expand:true)
      assert.equal(p, path.join(base, "snapshots", tiny.mainCommit, name));
      const target = fs.realpathSync(p);
      assert.equal(target, path.join(fs.realpathSync(base), "blobs", f.etag));
      assert.equal(await sha256File(p), f.sha256, name);
    }
    // repeat: only the paths-info POST
    fake.reset();
    await hub.downloadFileToCacheDir({ repo: REPO, path: "model.safetensors", hubUrl, cacheDir, xet: false });
    await fake.idle();
    assert.deepEqual(fake.stats().log.map((e) => `${e.method} ${e.path}`), [`POST /api/models/${REPO}/paths-info/main`]);
  });

  test("listFiles: recursive, with Link pagination, folder + expand", async () => {
    const want = new Set(Object.keys(tiny.files));
    for (const pageSize of [null, 3]) {
      fake.reset();
      fake.scenario({ treePageSize: pageSize });
      const got = [];
      for await (const e of hub.listFiles({ repo: REPO, hubUrl, recursive: true })) got.push(e);
      assert.deepEqual(new Set(got.filter((e) => e.type === "file").map((e) => e.path)), want);
      assert.ok(got.some((e) => e.type === "directory" && e.path === "sub/deeper"));
      const lfs = got.find((e) => e.path === "model.safetensors");
      assert.equal(lfs.lfs.oid, tiny.files["model.safetensors"].sha256);
      const pages = fake.stats().log.filter((e) => e.path.startsWith(`/api/models/${REPO}/tree/`)).length;
      assert.equal(pages, pageSize ? Math.ceil(got.length / pageSize) : 1);
    }
    fake.reset();
    const sub = [];
    for await (const e of hub.listFiles({ repo: REPO, hubUrl, path: "sub", expand: true })) sub.push(e);
    assert.deepEqual(sub.map((e) => e.path).sort(), ["sub/deeper", "sub/nested.txt"]);
    assert.ok(sub.every((e) => e.lastCommit?.id === tiny.mainCommit));
  });

  test("modelInfo / datasetInfo", async () => {
    const m = await hub.modelInfo({ name: REPO, hubUrl });
    assert.equal(m.name, REPO);
    assert.equal(m.private, false);
    assert.equal(m.gated, false);
    assert.equal(m.task, "feature-extraction");
    const pr = await hub.modelInfo({ name: REPO, hubUrl, revision: "refs/pr/1", additionalFields: ["sha"] });
    assert.equal(pr.sha, tiny.prCommit);
    const g = await hub.modelInfo({ name: "acme/gated-model", hubUrl });
    assert.equal(g.gated, "auto");
    const d = await hub.datasetInfo({ name: "acme/tiny-dataset", hubUrl });
    assert.equal(d.name, "acme/tiny-dataset");
    await assert.rejects(hub.modelInfo({ name: "acme/private-model", hubUrl }), (e) => e.statusCode === 401);
  });

  test("snapshotDownload of the dataset repo", async () => {
    const cacheDir = await tmpDir("hfcache-");
    const ds = fake.repos["acme/tiny-dataset"];
    const dir = await hub.snapshotDownload({ repo: { type: "dataset", name: "acme/tiny-dataset" }, hubUrl, cacheDir, xet: false });
    assert.equal(dir, path.join(cacheDir, "datasets--acme--tiny-dataset", "snapshots", ds.mainCommit));
    for (const f of Object.values(ds.files)) assert.equal(await sha256File(path.join(dir, f.path)), f.sha256, f.path);
    assert.equal((await fsp.readFile(path.join(cacheDir, "datasets--acme--tiny-dataset", "refs", "main"), "utf8")), ds.mainCommit);
  });
});

describe("@huggingface/transformers", () => {
  test("AutoTokenizer.from_pretrained through env.remoteHost", async () => {
    fake.reset();
    const cacheDir = await tmpDir("tjs-cache-");
    const T = await loadTransformers(hubUrl, cacheDir);
    const tok = await T.AutoTokenizer.from_pretrained(REPO);
    const ids = tok("Hello world, the hub is fast!").input_ids.tolist()[0].map(Number);
    assert.deepEqual(ids, [2, 11, 12, 6, 10, 14, 23, 24, 5, 3]);
    assert.equal(tok.decode(ids, { skip_special_tokens: true }), "hello world, the hub is fast!");
    await fake.idle();
    const log = fake.stats().log;
    // the tokenizer_config Range probe, then the two files; each through the resolve-cache 307
    assert.ok(log.some((e) => e.path === `/${REPO}/resolve/main/tokenizer_config.json` && e.headers.range === "bytes=0-0"));
    assert.ok(log.some((e) => e.path === `/${REPO}/resolve/main/tokenizer.json` && e.status === 307));
    assert.ok(log.some((e) => e.path.startsWith(`/api/resolve-cache/models/${REPO}/`) && e.status === 200));
    assert.equal(await sha256File(path.join(cacheDir, REPO, "tokenizer.json")), tiny.files["tokenizer.json"].sha256);
  });
});
