#!/usr/bin/env node
// Runs one fake Hub + fake CDN until SIGTERM/SIGINT. Prints exactly one JSON line to stdout:
//   {"hub":"http://127.0.0.1:PORT","cdn":"http://127.0.0.2:PORT","ca":null|"/tmp/.../ca.pem"}
// Options: --tls  --big-size BYTES  --cdn-rate BYTES_PER_SEC_PER_CONNECTION  --latency-ms MS
//          --hub-port N  --cdn-port N  --scenario JSON  --verbose
// Control it at runtime through http(s)://HUB/_fake/{stats,log,reset,scenario,repos,info}.

import { startFakeHub } from "./fakehub.mjs";

function parseArgs(argv) {
  const o = { tls: false, quiet: true };
  const num = (name, v) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} needs a non-negative number, got ${v}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (a.includes("=")) [a, v] = [a.slice(0, a.indexOf("=")), a.slice(a.indexOf("=") + 1)];
    const next = () => (v !== undefined ? v : argv[++i]);
    switch (a) {
      case "--tls": o.tls = true; break;
      case "--big-size": o.bigSize = num(a, next()); break;
      case "--cdn-rate": o.cdnRate = num(a, next()); break;
      case "--latency-ms": o.latencyMs = num(a, next()); break;
      case "--hub-port": o.hubPort = num(a, next()); break;
      case "--cdn-port": o.cdnPort = num(a, next()); break;
      case "--scenario": o.scenario = JSON.parse(next()); break;
      case "--verbose": o.quiet = false; break;
      case "-h": case "--help":
        process.stdout.write("usage: cli.mjs [--tls] [--big-size BYTES] [--cdn-rate BPS] [--latency-ms MS] [--hub-port N] [--cdn-port N] [--scenario JSON]\n");
        process.exit(0);
      default:
        throw new Error(`unknown option ${a}`);
    }
  }
  return o;
}

let opts;
try {
  opts = parseArgs(process.argv.slice(2));
} catch (e) {
  process.stderr.write(`fakehub: ${e.message}\n`);
  process.exit(2);
}

const fake = await startFakeHub(opts);
if (opts.scenario) fake.scenario(opts.scenario);
process.stdout.write(JSON.stringify({ hub: fake.hubUrl, cdn: fake.cdnUrl, ca: fake.caFile }) + "\n");

let stopping = false;
const stop = async (sig) => {
  if (stopping) return;
  stopping = true;
  if (!opts.quiet) process.stderr.write(`fakehub: ${sig}, shutting down\n`);
  const t = setTimeout(() => process.exit(1), 5000);
  await fake.close();
  clearTimeout(t);
  process.exit(0);
};
process.on("SIGTERM", () => stop("SIGTERM"));
process.on("SIGINT", () => stop("SIGINT"));
