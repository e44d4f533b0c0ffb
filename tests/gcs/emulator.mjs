#!/usr/bin/env node
// A local GCS JSON API for tests: firebase-tools' Cloud Storage emulator
// (pinned in package.json) plus the compat layer in compat.mjs, without the
// Firebase CLI, Java or any network access.
//
//   node tests/gcs/emulator.mjs [--port N]      (default 0: any free port)
//
// Listens on 127.0.0.1 only. When ready, prints exactly one line on stdout,
// {"endpoint":"http://127.0.0.1:PORT"}; everything else goes to stderr. Exits
// with status 0 on SIGTERM or SIGINT, after deleting its blob files. Each
// run keeps its blobs in a fresh directory under $TMPDIR, so concurrent
// emulators never share files.
//
// How it is put together (gcs-emulator.md, "Writing a launcher"): the Java
// rules runtime is stubbed out (it only serves the Firebase /v0 API), and
// createApp is wrapped so the compat router sees every request first.
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { createCompatRouter, patchStorageModules } from "./compat.mjs";

const k_host = "127.0.0.1";
const k_project = "demo-hubcache"; // demo-*: the emulator skips every online project lookup
const k_stop_timeout_ms = 5000;

function fail(message) {
  process.stderr.write(`gcs emulator: ${message}\n`);
  process.exit(1);
}

function parsePort(argv) {
  if (argv.length === 0) return 0;
  if (argv.length === 2 && argv[0] === "--port" && /^\d+$/.test(argv[1]) && Number(argv[1]) < 65536) {
    return Number(argv[1]);
  }
  fail("usage: node emulator.mjs [--port N]");
}

const port = parsePort(process.argv.slice(2));
// stdout carries only the ready line; firebase-tools' debug output goes to stderr.
console.log = console.info = console.debug = console.error;

const here = path.dirname(fileURLToPath(import.meta.url));
const fbRoot = path.join(here, "node_modules", "firebase-tools");
const require = createRequire(import.meta.url);
const load = (relative) => {
  try {
    return require(path.join(fbRoot, "lib", relative));
  } catch (err) {
    fail(`cannot load firebase-tools (run \`npm ci --ignore-scripts\` in ${here}): ${err.message}`);
  }
};

// Blob files live under os.tmpdir(), which follows $TMPDIR when called.
const baseTmp = os.tmpdir();
const tmpDir = mkdtempSync(path.join(baseTmp, "hubcache-gcs-emulator-"));
process.env.TMPDIR = tmpDir;

const fb = {
  metadata: load("emulator/storage/metadata.js"),
  files: load("emulator/storage/files.js"),
  multipart: load("emulator/storage/multipart.js"),
  errors: load("emulator/storage/errors.js"),
  crc: load("emulator/storage/crc.js"),
  // firebase-tools' own copy, so the router we add is the same express.
  express: createRequire(path.join(fbRoot, "lib/emulator/storage/apis/gcloud.js"))("express"),
};
const { StorageEmulator } = load("emulator/storage/index.js");
const { StorageRulesRuntime, StorageRulesIssues } = load("emulator/storage/rules/runtime.js");
const { EmulatorRegistry } = load("emulator/registry.js");
const serverModule = load("emulator/storage/server.js");

StorageRulesRuntime.prototype.start = async () => {};
StorageRulesRuntime.prototype.stop = async () => {};
StorageEmulator.prototype.createRulesManager = () => ({
  start: async () => new StorageRulesIssues(),
  stop: async () => {},
  getRuleset: () => undefined,
});
patchStorageModules(fb);

// The emulator calls listen(port, host) on what createApp returns. Listen on
// our port instead (0 works: the real port is known after 'listening').
let server;
const originalCreateApp = serverModule.createApp;
serverModule.createApp = async (projectId, emulator) => {
  const inner = await originalCreateApp(projectId, emulator);
  const outer = fb.express();
  outer.disable("x-powered-by");
  outer.use(createCompatRouter(fb, emulator));
  outer.use(inner);
  outer.listen = () => {
    server = http.createServer(outer);
    server.listen(port, k_host);
    return server;
  };
  return outer;
};

// port 9199 is only a placeholder until the server listens (port 0 would
// make the emulator fall back to its default).
const emulator = new StorageEmulator({ projectId: k_project, host: k_host, port: port || 9199, rules: undefined, auto_download: false });
EmulatorRegistry.set("storage", emulator);

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  const timer = setTimeout(() => {
    process.stderr.write(`gcs emulator: stop timed out after ${signal}\n`);
    process.exit(0);
  }, k_stop_timeout_ms);
  timer.unref();
  try {
    await emulator.stop(); // deletes the blob files, closes every connection
  } catch (err) {
    process.stderr.write(`gcs emulator: stop: ${err.message}\n`);
  }
  rmSync(tmpDir, { recursive: true, force: true });
  process.exit(0);
}
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));

try {
  await emulator.start();
  await new Promise((resolve, reject) => {
    server.once("listening", resolve);
    server.once("error", reject);
  });
} catch (err) {
  rmSync(tmpDir, { recursive: true, force: true });
  fail(`cannot start: ${err.message}`);
}
const actualPort = server.address().port;
emulator.args.port = actualPort; // selfLink/mediaLink URLs use it
process.stdout.write(JSON.stringify({ endpoint: `http://${k_host}:${actualPort}` }) + "\n");
