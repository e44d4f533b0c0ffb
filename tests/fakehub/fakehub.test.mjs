// Self-test of the fake Hub + CDN: node --test tests/fakehub/
import { test, describe, before, after } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import https from "node:https";
import fs from "node:fs";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startFakeHub, parseRange } from "./fakehub.mjs";
import { gitBlobSha1, VOCAB, BIG_DATASET_FILES } from "./content.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BIG = 3 * 1024 * 1024 + 17;
const sha256 = (b) => crypto.createHash("sha256").update(b).digest("hex");

/** Raw HTTP(S) request, no redirect following. Resolves {status, headers, body}. */
function req(url, { method = "GET", headers = {}, body, ca, timeoutMs = 15000 } = {}) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const mod = u.protocol === "https:" ? https : http;
    const r = mod.request(u, { method, headers, ca, timeout: timeoutMs }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    r.on("timeout", () => r.destroy(new Error("timeout")));
    r.on("error", reject);
    if (body) r.write(body);
    r.end();
  });
}
/** Like req() but resolves with {status, headers, received, error} even if the body is cut. */
function reqPartial(url, { headers = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolve) => {
    let received = 0;
    const chunks = [];
    const r = http.get(url, { headers }, (res) => {
      res.on("data", (c) => {
        received += c.length;
        chunks.push(c);
      });
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, received, body: Buffer.concat(chunks), error: null }));
      res.on("error", (e) => resolve({ status: res.statusCode, headers: res.headers, received, error: e }));
      res.on("aborted", () => resolve({ status: res.statusCode, headers: res.headers, received, error: new Error("aborted") }));
    });
    r.setTimeout(timeoutMs, () => r.destroy(new Error("timeout")));
    r.on("error", (e) => resolve({ status: null, received, error: e }));
  });
}

let fake;
let H; // hub url
let tiny; // repos view
before(async () => {
  fake = await startFakeHub({ bigSize: BIG, quiet: true });
  H = fake.hubUrl;
  tiny = fake.repos["acme/tiny-model"];
});
after(async () => {
  await fake?.close();
});

