// Deterministic repository content for the fake Hub: file bytes, git object ids
// (blob/tree/commit sha1 computed the way git does), LFS pointers, sha256 and a
// fake xet hash per LFS file. Only node: built-ins.

import crypto from "node:crypto";
import fs from "node:fs";

export const sha1hex = (b) => crypto.createHash("sha1").update(b).digest("hex");
export const sha256hex = (b) => crypto.createHash("sha256").update(b).digest("hex");

/** git blob id: sha1("blob <n>\0" + content) */
export function gitBlobSha1(content) {
  return crypto.createHash("sha1").update(`blob ${content.length}\0`).update(content).digest("hex");
}

/** Pseudo-random bytes from AES-128-CTR over zeros, keyed by a seed string. */
function prngStream(seed) {
  const key = crypto.createHash("sha256").update(`fakehub:${seed}`).digest().subarray(0, 16);
  return crypto.createCipheriv("aes-128-ctr", key, Buffer.alloc(16));
}
export function prngBytes(seed, n) {
  return prngStream(seed).update(Buffer.alloc(n));
}

/** Writes `size` deterministic bytes to `file`; returns their sha256. */
export async function writePrngFile(file, seed, size) {
  const c = prngStream(seed);
  const h = crypto.createHash("sha256");
  const fh = await fs.promises.open(file, "w");
  try {
    const CH = 4 << 20;
    const zeros = Buffer.alloc(CH);
    for (let done = 0; done < size; ) {
      const n = Math.min(CH, size - done);
      const chunk = c.update(n === CH ? zeros : zeros.subarray(0, n));
      h.update(chunk);
      await fh.write(chunk, 0, chunk.length);
      done += n;
    }
  } finally {
    await fh.close();
  }
  return h.digest("hex");
}

/** A valid safetensors file of exactly `total` bytes holding one F32 tensor. */
export function makeSafetensors(total, seed) {
  const cols = 8;
  // 8-byte header length + JSON header (padded with spaces) + 4*rows*cols data bytes.
  let rows = Math.floor((total - 8 - 200) / (4 * cols));
  const dataLen = rows * cols * 4;
  const hdrLen = total - 8 - dataLen;
  let hdr = JSON.stringify({
    __metadata__: { format: "pt" },
    "embeddings.weight": { dtype: "F32", shape: [rows, cols], data_offsets: [0, dataLen] },
  });
  if (hdr.length > hdrLen) throw new Error("safetensors header does not fit");
  hdr = hdr.padEnd(hdrLen, " ");
  const out = Buffer.alloc(total);
  out.writeBigUInt64LE(BigInt(hdrLen), 0);
  out.write(hdr, 8, "latin1");
  const rnd = prngBytes(seed, rows * cols * 4);
  for (let i = 0; i < rows * cols; i++) {
    const v = (rnd.readUInt32LE(i * 4) / 0xffffffff) * 2 - 1; // finite floats in [-1, 1]
    out.writeFloatLE(v, 8 + hdrLen + i * 4);
  }
  return out;
}

