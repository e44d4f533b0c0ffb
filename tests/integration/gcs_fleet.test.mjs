// Several hubcache replicas sharing one GCS bucket (the firebase-tools emulator with the compat layer,
// tests/gcs/emulator.mjs): what one replica pulled, another serves with zero bytes from the Hub's CDN,
// also with the Hub stopped (blobs and metadata from GCS); two replicas missing the same LFS file at
// once pull it once (lease); a GCS-only replica lets a fill's clients finish before its upload does; a
// GCS outage does not fail client downloads.
// The tests run in order and build on each other.
//   HUBCACHE_BIN=/work/build-gcs/bin/hubcache node --test tests/integration/gcs_fleet.test.mjs
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import * as hub from "@huggingface/hub";
import { startFakeHub, tmpDir, sha256File, hubcacheBin } from "./harness.mjs";
import { http1, describe as desc, Fleet, logTail } from "./proxy_lib.mjs";
import { hashSafeFetch, sleep } from "./metadata_lib.mjs";

console.debug = () => {}; // hub.js logs "Downloading … to ….incomplete" via console.debug

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GCS_DIR = path.join(HERE, "..", "gcs");
const REPO = "acme/tiny-model";
const DS = "acme/tiny-dataset";
const BIG_DS = "acme/big-dataset";
const BUCKET = "hubcache-fleet";
const PREFIX = `fleet-${process.pid}/`;
const BIG_SIZE = 3 * 1024 * 1024 + 11;

const skip = !hubcacheBin()
  ? "HUBCACHE_BIN not set and no /work/build-main/bin/hubcache"
  : !fs.existsSync(path.join(GCS_DIR, "node_modules", "firebase-tools", "package.json"))
    ? `the GCS emulator is not installed: run npm ci --ignore-scripts in ${GCS_DIR}`
    : false;

let fake;
let ports;
let emulator; // {endpoint, proc, exited}
let fleet;
let tiny;

/** Starts tests/gcs/emulator.mjs with its own TMPDIR; resolves once it printed its endpoint. */
async function startEmulator() {
  const tmp = await tmpDir("gcs-emu-");
  const proc = spawn(process.execPath, [path.join(GCS_DIR, "emulator.mjs")], {
    env: { ...process.env, TMPDIR: tmp },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stderr = "";
  proc.stderr.setEncoding("utf8");
  proc.stderr.on("data", (d) => (stderr = (stderr + d).slice(-20000)));
  const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
  process.on("exit", () => proc.kill("SIGKILL"));
  const endpoint = await new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`GCS emulator not ready in 60 s:\n${stderr}`)), 60000);
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (d) => {
      out += d;
      const nl = out.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)).endpoint);
      }
    });
    exited.then((e) => reject(new Error(`GCS emulator exited (${JSON.stringify(e)}):\n${stderr}`)));
  });
  return { endpoint, proc, exited };
}

/** The objects in the bucket under our prefix (names without the prefix). */
async function bucketObjects(sub = "") {
  const names = [];
  let token = "";
  do {
    const q = `prefix=${encodeURIComponent(PREFIX + sub)}&maxResults=1000${token ? `&pageToken=${encodeURIComponent(token)}` : ""}`;
    const r = await http1(emulator.endpoint, "GET", `/storage/v1/b/${BUCKET}/o?${q}`);
    assert.equal(r.status, 200, `list ${sub}: ${desc(r)}`);
    const doc = JSON.parse(r.body.toString("utf8"));
    for (const o of doc.items ?? []) names.push(o.name.slice(PREFIX.length));
    token = doc.nextPageToken ?? "";
  } while (token);
  return names;
}

/**
 * An HTTP relay in front of the emulator that, while `holding`, keeps back every request whose body
 * names an object containing `marker` (the upload of a blob) until release(). Everything else passes.
 */
async function holdingRelay(target, marker) {
  const up = new URL(target);
  const held = [];
  let holding = false;
  const forward = (req, body, res) => {
    const out = http.request({ host: up.hostname, port: up.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode, r.headers);
      r.pipe(res);
    });
    out.on("error", () => res.destroy());
    out.end(body);
  };
  const server = http.createServer((req, res) => {
    const parts = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", () => {
      const body = Buffer.concat(parts);
      if (holding && req.method === "POST" && body.includes(marker)) held.push(() => forward(req, body, res));
      else forward(req, body, res);
    });
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    endpoint: `http://127.0.0.1:${server.address().port}`,
    hold() {
      holding = true;
    },
    heldCount: () => held.length,
    release() {
      holding = false;
      for (const go of held.splice(0)) go();
    },
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    }),
  };
}

