#!/usr/bin/env node
// Benchmark driver: hubcache vs nginx (proxy_cache_lock) vs nginx (slice), all against one fake Hub
// whose CDN caps each connection's throughput. Started by tests/bench/run.sh, which installs the
// tools, builds hubcache and compiles hload and fetchn; see docs/benchmarks.md. Prints one table.
//
// node tests/bench/bench.mjs --work DIR --hubcache BIN --hload BIN --fetchn BIN [--size BYTES] [--cdn-rate BPS]
//   [--latency-ms MS] [--slice 8m] [--clients 32] [--duration S] [--reps N] [--load-reps N] [--quick]
//   [--proxies hubcache,nginx-lock,nginx-slice] [--json FILE] [--deadline-s S]
//
// Every process it starts is written to WORK/pids (one pid a line) so run.sh's trap can end them
// even if this driver is killed.

import { execFile, spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import fsp from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { fetchMany, fetchOnce } from "./client.mjs";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
const MiB = 1 << 20;
const GiB = 1 << 30;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${a.join(" ")}\n`);

// ----------------------------------------------------------------------------- options

export function parseSize(s) {
  const m = /^\s*([\d.]+)\s*([kmgt]?)(i?)b?\s*$/i.exec(String(s));
  if (!m) throw new Error(`bad size: ${s}`);
  const pow = { "": 0, k: 1, m: 2, g: 3, t: 4 }[m[2].toLowerCase()];
  const base = m[3] ? 1024 : 1000;
  return Math.round(Number(m[1]) * base ** pow);
}

function parseArgs(argv) {
  const o = {
    work: null, hubcache: null, hload: null, fetchn: null, size: null, cdnRate: "25MB", latencyMs: 20, slice: "8m",
    clients: 32, duration: null, reps: null, loadReps: null, quick: false, proxies: "hubcache,nginx-lock,nginx-slice",
    json: null, deadlineS: 1500,
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (a.includes("=")) [a, v] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    const next = () => (v !== undefined ? v : argv[++i]);
    switch (a) {
      case "--work": o.work = next(); break;
      case "--hubcache": o.hubcache = next(); break;
      case "--hload": o.hload = next(); break;
      case "--fetchn": o.fetchn = next(); break;
      case "--size": o.size = next(); break;
      case "--cdn-rate": o.cdnRate = next(); break;
      case "--latency-ms": o.latencyMs = Number(next()); break;
      case "--slice": o.slice = next(); break;
      case "--clients": o.clients = Number(next()); break;
      case "--duration": o.duration = Number(next()); break;
      case "--reps": o.reps = Number(next()); break;
      case "--load-reps": o.loadReps = Number(next()); break;
      case "--quick": o.quick = true; break;
      case "--proxies": o.proxies = next(); break;
      case "--json": o.json = next(); break;
      case "--deadline-s": o.deadlineS = Number(next()); break;
      default: throw new Error(`unknown option ${a}`);
    }
  }
  if (!o.work || !o.hubcache || !o.hload || !o.fetchn) throw new Error("--work, --hubcache, --hload and --fetchn are required");
  o.size = parseSize(o.size ?? (o.quick ? "64MiB" : "1GiB"));
  o.cdnRate = parseSize(o.cdnRate);
  o.duration ??= o.quick ? 3 : 4;
  // A warm pull takes well under a second, and single pulls swing by a factor of two on a shared
  // 2-core machine (depending on where the sender and the client run): take the median of more.
  o.reps ??= o.quick ? 2 : 7;
  // p99 at 64 connections depends on where the scheduler runs the client's and the proxy's threads:
  // from one run of the same proxy to the next it jumps between about 2.5 and 4 ms here. Each load row
  // is the median of this many runs, taken in rounds that visit every proxy in turn (see loadRounds).
  o.loadReps ??= o.quick ? 1 : 7;
  o.proxies = o.proxies.split(",").map((s) => s.trim()).filter(Boolean);
  return o;
}

// ----------------------------------------------------------------------------- processes

const PROCS = new Set();
let PIDFILE = null;

/** Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat), or "?". */
function startTicks(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    return st.slice(st.lastIndexOf(")") + 2).split(" ")[19];
  } catch {
    return "?";
  }
}

function track(child, name) {
  PROCS.add(child);
  // "pid starttime name": run.sh's trap only kills a pid whose start time still matches (no pid reuse).
  if (PIDFILE && child.pid) fs.appendFileSync(PIDFILE, `${child.pid} ${startTicks(child.pid)} ${name}\n`);
  child.exited = new Promise((r) => child.once("exit", (code, sig) => r({ code, sig })));
  child.exited.then(() => PROCS.delete(child));
  child.benchName = name;
  return child;
}

/** Children of `pid` (from /proc/<pid>/task/<pid>/children, else a /proc scan). */
function childPids(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    const out = [];
    for (const d of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = fs.readFileSync(`/proc/${d}/stat`, "utf8");
        if (Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(d));
      } catch {}
    }
    return out;
  }
}

async function stopProc(child, { signal = "SIGTERM", graceMs = 8000 } = {}) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const kids = childPids(child.pid);
  try {
    child.kill(signal);
  } catch {}
  const t = await Promise.race([child.exited, sleep(graceMs).then(() => null)]);
  if (t === null) {
    log(`${child.benchName} (pid ${child.pid}) did not stop in ${graceMs} ms: SIGKILL`);
    try {
      child.kill("SIGKILL");
    } catch {}
    await child.exited;
  }
  for (const k of kids) {
    try {
      process.kill(k, 0);
      process.kill(k, "SIGKILL"); // an nginx worker left behind by a killed master
    } catch {}
  }
}

async function stopAll() {
  await Promise.all([...PROCS].map((p) => stopProc(p, { graceMs: 3000 })));
}

function freePort(host = "127.0.0.1") {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, host, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function waitPort(host, port, child, timeoutMs = 15000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const ok = await new Promise((r) => {
      const s = net.connect({ host, port }, () => {
        s.destroy();
        r(true);
      });
      s.once("error", () => r(false));
    });
    if (ok) return true;
    await sleep(50);
  }
  return false;
}

const readTail = (f, n = 2000) => {
  try {
    const s = fs.readFileSync(f, "utf8");
    return s.slice(-n);
  } catch {
    return "";
  }
};

// ----------------------------------------------------------------------------- fake hub

async function startFake(o) {
  const errFile = path.join(o.work, "fakehub.err");
  const child = track(
    spawn(process.execPath, [path.join(ROOT, "tests/fakehub/cli.mjs"), "--big-size", String(o.size),
      "--cdn-rate", String(o.cdnRate), "--latency-ms", String(o.latencyMs)],
    { stdio: ["ignore", "pipe", fs.openSync(errFile, "w")] }),
    "fakehub",
  );
  const line = await new Promise((resolve, reject) => {
    let buf = "";
    const t = setTimeout(() => reject(new Error(`fakehub did not start in 120 s\n${readTail(errFile)}`)), 120000);
    child.stdout.on("data", (d) => {
      buf += d;
      const i = buf.indexOf("\n");
      if (i >= 0) {
        clearTimeout(t);
        resolve(buf.slice(0, i));
      }
    });
    child.exited.then(() => reject(new Error(`fakehub exited\n${readTail(errFile)}`)));
  });
  const urls = JSON.parse(line);
  const api = async (p, init) => {
    const r = await fetch(urls.hub + p, init);
    if (!r.ok) throw new Error(`fakehub ${p}: ${r.status}`);
    return r.json();
  };
  const repos = await api("/_fake/repos");
  const repo = repos["acme/tiny-model"];
  return {
    child, ...urls, repo,
    reset: () => api("/_fake/reset", { method: "POST" }),
    stats: () => api("/_fake/stats?wait=1&log=0&timeoutMs=60000"),
  };
}

const upstreamBytes = (s) => s.hub.bodyBytes + s.cdn.bodyBytes;
// File bytes only: a proxy may still ask the Hub's API about the repo (hubcache does once per public_ttl).
const contentBytes = (s) =>
  s.cdn.bodyBytes + Object.entries(s.hub.paths ?? {}).reduce((a, [p, v]) => a + (p.startsWith("/api/") ? 0 : v.bodyBytes), 0);

// ----------------------------------------------------------------------------- proxies

class Proxy {
  constructor(name, o, fake) {
    this.name = name;
    this.o = o;
    this.fake = fake;
    this.dir = path.join(o.work, name);
    this.child = null;
    this.url = null;
    this.starts = 0;
  }
  alive() {
    return this.child && this.child.exitCode === null && this.child.signalCode === null;
  }
  /** Processes whose memory counts: hubcache itself, nginx's worker processes. */
  memPids() {
    if (!this.alive()) return [];
    if (this.name === "hubcache") return [this.child.pid];
    return childPids(this.child.pid).filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, "utf8").includes("worker process");
      } catch {
        return false;
      }
    });
  }
  errTail() {
    return readTail(this.name === "hubcache" ? path.join(this.dir, "stderr.log") : path.join(this.dir, "error.log"));
  }
  /** (Re)starts with an empty cache. */
  async start() {
    await this.stop();
    await fsp.rm(this.dir, { recursive: true, force: true });
    await fsp.mkdir(path.join(this.dir, "tmp"), { recursive: true });
    this.starts += 1;
    if (this.name === "hubcache") return this.startHubcache();
    return this.startNginx();
  }
  async startHubcache() {
    const errFile = path.join(this.dir, "stderr.log");
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("HUBCACHE_")));
    const child = track(
      spawn(this.o.hubcache, ["--listen", "127.0.0.1:0", "--upstream", this.fake.hub, "--cache-dir",
        path.join(this.dir, "cache"), "--log-level", "warn", "--shutdown-grace", "2s"],
      { stdio: ["ignore", "pipe", fs.openSync(errFile, "a")], env }),
      "hubcache",
    );
    this.child = child;
    this.url = await new Promise((resolve, reject) => {
      let buf = "";
      const t = setTimeout(() => reject(new Error(`hubcache did not start in 20 s\n${readTail(errFile)}`)), 20000);
      child.stdout.on("data", (d) => {
        buf += d;
        const m = /hubcache listening on (http:\/\/\S+)/.exec(buf);
        if (m) {
          clearTimeout(t);
          resolve(m[1]);
        }
      });
      child.exited.then(({ code, sig }) => reject(new Error(`hubcache exited (${code ?? sig})\n${readTail(errFile)}`)));
    });
    child.stdout.resume();
  }
  async startNginx() {
    const variant = this.name === "nginx-slice" ? "slice" : "lock";
    const port = await freePort();
    const user = process.getuid?.() === 0 ? `user ${os.userInfo().username} ${groupName()};` : "# not root: workers run as the invoking user";
    const conf = (await fsp.readFile(path.join(HERE, `nginx-${variant}.conf.in`), "utf8"))
      .replaceAll("@PREFIX@", this.dir)
      .replaceAll("@LISTEN@", `127.0.0.1:${port}`)
      .replaceAll("@HUB@", this.fake.hub)
      .replaceAll("@USER@", user)
      .replaceAll("@WORKERS@", "auto")
      .replaceAll("@SLICE@", this.o.slice);
    const confFile = path.join(this.dir, "nginx.conf");
    await fsp.writeFile(confFile, conf);
    const child = track(
      spawn("nginx", ["-p", this.dir, "-c", confFile, "-e", path.join(this.dir, "error.log")],
        { stdio: ["ignore", fs.openSync(path.join(this.dir, "stdout.log"), "a"), fs.openSync(path.join(this.dir, "stderr.log"), "a")] }),
      this.name,
    );
    this.child = child;
    if (!(await waitPort("127.0.0.1", port, child))) {
      throw new Error(`${this.name} did not start\n${readTail(path.join(this.dir, "stderr.log"))}\n${this.errTail()}`);
    }
    this.url = `http://127.0.0.1:${port}`;
  }
  async stop() {
    if (this.child) await stopProc(this.child);
    this.child = null;
  }
}

