#include <hubcache/storage/metadata_index.hpp>
#include <hubcache/util/hash.hpp>

#include "storage/lru_map.hpp"
#include "test_support.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace hubcache::storage {
namespace {

namespace fs = std::filesystem;

const std::string k_commit = "0123456789abcdef0123456789abcdef01234567";

FileKey key(std::string path, std::string repo = "acme/tiny-model") {
  return {"model", std::move(repo), k_commit, std::move(path), "resolve"};
}

FileRecord record(std::string etag, char digest_fill = 'a') {
  return {std::move(etag), true, 12345, *core::Sha256::from_hex(std::string(64, digest_fill)),
          "application/octet-stream"};
}

void expect_same(const FileRecord& actual, const FileRecord& expected) {
  EXPECT_EQ(actual.etag, expected.etag);
  EXPECT_EQ(actual.lfs, expected.lfs);
  EXPECT_EQ(actual.size, expected.size);
  EXPECT_EQ(actual.sha256, expected.sha256);
  EXPECT_EQ(actual.content_type, expected.content_type);
}

std::vector<fs::path> json_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().extension() == ".json") out.push_back(e.path());
  }
  return out;
}

class MetadataIndexTest : public ::testing::Test {
 protected:
  fs::path dir() const { return m_dir.path() / "index"; }
  result<std::optional<FileRecord>> get(const FileKey& k) { return test::run(m_ioc, m_index->get(k)); }
  result<std::optional<core::Sha256>> blob_for_etag(const std::string& etag) {
    return test::run(m_ioc, m_index->blob_for_etag(etag));
  }

  boost::asio::io_context m_ioc;
  test::TempDir m_dir;
  std::unique_ptr<MetadataIndex> m_index = make_disk_metadata_index(dir());
};

TEST_F(MetadataIndexTest, MissingKeyIsAbsent) {
  auto got = get(key("config.json"));
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(got->has_value());
  auto blob = blob_for_etag("deadbeef");
  ASSERT_TRUE(blob.has_value());
  EXPECT_FALSE(blob->has_value());
}

TEST_F(MetadataIndexTest, PutThenGet) {
  const FileRecord rec = record("e69de29bb2d1d6434b8b29ae775ad8c2e48c5391");
  ASSERT_TRUE(m_index->put(key("model.safetensors"), rec));
  auto got = get(key("model.safetensors"));
  ASSERT_TRUE(got.has_value());
  ASSERT_TRUE(got->has_value());
  expect_same(**got, rec);
  // Layout: the record fanned out under files/<aa>/, plus index.json.
  EXPECT_TRUE(fs::is_regular_file(dir() / "index.json"));
  const auto files = json_files(dir() / "files");
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].parent_path().filename().string(), files[0].filename().string().substr(0, 2));
}

TEST_F(MetadataIndexTest, PutReplacesTheRecord) {
  ASSERT_TRUE(m_index->put(key("a.bin"), record("etag-1", 'a')));
  ASSERT_TRUE(m_index->put(key("a.bin"), record("etag-2", 'b')));
  auto got = get(key("a.bin"));
  ASSERT_TRUE(got.has_value() && got->has_value());
  expect_same(**got, record("etag-2", 'b'));
}

TEST_F(MetadataIndexTest, PutReplacesARecordAlreadyReadIntoMemory) {
  ASSERT_TRUE(m_index->put(key("a.bin"), record("etag-1", 'a')));
  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  ASSERT_TRUE(get(key("a.bin"))->has_value());  // read from disk, now in memory
  ASSERT_TRUE(blob_for_etag("etag-1")->has_value());
  ASSERT_TRUE(m_index->put(key("a.bin"), record("etag-2", 'b')));
  expect_same(**get(key("a.bin")), record("etag-2", 'b'));
  EXPECT_EQ(**blob_for_etag("etag-2"), record("etag-2", 'b').sha256);
}