/** Waits (bounded) until every blob of `shas` is in the bucket: uploads run in the background. */
async function waitForBlobs(shas, what) {
  const deadline = Date.now() + 30000;
  let have = [];
  while (Date.now() < deadline) {
    have = await bucketObjects("blobs/");
    if (shas.every((s) => have.includes(`blobs/${s}`))) return;
    await sleep(100);
  }
  assert.fail(`${what}: blobs never reached GCS; missing ${shas.filter((s) => !have.includes(`blobs/${s}`)).join(", ")}`);
}

function startReplica(name, extraArgs = []) {
  return fleet.start({ name, args: extraArgs });
}

async function withLogsOf(recs, fn) {
  try {
    return await fn();
  } catch (e) {
    for (const r of recs) process.stderr.write(`\n===== ${r.name} stderr (tail) =====\n${logTail(r.hc.logs(), 12000)}\n===== end =====\n`);
    throw e;
  }
}

/** hub.js snapshotDownload into an empty client cache; checks every file's bytes. */
async function hubSnapshot(url, revision, what) {
  const clientCache = await tmpDir("hfcache-");
  let snap;
  try {
    snap = await hub.snapshotDownload({ repo: REPO, hubUrl: url, cacheDir: clientCache, revision, fetch: hashSafeFetch });
  } catch (e) {
    throw new assert.AssertionError({ message: `${what}: snapshotDownload(${REPO}@${revision}) failed: ${e.message}${e.statusCode ? ` (HTTP ${e.statusCode} ${e.url ?? ""})` : ""}` });
  }
  assert.equal(path.basename(snap), tiny.mainCommit, `${what}: snapshot commit`);
  for (const [p, f] of Object.entries(tiny.filesAt(tiny.mainCommit))) {
    const onDisk = path.join(snap, p);
    assert.ok(fs.existsSync(onDisk), `${what}: ${p} missing`);
    assert.equal(await sha256File(onDisk), f.sha256, `${what}: ${p} bytes`);
  }
}

async function getFile(url, repoPath, file, what) {
  const r = await http1(url, "GET", repoPath, { keepBody: false, timeoutMs: 60000 });
  assert.equal(r.status, 200, `${what}: ${desc(r)}`);
  assert.ok(r.complete, `${what}: body incomplete: ${desc(r)}`);
  assert.equal(r.sha256, file.sha256, `${what}: bytes`);
}

const lfsShas = () => Object.values(tiny.files).filter((f) => f.lfs).map((f) => f.sha256);

before(async () => {
  if (skip) return;
  emulator = await startEmulator();
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true });
  ports = { hubPort: Number(new URL(fake.hubUrl).port), cdnPort: Number(new URL(fake.cdnUrl).port) };
  tiny = fake.repos[REPO];
  fleet = new Fleet({
    upstream: fake.hubUrl,
    args: ["--log-level", "debug", "--upstream-timeout", "5s", "--gcs-bucket", BUCKET, "--gcs-prefix", PREFIX],
    // automatic credentials: none for an endpoint that came from STORAGE_EMULATOR_HOST
    env: { STORAGE_EMULATOR_HOST: emulator.endpoint },
  });
});
after(async () => {
  if (skip) return;
  try {
    const problems = await fleet.shutdownAndCheck(15000);
    assert.deepEqual(problems, [], problems.join("\n"));
  } finally {
    await fake?.close();
    emulator?.proc.kill("SIGTERM");
  }
});

test("replica A pulls a blob and a snapshot; its blobs and metadata reach the bucket in the background", { skip, timeout: 90000 }, async () => {
  const a = await startReplica("A");
  await withLogsOf([a], async () => {
    await getFile(a.hc.url, `/${REPO}/resolve/main/big.bin`, tiny.files["big.bin"], "A big.bin");
    await hubSnapshot(a.hc.url, "main", "A");
    assert.ok(fake.stats().cdn.bodyBytes >= BIG_SIZE, "A pulled from the CDN");
    await waitForBlobs(lfsShas(), "A");
    const objects = await bucketObjects();
    assert.ok(objects.some((n) => n.startsWith("index/")), `index records in GCS: ${objects.join(" ")}`);
    assert.ok(objects.some((n) => n.startsWith("docs/")), `documents in GCS: ${objects.join(" ")}`);
  });
});

