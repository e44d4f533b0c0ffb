// Helpers shared by proxy.test.mjs and proxy_faults.test.mjs (hubcache in front of the fake Hub).
//
//   http1(base, method, path, opts)  -> raw node:http request: exact bytes, no redirect following,
//                                       no decompression, partial bodies and a hard timeout
//   Fleet                            -> every hubcache started by a test file: crash detection,
//                                       replacement after a crash, clean-exit + sanitizer checks
//   SANITIZER_RE, logTail(), pyHead() (HEAD the way huggingface_hub does)

import assert from "node:assert/strict";
import crypto from "node:crypto";
import http from "node:http";
import net from "node:net";
import { startHubcache, tmpDir } from "./harness.mjs";

/** Markers of memory errors and crashes in hubcache's stderr (ASan/UBSan/LSan, glibc aborts). */
export const SANITIZER_RE =
  /ERROR: AddressSanitizer|ERROR: LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|munmap_chunk|double free|free\(\): invalid|corrupted size|malloc\(\): |Segmentation fault|terminate called/;

export const logTail = (s, n = 4000) => (s.length > n ? "…" + s.slice(-n) : s);

/**
 * One HTTP/1.1 request with node:http (agent: false = its own connection).
 * Returns {status, headers, body, bytes, sha256, complete, error, timedOut, ms, headMs}; never rejects
 * (headMs: when the response head arrived, null without one).
 * `complete` is false when the connection ended before the announced body was received.
 * opts: headers, body, timeoutMs (default 20 s), abortAfterBytes (destroy the request after
 * that many body bytes), keepBody (default true; false: only count + hash), onBytes(n).
 */