function groupName() {
  try {
    const gid = process.getgid();
    for (const l of fs.readFileSync("/etc/group", "utf8").split("\n")) {
      const f = l.split(":");
      if (Number(f[2]) === gid) return f[0];
    }
  } catch {}
  return "root";
}

// ----------------------------------------------------------------------------- measuring helpers

function readStatusKiB(pid, key) {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** Samples the summed VmRSS of the proxy's processes every `everyMs`; stop() -> peak MiB. */
function rssSampler(proxy, everyMs = 100) {
  let peak = 0;
  const sample = () => {
    let sum = 0;
    for (const p of proxy.memPids()) sum += readStatusKiB(p, "VmRSS");
    peak = Math.max(peak, sum);
  };
  sample();
  const t = setInterval(sample, everyMs);
  return {
    stop() {
      clearInterval(t);
      sample();
      // a single process also knows its own high-water mark since it started (fresh for each phase)
      const pids = proxy.memPids();
      if (pids.length === 1) peak = Math.max(peak, readStatusKiB(pids[0], "VmHWM"));
      return peak / 1024;
    },
  };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

function execFileP(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(cmd, args, { maxBuffer: 16 * MiB, ...opts }, (err, stdout, stderr) => resolve({ err, stdout, stderr }));
  });
}

async function sha256File(f) {
  const h = crypto.createHash("sha256");
  for await (const c of fs.createReadStream(f)) h.update(c);
  return h.digest("hex");
}

