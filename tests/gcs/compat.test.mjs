// Self-test of the GCS emulator launcher and its compat layer: every gap of
// the emulator as shipped that compat.mjs fills is checked here against
// GCS's documented behaviour, through the launcher exactly as the C++ tests
// start it.
//
//   node --test tests/gcs/compat.test.mjs     (after `npm ci --ignore-scripts` in tests/gcs)
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const k_chunk = 256 * 1024; // GCS's resumable chunk granularity

let child;
let endpoint;
let bucketCounter = 0;
// Buckets are implicit; a fresh one per test keeps tests independent.
const freshBucket = () => `compat-${process.pid}-${++bucketCounter}`;

before(async () => {
  child = spawn(process.execPath, [path.join(here, "emulator.mjs")], { stdio: ["ignore", "pipe", "inherit"] });
  const line = await new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (data) => {
      out += data;
      if (out.includes("\n")) resolve(out);
    });
    child.once("exit", (code) => reject(new Error(`emulator exited with ${code} before it was ready`)));
  });
  assert.match(line, /^\{"endpoint":"http:\/\/127\.0\.0\.1:\d+"\}\n$/);
  endpoint = JSON.parse(line).endpoint;
});

after(async () => {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  child.kill("SIGTERM");
  assert.deepEqual(await exited, { code: 0, signal: null });
});

const enc = encodeURIComponent;
const objectUrl = (bucket, name, query = "") => `${endpoint}/storage/v1/b/${bucket}/o/${enc(name)}${query}`;
const md5 = (buf) => createHash("md5").update(buf).digest("base64");
const bytes = (n, seed = 1) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) % 251));

async function mediaUpload(bucket, name, body, query = "") {
  return fetch(`${endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${enc(name)}${query}`, {
    method: "POST", body, headers: { "Content-Type": "application/octet-stream" },
  });
}

async function download(bucket, name, headers = {}) {
  const res = await fetch(objectUrl(bucket, name, "?alt=media"), { headers });
  return { res, body: Buffer.from(await res.arrayBuffer()) };
}

async function startResumable(bucket, name, query = "", total) {
  const headers = { "Content-Type": "application/json", "X-Upload-Content-Type": "application/octet-stream" };
  if (total !== undefined) headers["X-Upload-Content-Length"] = String(total);
  const res = await fetch(`${endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=resumable${query}`, {
    method: "POST", headers, body: JSON.stringify({ name, metadata: { k: "v" } }),
  });
  return res;
}

const putChunk = (session, body, range) =>
  fetch(session, { method: "PUT", body, headers: range === undefined ? {} : { "Content-Range": range } });

describe("launcher", () => {
  test("answers the GCS JSON API on 127.0.0.1", async () => {
    const res = await fetch(`${endpoint}/storage/v1/b/${freshBucket()}/o`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).kind, "storage#objects");
  });
});

describe("buckets", () => {
  test("get answers a bucket resource; insert answers 409 for an existing bucket", async () => {
    const bucket = freshBucket();
    const got = await fetch(`${endpoint}/storage/v1/b/${bucket}`);
    assert.equal(got.status, 200);
    assert.equal((await got.json()).name, bucket);

    const other = freshBucket();
    const insert = () => fetch(`${endpoint}/storage/v1/b?project=demo-hubcache`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name: other }),
    });
    assert.equal((await insert()).status, 200);
    assert.equal((await insert()).status, 409);
  });
});