test("replica B with an empty disk serves the blob and the whole snapshot with zero CDN bytes", { skip, timeout: 90000 }, async () => {
  const b = await startReplica("B");
  await withLogsOf([b], async () => {
    await fake.idle();
    fake.reset();
    await getFile(b.hc.url, `/${REPO}/resolve/main/big.bin`, tiny.files["big.bin"], "B big.bin");
    await hubSnapshot(b.hc.url, "main", "B");
    await hubSnapshot(b.hc.url, tiny.mainCommit, "B by commit");
    await fake.idle();
    const s = fake.stats();
    assert.equal(s.cdn.requests, 0, `CDN requests through B: ${JSON.stringify(s.cdn.paths)}`);
    assert.equal(s.cdn.bodyBytes, 0, "CDN bytes through B");
  });
});

test("GCS-only replica (no --cache-dir): serves from GCS without copying to disk; its own fills reach GCS", { skip, timeout: 90000 }, async () => {
  const xdg = await tmpDir("xdg-");
  const g = await fleet.start({ name: "G (GCS only)", noCacheDir: true, env: { XDG_CACHE_HOME: xdg } });
  await withLogsOf([g], async () => {
    assert.match(g.hc.logs(), /disk only staging for GCS bucket/, "GCS-only mode chosen");
    await fake.idle();
    fake.reset();
    await getFile(g.hc.url, `/${REPO}/resolve/main/big.bin`, tiny.files["big.bin"], "G big.bin");
    await fake.idle();
    assert.equal(fake.stats().cdn.requests, 0, "G served big.bin from GCS");
    const blobsDir = path.join(xdg, "hubcache", "blobs");
    const onDisk = fs.existsSync(blobsDir) ? fs.readdirSync(blobsDir, { recursive: true }).filter((n) => /^[0-9a-f]{2}\/[0-9a-f]{64}$/.test(n)) : [];
    assert.deepEqual(onDisk, [], "a GCS hit is not copied to disk in the GCS-only mode");
    // A file nobody pulled yet (the dataset's LFS file is left for the lease test): G fills it from the Hub
    // and uploads it.
    const readme = fake.repos[DS].files["README.md"];
    await getFile(g.hc.url, `/datasets/${DS}/resolve/main/README.md`, readme, "G dataset README");
    await waitForBlobs([readme.sha256], "G");
  });
});

test("GCS-only replica: a fill's clients are done before its upload to the bucket is", { skip, timeout: 90000 }, async () => {
  // The upload of a large file can take minutes, far longer than a client waits for a byte (10 s for
  // huggingface_hub). Here it is held back until the client is done: with --upstream-timeout 5s, a client
  // waiting for the upload would be cut off after 10 s with its last byte missing.
  const relay = await holdingRelay(emulator.endpoint, `${PREFIX}blobs/`);
  const xdg = await tmpDir("xdg-");
  const h = await fleet.start({ name: "H (GCS only, uploads held)", noCacheDir: true, env: { XDG_CACHE_HOME: xdg, STORAGE_EMULATOR_HOST: relay.endpoint } });
  try {
    await withLogsOf([h], async () => {
      const p = "data/train/part-00000.jsonl";
      const file = fake.repos[BIG_DS].files[p];
      relay.hold();
      await getFile(h.hc.url, `/datasets/${BIG_DS}/resolve/main/${p}`, file, "H, its upload held");
      // The upload had started (it is held now) and the blob is not in the bucket yet.
      const deadline = Date.now() + 10000;
      while (relay.heldCount() === 0 && Date.now() < deadline) await sleep(50);
      assert.ok(relay.heldCount() >= 1, "the blob's upload was held while the client finished");
      assert.ok(!(await bucketObjects("blobs/")).includes(`blobs/${file.sha256}`), "the blob is not in the bucket yet");
      relay.release();
      await waitForBlobs([file.sha256], "H, once its upload went through");
    });
  } finally {
    relay.release();
    await fleet.stop(h);
    await relay.close();
  }
});