// ----------------------------------------------------------------------------- scenarios

/**
 * Correctness gate, with curl: each file twice; both pulls must have the right sha256 and the
 * second must cost zero upstream body bytes (it was cached).
 */
async function preflight(proxy, fake, files) {
  const out = [];
  for (const f of files) {
    const url = `${proxy.url}/acme/tiny-model/resolve/${fake.repo.mainCommit}/${f}`;
    for (const pull of [1, 2]) {
      await fake.reset();
      const tmp = path.join(proxy.o.work, "preflight.body");
      const r = await execFileP("curl", ["-sS", "-o", tmp, "-w", "%{http_code} %{size_download}", "--max-time", "120", url]);
      const st = await fake.stats();
      const [code, size] = (r.stdout || "0 0").split(" ").map(Number);
      const sha = code === 200 ? await sha256File(tmp) : null;
      const want = fake.repo.files[f];
      const ok = code === 200 && size === want.size && sha === want.sha256 && (pull === 1 || upstreamBytes(st) === 0);
      out.push({ file: f, pull, code, size, shaOk: sha === want.sha256, upstreamBytes: upstreamBytes(st), ok });
      if (!ok) {
        const why = code !== 200 ? `HTTP ${code} ${r.stderr.trim()}` : sha !== want.sha256 ? "wrong sha256" : `second pull cost ${upstreamBytes(st)} upstream bytes`;
        throw new Error(`${proxy.name} preflight ${f} pull ${pull}: ${why}`);
      }
    }
  }
  return out;
}