export function http1(base, method, path, opts = {}) {
  const { headers = {}, body = null, timeoutMs = 20000, abortAfterBytes = null, keepBody = true, onBytes } = opts;
  const u = new URL(base);
  const t0 = Date.now();
  return new Promise((resolve) => {
    let done = false;
    let res = null;
    let headMs = null;
    let timedOut = false;
    const chunks = [];
    let n = 0;
    const h = crypto.createHash("sha256");
    const finish = (error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const buf = keepBody ? Buffer.concat(chunks) : null;
      resolve({
        status: res?.statusCode ?? null,
        headers: res?.headers ?? {},
        rawHeaders: res?.rawHeaders ?? [],
        body: buf,
        bytes: n,
        sha256: h.digest("hex"),
        complete: !!res?.complete && !error,
        error: error ? String(error.message ?? error) : null,
        timedOut,
        ms: Date.now() - t0,
        headMs,
      });
    };
    const req = http.request({ host: u.hostname, port: u.port, method, path, headers, agent: false });
    const timer = setTimeout(() => {
      timedOut = true;
      req.destroy(new Error(`timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    req.on("error", (e) => {
      if (!res) finish(e);
    });
    req.on("response", (r) => {
      res = r;
      headMs = Date.now() - t0;
      let err = null;
      r.on("data", (c) => {
        n += c.length;
        h.update(c);
        if (keepBody) chunks.push(c);
        onBytes?.(n);
        if (abortAfterBytes !== null && n >= abortAfterBytes) {
          err = new Error(`aborted by the test after ${n} bytes`);
          req.destroy();
        }
      });
      r.on("error", (e) => {
        err ??= e;
      });
      r.on("close", () => finish(err ?? (r.complete ? null : new Error("connection closed before the body was complete"))));
    });
    if (body) req.write(body);
    req.end();
  });
}

/** True when a TCP connection to `base` can be opened. */
export function canConnect(base, timeoutMs = 2000) {
  const u = new URL(base);
  return new Promise((resolve) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port) });
    const t = setTimeout(() => {
      sock.destroy();
      resolve(false);
    }, timeoutMs);
    sock.once("connect", () => {
      clearTimeout(t);
      sock.destroy();
      resolve(true);
    });
    sock.once("error", () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

/** A short description of a response for assertion messages. */
export function describe(r) {
  if (!r) return "no response";
  const hs = Object.entries(r.headers ?? {})
    .filter(([k]) => /^(content-|x-|etag|location|link|accept-ranges|www-)/i.test(k))
    .map(([k, v]) => `${k}: ${v}`)
    .join(" | ");
  const b = r.body ? r.body.subarray(0, 200).toString("latin1").replace(/[^\x20-\x7e]/g, ".") : "";
  return `status=${r.status} bytes=${r.bytes} complete=${r.complete} error=${r.error} ms=${r.ms} headers[${hs}] body[${b}]`;
}

/**
 * HEAD the way huggingface_hub does: `Accept-Encoding: identity`, follow only *relative* redirects
 * (renames, /api/resolve-cache), stop at an absolute Location. Returns {final, hops}.
 */
export async function pyHead(base, path, headers = {}) {
  const hops = [];
  let p = path;
  for (let i = 0; i < 6; i++) {
    const r = await http1(base, "HEAD", p, { headers: { "Accept-Encoding": "identity", ...headers } });
    hops.push(`${p} -> ${r.status}${r.headers.location ? " " + r.headers.location : ""}`);
    const loc = r.headers.location;
    if (r.status >= 300 && r.status < 400 && loc && !/^[a-z][a-z0-9+.-]*:/i.test(loc)) {
      p = new URL(loc, base + p).pathname + new URL(loc, base + p).search;
      continue;
    }
    return { final: r, hops };
  }
  throw new Error(`too many redirects: ${hops.join(", ")}`);
}

/**
 * All hubcache processes of one test file. `fleet.url()` returns the current instance's URL and,
 * if that instance died on its own (a crash), records it and starts a replacement on the same
 * cache dir so that later tests do not fail for an unrelated reason.
 */
export class Fleet {
  constructor({ upstream, args = [], env = {} }) {
    this.upstream = upstream;
    this.args = args;
    this.env = env;
    this.all = []; // {hc, name, cacheDir, stoppedByUs, exit}
    this.current = null;
    this.crashes = []; // {name, exit, logs}
  }

  async start({ cacheDir, name = `hubcache#${this.all.length + 1}`, args = [], env = {}, noCacheDir = false, makeCurrent = true } = {}) {
    cacheDir ??= await tmpDir("hubcache-cache-");
    const hc = await startHubcache({ upstream: this.upstream, cacheDir, args: [...this.args, ...args], env: { ...this.env, ...env }, noCacheDir });
    const rec = { hc, name, cacheDir, args, stoppedByUs: false, exit: null };
    hc.exited.then((e) => {
      rec.exit = e;
      if (!rec.stoppedByUs) this.crashes.push({ name, exit: e, logs: hc.logs() });
    });
    this.all.push(rec);
    if (makeCurrent) this.current = rec;
    return rec;
  }

  /** URL of the current instance, replacing it first if it died by itself. */
  async url() {
    const c = this.current;
    // a crash at the end of the previous test may not have been reported yet: probe the port
    if (c && !c.exit && !(await canConnect(c.hc.url))) await Promise.race([c.hc.exited, new Promise((r) => setTimeout(r, 3000))]);
    if (c && c.exit && !c.stoppedByUs) {
      await this.start({ cacheDir: c.cacheDir, name: `${c.name}+restart-after-crash`, args: c.args });
    }
    return this.current.hc.url;
  }

  /** SIGTERM, then wait; returns {code, signal, ms}. */
  async stop(rec, graceMs = 15000) {
    rec.stoppedByUs = true;
    const t0 = Date.now();
    const e = await rec.hc.stop(graceMs);
    rec.stopResult ??= { ...e, ms: Date.now() - t0 };
    return rec.stopResult;
  }

  logs() {
    return this.all.map((r) => `----- ${r.name} (${r.cacheDir}) -----\n${r.hc.logs()}`).join("\n");
  }

  /**
   * Stops every running instance (SIGTERM) and returns problems: crashes, exits that were not 0 or
   * took longer than `maxStopMs`, sanitizer / glibc reports in any stderr.
   */
  async shutdownAndCheck(maxStopMs = 5000) {
    const problems = [];
    for (const rec of this.all) {
      // Killed only well after the bound, so a slow exit is reported as one (with its code).
      if (rec.exit === null) await this.stop(rec, maxStopMs + 5000);
      const e = rec.stopResult;
      if (e && (e.code !== 0 || e.ms > maxStopMs)) {
        problems.push(`${rec.name}: SIGTERM -> exit code ${e.code} signal ${e.signal} after ${e.ms} ms (want 0 within ${maxStopMs} ms)`);
      }
    }
    for (const c of this.crashes) {
      problems.push(`${c.name} died by itself (code ${c.exit.code}, signal ${c.exit.signal}); stderr tail:\n${logTail(c.logs, 3000)}`);
    }
    for (const rec of this.all) {
      const logs = rec.hc.logs();
      const m = SANITIZER_RE.exec(logs);
      if (m) {
        const start = Math.max(0, logs.lastIndexOf("\n", Math.max(0, m.index - 2000)));
        problems.push(`${rec.name}: sanitizer/crash report in stderr:\n${logs.slice(start, m.index + 6000)}`);
      }
    }
    return problems;
  }
}

/**
 * Runs fn(url, rec) against a hubcache of its own (fresh cache dir, `args` added to the fleet's),
 * prints its stderr tail if fn throws, and stops it afterwards.
 */
export async function withOwnHubcache(fleet, fn, { args = [], name, makeCurrent = false } = {}) {
  const rec = await fleet.start({ args, name, makeCurrent });
  try {
    return await fn(rec.hc.url, rec);
  } catch (e) {
    process.stderr.write(`\n===== ${rec.name} stderr (tail) =====\n${logTail(rec.hc.logs(), 12000)}\n===== end =====\n`);
    throw e;
  } finally {
    if (rec.exit === null) await fleet.stop(rec);
  }
}

/**
 * Asserts that the CDN GETs for blob `sha` in a fake-Hub log asked for every byte of the `size`-byte file
 * once: one 200 for the whole file, or 206 answers for single ranges that, ordered by their first byte,
 * cover 0..size-1 without gaps, where a range may overlap only the ones that start inside it and end no
 * later: chunks split off it (hubcache took the back of a running request over with another one and
 * stopped reading the first there). For fills without faults: a repeated range fails it.
 */
export function assertFetchedOnce(log, sha, size, what) {
  const gets = log.filter((e) => e.host === "cdn" && e.method === "GET" && e.path === `/cdn/lfs/${sha}`);
  const show = JSON.stringify(gets.map((e) => `range=${e.headers.range} ${e.status} ${e.bytes}B${e.aborted ? " aborted" : ""}`));
  assert.ok(gets.length >= 1, `${what}: no CDN request`);
  if (gets.length === 1 && gets[0].status === 200) {
    assert.equal(gets[0].bytes, size, `${what}: ${show}`);
    return gets;
  }
  const ranges = gets.map((e) => {
    assert.equal(e.status, 206, `${what}: every request of a parallel fill is a 206: ${show}`);
    const m = /^bytes=(\d+)-(\d+)$/.exec(e.headers.range ?? "");
    assert.ok(m, `${what}: a single explicit range per request: ${show}`);
    return [Number(m[1]), Number(m[2])];
  }).sort((a, b) => a[0] - b[0]);
  assert.equal(ranges[0][0], 0, `${what}: the first range starts at byte 0: ${show}`);
  // Ends of the ranges that contain the current byte; the innermost last.
  const open = [];
  for (const [i, [a, b]] of ranges.entries()) {
    while (open.length && open.at(-1) < a) open.pop();
    if (open.length) assert.ok(b <= open.at(-1), `${what}: [${a}, ${b}] overlaps a range it was not split from: ${show}`);
    const next = i + 1 < ranges.length ? ranges[i + 1][0] : size;
    assert.ok(a < next, `${what}: two requests start at byte ${a}: ${show}`);
    assert.ok(next <= Math.max(b, ...open) + 1, `${what}: no request for the bytes after ${b}: ${show}`);
    open.push(b);
  }
  assert.equal(Math.max(...ranges.map((r) => r[1])), size - 1, `${what}: ranges end at the file's end: ${show}`);
  return gets;
}
