// A fake Hugging Face Hub plus a separate fake CDN, for hubcache's tests.
// Only node: built-ins. See README.md in this folder for the behaviour and the control API.
//
//   const fake = await startFakeHub({ tls: false, bigSize: 64 << 20 });
//   fake.hubUrl  -> http://127.0.0.1:PORT   (the Hub: /resolve, /raw, /api/...)
//   fake.cdnUrl  -> http://127.0.0.2:PORT   (signed LFS URLs the Hub redirects to)
//   fake.stats(), fake.reset(), fake.scenario({...}), fake.repos, await fake.close()

import crypto from "node:crypto";
import fsp from "node:fs/promises";
import http from "node:http";
import https from "node:https";
import os from "node:os";
import path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { buildRepos } from "./content.mjs";

const execFileP = promisify(execFile);

const FULL_SHA = /^[0-9a-f]{40}$/;
const REPO_TYPES = { models: "model", datasets: "dataset", spaces: "space", kernels: "kernel" };
const URL_PREFIX = { model: "", dataset: "datasets/", space: "spaces/", kernel: "kernels/" };
const API_KEYWORDS = new Set([
  "revision", "tree", "paths-info", "refs", "commits", "xet-read-token", "xet-write-token",
  "preupload", "commit", "discussions", "settings", "treesize", "parquet", "lfs-files",
]);
const EXPOSE_HEADERS =
  "X-Repo-Commit,X-Request-Id,X-Error-Code,X-Error-Message,X-Total-Count,ETag,Link,Accept-Ranges,Content-Range,X-Linked-Size,X-Linked-ETag,X-Xet-Hash";
const CSP = "default-src 'none'; sandbox";
const XET_FILEINFO = "application/vnd.xet-fileinfo+json";
const CAS_URL = "https://cas-server.xethub.hf.co";

const DEFAULT_TOKENS = {
  hf_granted: { name: "granted-user", orgs: [], gatedAccess: true },
  hf_owner: { name: "acme-owner", orgs: ["acme"], gatedAccess: true },
};

// Legacy ids and renames: answered with a relative 307 to the canonical id.
const RENAMES = { "model:acme/old-name": "acme/tiny-model", "model:tiny": "acme/tiny-model" };

function defaultScenario(opts) {
  return {
    resolveCache: true, // branch revision + git file -> 307 to /api/resolve-cache/... (like the Hub today)
    xet: true, // LFS 302s carry X-Xet-Hash + Link (xet-auth, xet-reconstruction-info); trees carry xetHash
    treePageSize: null, // null: 1000, or 50 with expand=true
    urlTtl: 3600, // seconds a signed CDN URL stays valid
    mainCommit: null, // null, a 40-hex commit or "refs/pr/1": where acme/tiny-model's main (and HEAD) point
    cdnRate: opts.cdnRate ?? 0, // bytes/s per CDN connection, 0 = unlimited
    cdnDelayMs: 0, // before CDN response headers
    hubDelayMs: 0, // before Hub response headers
    cdnXCache: "Miss from cloudfront", // X-Cache on CDN answers (the real CDN is CloudFront); null to omit
    cdnRejectAuthorization: false, // true: the CDN answers 400 when an Authorization header arrives
    cdnCutAfter: null, // {bytes, count} destroy the socket after `bytes` body bytes
    cdnStallAfter: null, // {bytes, count} stop sending after `bytes` body bytes, keep the socket open
    cdnCorruptByte: null, // {offset, count} flip the byte at file offset `offset`
    cdnStatus: null, // {status, count, retryAfter} answer the next `count` CDN requests with `status`
    cdnIgnoreRange: false, // true: the CDN answers every GET with 200 and the whole blob, as origins without range support do
    hubStatus: null, // {status, count, retryAfter, match, rateLimitOnly} same for Hub requests (match: substring of the path)
    privateRepos: null, // null or ["acme/tiny-dataset", ...]: these repos answer as private (simulates a visibility change)
    gatedRepos: null, // null or ["acme/tiny-model", ...]: these repos answer as gated ("auto"), as when an owner gates a repo
  };
}

/** Normalizes a fault spec: number -> {<key>: n, count: 1}; count "always"/Infinity/<=0 -> Infinity. */
function normFault(v, key) {
  if (v === null || v === undefined || v === false) return null;
  const f = typeof v === "number" ? { [key]: v } : { ...v };
  if (typeof f[key] !== "number") throw new Error(`fault needs a numeric ${key}`);
  let c = f.count ?? 1;
  if (c === "always" || c === Infinity || c === null || c <= 0) c = Infinity;
  f.count = c;
  return f;
}
const FAULT_KEYS = { cdnCutAfter: "bytes", cdnStallAfter: "bytes", cdnCorruptByte: "offset", cdnStatus: "status", hubStatus: "status" };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const weakEtag = (body) =>
  `W/"${body.length.toString(16)}-${crypto.createHash("sha1").update(body).digest("base64").slice(0, 27)}"`;
const parseBool = (v) => v !== null && v !== undefined && /^(true|1|yes)$/i.test(String(v));

