// The GCS JSON API behaviour that firebase-tools' storage emulator (15.34.2)
// lacks, added in front of its own router (docs/gcs.md; the measurements
// behind each item are in the team's gcs-emulator.md notes, "What a compat
// layer must do").
//
//   1. PATCH / rewriteTo / copyTo also under /storage/v1/b/...
//   2. bucket get and insert under /storage/v1/b
//   3. preconditions (ifGeneration[Not]Match, ifMetageneration[Not]Match) and
//      generation=N on uploads, reads, deletes and patches; race-free creates
//   4. resumable uploads in several chunks (308 + Range, status queries,
//      overlap skipping, cancel)
//   5. 416 for a Range past the end
//   6. metadata GETs (and ranged downloads) without reading the whole blob
//   7. list paging that survives deletes, each prefix once, maxResults <= 1000
//   8. strictly increasing 16-digit generations
//   9. upload bodies read here, so the emulator's 130 MB body cap is gone
//
// Everything else falls through to the emulator unchanged. The real work
// (storing bytes, hashing, metadata) is still done by the emulator's own
// StorageLayer and UploadService.

const k_max_results = 1000;

// Patches module-level behaviour (items 7 and 8). Call once, before the
// emulator is constructed. `fb` holds firebase-tools' storage modules.
export function patchStorageModules(fb) {
  // 8. Date.now() milliseconds can repeat; GCS generations are microsecond-
  // style and strictly increasing.
  let lastGeneration = 0;
  const Base = fb.metadata.StoredFileMetadata;
  class GenerationalMetadata extends Base {
    constructor(opts, cloudFunctions, bytes) {
      if (!opts.generation) {
        lastGeneration = Math.max(lastGeneration + 1, Date.now() * 1000);
        opts = { ...opts, generation: lastGeneration };
      }
      super(opts, cloudFunctions, bytes);
    }
  }
  fb.metadata.StoredFileMetadata = GenerationalMetadata;

  // 7. Upstream restarts from the beginning when the token's object was
  // deleted, and repeats prefixes on every page. Here the token is the first
  // name (item or prefix) of the next page and a page is everything at or
  // after it.
  fb.files.StorageLayer.prototype.listObjects = async function (request) {
    const { bucketId, prefix = "", delimiter = "", pageToken, maxResults, authorization } = request;
    const authorized = await this._rulesValidator.validate(
      ["b", bucketId, "o", prefix.replace(/\/+$/, "")].join("/"), bucketId, "list", {}, this._projectId,
      authorization, delimiter);
    if (!authorized) throw new fb.errors.ForbiddenError();
    const entries = new Map(); // name -> object metadata, or null for a prefix
    for (const [, file] of this._files) {
      const { bucket, name } = file.metadata;
      if (bucket !== bucketId || !name.startsWith(prefix)) continue;
      const cut = delimiter ? name.indexOf(delimiter, prefix.length) : -1;
      if (cut === -1) entries.set(name, file.metadata);
      else entries.set(name.slice(0, cut + delimiter.length), null);
    }
    const names = [...entries.keys()].sort();
    let start = pageToken ? names.findIndex((n) => n >= pageToken) : 0;
    if (start === -1) start = names.length;
    const limit = Number.isInteger(maxResults) && maxResults > 0 ? Math.min(maxResults, k_max_results) : k_max_results;
    const page = names.slice(start, start + limit);
    const items = page.filter((n) => entries.get(n) !== null).map((n) => entries.get(n));
    const prefixes = page.filter((n) => entries.get(n) === null);
    return {
      nextPageToken: start + limit < names.length ? names[start + limit] : undefined,
      prefixes: prefixes.length > 0 ? prefixes : undefined,
      items: items.length > 0 ? items : undefined,
    };
  };
}

function sendError(res, code, reason, message) {
  res.status(code).json({ error: { code, message, errors: [{ message, domain: "global", reason }] } });
}

function conditionNotMet(res) {
  sendError(res, 412, "conditionNotMet", "At least one of the pre-conditions you specified did not hold.");
}

function notFound(req, res, bucket, name) {
  const message = `No such object: ${bucket}/${name}`;
  if (req.method === "GET" && req.query.alt === "media") res.status(404).send(message);
  else sendError(res, 404, "notFound", message);
}

async function readBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function parseJson(buffer) {
  if (buffer.length === 0) return {};
  try {
    const value = JSON.parse(buffer.toString("utf8"));
    return value !== null && typeof value === "object" ? value : undefined;
  } catch {
    return undefined;
  }
}

// As upstream: a leading "/" is not part of the name.
function objectName(name) {
  if (typeof name !== "string" || name === "") return undefined;
  return name.startsWith("/") ? name.slice(1) : name;
}