describe("preconditions", () => {
  test("ifGenerationMatch=0 refuses to overwrite (media and multipart) with 412 conditionNotMet", async () => {
    const bucket = freshBucket();
    assert.equal((await mediaUpload(bucket, "obj", "v1", "&ifGenerationMatch=0")).status, 200);
    const again = await mediaUpload(bucket, "obj", "v2", "&ifGenerationMatch=0");
    assert.equal(again.status, 412);
    assert.equal((await again.json()).error.errors[0].reason, "conditionNotMet");

    const boundary = "b0undary";
    const multipart = Buffer.concat([
      Buffer.from(`--${boundary}\r\nContent-Type: application/json\r\n\r\n{"name":"obj"}\r\n`),
      Buffer.from(`--${boundary}\r\nContent-Type: application/octet-stream\r\n\r\nv3\r\n--${boundary}--\r\n`),
    ]);
    const mp = await fetch(`${endpoint}/upload/storage/v1/b/${bucket}/o?uploadType=multipart&ifGenerationMatch=0`, {
      method: "POST", body: multipart, headers: { "Content-Type": `multipart/related; boundary=${boundary}` },
    });
    assert.equal(mp.status, 412);
    assert.equal((await download(bucket, "obj")).body.toString(), "v1");
  });

  test("concurrent conditional creates have exactly one winner", async () => {
    const bucket = freshBucket();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => mediaUpload(bucket, "race", `writer ${i}`, "&ifGenerationMatch=0")));
    const statuses = results.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, ...Array(19).fill(412)]);
  });

  test("generation preconditions on get, delete and patch; generation= names the live object", async () => {
    const bucket = freshBucket();
    const created = await (await mediaUpload(bucket, "obj", "data")).json();
    const gen = created.generation;
    assert.equal((await fetch(objectUrl(bucket, "obj", `?ifGenerationMatch=${gen}`))).status, 200);
    assert.equal((await fetch(objectUrl(bucket, "obj", "?ifGenerationMatch=1"))).status, 412);
    assert.equal((await fetch(objectUrl(bucket, "obj", `?ifGenerationNotMatch=${gen}`))).status, 304);
    assert.equal((await fetch(objectUrl(bucket, "obj", "?generation=1"))).status, 404);
    assert.equal((await fetch(objectUrl(bucket, "obj", `?generation=${gen}`))).status, 200);

    const patch = (query) => fetch(objectUrl(bucket, "obj", query), {
      method: "PATCH", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ metadata: { a: "b" } }),
    });
    const patched = await patch("?ifMetagenerationMatch=1");
    assert.equal(patched.status, 200);
    assert.equal((await patched.json()).metageneration, "2");
    assert.equal((await patch("?ifMetagenerationMatch=1")).status, 412);

    assert.equal((await fetch(objectUrl(bucket, "obj", "?ifGenerationMatch=1"), { method: "DELETE" })).status, 412);
    assert.equal((await fetch(objectUrl(bucket, "obj", `?ifGenerationMatch=${gen}`), { method: "DELETE" })).status, 204);
    assert.equal((await fetch(objectUrl(bucket, "obj"), { method: "DELETE" })).status, 404);
  });

  test("generations are 16 digits and strictly increasing", async () => {
    const bucket = freshBucket();
    let previous = 0n;
    for (let i = 0; i < 20; ++i) {
      const { generation } = await (await mediaUpload(bucket, `g${i}`, "x")).json();
      assert.match(generation, /^\d{16}$/);
      assert.ok(BigInt(generation) > previous);
      previous = BigInt(generation);
    }
  });
});

describe("resumable uploads", () => {
  test("several chunks: 308 + Range until complete, status queries, resent overlap skipped, gaps refused", async () => {
    const bucket = freshBucket();
    const data = bytes(2 * k_chunk + 1000);
    const total = data.length;
    const start = await startResumable(bucket, "dir/big obj+1", "&ifGenerationMatch=0", total);
    assert.equal(start.status, 200);
    const session = start.headers.get("location");
    assert.match(session, /upload_id=/);

    const first = await putChunk(session, data.subarray(0, k_chunk), `bytes 0-${k_chunk - 1}/*`);
    assert.equal(first.status, 308);
    assert.equal(first.headers.get("range"), `bytes=0-${k_chunk - 1}`);

    const status = await putChunk(session, undefined, "bytes */*");
    assert.equal(status.status, 308);
    assert.equal(status.headers.get("range"), `bytes=0-${k_chunk - 1}`);

    const gap = await putChunk(session, data.subarray(k_chunk + 10, 2 * k_chunk), `bytes ${k_chunk + 10}-${2 * k_chunk - 1}/*`);
    assert.equal(gap.status, 400);
    const mismatch = await putChunk(session, data.subarray(k_chunk, k_chunk + 5), `bytes ${k_chunk}-${k_chunk + 9}/*`);
    assert.equal(mismatch.status, 400);

    // Resend from 100 bytes before what the server has: the overlap is skipped.
    const second = await putChunk(session, data.subarray(k_chunk - 100, 2 * k_chunk), `bytes ${k_chunk - 100}-${2 * k_chunk - 1}/${total}`);
    assert.equal(second.status, 308);
    assert.equal(second.headers.get("range"), `bytes=0-${2 * k_chunk - 1}`);

    const last = await putChunk(session, data.subarray(2 * k_chunk), `bytes ${2 * k_chunk}-${total - 1}/${total}`);
    assert.equal(last.status, 200);
    const object = await last.json();
    assert.equal(object.name, "dir/big obj+1");
    assert.equal(object.size, String(total));
    assert.equal(object.md5Hash, md5(data));
    assert.deepEqual(object.metadata, { k: "v" });

    // A PUT to a finalised session answers the same object again.
    const repeat = await putChunk(session, undefined, `bytes */${total}`);
    assert.equal(repeat.status, 200);
    assert.equal((await repeat.json()).generation, object.generation);
    const { body } = await download(bucket, "dir/big obj+1");
    assert.ok(body.equals(data));
  });

  test("a whole object in one PUT without Content-Range, and an empty object", async () => {
    const bucket = freshBucket();
    const one = (await startResumable(bucket, "one")).headers.get("location");
    const res = await putChunk(one, Buffer.from("all at once"));
    assert.equal(res.status, 200);
    assert.equal((await res.json()).size, "11");

    const empty = (await startResumable(bucket, "empty")).headers.get("location");
    const done = await putChunk(empty, undefined, "bytes */0");
    assert.equal(done.status, 200);
    assert.equal((await done.json()).size, "0");
  });

  test("preconditions are checked at the start and again at finalisation", async () => {
    const bucket = freshBucket();
    const session = (await startResumable(bucket, "obj", "&ifGenerationMatch=0")).headers.get("location");
    assert.equal((await mediaUpload(bucket, "obj", "winner")).status, 200);
    assert.equal((await putChunk(session, Buffer.from("loser"), "bytes 0-4/5")).status, 412);
    assert.equal((await download(bucket, "obj")).body.toString(), "winner");
    assert.equal((await startResumable(bucket, "obj", "&ifGenerationMatch=0")).status, 412);
  });

  test("cancel answers 499, later PUTs 410; reset forgets sessions", async () => {
    const bucket = freshBucket();
    const session = (await startResumable(bucket, "obj")).headers.get("location");
    assert.equal((await fetch(session, { method: "DELETE" })).status, 499);
    assert.equal((await putChunk(session, Buffer.from("x"), "bytes 0-0/1")).status, 410);

    const other = (await startResumable(bucket, "obj2")).headers.get("location");
    assert.equal((await fetch(`${endpoint}/internal/reset`, { method: "POST" })).status, 200);
    assert.equal((await putChunk(other, Buffer.from("x"), "bytes 0-0/1")).status, 404);
  });
});