// What a fill does once its blob is verified: findable at once, durable only
// once put() follows.
TEST_F(MetadataIndexTest, ARememberedRecordIsFoundAtOnceButKeptOnlyByPut) {
  const FileRecord rec = record("etag-1", 'a');
  m_index->remember(key("a.bin"), rec);
  auto got = get(key("a.bin"));
  ASSERT_TRUE(got.has_value() && got->has_value());
  expect_same(**got, rec);
  EXPECT_EQ(**blob_for_etag("etag-1"), rec.sha256);
  EXPECT_TRUE(json_files(dir() / "files").empty()) << "nothing written";

  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  EXPECT_FALSE(get(key("a.bin"))->has_value()) << "not kept across a restart";
  EXPECT_FALSE(blob_for_etag("etag-1")->has_value());

  m_index->remember(key("a.bin"), rec);
  ASSERT_TRUE(m_index->put(key("a.bin"), rec));
  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  ASSERT_TRUE(get(key("a.bin"))->has_value());
  expect_same(**get(key("a.bin")), rec);

  // A put() that fails takes the remembered record back: memory never holds
  // what the disk lacks once put() has been tried (a later put() is then not
  // skipped as done).
  m_index->remember(key("bad\xff.bin"), record("etag-2", 'b'));
  ASSERT_TRUE(get(key("bad\xff.bin"))->has_value());
  ASSERT_FALSE(m_index->put(key("bad\xff.bin"), record("etag-2", 'b')).has_value());
  EXPECT_FALSE(get(key("bad\xff.bin"))->has_value());
  EXPECT_FALSE(blob_for_etag("etag-2")->has_value());
}

TEST(LruMap, ForgetsTheLeastRecentlyUsedWhenFull) {
  detail::LruMap<int> map(2);
  map.put("a", 1);
  map.put("b", 2);
  EXPECT_EQ(map.get("a"), 1);  // a is now more recent than b
  map.put("c", 3);
  EXPECT_EQ(map.size(), 2u);
  EXPECT_FALSE(map.get("b"));
  EXPECT_EQ(map.get("a"), 1);
  EXPECT_EQ(map.get("c"), 3);
  map.put("a", 10);  // replacing does not grow the map
  EXPECT_EQ(map.size(), 2u);
  EXPECT_EQ(map.get("a"), 10);
}

TEST_F(MetadataIndexTest, KeysAreDistinguishedByEveryField) {
  // Same concatenation ("modela/b..."), different split between fields.
  const FileKey left = {"model", "a/b", k_commit, "c", "resolve"};
  const FileKey right = {"modela", "/b", k_commit, "c", "resolve"};
  FileKey raw = left;
  raw.kind = "raw";
  FileKey dataset = left;
  dataset.repo_type = "dataset";
  ASSERT_TRUE(m_index->put(left, record("left", '1')));
  ASSERT_TRUE(m_index->put(right, record("right", '2')));
  ASSERT_TRUE(m_index->put(raw, record("raw", '3')));
  EXPECT_FALSE(get(dataset)->has_value());
  for (const auto& [k, etag] : {std::pair{left, "left"}, std::pair{right, "right"}, std::pair{raw, "raw"}}) {
    auto got = get(k);
    ASSERT_TRUE(got.has_value() && got->has_value()) << etag;
    EXPECT_EQ((*got)->etag, etag);
  }
}

