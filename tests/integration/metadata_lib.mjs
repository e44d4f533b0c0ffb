// Helpers shared by metadata.test.mjs and offline.test.mjs: the python client's request shapes
// (docs/hub-protocol.md §2.1-2.2, docs/real-clients.md §6.1) replayed with node:http, header checks
// on every answer, and upstream request accounting on the fake Hub.
//
//   PY_HEADERS(), pyApi(base, method, path, opts), pyHeadFile(base, path), pyGetFile(base, path)
//   checkPyHead(r, f, commit, what), pyTree(base, type, repo, rev), pythonSnapshot(base, opts)
//   upstreamDuring(fake, fn), logLines(entries), sleep(ms), parseJson(r), hashSafeFetch

import assert from "node:assert/strict";
import crypto from "node:crypto";
import zlib from "node:zlib";
import { http1, describe as desc } from "./proxy_lib.mjs";

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const PY_UA = "unknown/None; hf_hub/1.3.7; python/3.11.2";
export const TYPE_PREFIX = { model: "", dataset: "datasets/", space: "spaces/" };

/** Headers huggingface_hub 1.3.7 sends on every request (a fresh X-Amzn-Trace-Id each time). */
export function PY_HEADERS(extra = {}) {
  return { "user-agent": PY_UA, "X-Amzn-Trace-Id": crypto.randomUUID(), Accept: "*/*", ...extra };
}

/** Body of a response as JSON (decoding gzip/deflate as httpx would), or throws with a description. */
export function parseJson(r, what = "") {
  let b = r.body ?? Buffer.alloc(0);
  const ce = r.headers["content-encoding"];
  if (ce === "gzip") b = zlib.gunzipSync(b);
  else if (ce === "deflate") b = zlib.inflateSync(b);
  try {
    return JSON.parse(b.toString("utf8"));
  } catch {
    throw new assert.AssertionError({ message: `${what}: body is not JSON: ${desc(r)}` });
  }
}

/** An API request shaped like python's (GET: Accept-Encoding gzip, deflate). */
export function pyApi(base, method, path, { headers = {}, body = null, token = null, timeoutMs = 15000 } = {}) {
  const h = PY_HEADERS({ "Accept-Encoding": "gzip, deflate", ...headers });
  if (token) h.authorization = `Bearer ${token}`;
  return http1(base, method, path, { headers: h, body, timeoutMs });
}

/** HEAD like hf_hub_download's metadata call: Accept-Encoding identity, follow relative redirects only. */
export async function pyHeadFile(base, path, { token = null } = {}) {
  const hops = [];
  let p = path;
  for (let i = 0; i < 6; i++) {
    const h = PY_HEADERS({ "Accept-Encoding": "identity" });
    if (token) h.authorization = `Bearer ${token}`;
    const r = await http1(base, "HEAD", p, { headers: h });
    hops.push(`${p} -> ${r.status}${r.headers.location ? " " + r.headers.location : ""}`);
    const loc = r.headers.location;
    if (r.status >= 300 && r.status < 400 && loc && !/^[a-z][a-z0-9+.-]*:/i.test(loc)) {
      const u = new URL(loc, base + p);
      p = u.pathname + u.search;
      continue;
    }
    return { final: r, hops };
  }
  throw new Error(`too many redirects: ${hops.join(", ")}`);
}

/** GET like python's download: Accept-Encoding gzip, deflate; follows every redirect (httpx). */
export async function pyGetFile(base, path, { token = null, timeoutMs = 30000 } = {}) {
  const hops = [];
  let url = new URL(path, base);
  for (let i = 0; i < 6; i++) {
    const h = PY_HEADERS({ "Accept-Encoding": "gzip, deflate" });
    if (token && url.origin === new URL(base).origin) h.authorization = `Bearer ${token}`;
    const r = await http1(url.origin, "GET", url.pathname + url.search, { headers: h, timeoutMs });
    hops.push(`${url.origin === new URL(base).origin ? "" : url.origin}${url.pathname} -> ${r.status}`);
    const loc = r.headers.location;
    if (r.status >= 300 && r.status < 400 && loc) {
      url = new URL(loc, url);
      continue;
    }
    return { final: r, hops, finalUrl: url.href };
  }
  throw new Error(`too many redirects: ${hops.join(", ")}`);
}

const noXet = (r, what) => {
  const xet = Object.keys(r.headers).filter((k) => k.startsWith("x-xet-"));
  assert.deepEqual(xet, [], `${what}: xet headers must be stripped`);
};

/**
 * The final HEAD answer python's hf_hub_download needs (real-clients.md §6.1 ablations):
 * X-Repo-Commit, ETag / X-Linked-Etag (the blob name), Content-Length or X-Linked-Size (the size),
 * no Content-Encoding, Accept-Ranges.
 */