describe("repo table", () => {
  test("hosts, commits and hashes", async () => {
    assert.match(fake.hubUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.match(fake.cdnUrl, /^http:\/\/127\.0\.0\.2:\d+$/);
    assert.match(tiny.mainCommit, /^[0-9a-f]{40}$/);
    assert.match(tiny.prCommit, /^[0-9a-f]{40}$/);
    assert.notEqual(tiny.mainCommit, tiny.prCommit);
    const cfgMain = tiny.filesAt("main")["config.json"];
    const cfgPr = tiny.filesAt("refs/pr/1")["config.json"];
    assert.notEqual(cfgMain.gitSha1, cfgPr.gitSha1);
    for (const f of Object.values(tiny.files)) {
      const content = await f.read();
      assert.equal(content.length, f.size, f.path);
      assert.equal(sha256(content), f.sha256, f.path);
      if (!f.lfs) assert.equal(f.gitSha1, gitBlobSha1(content));
      else {
        assert.equal(f.gitSha1, gitBlobSha1(Buffer.from(f.pointer)));
        assert.match(f.pointer, new RegExp(`^version https://git-lfs.github.com/spec/v1\noid sha256:${f.sha256}\nsize ${f.size}\n$`));
        assert.notEqual(f.xetHash, f.sha256);
      }
    }
    assert.equal(tiny.files["model.safetensors"].size, 150000);
    assert.equal(tiny.files["big.bin"].size, BIG);
    assert.ok(tiny.files["dir with space/file +#ü.txt"]);
    // the well-known empty-ish check of our git blob hashing: git hash-object of "hello\n"
    assert.equal(gitBlobSha1(Buffer.from("hello\n")), "ce013625030ba8dba906f756967f9e9ca394464a");
  });

  test("parseRange", () => {
    assert.deepEqual(parseRange("bytes=0-0", 10), { start: 0, end: 0 });
    assert.deepEqual(parseRange("bytes=5-", 10), { start: 5, end: 9 });
    assert.deepEqual(parseRange("bytes=-3", 10), { start: 7, end: 9 });
    assert.deepEqual(parseRange("bytes=-30", 10), { start: 0, end: 9 });
    assert.deepEqual(parseRange("bytes=2-100", 10), { start: 2, end: 9 });
    assert.equal(parseRange("bytes=10-", 10), "unsatisfiable");
    assert.equal(parseRange("bytes=-0", 10), "unsatisfiable");
    assert.equal(parseRange("bytes=0-1,3-4", 10), null);
    assert.equal(parseRange(undefined, 10), null);
  });
});

describe("resolve: git files", () => {
  test("at a commit: 200 with the Hub's header set", async () => {
    const f = tiny.files["config.json"];
    for (const method of ["HEAD", "GET"]) {
      const r = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/config.json`, { method });
      assert.equal(r.status, 200);
      assert.equal(r.headers.etag, `"${f.gitSha1}"`);
      assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
      assert.equal(r.headers["content-length"], String(f.size));
      assert.equal(r.headers["accept-ranges"], "bytes");
      assert.equal(r.headers["content-type"], "application/json; charset=utf-8");
      assert.equal(r.headers["content-disposition"], `inline; filename*=UTF-8''config.json; filename="config.json";`);
      assert.equal(r.headers["content-security-policy"], "default-src 'none'; sandbox");
      assert.match(r.headers["access-control-expose-headers"], /X-Repo-Commit.*ETag.*X-Linked-Size/);
      assert.equal(r.headers["x-powered-by"], "huggingface-moon");
      assert.equal(r.headers["cache-control"], undefined);
      if (method === "GET") assert.equal(sha256(r.body), f.sha256);
      else assert.equal(r.body.length, 0);
    }
    const md = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/README.md`, { method: "HEAD" });
    assert.equal(md.headers["content-type"], "text/plain; charset=utf-8");
  });

  test("at a branch: 307 relative to /api/resolve-cache (like the Hub), which serves it", async () => {
    const f = tiny.files["config.json"];
    for (const rev of ["main", "HEAD"]) {
      const r = await req(`${H}/acme/tiny-model/resolve/${rev}/config.json`, { method: "HEAD" });
      assert.equal(r.status, 307);
      const want =
        `/api/resolve-cache/models/acme/tiny-model/${tiny.mainCommit}/config.json` +
        `?${encodeURIComponent(`/acme/tiny-model/resolve/${rev}/config.json`)}=&etag=%22${f.gitSha1}%22`;
      assert.equal(r.headers.location, want);
      assert.equal(r.headers.vary, "Origin, Accept");
      const g = await req(H + r.headers.location);
      assert.equal(g.status, 200);
      assert.equal(g.headers.etag, `"${f.gitSha1}"`);
      assert.equal(g.headers["x-repo-commit"], tiny.mainCommit);
      assert.equal(sha256(g.body), f.sha256);
    }
    // resolve-cache ignores its query
    const g2 = await req(`${H}/api/resolve-cache/models/acme/tiny-model/${tiny.mainCommit}/config.json`, { method: "HEAD" });
    assert.equal(g2.status, 200);
    assert.equal(g2.headers["content-length"], String(f.size));
  });

  test("resolveCache:false answers a branch directly", async () => {
    fake.scenario({ resolveCache: false });
    try {
      const r = await req(`${H}/acme/tiny-model/resolve/main/config.json`);
      assert.equal(r.status, 200);
      assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
      assert.equal(sha256(r.body), tiny.files["config.json"].sha256);
    } finally {
      fake.scenario({ resolveCache: true });
    }
  });

  test("ranges: 206, suffix, open-ended, 416; If-None-Match: 304", async () => {
    const f = tiny.files["tokenizer.json"];
    const u = `${H}/acme/tiny-model/resolve/${tiny.mainCommit}/tokenizer.json`;
    let r = await req(u, { headers: { range: "bytes=0-0" } });
    assert.equal(r.status, 206);
    assert.equal(r.headers["content-range"], `bytes 0-0/${f.size}`);
    assert.equal(r.body.length, 1);
    r = await req(u, { headers: { range: "bytes=10-" } });
    assert.equal(r.status, 206);
    assert.equal(r.headers["content-range"], `bytes 10-${f.size - 1}/${f.size}`);
    assert.deepEqual(r.body, f.content.subarray(10));
    r = await req(u, { headers: { range: "bytes=-5" } });
    assert.equal(r.headers["content-range"], `bytes ${f.size - 5}-${f.size - 1}/${f.size}`);
    r = await req(u, { headers: { range: `bytes=${f.size}-` } });
    assert.equal(r.status, 416);
    assert.equal(r.headers["content-range"], `bytes */${f.size}`);
    r = await req(u, { headers: { "if-none-match": `"${f.gitSha1}"` } });
    assert.equal(r.status, 304);
    assert.equal(r.headers.etag, `"${f.gitSha1}"`);
    assert.equal(r.body.length, 0);
  });

  test("percent-encoded revision (refs%2Fpr%2F1) and raw refs/pr/1", async () => {
    const pr = tiny.filesAt("refs/pr/1")["config.json"];
    for (const rev of ["refs%2Fpr%2F1", "refs/pr/1", tiny.prCommit]) {
      const r = await req(`${H}/acme/tiny-model/resolve/${rev}/config.json`, { method: "HEAD" });
      if (rev === tiny.prCommit) assert.equal(r.status, 200);
      else {
        assert.equal(r.status, 307, rev);
        assert.ok(r.headers.location.startsWith(`/api/resolve-cache/models/acme/tiny-model/${tiny.prCommit}/config.json?`));
        assert.ok(r.headers.location.endsWith(`&etag=%22${pr.gitSha1}%22`));
      }
    }
    const g = await req(`${H}/acme/tiny-model/resolve/${tiny.prCommit}/config.json`);
    assert.equal(sha256(g.body), pr.sha256);
    assert.equal(JSON.parse(g.body).num_hidden_layers, 2);
  });

  test("odd file names: percent-encoded and raw paths", async () => {
    const f = tiny.files["dir with space/file +#ü.txt"];
    const enc = "dir%20with%20space/file%20%2B%23%C3%BC.txt";
    const r = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/${enc}`);
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), f.sha256);
    assert.equal(r.headers["content-disposition"], `inline; filename*=UTF-8''file%20%2B%23%C3%BC.txt; filename="file +#_.txt";`);
    // '/' encoded as %2F in the path works too; a literal '+' is not a space
    const r2 = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/dir%20with%20space%2Ffile%20+%23%C3%BC.txt`);
    assert.equal(r2.status, 200);
    const r3 = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/sub%2Fnested.txt`);
    assert.equal(sha256(r3.body), tiny.files["sub/nested.txt"].sha256);
  });

  test("errors: missing file, unknown revision", async () => {
    let r = await req(`${H}/acme/tiny-model/resolve/main/nope.txt`, { method: "HEAD" });
    assert.equal(r.status, 404);
    assert.equal(r.headers["x-error-code"], "EntryNotFound");
    assert.equal(r.headers["x-error-message"], "Entry not found");
    assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
    assert.equal(r.headers["content-length"], "15");
    r = await req(`${H}/acme/tiny-model/resolve/main/nope.txt`);
    assert.equal(r.body.toString(), "Entry not found");
    r = await req(`${H}/acme/tiny-model/resolve/nobranch/config.json`);
    assert.equal(r.status, 404);
    assert.equal(r.headers["x-error-code"], "RevisionNotFound");
    assert.equal(r.headers["x-error-message"], "Invalid rev id: nobranch");
    r = await req(`${H}/api/models/acme/tiny-model/revision/nobranch`);
    assert.equal(r.status, 404);
    assert.deepEqual(JSON.parse(r.body), { error: "Invalid rev id: nobranch" });
    // short sha works, like the Hub
    r = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit.slice(0, 7)}/config.json`, { method: "HEAD" });
    assert.equal(r.status, 307);
  });
});