export function lfsPointer(sha256, size) {
  return Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256}\nsize ${size}\n`);
}

/** A fake xet hash: 64 hex, deliberately different from the sha256. */
export const fakeXetHash = (sha256) => sha256hex(`xet-merkle-root:${sha256}`);

/** git tree id of a set of {path -> blob sha1}; returns {root, dirs: Map(dirPath -> treeSha)} */
export function gitTrees(blobByPath) {
  const root = { dirs: new Map(), files: new Map() };
  for (const [p, sha] of blobByPath) {
    const parts = p.split("/");
    let node = root;
    for (const d of parts.slice(0, -1)) {
      if (!node.dirs.has(d)) node.dirs.set(d, { dirs: new Map(), files: new Map() });
      node = node.dirs.get(d);
    }
    node.files.set(parts.at(-1), sha);
  }
  const dirs = new Map();
  const hashNode = (node, prefix) => {
    const entries = [];
    for (const [name, child] of node.dirs) {
      const sha = hashNode(child, prefix ? `${prefix}/${name}` : name);
      entries.push({ mode: "40000", name, sha, key: `${name}/` });
    }
    for (const [name, sha] of node.files) entries.push({ mode: "100644", name, sha, key: name });
    entries.sort((a, b) => Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)));
    const body = Buffer.concat(
      entries.flatMap((e) => [Buffer.from(`${e.mode} ${e.name}\0`), Buffer.from(e.sha, "hex")]),
    );
    const sha = crypto.createHash("sha1").update(`tree ${body.length}\0`).update(body).digest("hex");
    if (prefix) dirs.set(prefix, sha);
    return sha;
  };
  const rootSha = hashNode(root, "");
  return { root: rootSha, dirs };
}

export function gitCommitSha({ tree, parent, date, title }) {
  const ts = Math.floor(Date.parse(date) / 1000);
  const who = `acme <acme@users.noreply.huggingface.co> ${ts} +0000`;
  const text =
    `tree ${tree}\n` + (parent ? `parent ${parent}\n` : "") + `author ${who}\ncommitter ${who}\n\n${title}\n`;
  return crypto.createHash("sha1").update(`commit ${Buffer.byteLength(text)}\0`).update(text).digest("hex");
}

// ---------------------------------------------------------------------------
// Text content

const GITATTRIBUTES = `*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.csv filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
`;

// A tiny but complete BERT WordPiece tokenizer (tokenizers library JSON format).
export const VOCAB = [
  "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
  "!", ",", ".", "?", "a", "the", "hello", "world", "cache", "hub", "proxy", "hug", "##ging",
  "face", "model", "token", "##s", "##izer", "is", "fast", "tiny", "test", "of", "and", "to", "in",
];

function tokenizerJson() {
  const special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const vocab = Object.fromEntries(VOCAB.map((t, i) => [t, i]));
  const tok = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: special.map((content) => ({
      id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true,
    })),
    normalizer: { type: "BertNormalizer", clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: "BertPreTokenizer" },
    post_processor: {
      type: "TemplateProcessing",
      single: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
      ],
      pair: [
        { SpecialToken: { id: "[CLS]", type_id: 0 } },
        { Sequence: { id: "A", type_id: 0 } },
        { SpecialToken: { id: "[SEP]", type_id: 0 } },
        { Sequence: { id: "B", type_id: 1 } },
        { SpecialToken: { id: "[SEP]", type_id: 1 } },
      ],
      special_tokens: {
        "[CLS]": { id: "[CLS]", ids: [vocab["[CLS]"]], tokens: ["[CLS]"] },
        "[SEP]": { id: "[SEP]", ids: [vocab["[SEP]"]], tokens: ["[SEP]"] },
      },
    },
    decoder: { type: "WordPiece", prefix: "##", cleanup: true },
    model: { type: "WordPiece", unk_token: "[UNK]", continuing_subword_prefix: "##", max_input_chars_per_word: 100, vocab },
  };
  return JSON.stringify(tok, null, 2) + "\n";
}

function tokenizerConfigJson() {
  const added = {};
  ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"].forEach((content, i) => {
    added[String(i)] = { content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true };
  });
  return JSON.stringify({
    added_tokens_decoder: added,
    clean_up_tokenization_spaces: true,
    cls_token: "[CLS]",
    do_basic_tokenize: true,
    do_lower_case: true,
    mask_token: "[MASK]",
    model_max_length: 512,
    never_split: null,
    pad_token: "[PAD]",
    sep_token: "[SEP]",
    strip_accents: null,
    tokenize_chinese_chars: true,
    tokenizer_class: "BertTokenizer",
    unk_token: "[UNK]",
  }, null, 2) + "\n";
}

const BERT_CONFIG = {
  architectures: ["BertModel"],
  attention_probs_dropout_prob: 0.1,
  hidden_act: "gelu",
  hidden_dropout_prob: 0.1,
  hidden_size: 8,
  initializer_range: 0.02,
  intermediate_size: 16,
  layer_norm_eps: 1e-12,
  max_position_embeddings: 64,
  model_type: "bert",
  num_attention_heads: 2,
  num_hidden_layers: 1,
  pad_token_id: 0,
  torch_dtype: "float32",
  transformers_version: "4.46.0",
  type_vocab_size: 2,
  vocab_size: VOCAB.length,
};
const json2 = (o) => JSON.stringify(o, null, 2) + "\n";

const TINY_README = `---
license: apache-2.0
library_name: transformers
pipeline_tag: feature-extraction
tags:
- test
- hubcache
---

# acme/tiny-model

