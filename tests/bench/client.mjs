// Measuring client for the benchmark: runs tests/bench/fetchn.c (compiled by run.sh), which opens
// one connection per client, sends every request at one shared instant, discards the bodies inside
// the kernel and hashes the first `hashFirst` of them. Why C and not JavaScript: see fetchn.c.
//
//   const [r] = await fetchMany(fetchnBin, "http://127.0.0.1:8080/acme/x/resolve/<sha>/big.bin", 1, { hashFirst: 1 });
//   r = { ok, status, xCache, contentLength, bytes, ttfbMs, headersMs, totalMs, sha256, error }

import { execFile } from "node:child_process";

/**
 * `n` concurrent GETs of `url`, all started at the same instant; times are measured from it.
 * opts: { hashFirst = 0, timeoutMs = 600000 }. Never throws: failures come back as { ok: false, error }.
 */
export function fetchMany(bin, url, n, opts = {}) {
  const timeoutS = Math.max(1, Math.ceil((opts.timeoutMs ?? 600000) / 1000));
  const args = ["-n", String(n), "-s", String(opts.hashFirst ?? 0), "-T", String(timeoutS), url];
  const failed = (error) => Array.from({ length: n }, () => ({ ok: false, status: 0, bytes: 0, error }));
  return new Promise((resolve) => {
    execFile(bin, args, { maxBuffer: 16 << 20, timeout: (timeoutS + 30) * 1000 }, (err, stdout, stderr) => {
      const lines = (stdout ?? "").trim().split("\n").filter(Boolean);
      if (err || lines.length !== n) return resolve(failed(`fetchn: ${(stderr || String(err ?? "missing results")).trim().slice(0, 300)}`));
      resolve(lines.map((line) => {
        const j = JSON.parse(line);
        const error = j.error ?? (j.content_length !== null && j.bytes !== j.content_length
          ? `short body: ${j.bytes} of ${j.content_length} bytes` : null);
        return {
          ok: !error && j.status >= 200 && j.status < 300, status: j.status, xCache: j.x_cache,
          contentLength: j.content_length, bytes: j.bytes, ttfbMs: j.ttfb_ms, headersMs: j.headers_ms,
          totalMs: j.total_ms, sha256: j.sha256, error,
        };
      }));
    });
  });
}

/** One GET; opts: { sha256 = false, timeoutMs }. */
export async function fetchOnce(bin, url, opts = {}) {
  const [r] = await fetchMany(bin, url, 1, { hashFirst: opts.sha256 ? 1 : 0, timeoutMs: opts.timeoutMs });
  return r;
}
