// Measuring HTTP/1.1 client for the benchmark: one request per connection on a raw socket, body
// bytes counted and discarded (optionally hashed), time to first body byte and to completion.
// Raw sockets with a reused read buffer keep the client's own cost low, and fetchMany spreads its
// clients over worker threads, so the proxy is what is measured. Only node: built-ins.
//
//   const r = await fetchOnce("http://127.0.0.1:8080/acme/x/resolve/<sha>/big.bin", { sha256: true });
//   r = { ok, status, headers, contentLength, bytes, ttfbMs, headersMs, totalMs, sha256, error }
//   const rs = await fetchMany(url, 32, { hashFirst: 1 });

import crypto from "node:crypto";
import net from "node:net";
import os from "node:os";
import { performance } from "node:perf_hooks";
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads";

const HEADER_LIMIT = 64 * 1024;

/**
 * One request on its own connection (`Connection: close`).
 * opts: { method = "GET", sha256 = false, timeoutMs = 600000, headers = {}, startAt }
 * Never throws: failures come back as { ok: false, error }.
 */
export function fetchOnce(url, opts = {}) {
  const u = new URL(url);
  const method = opts.method ?? "GET";
  const timeoutMs = opts.timeoutMs ?? 600000;
  const extra = Object.entries(opts.headers ?? {}).map(([k, v]) => `${k}: ${v}\r\n`).join("");
  const req =
    `${method} ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUser-Agent: hubcache-bench/1\r\n` +
    `Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n${extra}\r\n`;
  const hash = opts.sha256 ? crypto.createHash("sha256") : null;
  const t0 = opts.startAt ?? performance.now();

  return new Promise((resolve) => {
    const res = {
      ok: false, status: 0, headers: {}, contentLength: null, bytes: 0,
      ttfbMs: null, headersMs: null, totalMs: null, sha256: null, error: null,
    };
    let head = Buffer.alloc(0);
    let inBody = false;
    let settled = false;
    const finish = (error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      res.totalMs = performance.now() - t0;
      if (error) res.error = error;
      else if (res.contentLength !== null && res.bytes !== res.contentLength)
        res.error = `short body: ${res.bytes} of ${res.contentLength} bytes`;
      else if (!inBody) res.error = "no response";
      if (hash && !res.error) res.sha256 = hash.digest("hex");
      res.ok = !res.error && res.status >= 200 && res.status < 300;
      sock.destroy();
      resolve(res);
    };
    const body = (buf) => {
      if (buf.length === 0) return;
      if (res.ttfbMs === null) res.ttfbMs = performance.now() - t0;
      let b = buf;
      if (res.contentLength !== null && res.bytes + b.length > res.contentLength) {
        b = b.subarray(0, res.contentLength - res.bytes); // never count bytes past the declared length
      }
      res.bytes += b.length;
      if (hash) hash.update(b);
      if (res.contentLength !== null && res.bytes >= res.contentLength) finish(null);
    };
    const sock = net.connect({
      host: u.hostname,
      port: Number(u.port || 80),
      noDelay: true,
      onread: {
        buffer: Buffer.allocUnsafe(256 * 1024),
        callback(n, buf) {
          if (settled) return false;
          const chunk = buf.subarray(0, n);
          if (inBody) return void body(chunk);
          head = Buffer.concat([head, chunk]);
          const end = head.indexOf("\r\n\r\n");
          if (end < 0) {
            if (head.length > HEADER_LIMIT) finish("response headers too large");
            return;
          }
          res.headersMs = performance.now() - t0;
          const lines = head.subarray(0, end).toString("latin1").split("\r\n");
          const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0]);
          if (!m) return void finish(`bad status line: ${lines[0].slice(0, 80)}`);
          res.status = Number(m[1]);
          for (const l of lines.slice(1)) {
            const i = l.indexOf(":");
            if (i > 0) res.headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
          }
          if (/chunked/i.test(res.headers["transfer-encoding"] ?? "")) return void finish("chunked bodies are not supported");
          if (res.headers["content-length"] !== undefined) res.contentLength = Number(res.headers["content-length"]);
          if (method === "HEAD" || res.status === 204 || res.status === 304) res.contentLength = 0;
          inBody = true;
          const rest = head.subarray(end + 4);
          head = null;
          if (res.contentLength === 0) {
            res.ttfbMs = res.headersMs;
            return void finish(null);
          }
          body(Buffer.from(rest)); // copy: `buf` is reused by the next read
        },
      },
    });
    sock.on("connect", () => sock.write(req));
    sock.on("end", () => finish(res.contentLength === null && inBody ? null : "connection closed early"));
    sock.on("error", (e) => finish(e.code ?? e.message));
    sock.on("close", () => finish("connection closed early"));
    const timer = setTimeout(() => finish(`timeout after ${timeoutMs} ms`), timeoutMs);
  });
}

/**
 * `n` concurrent requests for `url`, all started at the same instant. The first `hashFirst` of them
 * also compute the sha256 of what they receive. Resolves to the results in order.
 *
 * The clients are spread over `opts.threads` worker threads (default: one per core), so that what
 * limits many fast downloads is the proxy and the machine, not one JavaScript thread reading every
 * socket. Times are measured from one shared start instant: the workers are started first and told
 * to go together.
 */
export async function fetchMany(url, n, opts = {}) {
  const { threads: wanted, hashFirst = 0, ...rest } = opts;
  const threads = Math.max(1, Math.min(n, wanted ?? os.availableParallelism?.() ?? os.cpus().length));
  const jobs = Array.from({ length: threads }, () => []);
  for (let i = 0; i < n; i++) jobs[i % threads].push({ index: i, sha256: i < hashFirst });
  const workers = jobs.map((list) => new Worker(new URL(import.meta.url), { workerData: { url, list, opts: rest } }));
  try {
    const message = (w) => new Promise((resolve, reject) => {
      w.once("message", resolve);
      w.once("error", reject);
    });
    await Promise.all(workers.map(message)); // "ready"
    const done = workers.map(message);
    const t0 = performance.timeOrigin + performance.now();
    for (const w of workers) w.postMessage({ t0 });
    const out = new Array(n);
    for (const part of await Promise.all(done)) for (const { index, result } of part) out[index] = result;
    return out;
  } finally {
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

// A fetchMany worker: waits for the shared start instant, runs its share, reports the results.
if (!isMainThread && workerData?.list) {
  const { url, list, opts } = workerData;
  parentPort.once("message", async ({ t0 }) => {
    const startAt = t0 - performance.timeOrigin; // the shared instant on this thread's clock
    const results = await Promise.all(list.map(({ sha256 }) => fetchOnce(url, { ...opts, sha256, startAt })));
    parentPort.postMessage(list.map(({ index }, i) => ({ index, result: results[i] })));
  });
  parentPort.postMessage("ready");
}