test("SIGTERM: an upload still running gets what is left of --shutdown-grace before the replica exits", { skip, timeout: 90000 }, async () => {
  const relay = await holdingRelay(emulator.endpoint, `${PREFIX}blobs/`);
  const k = await fleet.start({ name: "K (upload held, then SIGTERM)", env: { STORAGE_EMULATOR_HOST: relay.endpoint } });
  try {
    const p = "data/train/part-00002.jsonl";
    const file = fake.repos[BIG_DS].files[p];
    assert.ok(file, p);
    relay.hold();
    await getFile(k.hc.url, `/datasets/${BIG_DS}/resolve/main/${p}`, file, "K, its upload held");
    const deadline = Date.now() + 10000;
    while (relay.heldCount() === 0 && Date.now() < deadline) await sleep(50);
    assert.ok(relay.heldCount() >= 1, "the upload was held");
    const stopping = fleet.stop(k); // SIGTERM; --shutdown-grace is 10 s
    await sleep(1000);
    assert.equal(k.exit, null, "K waits for its upload instead of exiting");
    relay.release();
    const e = await stopping;
    assert.equal(e.code, 0, `K's exit: ${JSON.stringify(e)}`);
    assert.ok((await bucketObjects("blobs/")).includes(`blobs/${file.sha256}`), "the blob reached the bucket before K exited");
  } finally {
    relay.release();
    if (k.exit === null) await fleet.stop(k);
    await relay.close();
  }
});

test("two replicas missing the same LFS file at once pull it from the CDN once (lease)", { skip, timeout: 90000 }, async () => {
  const d = await startReplica("D");
  const e = await startReplica("E");
  await withLogsOf([d, e], async () => {
    const file = fake.repos[DS].files["data/train.csv"];
    assert.ok(file.lfs, "the dataset's train.csv is an LFS file");
    await fake.idle();
    fake.reset();
    // A slow CDN keeps the first fill (and its lease) running while the second replica misses too.
    fake.scenario({ cdnDelayMs: 1500 });
    const p = `/datasets/${DS}/resolve/main/data/train.csv`;
    const got = await Promise.allSettled([getFile(d.hc.url, p, file, "D train.csv"), getFile(e.hc.url, p, file, "E train.csv")]);
    fake.scenario({ cdnDelayMs: null });
    await fake.idle();
    const s = fake.stats();
    assert.equal(s.cdn.requests, 1, `CDN requests for one file missed by two replicas: ${JSON.stringify(s.cdn.paths)}`);
    for (const g of got) if (g.status === "rejected") throw g.reason;
  });
});

test("Hub stopped: replica C with an empty disk serves the snapshot from GCS (blobs and metadata)", { skip, timeout: 90000 }, async () => {
  await fake.close();
  const c = await startReplica("C");
  await withLogsOf([c], async () => {
    await hubSnapshot(c.hc.url, tiny.mainCommit, "Hub down, by commit");
    await hubSnapshot(c.hc.url, "main", "Hub down, by branch");
    await getFile(c.hc.url, `/${REPO}/resolve/main/big.bin`, tiny.files["big.bin"], "Hub down, big.bin");
  });
  fake = await startFakeHub({ bigSize: BIG_SIZE, quiet: true, ...ports });
  tiny = fake.repos[REPO];
});

test("GCS outage: replicas keep serving from disk and upstream", { skip, timeout: 120000 }, async () => {
  // A short grace: uploads still running at SIGTERM would outlast it, and say so.
  const f = await startReplica("F", ["--shutdown-grace", "2s"]);
  const a = fleet.all.find((r) => r.name === "A");
  emulator.proc.kill("SIGKILL");
  await emulator.exited;
  await withLogsOf([f, a], async () => {
    // F has nothing on disk and GCS is gone: everything comes from the Hub.
    await getFile(f.hc.url, `/${REPO}/resolve/main/model.safetensors`, tiny.files["model.safetensors"], "F, GCS down");
    await hubSnapshot(f.hc.url, "main", "F, GCS down");
    // A serves what it has on disk, and fills what it lacks.
    await getFile(a.hc.url, `/${REPO}/resolve/main/big.bin`, tiny.files["big.bin"], "A, GCS down");
    await getFile(a.hc.url, `/datasets/${DS}/resolve/main/data/train.csv`, fake.repos[DS].files["data/train.csv"], "A, GCS down, new file");
    assert.match(f.hc.logs(), /gcs unavailable/, "the outage is logged");
    // Uploads are not tried while GCS is known to be down (each attempt would spend the GCS retry
    // budget, seconds per blob), so none is left running to hold F's SIGTERM to the end of its grace.
    const e = await fleet.stop(f);
    assert.equal(e.code, 0, `F's exit: ${JSON.stringify(e)}`);
    assert.doesNotMatch(f.hc.logs(), /gcs uploads still running at the end of the shutdown grace/, "F waited out its grace");
  });
});