function safeDecode(s) {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

function contentTypeFor(p) {
  const ext = path.extname(p).toLowerCase();
  if (ext === ".json") return "application/json; charset=utf-8";
  if ([".bin", ".safetensors", ".onnx", ".h5", ".pt", ".msgpack", ".gz", ".zip", ".parquet"].includes(ext))
    return "application/octet-stream";
  return "text/plain; charset=utf-8";
}

function contentDisposition(p) {
  const name = p.split("/").at(-1);
  const enc = encodeURIComponent(name).replace(/['()*]/g, (c) => "%" + c.charCodeAt(0).toString(16).toUpperCase());
  const ascii = name.replace(/[^\x20-\x7e]/g, "_").replace(/["\\]/g, "_");
  return `inline; filename*=UTF-8''${enc}; filename="${ascii}";`;
}

/** Single byte range per RFC 9110. Returns null (serve whole), {start,end} or "unsatisfiable". */
export function parseRange(h, size) {
  if (!h) return null;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(h);
  if (!m) return null; // multi-range or garbage: ignore, serve 200
  const [, a, b] = m;
  if (a === "" && b === "") return null;
  if (a === "") {
    const n = Number(b);
    if (n === 0 || size === 0) return "unsatisfiable";
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  let end = b === "" ? size - 1 : Number(b);
  if (b !== "" && end < start) return null;
  if (start >= size) return "unsatisfiable";
  if (end >= size) end = size - 1;
  return { start, end };
}

async function makeCerts(dir) {
  const ca = path.join(dir, "ca.pem");
  const caKey = path.join(dir, "ca.key");
  const key = path.join(dir, "server.key");
  const csr = path.join(dir, "server.csr");
  const cert = path.join(dir, "server.pem");
  const ext = path.join(dir, "server.ext");
  const run = (args) => execFileP("openssl", args, { cwd: dir, timeout: 30000 });
  await run(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", caKey, "-out", ca, "-days", "7", "-subj", "/CN=hubcache fakehub throwaway CA",
    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
  await run(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
    "-keyout", key, "-out", csr, "-subj", "/CN=localhost"]);
  await fsp.writeFile(ext, [
    "basicConstraints=CA:FALSE",
    "keyUsage=critical,digitalSignature,keyEncipherment",
    "extendedKeyUsage=serverAuth",
    "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:localhost",
    "",
  ].join("\n"));
  await run(["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", caKey, "-CAcreateserial",
    "-out", cert, "-days", "7", "-sha256", "-extfile", ext]);
  return { caFile: ca, key: await fsp.readFile(key), cert: await fsp.readFile(cert) };
}

/**
 * Starts the fake Hub (127.0.0.1) and the fake CDN (127.0.0.2), both on port 0 unless
 * hubPort/cdnPort are given.
 * opts: { tls=false, bigSize=64 MiB, cdnRate=0, latencyMs=0, hubPort=0, cdnPort=0,
 *         hubHost="127.0.0.1", cdnHost="127.0.0.2", tokens, quiet }
 */
export async function startFakeHub(opts = {}) {
  const tls = !!opts.tls;
  const bigSize = opts.bigSize ?? 64 * 1024 * 1024;
  const latencyMs = opts.latencyMs ?? 0;
  const tokens = opts.tokens ?? DEFAULT_TOKENS;
  const tmp = await fsp.mkdtemp(path.join(os.tmpdir(), "fakehub-"));
  const secret = crypto.randomBytes(32);

  const { repos, blobs } = await buildRepos({ bigFile: path.join(tmp, "big.bin"), bigSize });
  let certs = null;
  if (tls) certs = await makeCerts(tmp);

  // ------------------------------------------------------------------------- state
  let sc = defaultScenario(opts);
  let stats;
  const newStats = () => ({
    hub: { requests: 0, bodyBytes: 0, paths: {} },
    cdn: { requests: 0, bodyBytes: 0, paths: {}, authorizationSeen: 0 },
    xet: { fileinfo: 0, readToken: 0, cas: 0 },
    log: [],
  });
  stats = newStats();
  const inFlight = { hub: 0, cdn: 0 }; // survives reset(): requests still running
  let idleWaiters = [];
  const notifyIdle = () => {
    if (inFlight.hub === 0 && inFlight.cdn === 0) {
      const w = idleWaiters;
      idleWaiters = [];
      w.forEach((f) => f());
    }
  };

  function setScenario(obj = {}) {
    for (const [k, v] of Object.entries(obj)) {
      if (!(k in sc)) throw new Error(`unknown scenario key: ${k}`);
      sc[k] = k in FAULT_KEYS ? normFault(v, FAULT_KEYS[k]) : v;
    }
    return publicScenario();
  }
  const publicScenario = () => JSON.parse(JSON.stringify(sc, (k, v) => (v === Infinity ? "always" : v)));
  /** Takes one use of a fault if `pred(fault)` holds; returns the fault or null. */
  function takeFault(key, pred = () => true) {
    const f = sc[key];
    if (!f || f.count <= 0 || !pred(f)) return null;
    if (f.count !== Infinity) f.count -= 1;
    return f;
  }

  function reset() {
    sc = defaultScenario(opts);
    stats = newStats();
  }

  // ------------------------------------------------------------------------- repos
  const repoByKey = (type, id) => repos.get(`${type}:${id}`);
  const findCaseInsensitive = (type, id) => {
    for (const r of repos.values()) if (r.type === type && r.id.toLowerCase() === id.toLowerCase()) return r;
    return null;
  };
  function branchTarget(repo, name) {
    if (name === "main" && repo.id === "acme/tiny-model" && sc.mainCommit) {
      const m = sc.mainCommit;
      return repo.prs[m] ?? repo.branches[m] ?? m;
    }
    return repo.branches[name];
  }
  /** revision -> commit object, or null */
  function resolveRev(repo, rev) {
    let sha = null;
    if (rev === "HEAD" || rev === "main" || rev === "refs/heads/main") sha = branchTarget(repo, "main");
    else if (rev.startsWith("refs/heads/")) sha = branchTarget(repo, rev.slice(11));
    else if (rev.startsWith("refs/tags/")) sha = repo.tags[rev.slice(10)];
    else if (repo.branches[rev]) sha = branchTarget(repo, rev);
    else if (repo.tags[rev]) sha = repo.tags[rev];
    else if (repo.prs[rev]) sha = repo.prs[rev];
    else if (FULL_SHA.test(rev)) sha = rev;
    else if (/^[0-9a-f]{7,39}$/.test(rev)) {
      const hits = [...repo.commits.keys()].filter((s) => s.startsWith(rev));
      if (hits.length === 1) sha = hits[0];
    }
    return (sha && repo.commits.get(sha)) || null;
  }
  /** The commit in `c`'s ancestry that last changed `p` (file or directory). */
  function lastCommitFor(c, p) {
    const idOf = (commit) => commit.files.get(p)?.oid ?? commit.dirs.get(p);
    const id = idOf(c);
    let cur = c;
    while (cur.parent && idOf(cur.parent) === id) cur = cur.parent;
    return { id: cur.sha, title: cur.title, date: cur.date };
  }

  // Exported, test-friendly view of the repos.
  const reposView = {};
  for (const r of repos.values()) {
    const view = {
      type: r.type, id: r.id, private: r.private, gated: r.gated,
      mainCommit: r.branches.main,
      prCommit: r.prs["refs/pr/1"] ?? null,
      commits: [...r.commits.keys()],
      files: {},
      filesAt(rev) {
        const c = resolveRev(r, rev);
        return c ? Object.fromEntries([...c.files].map(([p, f]) => [p, fileView(f)])) : null;
      },
    };
    for (const [p, f] of r.commits.get(r.branches.main).files) view.files[p] = fileView(f);
    reposView[r.id] = view;
  }
  function fileView(f) {
    return {
      path: f.path, size: f.size, lfs: f.lfs, sha256: f.sha256, gitSha1: f.oid,
      etag: f.lfs ? f.sha256 : f.oid, xetHash: f.xetHash ?? null,
      pointer: f.pointer ? f.pointer.toString() : null,
      content: f.content ?? null, diskPath: f.diskPath ?? null,
      read: () => (f.content ? Promise.resolve(f.content) : fsp.readFile(f.diskPath)),
    };
  }

  // ------------------------------------------------------------------------- servers
  const hubHost = opts.hubHost ?? "127.0.0.1";
  const cdnHost = opts.cdnHost ?? "127.0.0.2";
  const mk = (handler) => {
    const s = tls ? https.createServer({ key: certs.key, cert: certs.cert }, handler) : http.createServer(handler);
    s.keepAliveTimeout = 65000;
    s.headersTimeout = 66000;
    return s;
  };
  const hubServer = mk((req, res) => handleHub(req, res).catch((e) => internalError(res, e)));
  const cdnServer = mk((req, res) => handleCdn(req, res).catch((e) => internalError(res, e)));
  const listen = (s, host, port) =>
    new Promise((resolve, reject) => {
      s.once("error", reject);
      s.listen(port, host, () => resolve(s.address().port));
    });
  const scheme = tls ? "https" : "http";
  let hubUrl, cdnUrl;
  try {
    hubUrl = `${scheme}://${hubHost}:${await listen(hubServer, hubHost, opts.hubPort ?? 0)}`;
    cdnUrl = `${scheme}://${cdnHost}:${await listen(cdnServer, cdnHost, opts.cdnPort ?? 0)}`;
  } catch (e) {
    hubServer.close();
    cdnServer.close();
    await fsp.rm(tmp, { recursive: true, force: true });
    throw e;
  }

  function internalError(res, e) {
    if (!opts.quiet) console.error("fakehub internal error:", e);
    if (!res.headersSent) {
      res.writeHead(500, { "Content-Type": "text/plain" });
      res.end("fakehub internal error\n");
    } else res.destroy();
  }

  // ------------------------------------------------------------------------- accounting
  function track(host, req, res) {
    const [pathname] = req.url.split("?");
    const h = req.headers;
    const bearer = /^Bearer\s+(\S+)/i.exec(h.authorization ?? "")?.[1] ?? null;
    const entry = {
      host, method: req.method, url: req.url, path: pathname, time: Date.now(),
      headers: {
        authorization: h.authorization !== undefined, accept: h.accept ?? null, range: h.range ?? null,
        "if-none-match": h["if-none-match"] ?? null, "user-agent": h["user-agent"] ?? null,
        "accept-encoding": h["accept-encoding"] ?? null, "content-type": h["content-type"] ?? null,
      },
      token: bearer, status: null, bytes: 0, done: false, aborted: false,
    };
    const st = stats; // the stats object current at arrival (reset() swaps it)
    const hs = st[host];
    hs.requests += 1;
    inFlight[host] += 1;
    const ps = (hs.paths[pathname] ??= { requests: 0, bodyBytes: 0 });
    ps.requests += 1;
    st.log.push(entry);
    res.on("close", () => {
      entry.status = res.statusCode;
      entry.endTime = Date.now();
      entry.done = true;
      entry.aborted = !res.writableFinished;
      inFlight[host] -= 1;
      notifyIdle();
    });
    return {
      entry,
      count(n) {
        entry.bytes += n;
        hs.bodyBytes += n;
        ps.bodyBytes += n;
      },
    };
  }

  /** Writes a complete response (headers + small body) and accounts for it. */
  function send(ctx, status, headers, body) {
    const { req, res } = ctx;
    const buf = body === undefined || body === null ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
    if (status === 304 || status === 204) delete headers["Content-Length"];
    else if (!("Content-Length" in headers)) headers["Content-Length"] = String(buf.length);
    res.writeHead(status, headers);
    if (req.method === "HEAD" || status === 304 || status === 204) return void res.end();
    ctx.acct.count(buf.length);
    res.end(buf);
  }

  /**
   * Streams bytes [start, end] of a source ({content} or {diskPath}) with optional faults:
   * { cut, stall, corrupt, rate } (cut/stall: body bytes; corrupt: absolute file offset).
   */
  async function streamBody(ctx, src, start, end, faults = {}) {
    const { res } = ctx;
    const CHUNK = 256 * 1024;
    const fh = src.content ? null : await fsp.open(src.diskPath, "r");
    const t0 = Date.now();
    let pos = start;
    let sent = 0;
    const limit = faults.cut ?? faults.stall ?? null;
    const closed = new Promise((r) => res.once("close", r));
    try {
      while (pos <= end) {
        if (res.destroyed) return;
        if (limit !== null && sent >= limit) break;
        let n = Math.min(CHUNK, end - pos + 1);
        if (faults.rate) n = Math.min(n, Math.max(1024, Math.floor(faults.rate / 20)));
        if (limit !== null) n = Math.min(n, limit - sent);
        let chunk;
        if (src.content) chunk = src.content.subarray(pos, pos + n);
        else {
          chunk = Buffer.allocUnsafe(n);
          const { bytesRead } = await fh.read(chunk, 0, n, pos);
          if (bytesRead !== n) throw new Error("short read");
        }
        if (faults.corrupt !== undefined && faults.corrupt >= pos && faults.corrupt < pos + n) {
          chunk = Buffer.from(chunk);
          chunk[faults.corrupt - pos] ^= 0xff;
        }
        // Counted once handed to the kernel, as a server counts bytes sent: a write still queued in this
        // process when the client closes the connection never leaves.
        const flushed = new Promise((r) =>
          res.write(chunk, (err) => {
            if (!err) ctx.acct.count(n);
            r();
          }),
        );
        sent += n;
        pos += n;
        // The client may have it all and send its next request before the pacing below ends this response.
        if (pos > end) ctx.acct.entry.lastByteAt = Date.now();
        if (res.writableNeedDrain) await Promise.race([new Promise((r) => res.once("drain", r)), closed]);
        if (faults.rate) {
          const due = t0 + (sent * 1000) / faults.rate;
          const wait = due - Date.now();
          if (wait > 0) await Promise.race([sleep(wait), closed]);
        }
        if (faults.cut !== undefined && sent >= faults.cut) await Promise.race([flushed, closed]);
      }
      if (pos > end) return void res.end();
      if (faults.cut !== undefined) {
        if (!res.headersSent) res.flushHeaders();
        res.socket?.destroy();
        res.destroy();
        return;
      }
      // stall: keep the connection open, send nothing more, until the client (or close()) gives up
      await closed;
    } finally {
      await fh?.close();
    }
  }

  // ------------------------------------------------------------------------- common headers
  let reqCounter = 0;
  function baseHeaders(req, bucket) {
    const traceId = req.headers["x-amzn-trace-id"];
    const now = Math.floor(Date.now() / 1000);
    reqCounter += 1;
    const h = {
      "Access-Control-Allow-Origin": req.headers.origin ?? "https://huggingface.co",
      "Access-Control-Expose-Headers": EXPOSE_HEADERS,
      "Access-Control-Max-Age": "86400",
      "Cross-Origin-Opener-Policy": "same-origin",
      "Referrer-Policy": "strict-origin-when-cross-origin",
      "X-Powered-By": "huggingface-moon",
      "X-Request-Id": `Root=1-${now.toString(16)}-${crypto.randomBytes(12).toString("hex")}${traceId ? ";" + traceId : ""}`,
      "X-Cache": "Miss from cloudfront",
      Vary: "Origin",
    };
    if (bucket === "resolvers") {
      h.RateLimit = `"resolvers";r=${Math.max(0, 5000 - (reqCounter % 5000))};t=300`;
      h["RateLimit-Policy"] = '"fixed window";"resolvers";q=5000;w=300';
    } else {
      h.RateLimit = `"api";r=${Math.max(0, 1000 - (reqCounter % 1000))};t=300`;
      h["RateLimit-Policy"] = '"fixed window";"api";q=1000;w=300';
    }
    return h;
  }
  const isApi = (ctx) => ctx.kind === "api";
  const bucketOf = (ctx) => (ctx.kind === "api" ? "api" : "resolvers");

  function sendError(ctx, status, { code, message, extra = {}, wwwAuth = false, json } = {}) {
    const useJson = json ?? isApi(ctx);
    const body = useJson ? JSON.stringify({ error: message }) : message;
    const h = {
      ...baseHeaders(ctx.req, bucketOf(ctx)),
      "Content-Type": useJson ? "application/json; charset=utf-8" : "text/plain; charset=utf-8",
      ETag: weakEtag(Buffer.from(body)),
      "X-Cache": "Error from cloudfront",
      ...extra,
    };
    if (code) h["X-Error-Code"] = code;
    h["X-Error-Message"] = message;
    if (wwwAuth) h["Www-Authenticate"] = 'Bearer realm="Authentication required", charset="UTF-8"';
    send(ctx, status, h, body);
  }
  const errUnauthorized = (ctx) => sendError(ctx, 401, { message: "Invalid username or password.", wwwAuth: true });
  const errRepoNotFound = (ctx) => sendError(ctx, 404, { code: "RepoNotFound", message: "Repository not found" });
  const errRevision = (ctx, rev) => sendError(ctx, 404, { code: "RevisionNotFound", message: `Invalid rev id: ${rev}` });
  const errEntry = (ctx, commit, json) =>
    sendError(ctx, 404, {
      code: "EntryNotFound", message: "Entry not found", json,
      extra: { "X-Repo-Commit": commit.sha, "Accept-Ranges": "bytes" },
    });
  function errGated(ctx, repo, status) {
    const what = `${repo.type} ${repo.id}`;
    const message =
      status === 401
        ? `Access to ${what} is restricted. You must have access to it and be authenticated to access it. Please log in.`
        : `Access to ${what} is restricted and you are not in the authorized list. Visit https://huggingface.co/${URL_PREFIX[repo.type]}${repo.id} to ask for access.`;
    sendError(ctx, status, { code: "GatedRepo", message });
  }
  function jsonOk(ctx, obj, extra = {}) {
    const body = Buffer.from(JSON.stringify(obj));
    const etag = weakEtag(body);
    const headers = { ...baseHeaders(ctx.req, "api"), "Content-Type": "application/json; charset=utf-8", ETag: etag, ...extra };
    // As the Hub's web framework does: If-None-Match compared weakly, 304 on a match.
    const inm = ctx.req.headers["if-none-match"];
    const bare = (t) => t.trim().replace(/^W\//, "");
    if (inm && inm.split(",").some((t) => bare(t) === bare(etag) || t.trim() === "*")) return send(ctx, 304, headers);
    send(ctx, 200, headers, body);
  }

  // ------------------------------------------------------------------------- auth
  function userOf(ctx) {
    return ctx.token ? tokens[ctx.token] ?? null : null;
  }
  /**
   * Checks access; on denial sends the error and returns false.
   * scope "content": file bytes (gated applies); "meta": info/tree/paths-info/refs (gated repos public);
   * "card": a repo's README.md, which the Hub gives anyone for gated repos too, so that the card can be read
   * before access is asked for.
   */
  function checkAccess(ctx, repo, scope) {
    const user = userOf(ctx);
    if (isPrivate(repo)) {
      const ns = repo.id.split("/")[0];
      if (user && (user.orgs.includes(ns) || user.name === ns)) return true;
      if (user) return errRepoNotFound(ctx), false;
      return errUnauthorized(ctx), false;
    }
    if (gatedOf(repo) && scope === "content") {
      if (user && user.gatedAccess) return true;
      errGated(ctx, repo, ctx.token ? 403 : 401);
      return false;
    }
    return true;
  }
  const isPrivate = (repo) => repo.private || (Array.isArray(sc.privateRepos) && sc.privateRepos.includes(repo.id));
  const gatedOf = (repo) => (Array.isArray(sc.gatedRepos) && sc.gatedRepos.includes(repo.id) ? "auto" : repo.gated);
  /** Unknown repo: 404 RepoNotFound for a valid token, 401 otherwise. */
  function unknownRepo(ctx) {
    if (userOf(ctx)) errRepoNotFound(ctx);
    else errUnauthorized(ctx);
  }

  /**
   * Looks up a repo; sends 307 for renames/case fixes, 401/404 for unknown repos.
   * `segs` are the raw path segments, `idx` the index of the first repo-id segment, `n` how many.
   */
  function lookupRepo(ctx, type, id, segs, idx, n) {
    const repo = repoByKey(type, id);
    if (repo) return repo;
    const ci = findCaseInsensitive(type, id);
    const target = RENAMES[`${type}:${id}`] ?? (ci && !isPrivate(ci) ? ci.id : null);
    if (target) {
      const newSegs = [...segs.slice(0, idx), ...target.split("/"), ...segs.slice(idx + n)];
      const q = ctx.req.url.includes("?") ? ctx.req.url.slice(ctx.req.url.indexOf("?")) : "";
      const loc = newSegs.join("/") + q;
      const body = `Temporary Redirect. Redirecting to ${loc}`;
      send(ctx, 307, {
        ...baseHeaders(ctx.req, bucketOf(ctx)),
        Location: loc,
        "Content-Type": "text/plain; charset=utf-8",
        Vary: "Origin, Accept",
      }, body);
      return null;
    }
    unknownRepo(ctx);
    return null;
  }

  // ------------------------------------------------------------------------- Hub
  async function handleHub(req, res) {
    const [rawPath, rawQuery = ""] = req.url.split(/\?(.*)/s);
    if (rawPath.startsWith("/_fake/")) return control(req, res, rawPath, new URLSearchParams(rawQuery));
    const acct = track("hub", req, res);
    const token = /^Bearer\s+(\S+)/i.exec(req.headers.authorization ?? "")?.[1] ?? null;
    const ctx = { req, res, acct, token, rawPath, query: new URLSearchParams(rawQuery), kind: rawPath.startsWith("/api/") ? "api" : "file" };

    if (latencyMs) await sleep(latencyMs);
    if (sc.hubDelayMs) await sleep(sc.hubDelayMs);
    const hf = takeFault("hubStatus", (f) => !f.match || req.url.includes(f.match));
    if (hf) {
      const extra = {};
      if (hf.retryAfter !== undefined || hf.status === 429 || hf.status === 503) extra["Retry-After"] = String(hf.retryAfter ?? 1);
      if (hf.status === 429) extra.RateLimit = `"api";r=0;t=${hf.retryAfter ?? 1}`;
      if (hf.rateLimitOnly) delete extra["Retry-After"]; // the wait only in `RateLimit: ...;t=N`
      return sendError(ctx, hf.status, { message: hf.status === 429 ? "Too Many Requests" : "Internal Error - We're working hard to fix this as soon as possible!", extra });
    }
    if (req.method === "OPTIONS") {
      return send(ctx, 204, {
        ...baseHeaders(req, "api"),
        "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
        "Access-Control-Allow-Headers": req.headers["access-control-request-headers"] ?? "Authorization, Range, Content-Type",
      });
    }
    const segs = rawPath.split("/"); // ["", ...]
    if (segs.some((s) => safeDecode(s) === null)) return sendError(ctx, 400, { message: "Bad request: malformed percent-encoding" });
    if (rawPath.startsWith("/cas/")) {
      stats.xet.cas += 1;
      return sendError(ctx, 501, { message: "fakehub: no xet CAS here (a client went the xet way)", json: true });
    }
    if (rawPath === "/api/whoami-v2") return whoami(ctx);
    if (rawPath.startsWith("/api/resolve-cache/")) return resolveCache(ctx, segs);
    if (rawPath.startsWith("/api/")) return api(ctx, segs);
    return fileRoute(ctx, segs);
  }

  function whoami(ctx) {
    const user = userOf(ctx);
    if (!user) return errUnauthorized(ctx);
    jsonOk(ctx, {
      type: "user", id: crypto.createHash("sha1").update(user.name).digest("hex").slice(0, 24),
      name: user.name, fullname: user.name, email: `${user.name}@example.invalid`, emailVerified: true,
      canPay: false, isPro: false, periodEnd: null, avatarUrl: "",
      orgs: user.orgs.map((o) => ({ type: "org", name: o, fullname: o, roleInOrg: "admin" })),
      auth: { type: "access_token", accessToken: { displayName: "fakehub", role: "read" } },
    });
  }

  /** /{prefix}{repo}/(resolve|raw)/{rev}/{path} */
  function fileRoute(ctx, segs) {
    if (ctx.req.method !== "GET" && ctx.req.method !== "HEAD") return sendError(ctx, 405, { message: "Method not allowed" });
    let i = 1;
    let type = "model";
    const pfx = { datasets: "dataset", spaces: "space", kernels: "kernel" }[segs[1]];
    if (pfx) {
      type = pfx;
      i = 2;
    }
    let n;
    if (segs[i + 1] === "resolve" || segs[i + 1] === "raw") n = 1;
    else if (segs[i + 2] === "resolve" || segs[i + 2] === "raw") n = 2;
    else return sendError(ctx, 404, { message: "Sorry, we can't find the page you are looking for." });
    const kind = segs[i + n];
    const id = segs.slice(i, i + n).map(safeDecode).join("/");
    let k = i + n + 1;
    if (k >= segs.length) return sendError(ctx, 404, { message: "Sorry, we can't find the page you are looking for." });
    let rev = safeDecode(segs[k]);
    k += 1;
    if (rev === "refs" && (segs[k] === "pr" || segs[k] === "convert" || segs[k] === "heads" || segs[k] === "tags")) {
      rev = `refs/${segs[k]}/${safeDecode(segs[k + 1] ?? "")}`;
      k += 2;
    }
    const filePath = segs.slice(k).map(safeDecode).join("/");
    const repo = lookupRepo(ctx, type, id, segs, i, n);
    if (!repo) return;
    return serveFile(ctx, repo, rev, filePath, kind);
  }

  /** /api/resolve-cache/{type}s/{repo}/{commit}/{path}?... */
  function resolveCache(ctx, segs) {
    const type = REPO_TYPES[segs[3]];
    if (!type) return sendError(ctx, 404, { message: "Sorry, we can't find the page you are looking for." });
    const n = FULL_SHA.test(segs[5] ?? "") ? 1 : 2;
    const id = segs.slice(4, 4 + n).map(safeDecode).join("/");
    const rev = safeDecode(segs[4 + n] ?? "");
    const filePath = segs.slice(5 + n).map(safeDecode).join("/");
    const repo = lookupRepo(ctx, type, id, segs, 4, n);
    if (!repo) return;
    if (!FULL_SHA.test(rev)) {
      if (!checkAccess(ctx, repo, "content")) return;
      return errRevision(ctx, rev);
    }
    return serveFile(ctx, repo, rev, filePath, "resolve-cache");
  }

  function serveFile(ctx, repo, rev, filePath, kind) {
    ctx.kind = "file";
    const { req } = ctx;
    if (!checkAccess(ctx, repo, filePath === "README.md" ? "card" : "content")) return;
    const commit = resolveRev(repo, rev);
    if (!commit) return errRevision(ctx, rev);
    const f = commit.files.get(filePath);
    if (!f) return errEntry(ctx, commit);

    if (kind === "raw") return serveGitBlob(ctx, commit, f.path, f.lfs ? f.pointer : f.content, f.oid, f.lfs ? "text/plain; charset=utf-8" : null);
    if (f.lfs) {
      const accept = req.headers.accept ?? "";
      const cdnLoc = signedCdnUrl(f.sha256);
      const xetLink =
        `<${hubUrl}/api/${repo.type}s/${repo.id}/xet-read-token/${commit.sha}>; rel="xet-auth", ` +
        `<${CAS_URL}/v1/reconstructions/${f.xetHash}>; rel="xet-reconstruction-info"`;
      const h = {
        ...baseHeaders(req, "resolvers"),
        "Accept-Ranges": "bytes",
        "Cache-Control": "no-store",
        Vary: "Origin, Accept",
        "X-Linked-Etag": `"${f.sha256}"`,
        "X-Linked-Size": String(f.size),
        "X-Repo-Commit": commit.sha,
      };
      if (sc.xet && accept.includes(XET_FILEINFO)) {
        stats.xet.fileinfo += 1;
        const body = JSON.stringify({
          hash: f.xetHash, etag: f.sha256, size: f.size,
          refreshUrl: `${hubUrl}/api/${repo.type}s/${repo.id}/xet-read-token/${commit.sha}`,
          reconstructionUrl: `${CAS_URL}/v1/reconstructions/${f.xetHash}`,
        });
        return send(ctx, 200, { ...h, "Content-Type": XET_FILEINFO, "X-Xet-Hash": f.xetHash, Link: xetLink }, body);
      }
      if (sc.xet) {
        h["X-Xet-Hash"] = f.xetHash;
        h.Link = xetLink;
      }
      return send(ctx, 302, { ...h, Location: cdnLoc, "Content-Type": "text/plain; charset=utf-8" }, `Found. Redirecting to ${cdnLoc}`);
    }
    if (kind === "resolve" && !FULL_SHA.test(rev) && sc.resolveCache) {
      const prefix = URL_PREFIX[repo.type];
      const encPath = f.path.split("/").map(encodeURIComponent).join("/");
      const orig = `/${prefix}${repo.id}/resolve/${rev}/${f.path}`;
      const loc =
        `/api/resolve-cache/${repo.type}s/${repo.id}/${commit.sha}/${encPath}` +
        `?${encodeURIComponent(orig)}=&etag=%22${f.oid}%22`;
      return send(ctx, 307, {
        ...baseHeaders(req, "resolvers"),
        Location: loc,
        "Content-Type": "text/plain; charset=utf-8",
        Vary: "Origin, Accept",
      }, `Temporary Redirect. Redirecting to ${loc}`);
    }
    return serveGitBlob(ctx, commit, f.path, f.content, f.oid, null);
  }

  function serveGitBlob(ctx, commit, filePath, content, sha1, ctype) {
    const { req } = ctx;
    const etag = `"${sha1}"`;
    const h = {
      ...baseHeaders(req, "resolvers"),
      "Accept-Ranges": "bytes",
      "Content-Type": ctype ?? contentTypeFor(filePath),
      "Content-Security-Policy": CSP,
      ETag: etag,
      "X-Repo-Commit": commit.sha,
    };
    if (!parseBool(ctx.query.get("noContentDisposition"))) h["Content-Disposition"] = contentDisposition(filePath);
    const inm = req.headers["if-none-match"];
    if (inm && inm.split(",").map((s) => s.trim().replace(/^W\//, "")).some((t) => t === etag || t === "*")) {
      return send(ctx, 304, h);
    }
    const r = parseRange(req.headers.range, content.length);
    if (r === "unsatisfiable") {
      return send(ctx, 416, { ...h, "Content-Range": `bytes */${content.length}`, "Content-Type": "text/plain; charset=utf-8" }, "");
    }
    if (r) {
      return send(ctx, 206, { ...h, "Content-Range": `bytes ${r.start}-${r.end}/${content.length}` }, content.subarray(r.start, r.end + 1));
    }
    return send(ctx, 200, h, content);
  }

  function signedCdnUrl(sha256) {
    const expires = Math.floor(Date.now() / 1000) + Number(sc.urlTtl);
    const sig = crypto.createHmac("sha256", secret).update(`${sha256}:${expires}`).digest("hex");
    return `${cdnUrl}/cdn/lfs/${sha256}?expires=${expires}&sig=${sig}`;
  }

  // ------------------------------------------------------------------------- /api
  function api(ctx, segs) {
    const { req } = ctx;
    const type = REPO_TYPES[segs[2]];
    if (!type || segs.length < 4 || segs[3] === "") return sendError(ctx, 404, { message: "Sorry, we can't find the page you are looking for." });
    const n = segs.length === 4 || API_KEYWORDS.has(segs[4]) ? 1 : 2;
    const id = segs.slice(3, 3 + n).map(safeDecode).join("/");
    const rest = segs.slice(3 + n);
    const repo = lookupRepo(ctx, type, id, segs, 3, n);
    if (!repo) return;
    const op = rest[0] ?? "";
    const revFrom = (parts) => parts.map(safeDecode).join("/");
    const method = req.method;
    const get = method === "GET" || method === "HEAD";

    if (op === "" && get) return repoInfo(ctx, repo, "main");
    if (op === "revision" && get) return repoInfo(ctx, repo, revFrom(rest.slice(1)));
    if (op === "tree" && get) {
      let rev = safeDecode(rest[1] ?? "");
      let k = 2;
      if (rev === "refs" && ["pr", "convert", "heads", "tags"].includes(rest[2])) {
        rev = `refs/${rest[2]}/${safeDecode(rest[3] ?? "")}`;
        k = 4;
      }
      return tree(ctx, repo, rev, rest.slice(k).map(safeDecode).join("/").replace(/\/+$/, ""));
    }
    if (op === "paths-info" && method === "POST") return pathsInfo(ctx, repo, revFrom(rest.slice(1)));
    if (op === "refs" && get) return refs(ctx, repo);
    if (op === "commits" && get) return commits(ctx, repo, revFrom(rest.slice(1)));
    if (op === "xet-read-token" && get) {
      if (!checkAccess(ctx, repo, "content")) return;
      const commit = resolveRev(repo, revFrom(rest.slice(1)));
      if (!commit) return errRevision(ctx, revFrom(rest.slice(1)));
      stats.xet.readToken += 1;
      const exp = Math.floor(Date.now() / 1000) + 3600;
      const tok = `xet_fake_${crypto.randomBytes(8).toString("hex")}`;
      const casUrl = `${hubUrl}/cas`;
      return jsonOk(ctx, { accessToken: tok, casUrl, exp }, {
        "X-Xet-Access-Token": tok, "X-Xet-Cas-Url": casUrl, "X-Xet-Token-Expiration": String(exp),
      });
    }
    if (!checkAccess(ctx, repo, "meta")) return;
    return sendError(ctx, 403, { message: "fakehub is read-only: this endpoint is not implemented" });
  }

  function siblingsOf(commit, blobs) {
    return [...commit.files.values()]
      .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
      .map((f) => {
        const s = { rfilename: f.path };
        if (blobs) {
          s.blobId = f.oid;
          s.size = f.size;
          if (f.lfs) s.lfs = { sha256: f.sha256, size: f.size, pointerSize: f.pointer.length };
        }
        return s;
      });
  }

  function fullInfo(repo, commit, blobs) {
    const x = repo.info;
    const usedStorage = [...commit.files.values()].reduce((a, f) => a + f.size, 0);
    const common = { _id: repo._id, id: repo.id };
    if (repo.type === "model") {
      return {
        ...common, private: isPrivate(repo), pipeline_tag: x.pipeline_tag, library_name: x.library_name,
        tags: x.tags, downloads: x.downloads, likes: x.likes, modelId: repo.id, author: repo.author,
        sha: commit.sha, lastModified: commit.date, gated: gatedOf(repo), disabled: false,
        "model-index": null, config: x.modelConfig ?? {}, cardData: x.cardData, transformersInfo: x.transformersInfo ?? {},
        siblings: siblingsOf(commit, blobs), spaces: [], createdAt: repo.createdAt, usedStorage,
      };
    }
    if (repo.type === "dataset") {
      return {
        ...common, author: repo.author, sha: commit.sha, lastModified: commit.date, private: isPrivate(repo),
        gated: gatedOf(repo), disabled: false, tags: x.tags, description: x.description, downloads: x.downloads,
        likes: x.likes, cardData: x.cardData, siblings: siblingsOf(commit, blobs), createdAt: repo.createdAt, usedStorage,
      };
    }
    return {
      ...common, author: repo.author, sha: commit.sha, lastModified: commit.date, private: isPrivate(repo),
      gated: gatedOf(repo), disabled: false, host: `https://acme-tiny-space.hf.space`, subdomain: "acme-tiny-space",
      likes: x.likes, sdk: x.sdk, tags: x.tags, cardData: x.cardData, siblings: siblingsOf(commit, blobs),
      createdAt: repo.createdAt, usedStorage, runtime: { stage: "RUNNING", hardware: { current: "cpu-basic", requested: "cpu-basic" } },
    };
  }

  function repoInfo(ctx, repo, rev) {
    if (!checkAccess(ctx, repo, "meta")) return;
    const commit = resolveRev(repo, rev);
    if (!commit) return errRevision(ctx, rev);
    const q = ctx.query;
    const blobs = parseBool(q.get("blobs"));
    const full = fullInfo(repo, commit, blobs);
    const expand = [...q.getAll("expand"), ...q.getAll("expand[]")].flatMap((v) => v.split(",")).filter(Boolean);
    if (expand.length === 0) return jsonOk(ctx, full);
    const extras = {
      xetEnabled: true, downloadsAllTime: (repo.info.downloads ?? 0) * 10, trendingScore: 0,
      inference: repo.type === "model" ? "cold" : undefined, resourceGroup: null, usedStorage: full.usedStorage,
      safetensors: repo.type === "model" ? { parameters: { F32: 37400 }, total: 37400 } : undefined,
      childrenModelCount: 0, baseModels: null, widgetData: [], mask_token: "[MASK]",
    };
    const out = { _id: repo._id, id: repo.id };
    for (const k of expand) {
      if (k in full) out[k] = full[k];
      else if (k in extras && extras[k] !== undefined) out[k] = extras[k];
    }
    return jsonOk(ctx, out);
  }

  /** All entries (files and directories) of a commit, sorted by path. */
  function entriesOf(commit) {
    const out = [];
    for (const [p, oid] of commit.dirs) out.push({ dir: true, path: p, oid });
    for (const f of commit.files.values()) out.push({ dir: false, path: f.path, f });
    out.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    return out;
  }
  function entryJson(commit, e, expand) {
    let j;
    if (e.dir) j = { type: "directory", oid: e.oid, size: 0, path: e.path };
    else {
      const f = e.f;
      j = { type: "file", oid: f.oid, size: f.size };
      if (f.lfs) {
        j.lfs = { oid: f.sha256, size: f.size, pointerSize: f.pointer.length };
        if (sc.xet) j.xetHash = f.xetHash;
      }
      j.path = f.path;
    }
    if (expand) {
      j.lastCommit = lastCommitFor(commit, e.path);
      if (!e.dir) j.securityFileStatus = { status: "safe", avScan: { status: "safe" }, pickleImportScan: { status: "unscanned" } };
    }
    return j;
  }

  function tree(ctx, repo, rev, dir) {
    if (!checkAccess(ctx, repo, "meta")) return;
    const commit = resolveRev(repo, rev);
    if (!commit) return errRevision(ctx, rev);
    const q = ctx.query;
    const recursive = parseBool(q.get("recursive"));
    const expand = parseBool(q.get("expand"));
    if (dir && !commit.dirs.has(dir)) {
      return sendError(ctx, 404, { code: "EntryNotFound", message: `${dir} does not exist on "${rev}"`, extra: { "X-Repo-Commit": commit.sha } });
    }
    const pre = dir ? dir + "/" : "";
    const all = entriesOf(commit).filter(
      (e) => e.path.startsWith(pre) && (recursive || !e.path.slice(pre.length).includes("/")),
    );
    const pageSize = Number(sc.treePageSize) || (expand ? 50 : 1000);
    let offset = 0;
    const cursor = q.get("cursor");
    if (cursor) {
      try {
        offset = JSON.parse(Buffer.from(cursor, "base64url").toString()).o;
        if (!Number.isInteger(offset) || offset < 0) throw new Error();
      } catch {
        return sendError(ctx, 400, { message: "Invalid cursor" });
      }
    }
    const page = all.slice(offset, offset + pageSize).map((e) => entryJson(commit, e, expand));
    const extra = {};
    if (offset + pageSize < all.length) {
      const nq = new URLSearchParams(q);
      nq.set("cursor", Buffer.from(JSON.stringify({ o: offset + pageSize, c: commit.sha.slice(0, 8) })).toString("base64url"));
      extra.Link = `<${hubUrl}${ctx.rawPath}?${nq.toString()}>; rel="next"`;
    }
    return jsonOk(ctx, page, extra);
  }

  async function readBody(req, limit = 1 << 20) {
    const chunks = [];
    let n = 0;
    for await (const c of req) {
      n += c.length;
      if (n > limit) throw new Error("body too large");
      chunks.push(c);
    }
    return Buffer.concat(chunks).toString("utf8");
  }

  async function pathsInfo(ctx, repo, rev) {
    const body = await readBody(ctx.req);
    if (!checkAccess(ctx, repo, "meta")) return;
    const commit = resolveRev(repo, rev);
    if (!commit) return errRevision(ctx, rev);
    let paths;
    let expand;
    const ct = ctx.req.headers["content-type"] ?? "";
    try {
      if (ct.includes("application/json")) {
        const j = JSON.parse(body || "{}");
        paths = Array.isArray(j.paths) ? j.paths : [j.paths];
        expand = j.expand === true || parseBool(j.expand);
      } else {
        const f = new URLSearchParams(body);
        paths = [...f.getAll("paths"), ...f.getAll("paths[]")];
        expand = parseBool(f.get("expand"));
      }
    } catch {
      return sendError(ctx, 400, { message: "Invalid body" });
    }
    const byPath = new Map(entriesOf(commit).map((e) => [e.path, e]));
    const out = [];
    for (const p of paths) {
      const e = byPath.get(String(p).replace(/^\/+|\/+$/g, ""));
      if (e) out.push(entryJson(commit, e, expand));
    }
    return jsonOk(ctx, out);
  }

  function refs(ctx, repo) {
    if (!checkAccess(ctx, repo, "meta")) return;
    const out = {
      branches: Object.keys(repo.branches).map((name) => ({ name, ref: `refs/heads/${name}`, targetCommit: branchTarget(repo, name) })),
      converts: [],
      tags: Object.entries(repo.tags).map(([name, sha]) => ({ name, ref: `refs/tags/${name}`, targetCommit: sha })),
    };
    if (parseBool(ctx.query.get("include_prs"))) {
      out.pullRequests = Object.entries(repo.prs).map(([ref, sha]) => ({ name: ref.split("/").at(-1), ref, targetCommit: sha }));
    }
    return jsonOk(ctx, out);
  }

  function commits(ctx, repo, rev) {
    if (!checkAccess(ctx, repo, "content")) return;
    const commit = resolveRev(repo, rev);
    if (!commit) return errRevision(ctx, rev);
    const out = [];
    for (let c = commit; c; c = c.parent) {
      out.push({ id: c.sha, title: c.title, message: "", authors: [{ user: "acme", avatar: "" }], date: c.date });
    }
    return jsonOk(ctx, out, { "X-Total-Count": String(out.length) });
  }

  // ------------------------------------------------------------------------- CDN
  async function handleCdn(req, res) {
    const acct = track("cdn", req, res);
    const ctx = { req, res, acct, kind: "cdn", query: null };
    if (req.headers.authorization !== undefined) stats.cdn.authorizationSeen += 1;
    if (latencyMs) await sleep(latencyMs);
    if (sc.cdnDelayMs) await sleep(sc.cdnDelayMs);
    const baseCdn = {
      "Access-Control-Allow-Origin": "*",
      "Access-Control-Expose-Headers": "Content-Length, Content-Range, ETag, Accept-Ranges",
      Via: "1.1 fakecdn.cloudfront.net (CloudFront)",
      "X-Amz-Cf-Pop": "FAKE50-C1",
    };
    if (sc.cdnXCache) baseCdn["X-Cache"] = sc.cdnXCache;
    const xmlError = (status, code, message, extra = {}) =>
      send(ctx, status, { ...baseCdn, "Content-Type": "application/xml", ...extra },
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`);

    const cf = takeFault("cdnStatus");
    if (cf) {
      const extra = cf.retryAfter !== undefined ? { "Retry-After": String(cf.retryAfter) } : {};
      return xmlError(cf.status, "ServiceUnavailable", `fakehub injected ${cf.status}`, extra);
    }
    if (req.method !== "GET" && req.method !== "HEAD") return xmlError(405, "MethodNotAllowed", "Method not allowed");
    if (sc.cdnRejectAuthorization && req.headers.authorization !== undefined) {
      return xmlError(400, "InvalidArgument", "Only one auth mechanism allowed");
    }
    const u = new URL(req.url, "http://cdn.invalid");
    const m = /^\/cdn\/lfs\/([0-9a-f]{64})$/.exec(u.pathname);
    if (!m) return xmlError(404, "NoSuchKey", "The specified key does not exist.");
    const sha = m[1];
    const expires = Number(u.searchParams.get("expires"));
    const sig = u.searchParams.get("sig") ?? "";
    const want = crypto.createHmac("sha256", secret).update(`${sha}:${u.searchParams.get("expires")}`).digest();
    const got = Buffer.from(sig, "hex");
    if (got.length !== want.length || !crypto.timingSafeEqual(got, want)) {
      return xmlError(403, "AccessDenied", "Invalid signature");
    }
    if (!Number.isFinite(expires) || expires < Date.now() / 1000) {
      return xmlError(403, "AccessDenied", "Request has expired");
    }
    const blob = blobs.get(sha);
    if (!blob) return xmlError(404, "NoSuchKey", "The specified key does not exist.");
    const h = {
      ...baseCdn,
      "Accept-Ranges": "bytes",
      "Content-Type": "application/octet-stream",
      ETag: `"${blob.xetHash}"`,
      "Last-Modified": "Thu, 15 Jan 2026 10:00:00 GMT",
      "Cache-Control": "public, max-age=604800, immutable, s-maxage=604800",
    };
    const r = sc.cdnIgnoreRange ? null : parseRange(req.headers.range, blob.size);
    if (r === "unsatisfiable") return send(ctx, 416, { ...h, "Content-Range": `bytes */${blob.size}` }, "");
    const start = r ? r.start : 0;
    const end = r ? r.end : blob.size - 1;
    const status = r ? 206 : 200;
    h["Content-Length"] = String(end - start + 1);
    if (r) h["Content-Range"] = `bytes ${start}-${end}/${blob.size}`;
    res.writeHead(status, h);
    if (req.method === "HEAD") return void res.end();
    const faults = { rate: Number(sc.cdnRate) || 0 };
    const cut = takeFault("cdnCutAfter");
    if (cut) faults.cut = cut.bytes;
    else {
      const stall = takeFault("cdnStallAfter");
      if (stall) faults.stall = stall.bytes;
    }
    const corrupt = takeFault("cdnCorruptByte", (f) => f.offset >= start && f.offset <= end);
    if (corrupt) faults.corrupt = corrupt.offset;
    return streamBody(ctx, blob, start, end, faults);
  }

  // ------------------------------------------------------------------------- control API
  function snapshot({ log = true } = {}) {
    const s = JSON.parse(JSON.stringify({ ...stats, log: log ? stats.log : undefined }));
    s.hub.inFlight = inFlight.hub;
    s.cdn.inFlight = inFlight.cdn;
    return s;
  }
  function idle(timeoutMs = 10000) {
    if (inFlight.hub === 0 && inFlight.cdn === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  async function control(req, res, p, q) {
    const reply = (status, obj) => {
      const b = JSON.stringify(obj, null, 1);
      res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(b) });
      res.end(b);
    };
    try {
      if (p === "/_fake/stats" && req.method === "GET") {
        if (parseBool(q.get("wait"))) await idle(Number(q.get("timeoutMs") ?? 10000));
        return reply(200, snapshot({ log: q.get("log") !== "0" }));
      }
      if (p === "/_fake/log" && req.method === "GET") return reply(200, snapshot().log);
      if (p === "/_fake/reset" && req.method === "POST") {
        reset();
        return reply(200, { ok: true, scenario: publicScenario() });
      }
      if (p === "/_fake/scenario") {
        if (req.method === "GET") return reply(200, publicScenario());
        if (req.method === "POST") {
          const body = await readBody(req);
          return reply(200, setScenario(body ? JSON.parse(body) : {}));
        }
      }
      if (p === "/_fake/repos" && req.method === "GET") {
        return reply(200, JSON.parse(JSON.stringify(reposView, (k, v) => (k === "content" && v ? undefined : v))));
      }
      if (p === "/_fake/info" && req.method === "GET") return reply(200, { hub: hubUrl, cdn: cdnUrl, ca: certs?.caFile ?? null });
      if (p === "/_fake/sink" && (req.method === "POST" || req.method === "PUT")) {
        // An upload target of any size: hashes the body as it streams in, keeps none of it.
        const hash = crypto.createHash("sha256");
        let bytes = 0;
        for await (const c of req) {
          bytes += c.length;
          hash.update(c);
        }
        return reply(200, { bytes, sha256: hash.digest("hex"), chunked: req.headers["transfer-encoding"] === "chunked",
          contentLength: req.headers["content-length"] ?? null, authorization: req.headers.authorization ?? null });
      }
      return reply(404, { error: "unknown control endpoint" });
    } catch (e) {
      return reply(400, { error: String(e.message ?? e) });
    }
  }

  let closed = false;
  async function close() {
    if (closed) return;
    closed = true;
    const done = (s) => new Promise((r) => s.close(() => r()));
    const p = Promise.all([done(hubServer), done(cdnServer)]);
    hubServer.closeAllConnections();
    cdnServer.closeAllConnections();
    await p;
    await fsp.rm(tmp, { recursive: true, force: true });
  }

  return {
    hubUrl,
    cdnUrl,
    caFile: certs?.caFile ?? null,
    bigSize,
    repos: reposView,
    stats: (o) => snapshot(o),
    reset,
    scenario: setScenario,
    getScenario: publicScenario,
    idle,
    /** Log entries matching a filter {host, method, path (prefix or RegExp)}. */
    requests(filter = {}) {
      return stats.log.filter((e) =>
        (!filter.host || e.host === filter.host) &&
        (!filter.method || e.method === filter.method) &&
        (!filter.path || (filter.path instanceof RegExp ? filter.path.test(e.url) : e.path.startsWith(filter.path))));
    },
    signedCdnUrl,
    close,
  };
}