async function coldSingle(proxy, fake, o, url) {
  await fake.reset();
  const rss = rssSampler(proxy);
  const r = await fetchOnce(o.fetchn, url, { sha256: true, timeoutMs: coldTimeoutMs(o) });
  const peak = rss.stop();
  const st = await fake.stats();
  const ok = r.ok && r.bytes === o.size && r.sha256 === fake.repo.files["big.bin"].sha256;
  return {
    ok, error: ok ? null : r.error ?? (r.sha256 ? "wrong sha256" : `HTTP ${r.status}`),
    ttfbS: r.ttfbMs / 1000, totalS: r.totalMs / 1000, upstreamRatio: upstreamBytes(st) / o.size,
    cdnRequests: st.cdn.requests, rssMiB: peak,
  };
}

async function warm(proxy, fake, o, url) {
  await fake.reset();
  const one = [];
  const four = [];
  let error = null;
  for (let i = 0; i < o.reps && !error; i++) {
    const r = await fetchOnce(o.fetchn, url, { timeoutMs: 300000 });
    if (!r.ok || r.bytes !== o.size) error = r.error ?? `HTTP ${r.status}`;
    else one.push(o.size / 1e6 / (r.totalMs / 1000));
  }
  for (let i = 0; i < o.reps && !error; i++) {
    const rs = await fetchMany(o.fetchn, url, 4, { timeoutMs: 300000 });
    const wall = allDone(rs);
    const bad = rs.find((r) => !r.ok || r.bytes !== o.size);
    if (bad) error = bad.error ?? `HTTP ${bad.status}`;
    else four.push((4 * o.size) / 1e6 / wall);
  }
  const st = await fake.stats();
  return {
    ok: !error, error, oneMBps: median(one), fourMBps: median(four), samplesOne: one, samplesFour: four,
    upstreamBytes: upstreamBytes(st), cdnRequests: st.cdn.requests,
  };
}

async function runWrk(o, url) {
  const r = await execFileP("wrk", ["-t2", "-c64", `-d${o.duration}s`, "--timeout", "5s", "-s",
    path.join(HERE, "wrk-report.lua"), url], { timeout: (o.duration + 30) * 1000 });
  const m = /WRK_JSON (\{.*\})/.exec(r.stdout ?? "");
  if (!m) return { ok: false, error: `wrk: ${(r.stderr || r.stdout || String(r.err)).trim().slice(0, 300)}` };
  const j = JSON.parse(m[1]);
  const errors = Object.values(j.errors).reduce((a, b) => a + b, 0);
  return {
    ok: j.requests > 0 && errors <= j.requests * 0.01, error: errors > j.requests * 0.01 ? `${errors} errors (${JSON.stringify(j.errors)})` : null,
    rps: j.requests / (j.duration_us / 1e6), p99Ms: j.latency_us.p99 / 1000, p50Ms: j.latency_us.p50 / 1000,
    requests: j.requests, errors, tool: "wrk",
  };
}

async function runHload(o, url, method) {
  const r = await execFileP(o.hload, ["-t", "2", "-c", "64", "-d", String(o.duration), "-m", method, "-T", "5", url],
    { timeout: (o.duration + 30) * 1000 });
  let j;
  try {
    j = JSON.parse(r.stdout.trim().split("\n").at(-1));
  } catch {
    return { ok: false, error: `hload: ${(r.stderr || String(r.err)).trim().slice(0, 300)}` };
  }
  const bad = j.errors + j.non2xx;
  return {
    ok: j.requests > 0 && bad <= j.requests * 0.01, error: bad > j.requests * 0.01 ? `${j.errors} errors, ${j.non2xx} non-2xx` : null,
    rps: j.rps, p99Ms: j.latency_us.p99 / 1000, p50Ms: j.latency_us.p50 / 1000, requests: j.requests, errors: bad, tool: "hload",
  };
}

async function crowd(proxy, fake, o, url) {
  await fake.reset();
  const rss = rssSampler(proxy);
  // generous: a proxy whose shared fill slows down under many readers should be measured, not cut off
  const timeoutMs = Math.max(coldTimeoutMs(o), Math.ceil((12 * o.size) / o.cdnRate) * 1000 + 30000);
  const rs = await fetchMany(o.fetchn, url, o.clients, { hashFirst: 1, timeoutMs });
  const allDoneS = allDone(rs);
  const peak = rss.stop();
  const st = await fake.stats();
  const bad = rs.filter((r) => !r.ok || r.bytes !== o.size);
  const shaOk = rs[0].sha256 === fake.repo.files["big.bin"].sha256;
  const ok = bad.length === 0 && shaOk;
  return {
    ok, error: ok ? null : `${bad.length} of ${o.clients} clients failed (${bad[0]?.error ?? (shaOk ? "" : "wrong sha256")})`,
    upstreamRatio: upstreamBytes(st) / o.size, cdnRequests: st.cdn.requests,
    ttfbMaxS: Math.max(...rs.map((r) => r.ttfbMs ?? Infinity)) / 1000,
    ttfbMinS: Math.min(...rs.map((r) => r.ttfbMs ?? Infinity)) / 1000,
    allDoneS, rssMiB: peak,
  };
}