TEST_F(MetadataIndexTest, SurvivesReopen) {
  const FileRecord rec = record("abc", 'c');
  ASSERT_TRUE(m_index->put(key("weights/part-1.bin"), rec));
  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  auto got = get(key("weights/part-1.bin"));
  ASSERT_TRUE(got.has_value() && got->has_value());
  expect_same(**got, rec);
  auto blob = blob_for_etag("abc");
  ASSERT_TRUE(blob.has_value() && blob->has_value());
  EXPECT_EQ(**blob, rec.sha256);
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST_F(MetadataIndexTest, CorruptRecordIsTreatedAsAbsent) {
  ASSERT_TRUE(m_index->put(key("x.bin"), record("etag-x")));
  const auto files = json_files(dir() / "files");
  ASSERT_EQ(files.size(), 1u);
  const fs::path path = files[0];
  const std::string original = slurp(path);
  // A fresh index, so every get() below reads the file (a running index keeps
  // records it wrote or read in memory).
  m_index.reset();
  m_index = make_disk_metadata_index(dir());

  // A well-formed record of another key, as a hash collision would leave it.
  const fs::path elsewhere = m_dir.path() / "elsewhere";
  ASSERT_TRUE(make_disk_metadata_index(elsewhere)->put(key("y.bin"), record("etag-y")));
  const std::string other_key = slurp(json_files(elsewhere / "files").at(0));

  std::string wrong_type = original;  // size as a string
  const auto pos = wrong_type.find("\"size\":12345");
  ASSERT_NE(pos, std::string::npos) << original;
  wrong_type.replace(pos, 12, "\"size\":\"12345\"");

  const std::vector<std::string> corruptions = {
      original.substr(0, original.size() / 2),  // truncated
      "",                                       // empty
      "\x01\x02 garbage",                       // not JSON
      "[1, 2, 3]",                              // JSON, wrong shape
      R"({"key": {}, "record": {}})",           // missing fields
      wrong_type,
      other_key,
      std::string(70 * 1024, ' ') + "{}",       // oversized
  };
  for (std::size_t i = 0; i < corruptions.size(); ++i) {
    std::ofstream(path, std::ios::trunc | std::ios::binary) << corruptions[i];
    auto got = get(key("x.bin"));
    ASSERT_TRUE(got.has_value()) << "case " << i << ": " << got.error().message();
    EXPECT_FALSE(got->has_value()) << "case " << i;
  }

  // Sanity: the original content still reads, and a put repairs the record.
  std::ofstream(path, std::ios::trunc | std::ios::binary) << original;
  EXPECT_TRUE(get(key("x.bin"))->has_value());
  std::ofstream(path, std::ios::trunc) << "garbage";
  ASSERT_TRUE(m_index->put(key("x.bin"), record("etag-x")));
  EXPECT_TRUE(get(key("x.bin"))->has_value());
}

TEST_F(MetadataIndexTest, EtagMapsToBlob) {
  const FileRecord lfs = record("5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03", 'd');
  const FileRecord git = record("ce013625030ba8dba906f756967f9e9ca394464a", 'e');
  ASSERT_TRUE(m_index->put(key("model.safetensors"), lfs));
  ASSERT_TRUE(m_index->put(key("README.md"), git));
  // The same content under another commit reuses the mapping.
  ASSERT_TRUE(m_index->put({"model", "acme/tiny-model", std::string(40, 'f'), "README.md", "resolve"}, git));

  auto blob = blob_for_etag(lfs.etag);
  ASSERT_TRUE(blob.has_value() && blob->has_value());
  EXPECT_EQ(**blob, lfs.sha256);
  blob = blob_for_etag(git.etag);
  ASSERT_TRUE(blob.has_value() && blob->has_value());
  EXPECT_EQ(**blob, git.sha256);
  blob = blob_for_etag("0000000000000000000000000000000000000000");
  ASSERT_TRUE(blob.has_value());
  EXPECT_FALSE(blob->has_value());

  // A mapping file holding another etag (as a hash collision would) is
  // absent. Layout: etags/<aa>/<sha256 of the etag>.json. Reopened first: a
  // running index keeps recent mappings in memory and never re-reads them.
  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  auto etag_file = [&](const std::string& etag) {
    util::Sha256Hasher hasher;
    hasher.update(etag);
    const std::string hex = hasher.finish().hex();
    return dir() / "etags" / hex.substr(0, 2) / (hex + ".json");
  };
  ASSERT_TRUE(fs::exists(etag_file(lfs.etag)));
  fs::copy_file(etag_file(lfs.etag), etag_file(git.etag), fs::copy_options::overwrite_existing);
  blob = blob_for_etag(git.etag);
  ASSERT_TRUE(blob.has_value());
  EXPECT_FALSE(blob->has_value());

  // A corrupt mapping is absent, not an error.
  for (const auto& path : json_files(dir() / "etags")) std::ofstream(path, std::ios::trunc) << "{\"etag\":";
  m_index.reset();
  m_index = make_disk_metadata_index(dir());
  blob = blob_for_etag(lfs.etag);
  ASSERT_TRUE(blob.has_value());
  EXPECT_FALSE(blob->has_value());
}

TEST_F(MetadataIndexTest, UnencodableKeyIsAnErrorNotACrash) {
  auto put = m_index->put(key("bad\xff\xfe.bin"), record("etag"));
  ASSERT_FALSE(put.has_value());
  EXPECT_EQ(put.error(), errc::bad_request);
}

TEST_F(MetadataIndexTest, UnknownFormatVersionRefusesToStart) {
  const fs::path other = m_dir.path() / "v2";
  fs::create_directories(other);
  std::ofstream(other / "index.json") << R"({"format": 2})";
  try {
    make_disk_metadata_index(other);
    FAIL() << "expected std::runtime_error";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("format 2"), std::string::npos) << e.what();
  }
  std::ofstream(other / "index.json", std::ios::trunc) << "garbage";
  EXPECT_THROW(make_disk_metadata_index(other), std::runtime_error);
}

}  // namespace
}  // namespace hubcache::storage