A tiny deterministic model served by hubcache's fake Hub. Not a real model.
`;

function csv(rows) {
  const lines = ["id,text,label"];
  for (let i = 0; i < rows; i++) lines.push(`${i},"sample ${i} of the tiny dataset",${i % 3}`);
  return lines.join("\n") + "\n";
}

// ---------------------------------------------------------------------------
// Repository table

/** Number of data files in acme/big-dataset (plus README.md and .gitattributes). */
export const BIG_DATASET_FILES = 2600;

/**
 * Builds every repo. `bigFile` is a path where big.bin (bigSize bytes) is written.
 * Returns Map(key "type:id" -> repo). A repo:
 *   { type, id, _id, private, gated, author, createdAt, card, commits: Map(sha -> commit),
 *     branches: {name -> sha}, tags: {name -> sha}, prs: {"refs/pr/N" -> sha}, info: {...extra fields} }
 * A commit: { sha, parent, title, date, tree, files: Map(path -> file), dirs: Map(path -> treeSha) }
 * A file: { path, size, lfs, sha256, oid (git blob sha1; for LFS the pointer's), pointer?, xetHash?,
 *           content? (Buffer), diskPath? (for big.bin) }
 */
export async function buildRepos({ bigFile, bigSize }) {
  const blobs = new Map(); // sha256 -> {size, content?|diskPath?, xetHash}
  const gitFile = (path, text) => {
    const content = Buffer.isBuffer(text) ? text : Buffer.from(text, "utf8");
    return { path, size: content.length, lfs: false, content, sha256: sha256hex(content), oid: gitBlobSha1(content) };
  };
  const lfsFile = (path, content, diskPath, sha256, size) => {
    size = size ?? content.length;
    sha256 = sha256 ?? sha256hex(content);
    const pointer = lfsPointer(sha256, size);
    const xetHash = fakeXetHash(sha256);
    blobs.set(sha256, { size, content, diskPath, xetHash });
    return { path, size, lfs: true, content, diskPath, sha256, oid: gitBlobSha1(pointer), pointer, xetHash };
  };

  const makeCommit = (files, { parent, date, title }) => {
    const fm = new Map(files.map((f) => [f.path, f]));
    const { root, dirs } = gitTrees(new Map(files.map((f) => [f.path, f.oid])));
    const sha = gitCommitSha({ tree: root, parent: parent?.sha, date, title });
    return { sha, parent: parent ?? null, title, date, tree: root, files: fm, dirs };
  };

  const repos = new Map();
  const add = (r) => {
    r._id = sha1hex(`${r.type}:${r.id}`).slice(0, 24);
    r.author = r.id.split("/")[0];
    repos.set(`${r.type}:${r.id}`, r);
    return r;
  };

  // acme/tiny-model ---------------------------------------------------------
  const bigSha = await writePrngFile(bigFile, "big.bin", bigSize);
  const tinyCommon = [
    gitFile(".gitattributes", GITATTRIBUTES),
    gitFile("README.md", TINY_README),
    gitFile("tokenizer.json", tokenizerJson()),
    gitFile("tokenizer_config.json", tokenizerConfigJson()),
    gitFile("sub/nested.txt", "nested file in a sub folder\n"),
    gitFile("sub/deeper/leaf.txt", "a leaf two folders down\n"),
    gitFile("dir with space/file +#ü.txt", "a file whose name needs percent-encoding: space, plus, hash, u-umlaut\n"),
    lfsFile("model.safetensors", makeSafetensors(150000, "tiny-model.safetensors")),
    lfsFile("big.bin", undefined, bigFile, bigSha, bigSize),
  ];
  const c1 = makeCommit([...tinyCommon, gitFile("config.json", json2(BERT_CONFIG))], {
    date: "2026-01-15T10:00:00.000Z", title: "Upload tiny model",
  });
  const c2 = makeCommit([...tinyCommon, gitFile("config.json", json2({ ...BERT_CONFIG, num_hidden_layers: 2, hidden_dropout_prob: 0.2 }))], {
    parent: c1, date: "2026-02-01T12:30:00.000Z", title: "Update config.json (two layers)",
  });
  add({
    type: "model", id: "acme/tiny-model", private: false, gated: false,
    createdAt: "2026-01-15T09:59:00.000Z",
    commits: new Map([[c1.sha, c1], [c2.sha, c2]]),
    branches: { main: c1.sha }, tags: { "v1.0": c1.sha }, prs: { "refs/pr/1": c2.sha },
    info: {
      pipeline_tag: "feature-extraction", library_name: "transformers", tags: ["transformers", "safetensors", "bert", "feature-extraction", "test", "license:apache-2.0"],
      downloads: 42, likes: 3, cardData: { license: "apache-2.0", library_name: "transformers", pipeline_tag: "feature-extraction", tags: ["test", "hubcache"] },
      transformersInfo: { auto_model: "AutoModel", pipeline_tag: "feature-extraction", processor: "AutoTokenizer" },
      modelConfig: { architectures: ["BertModel"], model_type: "bert", tokenizer_config: { cls_token: "[CLS]", mask_token: "[MASK]", pad_token: "[PAD]", sep_token: "[SEP]", unk_token: "[UNK]" } },
    },
  });

  // acme/gated-model ----------------------------------------------------------
  const gc = makeCommit([
    gitFile(".gitattributes", GITATTRIBUTES),
    gitFile("README.md", "---\nlicense: other\nextra_gated_prompt: You agree to not use this model for evil.\n---\n# gated model\n"),
    gitFile("config.json", json2({ ...BERT_CONFIG, _name: "gated" })),
    lfsFile("model.safetensors", makeSafetensors(20000, "gated-model.safetensors")),
  ], { date: "2026-01-20T08:00:00.000Z", title: "Upload gated model" });
  add({
    type: "model", id: "acme/gated-model", private: false, gated: "auto",
    createdAt: "2026-01-20T07:59:00.000Z",
    commits: new Map([[gc.sha, gc]]), branches: { main: gc.sha }, tags: {}, prs: {},
    info: { pipeline_tag: "feature-extraction", library_name: "transformers", tags: ["transformers", "bert"], downloads: 7, likes: 1, cardData: { license: "other" } },
  });

  // acme/private-model -------------------------------------------------------
  const pc = makeCommit([
    gitFile(".gitattributes", GITATTRIBUTES),
    gitFile("README.md", "# private model\n"),
    gitFile("config.json", json2({ ...BERT_CONFIG, _name: "private" })),
    lfsFile("weights.bin", prngBytes("private-model.weights.bin", 30000)),
  ], { date: "2026-01-21T08:00:00.000Z", title: "Upload private model" });
  add({
    type: "model", id: "acme/private-model", private: true, gated: false,
    createdAt: "2026-01-21T07:59:00.000Z",
    commits: new Map([[pc.sha, pc]]), branches: { main: pc.sha }, tags: {}, prs: {},
    info: { tags: ["bert"], downloads: 0, likes: 0, cardData: {} },
  });

  // acme/tiny-dataset -----------------------------------------------------------
  const dc = makeCommit([
    gitFile(".gitattributes", GITATTRIBUTES),
    gitFile("README.md", "---\nlicense: cc0-1.0\nconfigs:\n- config_name: default\n  data_files: data/train.csv\n---\n# tiny dataset\n"),
    lfsFile("data/train.csv", Buffer.from(csv(400))),
  ], { date: "2026-01-16T10:00:00.000Z", title: "Upload tiny dataset" });
  add({
    type: "dataset", id: "acme/tiny-dataset", private: false, gated: false,
    createdAt: "2026-01-16T09:59:00.000Z",
    commits: new Map([[dc.sha, dc]]), branches: { main: dc.sha }, tags: {}, prs: {},
    info: { tags: ["license:cc0-1.0", "size_categories:n<1K"], downloads: 5, likes: 0, cardData: { license: "cc0-1.0" }, description: "tiny dataset" },
  });

  // acme/big-dataset -------------------------------------------------------------
  // More files than one tree page holds (2,600 small git files + README + .gitattributes in
  // data/{train,test,validation,extra}/): listings need several pages (1000 per page).
  const bigDs = [
    gitFile(".gitattributes", GITATTRIBUTES),
    gitFile("README.md", "---\nlicense: cc0-1.0\n---\n# big dataset\n\nMany small files, for tree pagination.\n"),
  ];
  const splits = ["extra", "test", "train", "validation"];
  for (let i = 0; i < BIG_DATASET_FILES; i++) {
    const split = splits[i % splits.length];
    const n = String(Math.floor(i / splits.length)).padStart(5, "0");
    bigDs.push(gitFile(`data/${split}/part-${n}.jsonl`, `{"row":${i},"split":"${split}"}\n`));
  }
  const bdc = makeCommit(bigDs, { date: "2026-01-18T10:00:00.000Z", title: "Upload big dataset" });
  add({
    type: "dataset", id: "acme/big-dataset", private: false, gated: false,
    createdAt: "2026-01-18T09:59:00.000Z",
    commits: new Map([[bdc.sha, bdc]]), branches: { main: bdc.sha }, tags: {}, prs: {},
    info: { tags: ["license:cc0-1.0", "size_categories:1K<n<10K"], downloads: 1, likes: 0, cardData: { license: "cc0-1.0" }, description: "big dataset" },
  });

  // acme/tiny-space -----------------------------------------------------------
  const sc = makeCommit([
    gitFile("app.py", "import gradio as gr\n\ngr.Interface(fn=lambda s: s[::-1], inputs='text', outputs='text').launch()\n"),
  ], { date: "2026-01-17T10:00:00.000Z", title: "Create app.py" });
  add({
    type: "space", id: "acme/tiny-space", private: false, gated: false,
    createdAt: "2026-01-17T09:59:00.000Z",
    commits: new Map([[sc.sha, sc]]), branches: { main: sc.sha }, tags: {}, prs: {},
    info: { tags: ["gradio", "region:us"], likes: 0, sdk: "gradio", cardData: {} },
  });

  return { repos, blobs };
}