/** Seconds from fetchMany's shared start until its last client finished. */
function allDone(rs) {
  return Math.max(...rs.map((r) => r.totalMs ?? Infinity)) / 1000;
}

function coldTimeoutMs(o) {
  // four times the time one CDN connection needs, plus slack: a stuck proxy fails the row, not the run
  return Math.max(60000, Math.ceil((4 * o.size) / o.cdnRate) * 1000 + 30000);
}

/** Runs `fn`, turning a throw or a dead proxy into {ok:false, error}. */
async function guarded(proxy, label, fn) {
  try {
    const r = await fn();
    if (!proxy.alive()) return { ...r, ok: false, error: `${proxy.name} died during ${label}: ${proxy.errTail().trim().split("\n").at(-1) ?? ""}` };
    if (!r.ok) log(`${proxy.name} ${label}: ${r.error}`);
    return r;
  } catch (e) {
    log(`${proxy.name} ${label}: ${e.message.split("\n")[0]}`);
    return { ok: false, error: e.message.split("\n")[0] };
  }
}

const fileUrl = (proxy, fake, file) => `${proxy.url}/acme/tiny-model/resolve/${fake.repo.mainCommit}/${file}`;

/**
 * One proxy's turn: a fresh cache for the correctness gate, the cold miss (3) and the warm hits (1), then
 * a fresh cache again for the crowd (4). The proxy is left running, the big file cached, for the load
 * rounds (2) that follow every proxy's turn.
 */
async function benchProxy(proxy, fake, o) {
  const res = { name: proxy.name, loadStart: os.loadavg()[0] };
  const big = () => fileUrl(proxy, fake, "big.bin"); // the port changes with every start
  // Phase A: fresh cache -> correctness gate, cold miss (3), warm hits (1).
  res.start = await guarded(proxy, "start", async () => (await proxy.start(), { ok: true }));
  if (!res.start.ok) return res;
  log(`${proxy.name} at ${proxy.url}: preflight`);
  res.preflight = await guarded(proxy, "preflight", async () => ({ ok: true, pulls: await preflight(proxy, fake, ["config.json", "model.safetensors"]) }));
  log(`${proxy.name}: cold miss, one client`);
  res.cold = await guarded(proxy, "cold miss", () => coldSingle(proxy, fake, o, big()));
  if (res.cold.ok) {
    log(`${proxy.name}: warm hits`);
    res.warm = await guarded(proxy, "warm hits", () => warm(proxy, fake, o, big()));
  }
  // Phase B: fresh cache again -> N clients at once on the cold file (4).
  log(`${proxy.name}: ${o.clients} clients on the cold file`);
  const restart = await guarded(proxy, "restart", async () => (await proxy.start(), { ok: true }));
  res.crowd = restart.ok ? await guarded(proxy, "crowd", () => crowd(proxy, fake, o, big())) : restart;
  // The same crowd on the file now cached: how fast this machine delivers N copies at all, the floor
  // for the cold crowd's "all done".
  if (res.crowd.ok) {
    log(`${proxy.name}: ${o.clients} clients on the cached file`);
    res.crowdWarm = await guarded(proxy, "crowd on the cached file", () => crowd(proxy, fake, o, big()));
  }
  res.loadEnd = os.loadavg()[0];
  return res;
}

/**
 * Item 2, after every proxy's turn, with all of them running and their caches warm: `o.loadReps`
 * rounds, each running the three load rows on every proxy, the first proxy of a round rotating. A
 * drift of the machine over the minutes of the benchmark then touches every proxy alike, which running
 * one proxy's repetitions back to back would not. Each row keeps its samples and reports their median;
 * a proxy with one failed run fails the row.
 */