const k_preconditions = ["ifGenerationMatch", "ifGenerationNotMatch", "ifMetagenerationMatch", "ifMetagenerationNotMatch"];

function pickPreconditions(query) {
  return Object.fromEntries(k_preconditions.filter((k) => query[k] !== undefined).map((k) => [k, query[k]]));
}

// 3. The status a request with these preconditions gets against `md` (the
// live object, or undefined when there is none): 0 when they all hold, 400
// for a malformed value, 304 for a failed *NotMatch on a read, else 412.
// ifGenerationMatch=0 means "only if there is no live object".
function preconditionStatus(query, md, kind) {
  const values = pickPreconditions(query);
  for (const v of Object.values(values)) {
    if (typeof v !== "string" || !/^\d+$/.test(v)) return 400;
  }
  const same = (v, actual) => actual !== undefined && BigInt(v) === BigInt(actual);
  const generation = md ? md.generation : 0;
  const metageneration = md ? md.metageneration : undefined;
  const notMatchFailure = kind === "read" ? 304 : 412;
  if (values.ifGenerationMatch !== undefined && !same(values.ifGenerationMatch, generation)) return 412;
  if (values.ifGenerationNotMatch !== undefined && same(values.ifGenerationNotMatch, generation)) return notMatchFailure;
  if (values.ifMetagenerationMatch !== undefined && !same(values.ifMetagenerationMatch, metageneration)) return 412;
  if (values.ifMetagenerationNotMatch !== undefined && same(values.ifMetagenerationNotMatch, metageneration)) {
    return notMatchFailure;
  }
  return 0;
}

function sendPreconditionFailure(res, status) {
  if (status === 304) res.status(304).end();
  else if (status === 400) sendError(res, 400, "invalid", "Invalid precondition value.");
  else conditionNotMet(res);
}

// generation=N names the live generation or nothing (no object versioning).
function generationMatches(query, md) {
  return query.generation === undefined || String(query.generation) === String(md.generation);
}

// "bytes A-B/T", "bytes A-B/*", "bytes */T", "bytes */*" -> {first, last, total}
// (null for "*"); undefined when malformed.
function parseContentRange(header) {
  const m = /^bytes (?:(\d+)-(\d+)|\*)\/(\d+|\*)$/.exec(header.trim());
  if (!m) return undefined;
  const range = {
    first: m[1] === undefined ? null : Number(m[1]),
    last: m[2] === undefined ? null : Number(m[2]),
    total: m[3] === "*" ? null : Number(m[3]),
  };
  if (range.first !== null && range.last < range.first) return undefined;
  return range;
}