describe("reads", () => {
  test("ranges: 206 with Content-Range, suffix ranges, 416 past the end", async () => {
    const bucket = freshBucket();
    await mediaUpload(bucket, "obj", "0123456789");
    const mid = await download(bucket, "obj", { Range: "bytes=2-4" });
    assert.equal(mid.res.status, 206);
    assert.equal(mid.res.headers.get("content-range"), "bytes 2-4/10");
    assert.equal(mid.body.toString(), "234");
    const open = await download(bucket, "obj", { Range: "bytes=7-" });
    assert.equal(open.body.toString(), "789");
    const suffix = await download(bucket, "obj", { Range: "bytes=-3" });
    assert.equal(suffix.body.toString(), "789");
    const past = await download(bucket, "obj", { Range: "bytes=10-" });
    assert.equal(past.res.status, 416);
    assert.equal(past.res.headers.get("content-range"), "bytes */10");
    const whole = await download(bucket, "obj");
    assert.equal(whole.res.status, 200);
    assert.equal(whole.res.headers.get("x-goog-hash"), `crc32c=${(await (await fetch(objectUrl(bucket, "obj"))).json()).crc32c},md5=${md5(Buffer.from("0123456789"))}`);
  });

  test("missing objects are 404 with reason notFound", async () => {
    const res = await fetch(objectUrl(freshBucket(), "nope"));
    assert.equal(res.status, 404);
    assert.equal((await res.json()).error.errors[0].reason, "notFound");
    assert.equal((await download(freshBucket(), "nope")).res.status, 404);
  });
});

describe("list paging", () => {
  test("deleting the token's object between pages does not restart the listing", async () => {
    const bucket = freshBucket();
    for (const name of ["p/a", "p/b", "p/c", "p/d", "p/e"]) await mediaUpload(bucket, name, "x");
    const list = async (token) => (await fetch(`${endpoint}/storage/v1/b/${bucket}/o?prefix=p%2F&maxResults=2${token ? `&pageToken=${enc(token)}` : ""}`)).json();
    const page1 = await list();
    assert.deepEqual(page1.items.map((i) => i.name), ["p/a", "p/b"]);
    assert.equal(page1.nextPageToken, "p/c");
    assert.equal((await fetch(objectUrl(bucket, "p/c"), { method: "DELETE" })).status, 204);
    const page2 = await list(page1.nextPageToken);
    assert.deepEqual(page2.items.map((i) => i.name), ["p/d", "p/e"]);
    assert.equal(page2.nextPageToken, undefined);
  });

  test("each delimiter prefix appears once across pages", async () => {
    const bucket = freshBucket();
    for (const name of ["a/1", "a/2", "b", "c/1", "d"]) await mediaUpload(bucket, name, "x");
    const seen = [];
    let token;
    do {
      const page = await (await fetch(`${endpoint}/storage/v1/b/${bucket}/o?delimiter=%2F&maxResults=1${token ? `&pageToken=${enc(token)}` : ""}`)).json();
      seen.push(...(page.prefixes ?? []), ...(page.items ?? []).map((i) => i.name));
      token = page.nextPageToken;
    } while (token);
    assert.deepEqual(seen, ["a/", "b", "c/", "d"]);
  });

  test("maxResults is capped at 1000", async () => {
    const bucket = freshBucket();
    for (let i = 0; i < 1001; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, 1001 - i) }, (_, j) => mediaUpload(bucket, `o${String(i + j).padStart(4, "0")}`, "x")));
    }
    const page = await (await fetch(`${endpoint}/storage/v1/b/${bucket}/o?maxResults=5000`)).json();
    assert.equal(page.items.length, 1000);
    assert.equal(page.nextPageToken, "o1000");
  });
});