async function loadRounds(proxies, results, fake, o) {
  const rowsOf = (res) => [
    ["smallGet", "small GET", (p) => runWrk(o, fileUrl(p, fake, "config.json"))],
    ["smallHead", "small HEAD", (p) => runHload(o, fileUrl(p, fake, "config.json"), "HEAD")],
    ...(res.cold?.ok ? [["lfsHead", "LFS HEAD", (p) => runHload(o, fileUrl(p, fake, "big.bin"), "HEAD")]] : []),
  ];
  const ready = [];
  for (const [i, proxy] of proxies.entries()) {
    const res = results[i];
    if (!res.preflight?.ok || !proxy.alive()) continue;
    // The crowd's restart emptied the cache: the gate again puts the small files in.
    res.loadPreflight = await guarded(proxy, "load preflight", async () => ({ ok: true, pulls: await preflight(proxy, fake, ["config.json"]) }));
    if (res.cold?.ok && !res.crowdWarm?.ok) {
      // The crowd failed, so the big file may not be whole in the cache: the LFS HEAD rows need it.
      await fetchOnce(o.fetchn, fileUrl(proxy, fake, "big.bin"), { timeoutMs: coldTimeoutMs(o) });
    }
    if (res.loadPreflight.ok) ready.push([proxy, res]);
  }
  // nginx does not fsync its cache files: the gigabytes the cold rows just wrote would otherwise be
  // written back by the kernel during the first rounds, costing CPU to whichever proxy runs then.
  log("load rounds: sync first");
  await execFileP("sync", []);
  const samples = new Map(ready.map(([p]) => [p.name, {}]));
  for (let round = 0; round < o.loadReps; round++) {
    for (let k = 0; k < ready.length; k++) {
      const [proxy, res] = ready[(round + k) % ready.length];
      log(`load round ${round + 1}/${o.loadReps}: ${proxy.name}, small files and HEAD at 64 connections`);
      await fake.reset();
      for (const [key, label, run] of rowsOf(res)) {
        (samples.get(proxy.name)[key] ??= []).push(await guarded(proxy, label, () => run(proxy)));
      }
      res.smallUpstream = (res.smallUpstream ?? 0) + contentBytes(await fake.stats());
    }
  }
  for (const [proxy, res] of ready) {
    for (const [key, runs] of Object.entries(samples.get(proxy.name))) {
      const bad = runs.find((r) => !r.ok);
      res[key] = bad
        ? { ...bad, runs }
        : { ok: true, tool: runs[0].tool, rps: median(runs.map((r) => r.rps)), p99Ms: median(runs.map((r) => r.p99Ms)),
            p50Ms: median(runs.map((r) => r.p50Ms)), runs };
    }
  }
}

// ----------------------------------------------------------------------------- table

const NAMES = ["hubcache", "nginx-lock", "nginx-slice"];
const HEAD_NAMES = { hubcache: "hubcache", "nginx-lock": "nginx(lock)", "nginx-slice": `nginx(slice)` };

function rows(results, o) {
  const R = (name) => results.find((r) => r.name === name) ?? {};
  const get = (name, pick) => {
    try {
      const v = pick(R(name));
      return Number.isFinite(v) ? v : null;
    } catch {
      return null;
    }
  };
  const sizeLabel = o.size % GiB === 0 ? `${o.size / GiB} GiB` : `${Math.round(o.size / MiB)} MiB`;
  const ok = (x) => (x && x.ok ? x : null);
  // higher: larger is better. target(hc, ratio) -> "ok"/"MISS"/"" for hubcache.
  const defs = [
    { group: "1", metric: `warm hit ${sizeLabel}, 1 stream (MB/s)`, higher: true, fmt: 0, pick: (r) => ok(r.warm).oneMBps, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "1", metric: `warm hit ${sizeLabel}, 4 streams (MB/s total)`, higher: true, fmt: 0, pick: (r) => ok(r.warm).fourMBps, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "small file GET, 64 conns (req/s)", higher: true, fmt: 0, pick: (r) => ok(r.smallGet).rps, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "small file GET p99 (ms)", higher: false, fmt: 2, pick: (r) => ok(r.smallGet).p99Ms, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "small file HEAD, 64 conns (req/s)", higher: true, fmt: 0, pick: (r) => ok(r.smallHead).rps, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "small file HEAD p99 (ms)", higher: false, fmt: 2, pick: (r) => ok(r.smallHead).p99Ms, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "LFS file HEAD, 64 conns (req/s)", higher: true, fmt: 0, pick: (r) => ok(r.lfsHead).rps, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "2", metric: "LFS file HEAD p99 (ms)", higher: false, fmt: 2, pick: (r) => ok(r.lfsHead).p99Ms, target: "≥1.0× nginx", pass: (v, x) => x >= 1.0 },
    { group: "3", metric: `cold miss ${sizeLabel}, 1 client: time (s)`, higher: false, fmt: 1, pick: (r) => ok(r.cold).totalS, target: "≥4× faster", pass: (v, x) => x >= 4 },
    { group: "3", metric: "cold miss, 1 client: first byte (ms)", higher: false, fmt: 0, pick: (r) => ok(r.cold).ttfbS * 1000, target: "", pass: null },
    { group: "3", metric: "cold miss, 1 client: upstream bytes / size", higher: false, fmt: 3, pick: (r) => ok(r.cold).upstreamRatio, target: "", pass: null },
    { group: "4", metric: `${o.clients} clients cold: upstream bytes / size`, higher: false, fmt: 3, pick: (r) => ok(r.crowd).upstreamRatio, target: "≤1.05", pass: (v) => v <= 1.05 },
    { group: "4", metric: `${o.clients} clients cold: first byte, max (s)`, higher: false, fmt: 2, pick: (r) => ok(r.crowd).ttfbMaxS, target: "≤1 s", pass: (v) => v <= 1 },
    { group: "4", metric: `${o.clients} clients cold: all done (s)`, higher: false, fmt: 1, pick: (r) => ok(r.crowd).allDoneS, target: "", pass: null },
    { group: "4", metric: `${o.clients} clients cold: all done / 1-client time`, higher: false, fmt: 3, pick: (r) => ok(r.crowd).allDoneS / ok(r.cold).totalS, target: "≤1.2", pass: (v) => v <= 1.2 },
    { group: "4", metric: `${o.clients} clients, file cached: all done (s)`, higher: false, fmt: 1, pick: (r) => ok(r.crowdWarm).allDoneS, target: "", pass: null },
    { group: "5", metric: "peak RSS during 3 (MiB)", higher: false, fmt: 1, pick: (r) => ok(r.cold).rssMiB, target: "<100 MiB", pass: (v) => v < 100 },
    { group: "5", metric: "peak RSS during 4 (MiB)", higher: false, fmt: 1, pick: (r) => ok(r.crowd).rssMiB, target: "<100 MiB", pass: (v) => v < 100 },
  ];
  return defs.map((d) => {
    const vals = Object.fromEntries(NAMES.map((n) => [n, get(n, d.pick)]));
    const ng = [vals["nginx-lock"], vals["nginx-slice"]].filter((v) => v !== null);
    const best = ng.length ? (d.higher ? Math.max(...ng) : Math.min(...ng)) : null;
    const hc = vals.hubcache;
    let ratio = null;
    if (hc !== null && best !== null) ratio = d.higher ? hc / best : hc === 0 ? (best === 0 ? 1 : Infinity) : best / hc;
    let status = "";
    const relative = d.target.includes("nginx") || d.target.includes("faster");
    if (d.pass && hc !== null && (ratio !== null || !relative)) status = d.pass(hc, ratio) ? "met" : "MISSED";
    else if (d.pass) status = "n/a";
    return { ...d, vals, best, ratio, status };
  });
}