// Serialises "check preconditions, then write" per object, so concurrent
// conditional creates give exactly one winner (uploadObject awaits inside).
function makeLocks() {
  const tails = new Map();
  return async function withLock(key, fn) {
    const previous = tails.get(key) ?? Promise.resolve();
    let release;
    const mine = new Promise((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      if (tails.get(key) === tail) tails.delete(key);
    }
  };
}

// Express handlers here are async; route their failures to express's error
// handler instead of an unhandled rejection.
const wrap = (fn) => (req, res, next) => fn(req, res, next).catch(next);

// The compat router, to be mounted before the emulator's own app.
// `fb` as for patchStorageModules, plus `express`.
export function createCompatRouter(fb, emulator) {
  const { express } = fb;
  const router = express.Router();
  const admin = emulator.adminStorageLayer;
  const uploads = emulator.uploadService;
  const withLock = makeLocks();
  // Resumable sessions: upload_id -> {bucket, name, preconditions, total,
  // object (resource once finalised), cancelled}.
  const sessions = new Map();
  const resource = (md) => new fb.metadata.CloudStorageObjectMetadata(md);

  router.post("/internal/reset", (req, res, next) => {
    sessions.clear();
    next();
  });

  // 1. Upstream serves these only under /b/...
  router.use((req, res, next) => {
    if (req.path.startsWith("/storage/v1/b/") &&
        (req.method === "PATCH" || /^\/storage\/v1\/b\/[^/]+\/o\/[^/]+\/(rewriteTo|copyTo)\//.test(req.path))) {
      req.url = req.url.slice("/storage/v1".length);
    }
    next();
  });

  // 2. Buckets are implicit in the emulator: any bucket exists once named.
  router.get("/storage/v1/b/:bucket", (req, res) => {
    admin.createBucket(req.params.bucket);
    res.json(new fb.metadata.CloudStorageBucketMetadata(req.params.bucket));
  });
  router.post("/storage/v1/b", wrap(async (req, res) => {
    const body = parseJson(await readBody(req));
    if (!body || typeof body.name !== "string" || body.name === "") {
      return sendError(res, 400, "invalid", "A bucket name is required.");
    }
    if (emulator._buckets.has(body.name)) {
      return sendError(res, 409, "conflict", "Your previous request to create the named bucket succeeded and you already own it.");
    }
    admin.createBucket(body.name);
    res.json(new fb.metadata.CloudStorageBucketMetadata(body.name));
  }));

  // 3, 5, 6. Reads: metadata from memory; downloads read only the range.
  const objectPaths = ["/storage/v1/b/:bucket/o/:object", "/b/:bucket/o/:object", "/download/storage/v1/b/:bucket/o/:object"];
  router.get(objectPaths, (req, res, next) => {
    const { bucket, object } = req.params;
    admin.createBucket(bucket);
    const md = admin.getMetadata(bucket, object);
    if (!md || !generationMatches(req.query, md)) return notFound(req, res, bucket, object);
    const failed = preconditionStatus(req.query, md, "read");
    if (failed) return sendPreconditionFailure(res, failed);
    if (req.query.alt !== "media") return res.json(resource(md));
    if (md.contentEncoding === "gzip") return next(); // upstream's decompressing path
    sendMedia(req, res, md);
  });

  function sendMedia(req, res, md) {
    const size = Number(md.size);
    res.setHeader("Accept-Ranges", "bytes");
    res.setHeader("Content-Type", md.contentType || "application/octet-stream");
    res.setHeader("ETag", md.etag);
    res.setHeader("x-goog-generation", `${md.generation}`);
    res.setHeader("x-goog-metageneration", `${md.metageneration}`);
    res.setHeader("x-goog-storage-class", md.storageClass);
    res.setHeader("x-goog-hash", `crc32c=${fb.crc.crc32cToString(md.crc32c)},md5=${md.md5Hash}`);
    let first = 0;
    let last = size - 1;
    let status = 200;
    if (req.headers.range !== undefined && size > 0) {
      const ranges = req.range(size, { combine: true });
      if (ranges === -1) {
        res.setHeader("Content-Range", `bytes */${size}`);
        return sendError(res, 416, "requestedRangeNotSatisfiable", "The requested range cannot be satisfied.");
      }
      // One satisfiable range: 206. Several or a malformed header: the whole
      // object, as GCS does.
      if (Array.isArray(ranges) && ranges.type === "bytes" && ranges.length === 1) {
        ({ start: first, end: last } = ranges[0]);
        status = 206;
        res.setHeader("Content-Range", `bytes ${first}-${last}/${size}`);
      }
    }
    const length = last - first + 1;
    const data = length > 0 ? admin.getBytes(md.bucket, md.name, length, first) : Buffer.alloc(0);
    res.setHeader("Content-Length", String(length));
    res.status(status).end(req.method === "HEAD" ? undefined : data);
  }

  // 3. Deletes and patches: check, then let upstream do the work.
  const guardWrite = (req, res, next) => {
    const { bucket, object } = req.params;
    const md = admin.getMetadata(bucket, object);
    if (!md || !generationMatches(req.query, md)) return notFound(req, res, bucket, object);
    const failed = preconditionStatus(req.query, md, "write");
    if (failed) return sendPreconditionFailure(res, failed);
    next();
  };
  router.delete(["/storage/v1/b/:bucket/o/:object", "/b/:bucket/o/:object"], guardWrite);
  router.patch("/b/:bucket/o/:object", guardWrite);

  // Runs `write` (which returns object metadata) only if the preconditions
  // hold against the live object, atomically per object; answers the request.
  async function conditionalWrite(res, bucket, name, preconditions, write) {
    return withLock(`${bucket}/${name}`, async () => {
      const failed = preconditionStatus(preconditions, admin.getMetadata(bucket, name), "write");
      if (failed) {
        sendPreconditionFailure(res, failed);
        return undefined;
      }
      const object = resource(await write());
      res.status(200).json(object);
      return object;
    });
  }

  // 3, 4, 9. Uploads of every type.
  router.post("/upload/storage/v1/b/:bucket/o", wrap(async (req, res, next) => {
    const type = req.query.uploadType || req.header("x-goog-upload-protocol");
    if (!["media", "multipart", "resumable"].includes(type)) return next();
    const { bucket } = req.params;
    admin.createBucket(bucket);
    const body = await readBody(req);
    const authorization = req.header("authorization");

    if (type === "media") {
      const name = objectName(req.query.name);
      if (!name) return sendError(res, 400, "required", "Required parameter: name");
      return conditionalWrite(res, bucket, name, req.query, () => admin.uploadObject(uploads.mediaUpload({
        bucketId: bucket, objectId: name, dataRaw: body, contentType: req.header("content-type"), authorization,
      })));
    }

    if (type === "multipart") {
      let parts;
      try {
        parts = fb.multipart.parseObjectUploadMultipartRequest(req.header("content-type") || "", body);
      } catch (err) {
        return sendError(res, 400, "invalid", err.message);
      }
      const metadata = parseJson(Buffer.from(parts.metadataRaw));
      const name = objectName(req.query.name ?? metadata?.name);
      if (!metadata || !name) return sendError(res, 400, "invalid", "Invalid object metadata or name.");
      return conditionalWrite(res, bucket, name, req.query, () => admin.uploadObject(uploads.multipartUpload({
        bucketId: bucket, objectId: name, dataRaw: parts.dataRaw, authorization,
        metadata: { contentType: req.header("x-upload-content-type"), ...metadata },
      })));
    }

    // Resumable: start a session. Preconditions are checked now and again
    // when the last byte arrives.
    const metadata = parseJson(body);
    const name = objectName(req.query.name ?? metadata?.name);
    if (!metadata || !name) return sendError(res, 400, "invalid", "Invalid object metadata or name.");
    const failed = preconditionStatus(req.query, admin.getMetadata(bucket, name), "write");
    if (failed) return sendPreconditionFailure(res, failed);
    const upload = uploads.startResumableUpload({
      bucketId: bucket, objectId: name, authorization,
      metadata: { contentType: req.header("x-upload-content-type"), ...metadata },
    });
    const declared = req.header("x-upload-content-length");
    sessions.set(upload.id, {
      bucket, name, preconditions: pickPreconditions(req.query),
      total: declared !== undefined && /^\d+$/.test(declared) ? Number(declared) : null,
      object: undefined, cancelled: false,
    });
    const location = new URL(`${req.protocol}://${req.headers.host}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o`);
    location.searchParams.set("name", name);
    location.searchParams.set("uploadType", "resumable");
    location.searchParams.set("upload_id", upload.id);
    res.setHeader("Location", location.toString());
    res.status(200).end();
  }));

  // 4. One chunk (or a status query) of a resumable session.
  router.put("/upload/storage/v1/b/:bucket/o", wrap(async (req, res, next) => {
    const id = req.query.upload_id;
    if (id === undefined) return next();
    const session = sessions.get(String(id));
    const body = await readBody(req);
    if (!session) return sendError(res, 404, "notFound", "No such upload session.");
    if (session.cancelled) return sendError(res, 410, "gone", "The upload session was cancelled.");
    if (session.object) return res.status(200).json(session.object);

    const header = req.header("content-range");
    // No Content-Range: the whole object in this one request.
    const range = header === undefined
      ? { first: body.length > 0 ? 0 : null, last: body.length - 1, total: body.length }
      : parseContentRange(header);
    if (!range) return sendError(res, 400, "invalid", `Invalid Content-Range: ${header}`);
    const length = range.first === null ? 0 : range.last - range.first + 1;
    if (length !== body.length) return sendError(res, 400, "invalid", "Content-Range does not match the body length.");
    if (range.total !== null) {
      if (session.total !== null && session.total !== range.total) {
        return sendError(res, 400, "invalid", "The total size changed during the upload.");
      }
      session.total = range.total;
    }

    const upload = uploads.getResumableUpload(String(id));
    if (range.first !== null) {
      if (range.first > upload.size) {
        return sendError(res, 400, "invalid", `Missing bytes ${upload.size}-${range.first - 1}.`);
      }
      if (session.total !== null && range.last >= session.total) {
        return sendError(res, 400, "invalid", "More bytes than the declared total.");
      }
      const fresh = body.subarray(upload.size - range.first); // resent bytes are skipped
      if (fresh.length > 0) uploads.continueResumableUpload(String(id), fresh);
    }

    if (session.total === null || upload.size < session.total) {
      if (upload.size > 0) res.setHeader("Range", `bytes=0-${upload.size - 1}`);
      return res.status(308).end();
    }
    session.object = await conditionalWrite(res, session.bucket, session.name, session.preconditions, () => {
      uploads.finalizeResumableUpload(String(id));
      return admin.uploadObject(upload);
    });
  }));

  router.delete("/upload/storage/v1/b/:bucket/o", (req, res, next) => {
    const id = req.query.upload_id;
    if (id === undefined) return next();
    const session = sessions.get(String(id));
    if (!session) return sendError(res, 404, "notFound", "No such upload session.");
    if (session.object) return sendError(res, 400, "invalid", "The upload is already complete.");
    if (!session.cancelled) {
      session.cancelled = true;
      uploads.cancelResumableUpload(String(id));
    }
    res.status(499).end();
  });

  return router;
}