export function checkPyHead(r, f, commit, what) {
  assert.equal(r.status, 200, `${what}: ${desc(r)}`);
  assert.equal(r.headers["x-repo-commit"], commit, `${what}: X-Repo-Commit`);
  const etag = (r.headers["x-linked-etag"] ?? r.headers.etag ?? "").replace(/^W\//, "").replace(/"/g, "");
  assert.equal(etag, f.etag, `${what}: X-Linked-Etag ?? ETag (python names the blob after it): ${desc(r)}`);
  const size = r.headers["x-linked-size"] ?? r.headers["content-length"];
  assert.equal(size, String(f.size), `${what}: X-Linked-Size ?? Content-Length: ${desc(r)}`);
  if (r.headers["x-linked-size"] === undefined) assert.equal(r.headers["content-length"], String(f.size), `${what}: Content-Length`);
  assert.equal(r.headers["content-encoding"], undefined, `${what}: Content-Encoding`);
  assert.equal(r.headers["accept-ranges"], "bytes", `${what}: Accept-Ranges`);
  noXet(r, what);
}

/**
 * GET /api/{type}s/{repo}/tree/{rev}?recursive=true&expand=false and every Link rel=next page, the way
 * python does. Every next link must be absolute and on `base`. Returns {entries, pages, responses}.
 */
export async function pyTree(base, type, repo, rev, { token = null, query = "recursive=true&expand=false" } = {}) {
  let path = `/api/${type}s/${repo}/tree/${encodeURIComponent(rev)}?${query}`;
  const entries = [];
  const responses = [];
  for (let pages = 1; pages < 50; pages++) {
    const r = await pyApi(base, "GET", path, { token });
    responses.push(r);
    assert.equal(r.status, 200, `tree page ${pages} ${path}: ${desc(r)}`);
    entries.push(...parseJson(r, `tree page ${pages}`));
    const link = r.headers.link;
    if (!link) return { entries, pages, responses };
    const m = /<(https?:\/\/[^>]+)>;\s*rel="next"/.exec(link);
    assert.ok(m, `tree page ${pages}: Link without an absolute rel="next": ${link}`);
    const next = new URL(m[1]);
    assert.equal(next.origin, new URL(base).origin, `tree page ${pages}: Link rel=next must point at hubcache (${base}), got ${link}`);
    path = next.pathname + next.search;
  }
  throw new Error("more than 50 tree pages");
}

/**
 * snapshot_download as python 1.28 does it (hub-protocol.md §2.2), replayed: revision/{rev} (unless a
 * 40-hex sha), tree/{sha}?recursive=true&expand=false with pagination, then per file HEAD + GET.
 * `files`: {path: fileView} expected at that commit. Checks every answer; returns
 * {commit, responses: [{what, r}]} so the caller can look at Warning headers.
 */
export async function pythonSnapshot(base, { type = "model", repo, rev = "main", files, commit, token = null }) {
  const responses = [];
  let sha = rev;
  if (!/^[0-9a-f]{40}$/.test(rev)) {
    const r = await pyApi(base, "GET", `/api/${type}s/${repo}/revision/${encodeURIComponent(rev)}`, { token });
    responses.push({ what: `revision/${rev}`, r });
    assert.equal(r.status, 200, `revision/${rev}: ${desc(r)}`);
    sha = parseJson(r, `revision/${rev}`).sha;
    assert.equal(sha, commit, `revision/${rev}: sha`);
  }
  const t = await pyTree(base, type, repo, sha, { token });
  t.responses.forEach((r, i) => responses.push({ what: `tree page ${i + 1}`, r }));
  const listed = t.entries.filter((e) => e.type === "file");
  assert.deepEqual(listed.map((e) => e.path).sort(), Object.keys(files).sort(), "tree lists exactly the commit's files");
  for (const e of listed) {
    assert.equal(e.xetHash, undefined, `tree entry ${e.path}: xetHash must be removed`);
    const f = files[e.path];
    assert.equal(e.size, f.size, `tree entry ${e.path}: size`);
    if (f.lfs) assert.equal(e.lfs?.oid, f.sha256, `tree entry ${e.path}: lfs.oid`);
    else assert.equal(e.oid, f.gitSha1, `tree entry ${e.path}: oid`);
  }
  const enc = (p) => p.split("/").map(encodeURIComponent).join("/");
  for (const e of listed) {
    const f = files[e.path];
    const url = `/${TYPE_PREFIX[type]}${repo}/resolve/${sha}/${enc(e.path)}`;
    const { final: h, hops } = await pyHeadFile(base, url, { token });
    responses.push({ what: `HEAD ${e.path}`, r: h });
    checkPyHead(h, f, sha, `HEAD ${url} [${hops.join(" ; ")}]`);
    const { final: g, hops: ghops, finalUrl } = await pyGetFile(base, url, { token });
    responses.push({ what: `GET ${e.path}`, r: g });
    assert.equal(g.status, 200, `GET ${url} [${ghops.join(" ; ")}]: ${desc(g)}`);
    assert.ok(finalUrl.startsWith(base + "/"), `GET ${url} ended outside hubcache: ${finalUrl}`);
    assert.equal(g.headers["content-encoding"], undefined, `GET ${url}: Content-Encoding`);
    assert.ok(g.complete, `GET ${url}: ${desc(g)}`);
    assert.equal(g.sha256, f.sha256, `GET ${url}: bytes`);
    assert.equal(g.bytes, f.size, `GET ${url}: size`);
  }
  return { commit: sha, responses, pages: t.pages };
}

/** Runs fn and returns the fake's log entries made meanwhile (waits for upstream to go idle). */
export async function upstreamDuring(fake, fn) {
  await fake.idle();
  const n0 = fake.stats().log.length;
  const value = await fn();
  await fake.idle();
  const log = fake.stats().log.slice(n0);
  return { value, log, hub: log.filter((e) => e.host === "hub"), cdn: log.filter((e) => e.host === "cdn") };
}

/**
 * hub.js 2.17.5 puts the file path into /resolve URLs unencoded, so the '#' of
 * "dir with space/file +#ü.txt" starts a URL fragment and it asks for "file +" (404, also against
 * the fake Hub directly). Pass as `fetch:` to encode it before fetch() drops the fragment.
 */
export const hashSafeFetch = (url, init) => fetch(typeof url === "string" ? url.replace(/#/g, "%23") : url, init);

export const logLines = (entries) =>
  JSON.stringify(entries.map((e) => `${e.host} ${e.method} ${e.url.slice(0, 110)}${e.token ? " token=" + e.token : ""} -> ${e.status}`));