/** One line per load row and measure: each proxy's range over its runs. */
function loadSpread(results) {
  const lines = [];
  for (const [key, label] of [["smallGet", "small GET"], ["smallHead", "small HEAD"], ["lfsHead", "LFS HEAD"]]) {
    for (const [m, unit, digits] of [["rps", "req/s", 0], ["p99Ms", "p99 ms", 2]]) {
      const parts = results.filter((r) => r[key]?.runs?.length).map((r) => {
        const xs = r[key].runs.filter((x) => x.ok).map((x) => x[m]);
        return `${HEAD_NAMES[r.name]} ${xs.length ? `${fmtNum(Math.min(...xs), digits)}–${fmtNum(Math.max(...xs), digits)}` : "—"}`;
      });
      if (parts.length) lines.push(`  ${label} ${unit}: ${parts.join(", ")}`);
    }
  }
  return lines;
}

function fmtNum(v, digits) {
  if (v === null || v === undefined) return "—";
  if (!Number.isFinite(v)) return "∞";
  return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function renderTable(results, o, { markdown = false } = {}) {
  const rs = rows(results, o);
  const head = ["#", "metric", "hubcache", "nginx(lock)", "nginx(slice)", "ratio", "target", "status"];
  const body = rs.map((r) => [
    r.group, r.metric, fmtNum(r.vals.hubcache, r.fmt), fmtNum(r.vals["nginx-lock"], r.fmt), fmtNum(r.vals["nginx-slice"], r.fmt),
    r.ratio === null ? "—" : `${fmtNum(r.ratio, 2)}×`, r.target || "—", r.status || "",
  ]);
  if (markdown) {
    const line = (c) => `| ${c.join(" | ")} |`;
    return [line(head), line(head.map((h, i) => (i >= 2 && i <= 5 ? "---:" : "---"))), ...body.map(line)].join("\n");
  }
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const right = new Set([2, 3, 4, 5]);
  const fmtRow = (c) => c.map((x, i) => (right.has(i) ? x.padStart(w[i]) : x.padEnd(w[i]))).join("  ");
  return [fmtRow(head), w.map((n) => "-".repeat(n)).join("  "), ...body.map(fmtRow)].join("\n");
}

function machine() {
  let cpu = "?";
  try {
    cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync("/proc/cpuinfo", "utf8"))[1];
  } catch {}
  // The sender's congestion control decides what loopback delivery costs: BBR paces every
  // connection, and without the fq qdisc the kernel does it with a timer per burst, which about
  // doubled the proxy's CPU time per delivered byte in item 4 on the machine docs/benchmarks.md ran on.
  let tcpCc = "?";
  try {
    tcpCc = fs.readFileSync("/proc/sys/net/ipv4/tcp_congestion_control", "utf8").trim();
  } catch {}
  return { nproc: os.cpus().length, cpu, kernel: os.release(), memGiB: Math.round(os.totalmem() / GiB), tcpCc, load: os.loadavg().map((x) => x.toFixed(2)).join(" ") };
}

// ----------------------------------------------------------------------------- main

