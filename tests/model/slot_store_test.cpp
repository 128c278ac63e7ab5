// The slot store: content-addressed keys, the byte-bounded LRU, the disk tier across a restart,
// counters. On the golden tiny-llama adapter (its fingerprints salt the keys).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <string>

#include "icae/core/adapter_file.h"
#include "icae/core/icae.h"
#include "icae/io/model_loader.h"
#include "icae/model/transformer.h"
#include "icae/server/slot_store.h"
#include "test_paths.h"

using namespace icae;

namespace {

struct TinyAdapter {
  std::shared_ptr<Transformer> base;
  LoadedAdapter adapter;
};

TinyAdapter tiny() {
  const std::string dir = test::golden_dir("tiny-llama");
  auto base = std::make_shared<Transformer>(load_transformer(dir + "/base", {}));
  AdapterLoadOptions o;
  o.lora_alpha = 32;
  o.compression_rate = 4;
  LoadedAdapter a = load_adapter(dir + "/icae.safetensors", base, o);
  return TinyAdapter{base, std::move(a)};
}

// A fresh folder under the build's temp dir; removed with rm -rf (std::filesystem::remove_all
// crashes against libtorch's own std::filesystem symbols).
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/icae-slotstore-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }
};

at::Tensor fake_slots(const Icae& icae, int64_t rows, double value) {
  return at::full({rows, icae.base().config().hidden_size}, value, at::TensorOptions().dtype(icae.base().dtype()));
}

}  // namespace

TEST(ServeSlotStore, KeysAreContentAddressedAndWellFormed) {
  TinyAdapter t = tiny();
  SlotStore store(*t.adapter.icae);
  const std::string k1 = store.key_for({1, 2, 3});
  EXPECT_EQ(k1, store.key_for({1, 2, 3}));
  EXPECT_NE(k1, store.key_for({1, 2, 4}));
  EXPECT_NE(k1, store.key_for({1, 2, 3, 0}));
  EXPECT_NE(store.key_for({}), store.key_for({0}));
  EXPECT_TRUE(SlotStore::is_key(k1));
  EXPECT_FALSE(SlotStore::is_key("../../etc/passwd"));
  EXPECT_FALSE(SlotStore::is_key(k1.substr(1)));
  EXPECT_FALSE(SlotStore::is_key(std::string(32, 'G')));
}

TEST(ServeSlotStore, HitsMissesAndByteBoundedEviction) {
  TinyAdapter t = tiny();
  const Icae& icae = *t.adapter.icae;
  const int64_t one = fake_slots(icae, 4, 0).numel() * fake_slots(icae, 4, 0).element_size();
  SlotStoreOptions o;
  o.max_bytes = 2 * one;  // room for two entries
  SlotStore store(icae, o);
  const std::string a = store.key_for({1}), b = store.key_for({2}), c = store.key_for({3});
  EXPECT_FALSE(store.get(a).has_value());
  store.put(a, fake_slots(icae, 4, 1), 10);
  store.put(b, fake_slots(icae, 4, 2), 20);
  auto got = store.get(a);  // a is now the most recently used: b goes first
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->context_tokens, 10);
  EXPECT_TRUE(at::equal(got->slots, fake_slots(icae, 4, 1)));
  store.put(c, fake_slots(icae, 4, 3), 30);
  EXPECT_FALSE(store.get(b).has_value());
  EXPECT_TRUE(store.get(a).has_value());
  EXPECT_TRUE(store.get(c).has_value());
  const SlotStoreStats s = store.stats();
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 2);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.bytes, 2 * one);
  EXPECT_FALSE(store.get("not-a-key").has_value());
}

TEST(ServeSlotStore, DiskTierSurvivesARestartAndLoadsLazily) {
  TinyAdapter t = tiny();
  const Icae& icae = *t.adapter.icae;
  TempDir dir;
  SlotStoreOptions o;
  o.dir = dir.path + "/slots";  // created by the store
  std::string key;
  {
    SlotStore store(icae, o);
    key = store.key_for({5, 6, 7});
    store.put(key, fake_slots(icae, 8, 0.5), 7);
  }
  SlotStore again(icae, o);
  EXPECT_EQ(again.stats().entries, 0);  // nothing read until asked
  auto got = again.get(key);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->context_tokens, 7);
  EXPECT_TRUE(at::allclose(got->slots, fake_slots(icae, 8, 0.5)));
  EXPECT_EQ(again.stats().disk_hits, 1);
  EXPECT_TRUE(again.get(key).has_value());
  EXPECT_EQ(again.stats().hits, 1);  // the second time from memory
  // A memory tier of 0 bytes still answers from disk.
  SlotStoreOptions disk_only = o;
  disk_only.max_bytes = 0;
  SlotStore cold(icae, disk_only);
  EXPECT_TRUE(cold.get(key).has_value());
  EXPECT_TRUE(cold.get(key).has_value());
  EXPECT_EQ(cold.stats().disk_hits, 2);
  EXPECT_EQ(cold.stats().entries, 0);
}