describe("resolve: LFS files and the CDN", () => {
  test("302 to the CDN host with X-Linked-*, xet headers, no ETag", async () => {
    const f = tiny.files["model.safetensors"];
    for (const method of ["HEAD", "GET"]) {
      const r = await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, { method });
      assert.equal(r.status, 302);
      const loc = r.headers.location;
      assert.match(loc, new RegExp(`^${fake.cdnUrl.replace(/\./g, "\\.")}/cdn/lfs/${f.sha256}\\?expires=\\d+&sig=[0-9a-f]{64}$`));
      assert.equal(r.headers["x-linked-etag"], `"${f.sha256}"`);
      assert.equal(r.headers["x-linked-size"], "150000");
      assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
      assert.equal(r.headers["cache-control"], "no-store");
      assert.equal(r.headers.vary, "Origin, Accept");
      assert.equal(r.headers.etag, undefined);
      assert.equal(r.headers["x-xet-hash"], f.xetHash);
      assert.equal(
        r.headers.link,
        `<${H}/api/models/acme/tiny-model/xet-read-token/${tiny.mainCommit}>; rel="xet-auth", ` +
          `<https://cas-server.xethub.hf.co/v1/reconstructions/${f.xetHash}>; rel="xet-reconstruction-info"`,
      );
      const body = `Found. Redirecting to ${loc}`;
      assert.equal(r.headers["content-length"], String(Buffer.byteLength(body)));
      if (method === "GET") assert.equal(r.body.toString(), body);
    }
    fake.scenario({ xet: false });
    try {
      const r = await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, { method: "HEAD" });
      assert.equal(r.headers["x-xet-hash"], undefined);
      assert.equal(r.headers.link, undefined);
    } finally {
      fake.scenario({ xet: true });
    }
  });

  test("xet fileinfo Accept is honoured (a proxy must strip it) and counted", async () => {
    const f = tiny.files["model.safetensors"];
    const before = fake.stats().xet.fileinfo;
    const r = await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, {
      headers: { accept: "application/vnd.xet-fileinfo+json, */*", range: "bytes=0-0" },
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-type"], "application/vnd.xet-fileinfo+json");
    assert.equal(r.headers["x-linked-size"], "150000");
    assert.equal(r.headers["x-xet-hash"], f.xetHash);
    assert.match(r.headers.link, /rel="xet-auth"/);
    assert.equal(JSON.parse(r.body).hash, f.xetHash);
    assert.equal(fake.stats().xet.fileinfo, before + 1);
    // a git file ignores it
    const g = await req(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/config.json`, {
      headers: { accept: "application/vnd.xet-fileinfo+json, */*", range: "bytes=0-0" },
    });
    assert.equal(g.status, 206);
  });

  test("raw of an LFS file is its pointer, as a git blob", async () => {
    const f = tiny.files["model.safetensors"];
    const r = await req(`${H}/acme/tiny-model/raw/main/model.safetensors`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), f.pointer);
    assert.equal(r.headers.etag, `"${f.gitSha1}"`);
    assert.equal(r.headers["x-repo-commit"], tiny.mainCommit);
    const h = await req(`${H}/acme/tiny-model/raw/main/config.json`, { method: "HEAD" });
    assert.equal(h.status, 200);
    assert.equal(h.headers.etag, `"${tiny.files["config.json"].gitSha1}"`);
  });

  test("CDN: 200/206/416, ETag is not the sha256, counters, Authorization recorded", async () => {
    const f = tiny.files["big.bin"];
    fake.reset();
    const loc = (await req(`${H}/acme/tiny-model/resolve/main/big.bin`, { method: "HEAD" })).headers.location;
    let r = await req(loc);
    assert.equal(r.status, 200);
    assert.equal(r.body.length, f.size);
    assert.equal(sha256(r.body), f.sha256);
    assert.equal(r.headers["content-type"], "application/octet-stream");
    assert.equal(r.headers["accept-ranges"], "bytes");
    assert.equal(r.headers.etag, `"${f.xetHash}"`);
    assert.notEqual(r.headers.etag, `"${f.sha256}"`);
    assert.equal(r.headers["content-length"], String(f.size));
    r = await req(loc, { headers: { range: "bytes=100-199" } });
    assert.equal(r.status, 206);
    assert.equal(r.headers["content-range"], `bytes 100-199/${f.size}`);
    const whole = await f.read();
    assert.deepEqual(r.body, whole.subarray(100, 200));
    r = await req(loc, { headers: { range: `bytes=${f.size}-` } });
    assert.equal(r.status, 416);
    assert.equal(r.headers["content-range"], `bytes */${f.size}`);
    r = await req(loc, { method: "HEAD" });
    assert.equal(r.status, 200);
    assert.equal(r.headers["content-length"], String(f.size));
    await fake.idle();
    let s = fake.stats();
    assert.equal(s.cdn.requests, 4);
    assert.equal(s.cdn.bodyBytes, f.size + 100);
    assert.equal(s.cdn.authorizationSeen, 0);
    assert.equal(s.cdn.paths[`/cdn/lfs/${f.sha256}`].requests, 4);
    assert.equal(s.hub.requests, 1);
    assert.equal(s.hub.bodyBytes, 0); // HEAD
    r = await req(loc, { headers: { authorization: "Bearer hf_granted", range: "bytes=0-0" } });
    assert.equal(r.status, 206); // served, but recorded
    s = fake.stats();
    assert.equal(s.cdn.authorizationSeen, 1);
    const last = s.log.at(-1);
    assert.equal(last.host, "cdn");
    assert.equal(last.headers.authorization, true);
    assert.equal(last.headers.range, "bytes=0-0");
    fake.scenario({ cdnRejectAuthorization: true });
    r = await req(loc, { headers: { authorization: "Bearer x" } });
    assert.equal(r.status, 400);
    fake.reset();
  });

  test("CDN signature: tampered or expired URLs get 403", async () => {
    const f = tiny.files["model.safetensors"];
    const loc = (await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, { method: "HEAD" })).headers.location;
    const u = new URL(loc);
    const badSig = new URL(loc);
    badSig.searchParams.set("sig", "0".repeat(64));
    assert.equal((await req(badSig.href)).status, 403);
    const longer = new URL(loc);
    longer.searchParams.set("expires", String(Number(u.searchParams.get("expires")) + 1000));
    assert.equal((await req(longer.href)).status, 403);
    const otherBlob = loc.replace(f.sha256, tiny.files["big.bin"].sha256);
    assert.equal((await req(otherBlob)).status, 403);
    assert.equal((await req(`${fake.cdnUrl}/cdn/lfs/${f.sha256}`)).status, 403);
    fake.scenario({ urlTtl: -1 });
    try {
      const expired = (await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, { method: "HEAD" })).headers.location;
      const r = await req(expired);
      assert.equal(r.status, 403);
      assert.match(r.body.toString(), /expired/);
    } finally {
      fake.scenario({ urlTtl: 3600 });
    }
    fake.scenario({ urlTtl: 1 });
    const short = (await req(`${H}/acme/tiny-model/resolve/main/model.safetensors`, { method: "HEAD" })).headers.location;
    assert.equal((await req(short, { method: "HEAD" })).status, 200);
    await new Promise((r) => setTimeout(r, 2100));
    assert.equal((await req(short, { method: "HEAD" })).status, 403);
    fake.scenario({ urlTtl: 3600 });
  });
});

describe("access: gated, private, unknown, renames", () => {
  const code = (r) => [r.status, r.headers["x-error-code"] ?? null];
  test("gated-model matrix", async () => {
    const u = `${H}/acme/gated-model/resolve/main/config.json`;
    let r = await req(u);
    assert.deepEqual(code(r), [401, "GatedRepo"]);
    assert.equal(r.headers["x-error-message"], "Access to model acme/gated-model is restricted. You must have access to it and be authenticated to access it. Please log in.");
    r = await req(u, { headers: { authorization: "Bearer hf_someone_else" } });
    assert.deepEqual(code(r), [403, "GatedRepo"]);
    assert.match(r.headers["x-error-message"], /not in the authorized list/);
    r = await req(u, { headers: { authorization: "Bearer hf_granted" } });
    assert.equal(r.status, 307);
    r = await req(`${H}/acme/gated-model/resolve/main/model.safetensors`, { headers: { authorization: "Bearer hf_granted" } });
    assert.equal(r.status, 302);
    r = await req(`${H}/acme/gated-model/raw/main/config.json`);
    assert.deepEqual(code(r), [401, "GatedRepo"]);
    const c = fake.repos["acme/gated-model"].mainCommit;
    r = await req(`${H}/api/resolve-cache/models/acme/gated-model/${c}/config.json`);
    assert.deepEqual(code(r), [401, "GatedRepo"]);
    r = await req(`${H}/api/resolve-cache/models/acme/gated-model/${c}/config.json`, { headers: { authorization: "Bearer hf_granted" } });
    assert.equal(r.status, 200);
    // repo info is public
    r = await req(`${H}/api/models/acme/gated-model`);
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).gated, "auto");
  });

  test("private-model matrix", async () => {
    const u = `${H}/acme/private-model/resolve/main/config.json`;
    for (const headers of [{}, { authorization: "Bearer hf_unknown" }]) {
      const r = await req(u, { headers });
      assert.deepEqual(code(r), [401, null]);
      assert.equal(r.headers["x-error-message"], "Invalid username or password.");
      assert.equal(r.headers["www-authenticate"], 'Bearer realm="Authentication required", charset="UTF-8"');
      assert.equal(r.body.toString(), "Invalid username or password.");
    }
    let r = await req(u, { headers: { authorization: "Bearer hf_granted" } });
    assert.deepEqual(code(r), [404, "RepoNotFound"]);
    r = await req(u, { headers: { authorization: "Bearer hf_owner" } });
    assert.equal(r.status, 307);
    r = await req(`${H}/acme/private-model/resolve/main/weights.bin`, { headers: { authorization: "Bearer hf_owner" } });
    assert.equal(r.status, 302);
    r = await req(`${H}/api/models/acme/private-model`);
    assert.deepEqual(code(r), [401, null]);
    assert.deepEqual(JSON.parse(r.body), { error: "Invalid username or password." });
    r = await req(`${H}/api/models/acme/private-model/tree/main`, { headers: { authorization: "Bearer hf_owner" } });
    assert.equal(r.status, 200);
    r = await req(`${H}/api/models/acme/private-model/tree/main`, { headers: { authorization: "Bearer hf_granted" } });
    assert.deepEqual(code(r), [404, "RepoNotFound"]);
  });

  test("unknown repo: 401 anonymous, 404 RepoNotFound with a valid token", async () => {
    let r = await req(`${H}/acme/nope/resolve/main/config.json`);
    assert.deepEqual(code(r), [401, null]);
    r = await req(`${H}/acme/nope/resolve/main/config.json`, { headers: { authorization: "Bearer hf_granted" } });
    assert.deepEqual(code(r), [404, "RepoNotFound"]);
    r = await req(`${H}/api/models/acme/nope`, { headers: { authorization: "Bearer hf_owner" } });
    assert.deepEqual(code(r), [404, "RepoNotFound"]);
    r = await req(`${H}/api/datasets/acme/tiny-model`); // right name, wrong type
    assert.deepEqual(code(r), [401, null]);
  });

  test("renames and legacy ids: 307 relative, query kept, resolve/raw/api", async () => {
    const cases = [
      ["/acme/old-name/resolve/main/config.json?a=1", "/acme/tiny-model/resolve/main/config.json?a=1"],
      ["/acme/old-name/raw/main/config.json", "/acme/tiny-model/raw/main/config.json"],
      ["/api/models/acme/old-name", "/api/models/acme/tiny-model"],
      ["/api/models/acme/old-name/tree/main?recursive=true", "/api/models/acme/tiny-model/tree/main?recursive=true"],
      ["/api/models/acme/old-name/revision/main?expand=sha", "/api/models/acme/tiny-model/revision/main?expand=sha"],
      ["/tiny/resolve/main/config.json", "/acme/tiny-model/resolve/main/config.json"],
      ["/api/models/tiny", "/api/models/acme/tiny-model"],
      ["/api/models/tiny/revision/main", "/api/models/acme/tiny-model/revision/main"],
      ["/ACME/Tiny-Model/resolve/main/config.json", "/acme/tiny-model/resolve/main/config.json"],
    ];
    for (const [from, to] of cases) {
      const r = await req(H + from, { method: from.startsWith("/api") ? "GET" : "HEAD" });
      assert.equal(r.status, 307, from);
      assert.equal(r.headers.location, to, from);
    }
    const r = await req(`${H}/api/models/acme/old-name`);
    assert.equal(r.body.toString(), "Temporary Redirect. Redirecting to /api/models/acme/tiny-model");
    assert.equal(r.headers["content-type"], "text/plain; charset=utf-8");
  });
});

describe("API", () => {
  test("repo info, revision, expand, blobs", async () => {
    let r = await req(`${H}/api/models/acme/tiny-model`);
    assert.equal(r.status, 200);
    assert.match(r.headers.etag, /^W\/"/);
    let j = JSON.parse(r.body);
    assert.equal(j.id, "acme/tiny-model");
    assert.equal(j.sha, tiny.mainCommit);
    assert.equal(j.private, false);
    assert.equal(j.gated, false);
    assert.deepEqual(j.siblings.map((s) => s.rfilename), Object.keys(tiny.files).sort());
    assert.deepEqual(Object.keys(j).slice(0, 3), ["_id", "id", "private"]);
    r = await req(`${H}/api/models/acme/tiny-model/revision/refs%2Fpr%2F1`);
    assert.equal(JSON.parse(r.body).sha, tiny.prCommit);
    r = await req(`${H}/api/models/acme/tiny-model/revision/${tiny.prCommit}`);
    assert.equal(JSON.parse(r.body).sha, tiny.prCommit);
    r = await req(`${H}/api/models/acme/tiny-model/revision/HEAD?expand=pipeline_tag&expand=private&expand=gated&expand=downloads&expand=likes&expand=lastModified&expand=sha`);
    j = JSON.parse(r.body);
    assert.deepEqual(Object.keys(j), ["_id", "id", "pipeline_tag", "private", "gated", "downloads", "likes", "lastModified", "sha"]);
    r = await req(`${H}/api/models/acme/tiny-model?expand[]=likes`);
    assert.deepEqual(Object.keys(JSON.parse(r.body)), ["_id", "id", "likes"]);
    r = await req(`${H}/api/spaces/acme/tiny-space/revision/main?expand=xetEnabled`);
    assert.deepEqual(JSON.parse(r.body), { _id: JSON.parse(r.body)._id, id: "acme/tiny-space", xetEnabled: true });
    r = await req(`${H}/api/models/acme/tiny-model?blobs=true`);
    const st = JSON.parse(r.body).siblings.find((s) => s.rfilename === "model.safetensors");
    const f = tiny.files["model.safetensors"];
    assert.deepEqual(st, { rfilename: "model.safetensors", blobId: f.gitSha1, size: 150000, lfs: { sha256: f.sha256, size: 150000, pointerSize: f.pointer.length } });
    r = await req(`${H}/api/datasets/acme/tiny-dataset`);
    assert.equal(JSON.parse(r.body).id, "acme/tiny-dataset");
    r = await req(`${H}/api/spaces/acme/tiny-space`);
    assert.deepEqual(JSON.parse(r.body).siblings, [{ rfilename: "app.py" }]);
  });

  test("tree: recursive, folders, expand, xetHash, %2F paths", async () => {
    let r = await req(`${H}/api/models/acme/tiny-model/tree/main?recursive=false&expand=false`);
    let j = JSON.parse(r.body);
    assert.ok(j.every((e) => !e.path.includes("/")));
    assert.ok(j.some((e) => e.type === "directory" && e.path === "sub" && /^[0-9a-f]{40}$/.test(e.oid) && e.size === 0));
    r = await req(`${H}/api/models/acme/tiny-model/tree/main?recursive=true&expand=false`);
    j = JSON.parse(r.body);
    const files = j.filter((e) => e.type === "file");
    assert.deepEqual(files.map((e) => e.path).sort(), Object.keys(tiny.files).sort());
    const st = j.find((e) => e.path === "model.safetensors");
    const f = tiny.files["model.safetensors"];
    assert.deepEqual(st, { type: "file", oid: f.gitSha1, size: 150000, lfs: { oid: f.sha256, size: 150000, pointerSize: f.pointer.length }, xetHash: f.xetHash, path: "model.safetensors" });
    assert.deepEqual(j.find((e) => e.path === "config.json"), { type: "file", oid: tiny.files["config.json"].gitSha1, size: tiny.files["config.json"].size, path: "config.json" });
    for (const p of ["sub", "sub%2Fdeeper", "sub/deeper"]) {
      r = await req(`${H}/api/models/acme/tiny-model/tree/main/${p}?recursive=true&expand=true`);
      assert.equal(r.status, 200, p);
      j = JSON.parse(r.body);
      assert.ok(j.length > 0 && j.every((e) => e.path.startsWith(p.startsWith("sub/") || p.includes("%2F") ? "sub/deeper" : "sub/")));
      assert.ok(j.every((e) => e.lastCommit && e.lastCommit.id === tiny.mainCommit && e.lastCommit.title && e.lastCommit.date));
    }
    r = await req(`${H}/api/models/acme/tiny-model/tree/main/missing`);
    assert.equal(r.status, 404);
    assert.equal(r.headers["x-error-code"], "EntryNotFound");
    // revision forms
    for (const rev of ["refs%2Fpr%2F1", "refs/pr/1", tiny.prCommit]) {
      r = await req(`${H}/api/models/acme/tiny-model/tree/${rev}?recursive=true`);
      assert.equal(r.status, 200, rev);
      assert.equal(JSON.parse(r.body).find((e) => e.path === "config.json").oid, tiny.filesAt("refs/pr/1")["config.json"].gitSha1);
    }
    r = await req(`${H}/api/models/acme/tiny-model/tree/refs/pr/1/sub?expand=true`);
    j = JSON.parse(r.body);
    assert.ok(j.length >= 2);
    // lastCommit: config.json changed on the PR commit, the rest comes from main
    r = await req(`${H}/api/models/acme/tiny-model/tree/refs%2Fpr%2F1?expand=true`);
    j = JSON.parse(r.body);
    assert.equal(j.find((e) => e.path === "config.json").lastCommit.id, tiny.prCommit);
    assert.equal(j.find((e) => e.path === "README.md").lastCommit.id, tiny.mainCommit);
  });

  test("tree pagination: absolute Link <URL>; rel=\"next\"", async () => {
    const full = JSON.parse((await req(`${H}/api/models/acme/tiny-model/tree/main?recursive=true`)).body);
    assert.ok(full.length > 9);
    fake.scenario({ treePageSize: 3 });
    try {
      const all = [];
      let url = `${H}/api/models/acme/tiny-model/tree/main?recursive=true&expand=false`;
      let pages = 0;
      while (url) {
        const r = await req(url);
        assert.equal(r.status, 200);
        const page = JSON.parse(r.body);
        assert.ok(page.length <= 3);
        all.push(...page);
        pages += 1;
        const link = r.headers.link;
        if (!link) break;
        const m = /^<(https?:\/\/[^>]+)>;\s+rel="next"$/.exec(link);
        assert.ok(m, link);
        assert.ok(m[1].startsWith(`${H}/api/models/acme/tiny-model/tree/main?`));
        assert.match(m[1], /[?&]cursor=/);
        url = m[1];
      }
      assert.equal(pages, Math.ceil(full.length / 3));
      assert.deepEqual(all, full);
    } finally {
      fake.scenario({ treePageSize: null });
    }
  });

  test("paths-info: form and JSON bodies, expand adds lastCommit", async () => {
    const form = new URLSearchParams([["paths", "config.json"], ["paths", "model.safetensors"], ["paths", "nope"], ["expand", "False"]]).toString();
    let r = await req(`${H}/api/models/acme/tiny-model/paths-info/main`, {
      method: "POST", body: form, headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    assert.equal(r.status, 200);
    let j = JSON.parse(r.body);
    assert.deepEqual(j.map((e) => e.path), ["config.json", "model.safetensors"]);
    assert.ok(j.every((e) => !("lastCommit" in e)));
    assert.equal(j[1].lfs.oid, tiny.files["model.safetensors"].sha256);
    r = await req(`${H}/api/models/acme/tiny-model/paths-info/refs%2Fpr%2F1`, {
      method: "POST", body: JSON.stringify({ paths: ["config.json", "sub"], expand: true }), headers: { "content-type": "application/json" },
    });
    j = JSON.parse(r.body);
    assert.equal(j[0].lastCommit.id, tiny.prCommit);
    assert.equal(j[0].lastCommit.title, "Update config.json (two layers)");
    assert.ok(j[0].securityFileStatus);
    assert.equal(j[1].type, "directory");
  });

  test("refs, commits, whoami, xet-read-token", async () => {
    let r = await req(`${H}/api/models/acme/tiny-model/refs?include_prs=1`);
    let j = JSON.parse(r.body);
    assert.deepEqual(j.branches, [{ name: "main", ref: "refs/heads/main", targetCommit: tiny.mainCommit }]);
    assert.equal(j.pullRequests[0].ref, "refs/pr/1");
    assert.equal(j.pullRequests[0].targetCommit, tiny.prCommit);
    r = await req(`${H}/api/models/acme/tiny-model/refs`);
    assert.equal(JSON.parse(r.body).pullRequests, undefined);
    r = await req(`${H}/api/models/acme/tiny-model/commits/refs%2Fpr%2F1`);
    assert.deepEqual(JSON.parse(r.body).map((c) => c.id), [tiny.prCommit, tiny.mainCommit]);
    r = await req(`${H}/api/whoami-v2`);
    assert.equal(r.status, 401);
    r = await req(`${H}/api/whoami-v2`, { headers: { authorization: "Bearer hf_owner" } });
    assert.equal(JSON.parse(r.body).name, "acme-owner");
    const before = fake.stats().xet.readToken;
    r = await req(`${H}/api/models/acme/tiny-model/xet-read-token/${tiny.mainCommit}`);
    assert.equal(r.status, 200);
    assert.ok(r.headers["x-xet-access-token"]);
    assert.equal(fake.stats().xet.readToken, before + 1);
  });
});

describe("scenarios and control", () => {
  const lfsLoc = async (file = "big.bin") =>
    (await req(`${H}/acme/tiny-model/resolve/main/${file}`, { method: "HEAD" })).headers.location;

  test("cdnCutAfter: once, then every time", async () => {
    fake.reset();
    fake.scenario({ cdnCutAfter: 50000 });
    const loc = await lfsLoc();
    let r = await reqPartial(loc);
    assert.ok(r.error, "first transfer must be cut");
    assert.equal(r.received, 50000);
    r = await reqPartial(loc);
    assert.equal(r.error, null);
    assert.equal(r.received, BIG);
    fake.scenario({ cdnCutAfter: { bytes: 1000, count: "always" } });
    for (let i = 0; i < 2; i++) assert.equal((await reqPartial(loc)).received, 1000);
    await fake.idle();
    const s = fake.stats();
    assert.equal(s.cdn.bodyBytes, 50000 + BIG + 2000);
    assert.equal(s.log.filter((e) => e.host === "cdn" && e.aborted).length, 3);
    fake.reset();
  });

  test("cdnCorruptByte flips exactly one byte; cdnStatus; hubStatus with Retry-After", async () => {
    fake.reset();
    const f = tiny.files["model.safetensors"];
    fake.scenario({ cdnCorruptByte: 1234 });
    const loc = await lfsLoc("model.safetensors");
    const whole = f.content;
    const part = await req(loc, { headers: { range: "bytes=2000-2999" } }); // does not cover it: not consumed
    assert.deepEqual(part.body, whole.subarray(2000, 3000));
    let r = await req(loc);
    assert.notEqual(sha256(r.body), f.sha256);
    let diff = 0;
    for (let i = 0; i < whole.length; i++) if (whole[i] !== r.body[i]) diff++;
    assert.equal(diff, 1);
    assert.equal(r.body[1234], whole[1234] ^ 0xff);
    r = await req(loc);
    assert.equal(sha256(r.body), f.sha256);

    fake.scenario({ cdnStatus: { status: 503, count: 2, retryAfter: 1 } });
    assert.equal((await req(loc)).status, 503);
    assert.equal((await req(loc)).status, 503);
    assert.equal((await req(loc)).status, 200);

    fake.scenario({ hubStatus: { status: 429, count: 1, retryAfter: 2 } });
    r = await req(`${H}/api/models/acme/tiny-model`);
    assert.equal(r.status, 429);
    assert.equal(r.headers["retry-after"], "2");
    assert.equal((await req(`${H}/api/models/acme/tiny-model`)).status, 200);
    fake.scenario({ hubStatus: { status: 429, count: 1, retryAfter: 7, rateLimitOnly: true } });
    r = await req(`${H}/api/models/acme/tiny-model`);
    assert.equal(r.status, 429);
    assert.equal(r.headers["retry-after"], undefined);
    assert.equal(r.headers.ratelimit, '"api";r=0;t=7');
    fake.scenario({ hubStatus: { status: 502, count: 1, match: "/resolve/" } });
    assert.equal((await req(`${H}/api/models/acme/tiny-model`)).status, 200);
    assert.equal((await req(`${H}/acme/tiny-model/resolve/main/config.json`)).status, 502);
    assert.equal((await req(`${H}/acme/tiny-model/resolve/main/config.json`)).status, 307);
    fake.reset();
  });

  test("cdnStallAfter keeps the socket open without sending; cdnDelayMs; cdnRate", async () => {
    fake.reset();
    fake.scenario({ cdnStallAfter: 10000 });
    const loc = await lfsLoc();
    const r = await reqPartial(loc, { timeoutMs: 800 });
    assert.equal(r.received, 10000);
    assert.match(String(r.error?.message), /timeout|aborted/);
    fake.scenario({ cdnDelayMs: 300 });
    let t = Date.now();
    await req(loc, { method: "HEAD" });
    assert.ok(Date.now() - t >= 280);
    fake.scenario({ cdnDelayMs: 0, cdnRate: 1_000_000 });
    t = Date.now();
    const g = await req(loc, { headers: { range: "bytes=0-499999" } });
    const ms = Date.now() - t;
    assert.equal(g.body.length, 500000);
    assert.ok(ms >= 400 && ms < 3000, `rate-limited transfer took ${ms} ms`);
    fake.reset();
  });

  test("big-dataset: 2,602 files, recursive listing in 3 pages of 1000", async () => {
    const big = fake.repos["acme/big-dataset"];
    assert.equal(Object.keys(big.files).length, BIG_DATASET_FILES + 2);
    const files = [];
    let url = `${H}/api/datasets/acme/big-dataset/tree/${big.mainCommit}?recursive=true&expand=false`;
    let pages = 0;
    while (url) {
      const r = await req(url);
      assert.equal(r.status, 200);
      const page = JSON.parse(r.body);
      assert.ok(page.length <= 1000);
      files.push(...page.filter((e) => e.type === "file").map((e) => e.path));
      pages += 1;
      url = /^<(https?:\/\/[^>]+)>;\s+rel="next"$/.exec(r.headers.link ?? "")?.[1];
    }
    assert.equal(pages, 3);
    assert.deepEqual(files.sort(), Object.keys(big.files).sort());
    const f = big.files["data/train/part-00000.jsonl"];
    const r = await req(`${H}/datasets/acme/big-dataset/resolve/${big.mainCommit}/data/train/part-00000.jsonl`);
    assert.equal(r.status, 200);
    assert.equal(sha256(r.body), f.sha256);
  });

  test("mainCommit moves main (a push)", async () => {
    fake.scenario({ mainCommit: "refs/pr/1" });
    try {
      const r = await req(`${H}/api/models/acme/tiny-model/revision/main?expand=sha`);
      assert.equal(JSON.parse(r.body).sha, tiny.prCommit);
      const h = await req(`${H}/acme/tiny-model/resolve/main/config.json`, { method: "HEAD" });
      assert.ok(h.headers.location.includes(`/${tiny.prCommit}/config.json?`));
      const refs = JSON.parse((await req(`${H}/api/models/acme/tiny-model/refs`)).body);
      assert.equal(refs.branches[0].targetCommit, tiny.prCommit);
    } finally {
      fake.scenario({ mainCommit: null });
    }
    const r = await req(`${H}/api/models/acme/tiny-model/revision/main?expand=sha`);
    assert.equal(JSON.parse(r.body).sha, tiny.mainCommit);
  });

  test("privateRepos makes a public repo answer as private (a visibility change)", async () => {
    const D = "acme/tiny-dataset";
    const ds = fake.repos[D];
    const paths = [`/api/datasets/${D}/tree/${ds.mainCommit}?recursive=true`, `/api/datasets/${D}/revision/main`, `/datasets/${D}/resolve/${ds.mainCommit}/README.md`];
    for (const p of paths) assert.equal((await req(`${H}${p}`)).status, 200, p);
    fake.scenario({ privateRepos: [D] });
    try {
      for (const p of paths) {
        assert.equal((await req(`${H}${p}`)).status, 401, `anonymous ${p}`);
        const g = await req(`${H}${p}`, { headers: { Authorization: "Bearer hf_granted" } });
        assert.equal(g.status, 404, `hf_granted ${p}`);
        assert.equal(g.headers["x-error-code"], "RepoNotFound");
        assert.equal((await req(`${H}${p}`, { headers: { Authorization: "Bearer hf_owner" } })).status, 200, `hf_owner ${p}`);
      }
      assert.equal((await req(`${H}/api/models/acme/tiny-model`)).status, 200, "other repos unaffected");
    } finally {
      fake.scenario({ privateRepos: null });
    }
    for (const p of paths) assert.equal((await req(`${H}${p}`)).status, 200, `${p} public again`);
  });

  test("HTTP control endpoints, kept out of the log", async () => {
    let r = await req(`${H}/_fake/reset`, { method: "POST" });
    assert.equal(r.status, 200);
    r = await req(`${H}/_fake/scenario`, { method: "POST", body: JSON.stringify({ treePageSize: 2, cdnCutAfter: 5 }) });
    assert.equal(r.status, 200);
    assert.equal(JSON.parse(r.body).treePageSize, 2);
    assert.deepEqual(JSON.parse(r.body).cdnCutAfter, { bytes: 5, count: 1 });
    r = await req(`${H}/_fake/scenario`, { method: "POST", body: JSON.stringify({ bogus: 1 }) });
    assert.equal(r.status, 400);
    await req(`${H}/api/models/acme/tiny-model`);
    r = await req(`${H}/_fake/stats?wait=1`);
    const s = JSON.parse(r.body);
    assert.equal(s.hub.requests, 1);
    assert.equal(s.log.length, 1);
    assert.equal(s.log[0].path, "/api/models/acme/tiny-model");
    assert.equal(s.log[0].status, 200);
    r = await req(`${H}/_fake/repos`);
    assert.equal(JSON.parse(r.body)["acme/tiny-model"].files["big.bin"].sha256, tiny.files["big.bin"].sha256);
    r = await req(`${H}/_fake/info`);
    assert.deepEqual(JSON.parse(r.body), { hub: H, cdn: fake.cdnUrl, ca: null });
    fake.reset();
    assert.equal(fake.getScenario().treePageSize, null);
  });

  test("keep-alive: one connection serves several requests", async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set();
    for (let i = 0; i < 3; i++) {
      await new Promise((resolve, reject) => {
        http.get(`${H}/acme/tiny-model/resolve/${tiny.mainCommit}/README.md`, { agent }, (res) => {
          ports.add(res.socket.localPort);
          res.resume();
          res.on("end", resolve);
        }).on("error", reject);
      });
    }
    agent.destroy();
    assert.equal(ports.size, 1);
  });
});

describe("TLS and CLI", () => {
  test("tls:true serves https with a throwaway CA (SANs 127.0.0.1, 127.0.0.2)", async () => {
    const t = await startFakeHub({ tls: true, bigSize: 4096 });
    try {
      assert.match(t.hubUrl, /^https:\/\/127\.0\.0\.1:/);
      assert.match(t.cdnUrl, /^https:\/\/127\.0\.0\.2:/);
      const ca = fs.readFileSync(t.caFile);
      const r = await req(`${t.hubUrl}/acme/tiny-model/resolve/main/model.safetensors`, { ca, method: "HEAD" });
      assert.equal(r.status, 302);
      assert.ok(r.headers.location.startsWith(t.cdnUrl));
      const g = await req(r.headers.location, { ca });
      assert.equal(g.status, 200);
      assert.equal(sha256(g.body), t.repos["acme/tiny-model"].files["model.safetensors"].sha256);
      await assert.rejects(req(`${t.hubUrl}/api/models/acme/tiny-model`)); // not trusted without the CA
    } finally {
      await t.close();
    }
  });

  test("cli.mjs prints one JSON line, serves, exits on SIGTERM", async () => {
    const p = spawn(process.execPath, [path.join(HERE, "cli.mjs"), "--big-size", "4096", "--latency-ms", "1"], { stdio: ["ignore", "pipe", "pipe"] });
    try {
      const line = await new Promise((resolve, reject) => {
        let out = "";
        const t = setTimeout(() => reject(new Error("no line from cli")), 20000);
        p.stdout.on("data", (d) => {
          out += d;
          if (out.includes("\n")) {
            clearTimeout(t);
            resolve(out.split("\n")[0]);
          }
        });
        p.once("exit", (c) => reject(new Error(`cli exited ${c}`)));
      });
      const info = JSON.parse(line);
      assert.match(info.hub, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.match(info.cdn, /^http:\/\/127\.0\.0\.2:\d+$/);
      assert.equal(info.ca, null);
      const r = await req(`${info.hub}/api/models/acme/tiny-model`);
      assert.equal(r.status, 200);
      const code = await new Promise((resolve) => {
        p.once("exit", (c) => resolve(c));
        p.kill("SIGTERM");
      });
      assert.equal(code, 0);
    } finally {
      if (p.exitCode === null) p.kill("SIGKILL");
    }
  });
});

test("tokenizer.json is a complete WordPiece tokenizer", () => {
  const j = JSON.parse(tiny.files["tokenizer.json"].content);
  assert.equal(j.model.type, "WordPiece");
  assert.equal(Object.keys(j.model.vocab).length, VOCAB.length);
  assert.equal(JSON.parse(tiny.files["tokenizer_config.json"].content).tokenizer_class, "BertTokenizer");
});