async function main() {
  const o = parseArgs(process.argv.slice(2));
  PIDFILE = path.join(o.work, "pids");
  const deadline = setTimeout(() => {
    log(`deadline of ${o.deadlineS} s reached: stopping`);
    stopAll().finally(() => process.exit(3));
  }, o.deadlineS * 1000);
  deadline.unref();
  for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => stopAll().finally(() => process.exit(130)));

  const m0 = machine();
  const t0 = Date.now();
  log(`size ${o.size} B, CDN ${o.cdnRate} B/s per connection, latency ${o.latencyMs} ms, slice ${o.slice}, ${o.clients} clients, ` +
    `${o.loadReps} rounds of ${o.duration} s load runs, ${o.reps} reps; load average ${m0.load}`);
  const fake = await startFake(o);
  log(`fake Hub ${fake.hub}, CDN ${fake.cdn}`);
  const proxies = [];
  const results = [];
  for (const name of o.proxies) {
    if (!NAMES.includes(name)) throw new Error(`unknown proxy ${name}`);
    proxies.push(new Proxy(name, o, fake));
    results.push(await benchProxy(proxies.at(-1), fake, o));
  }
  await loadRounds(proxies, results, fake, o);
  for (const p of proxies) {
    await p.stop();
    await fsp.rm(path.join(p.dir, "cache"), { recursive: true, force: true });
  }
  await stopProc(fake.child);
  const elapsedS = (Date.now() - t0) / 1000;
  const m1 = machine();
  const hubcacheVersion = (await execFileP(o.hubcache, ["--version"])).stdout?.trim() ?? "?";
  const nginxVersion = ((await execFileP("nginx", ["-v"])).stderr ?? "").trim().replace(/^nginx version: /, "");
  const gitRev = ((await execFileP("git", ["-C", ROOT, "describe", "--always", "--dirty"])).stdout ?? "").trim() || "?";
  let binTime = "?";
  try {
    binTime = fs.statSync(o.hubcache).mtime.toISOString();
  } catch {}
  const meta = {
    date: new Date().toISOString(), ...m1, loadBefore: m0.load, elapsedS, size: o.size, cdnRate: o.cdnRate,
    latencyMs: o.latencyMs, slice: o.slice, clients: o.clients, duration: o.duration, reps: o.reps, loadReps: o.loadReps,
    hubcache: o.hubcache, hubcacheBuilt: binTime, gitRev, hubcacheVersion, nginxVersion, quick: o.quick,
  };

  const out = [];
  out.push("");
  out.push(`hubcache benchmark — ${meta.date}`);
  out.push(`machine: ${meta.nproc} × ${meta.cpu}, ${meta.memGiB} GiB, Linux ${meta.kernel}, TCP congestion control ${meta.tcpCc}, load average ${m0.load} → ${m1.load}`);
  out.push(`origin: fake Hub + CDN, ${o.size} B file, CDN ${(o.cdnRate / 1e6).toFixed(1)} MB/s per connection, ${o.latencyMs} ms latency per request; ` +
    `${elapsedS.toFixed(0)} s`);
  out.push(`${meta.hubcacheVersion} (${o.hubcache}, built ${binTime}; checkout at ${gitRev}); ${nginxVersion} (slice ${o.slice})`);
  out.push(`1-min load average at the start → end of each proxy's turn (the benchmark itself adds about 2): ` +
    results.map((r) => `${r.name} ${r.loadStart?.toFixed(1)} → ${r.loadEnd?.toFixed(1) ?? "?"}`).join(", "));
  out.push("ratio: hubcache vs the better nginx variant, >1 = hubcache better (throughput: hubcache/nginx; times, bytes, RSS: nginx/hubcache)");
  out.push("");
  out.push(renderTable(results, o));
  out.push("");
  out.push(`item 2 is the median of ${o.loadReps} runs per proxy; their range (min–max):`);
  out.push(...loadSpread(results));
  const notes = [];
  for (const r of results) {
    for (const [k, v] of Object.entries(r)) {
      if (v && typeof v === "object" && v.ok === false) notes.push(`${r.name} ${k}: ${v.error}`);
    }
    if (r.warm?.ok && r.warm.upstreamBytes > 0) notes.push(`${r.name}: warm hits pulled ${r.warm.upstreamBytes} upstream bytes`);
    if (r.smallUpstream > 0) notes.push(`${r.name}: small-file load pulled ${r.smallUpstream} bytes of files from upstream`);
  }
  if (notes.length) {
    out.push("");
    out.push("problems:");
    for (const n of notes) out.push(`  - ${n}`);
  }
  process.stdout.write(out.join("\n") + "\n");
  const json = { meta, results, table: rows(results, o).map(({ pick, pass, ...r }) => r), markdown: renderTable(results, o, { markdown: true }) };
  await fsp.writeFile(path.join(o.work, "results.json"), JSON.stringify(json, null, 1));
  if (o.json) await fsp.writeFile(o.json, JSON.stringify(json, null, 1));
  clearTimeout(deadline);
  await stopAll();
}

main().catch(async (e) => {
  log(`failed: ${e.stack ?? e}`);
  await stopAll();
  process.exit(1);
});
