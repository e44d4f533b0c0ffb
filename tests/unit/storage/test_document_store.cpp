#include <hubcache/storage/document_store.hpp>

#include <test_support.hpp>

#include <gtest/gtest.h>

#include <fstream>

namespace hubcache::storage {
namespace {

result<std::optional<std::string>> get_doc(DocumentStore& store, const std::string& key) {
  boost::asio::io_context ioc;
  return test::run(ioc, store.get(key));
}

TEST(DocumentStore, PutGetSurvivesReopen) {
  test::TempDir dir;
  {
    auto store = make_disk_document_store(dir.path() / "docs");
    EXPECT_FALSE(get_doc(*store, "k1").value().has_value());
    ASSERT_TRUE(store->put("k1", std::string("value\n\0with binary", 18)).has_value());
    ASSERT_TRUE(store->put("k2", "").has_value());
    ASSERT_TRUE(store->put("k1", "replaced").has_value());
  }
  auto store = make_disk_document_store(dir.path() / "docs");
  EXPECT_EQ(*get_doc(*store, "k1").value(), "replaced");
  EXPECT_EQ(*get_doc(*store, "k2").value(), "");
  EXPECT_FALSE(get_doc(*store, "k3").value().has_value());
}

TEST(DocumentStore, DamagedFileIsAbsent) {
  test::TempDir dir;
  auto store = make_disk_document_store(dir.path());
  ASSERT_TRUE(store->put("key", "v").has_value());
  // Overwrite every document file with garbage.
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir.path())) {
    if (e.is_regular_file() && e.path().filename() != "docs.json") std::ofstream(e.path()) << "garbage";
  }
  auto got = get_doc(*store, "key");
  ASSERT_TRUE(got.has_value());
  EXPECT_FALSE(*got);
}

TEST(DocumentStore, RejectsOtherFormat) {
  test::TempDir dir;
  std::ofstream(dir.path() / "docs.json") << R"({"format": 99})";
  EXPECT_THROW(make_disk_document_store(dir.path()), std::runtime_error);
}

}  // namespace
}  // namespace hubcache::storage
