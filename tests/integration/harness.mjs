// Shared helpers for hubcache's integration tests (node --test).
//
//   startFakeHub(opts)                      -> the fake Hub + CDN (tests/fakehub/fakehub.mjs)
//   startHubcache({upstream, cacheDir, args, env, caFile})
//                                           -> {url, proc, stop(), kill(), logs()}
//   tmpDir(prefix), sha256(buf), sha256File(path), withLogs(hubcache, fn), hubcacheBin()
//
// Every child process started here is killed when the test process exits, even on failure.

import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import os from "node:os";
import path from "node:path";

export { startFakeHub } from "../fakehub/fakehub.mjs";

const children = new Set();
const killChildren = () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {}
  }
};
process.on("exit", killChildren);
let signalHandlersInstalled = false;
function installSignalHandlers() {
  if (signalHandlersInstalled) return;
  signalHandlersInstalled = true;
  // The test runner stops a file's process with a signal on timeout: take our children with us.
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"]) {
    process.once(sig, () => {
      killChildren();
      process.exit(128 + ({ SIGINT: 2, SIGTERM: 15, SIGHUP: 1 })[sig]);
    });
  }
}

/** Path of the hubcache binary: $HUBCACHE_BIN, else /work/build-main/bin/hubcache when present. */
export function hubcacheBin() {
  if (process.env.HUBCACHE_BIN) return process.env.HUBCACHE_BIN;
  const guess = "/work/build-main/bin/hubcache";
  return fs.existsSync(guess) ? guess : null;
}

const LISTEN_RE = /^hubcache listening on (https?:\/\/\S+)\s*$/m;

/**
 * Spawns hubcache: `--listen 127.0.0.1:0 --upstream URL --cache-dir DIR [--upstream-ca-file PEM] ...args`
 * and waits (up to `timeoutMs`, default 20 s) for its one stdout line `hubcache listening on URL`.
 * `noCacheDir: true` leaves --cache-dir out (hubcache then uses its default, $XDG_CACHE_HOME/hubcache: set
 * XDG_CACHE_HOME in `env`).
 */
export async function startHubcache({ upstream, cacheDir, args = [], env = {}, caFile = null, bin = hubcacheBin(), timeoutMs = 20000, noCacheDir = false } = {}) {
  if (!bin) throw new Error("hubcache binary not found: set HUBCACHE_BIN");
  if (!upstream) throw new Error("startHubcache: upstream is required");
  cacheDir ??= await tmpDir("hubcache-cache-");
  const argv = ["--listen", "127.0.0.1:0", "--upstream", upstream, ...(noCacheDir ? [] : ["--cache-dir", cacheDir])];
  if (caFile) argv.push("--upstream-ca-file", caFile);
  argv.push(...args);
  installSignalHandlers();
  // HUBCACHE_BIN is the tests' variable, not hubcache's (it would only warn about it).
  const childEnv = { ...process.env, ...env };
  if (!("HUBCACHE_BIN" in env)) delete childEnv.HUBCACHE_BIN;
  const proc = spawn(bin, argv, {
    env: childEnv,
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.add(proc);
  let stderr = "";
  let stdout = "";
  proc.stderr.setEncoding("utf8");
  proc.stdout.setEncoding("utf8");
  proc.stderr.on("data", (d) => {
    stderr += d;
    if (stderr.length > 4 << 20) stderr = stderr.slice(-(2 << 20)); // keep the last 2 MiB
  });
  const exited = new Promise((resolve) => proc.once("exit", (code, signal) => {
    children.delete(proc);
    resolve({ code, signal });
  }));

  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill("SIGKILL");
      reject(new Error(`hubcache did not print its listening line within ${timeoutMs} ms\n--- stdout:\n${stdout}\n--- stderr:\n${stderr}`));
    }, timeoutMs);
    proc.stdout.on("data", (d) => {
      stdout += d;
      const m = LISTEN_RE.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(m[1].replace(/\/+$/, ""));
      }
    });
    proc.once("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`hubcache exited early (code ${code}, signal ${signal})\n--- stdout:\n${stdout}\n--- stderr:\n${stderr}`));
    });
  });

  let stopped = false;
  return {
    url,
    proc,
    cacheDir,
    logs: () => stderr,
    stdout: () => stdout,
    exited,
    /**
     * SIGTERM, wait for exit (SIGKILL after `graceMs`); returns {code, signal}. The default is past
     * hubcache's own --shutdown-grace (10 s), so a slow exit shows as one, not as a kill racing it.
     */
    async stop(graceMs = 15000) {
      if (stopped) return exited;
      stopped = true;
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGTERM");
      const t = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
    kill() {
      stopped = true;
      proc.kill("SIGKILL");
      return exited;
    },
  };
}

/**
 * Runs `fn`; if it throws, prints hubcache's stderr (last `tail` chars) before rethrowing.
 * Use as: await withLogs(hc, async () => { ...assertions... })
 */
export async function withLogs(hc, fn, tail = 20000) {
  try {
    return await fn();
  } catch (e) {
    const logs = hc?.logs?.() ?? "";
    process.stderr.write(`\n===== hubcache stderr (last ${tail} chars) =====\n${logs.slice(-tail)}\n===== end hubcache stderr =====\n`);
    throw e;
  }
}

const tmpDirs = [];
/** A fresh temp directory (removed at exit unless KEEP_TMP=1). */
export async function tmpDir(prefix = "hubcache-it-") {
  const d = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  tmpDirs.push(d);
  return d;
}
process.on("exit", () => {
  if (process.env.KEEP_TMP) return;
  for (const d of tmpDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch {}
  }
});

export const sha256 = (buf) =>
  crypto.createHash("sha256").update(buf instanceof ArrayBuffer ? Buffer.from(buf) : buf).digest("hex");

export async function sha256File(p) {
  const h = crypto.createHash("sha256");
  for await (const c of fs.createReadStream(p)) h.update(c);
  return h.digest("hex");
}

/** Imports transformers.js (the Node build) fresh, pointed at `remoteHost` with a fresh cache dir. */
export async function loadTransformers(remoteHost, cacheDir) {
  const T = await import("@huggingface/transformers");
  T.env.remoteHost = remoteHost.endsWith("/") ? remoteHost : remoteHost + "/";
  T.env.remotePathTemplate = "{model}/resolve/{revision}/";
  T.env.allowLocalModels = false;
  T.env.allowRemoteModels = true;
  T.env.useFSCache = true;
  T.env.cacheDir = cacheDir;
  return T;
}
