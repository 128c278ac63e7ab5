// GGUF reader: valid files parse with every metadata type and tensor, and every malformed or
// truncated file is an icae::Error naming the problem (never a crash).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "gguf_test_writer.h"
#include "icae/formats/gguf.h"
#include "icae/util/error.h"

using namespace icae::gguf;
using icae::gguf::testing::Writer;

namespace {

// A small valid file: some metadata and two tensors (F32 2x3, Q8_0 32x2).
Writer small_writer() {
  Writer w;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.block_count", 2);
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.kv_bool("general.flag", true);
  w.kv_i32("some.negative", -7);
  w.kv_u64("some.big", 1ull << 40);
  w.kv_strs("tokenizer.ggml.tokens", {"a", "b", "\xc4\xa0the"});
  w.kv_i32s("tokenizer.ggml.token_type", {1, 3, 1});
  w.kv_f32s("tokenizer.ggml.scores", {0.f, -1.5f, 2.f});
  std::vector<uint8_t> f32;
  for (int i = 0; i < 6; ++i) {
    float v = static_cast<float>(i) * 0.5f;
    uint8_t b[4];
    std::memcpy(b, &v, 4);
    f32.insert(f32.end(), b, b + 4);
  }
  w.add_tensor("a.weight", {3, 2}, 0, f32);
  std::vector<uint8_t> q8(2 * 34, 0);
  w.add_tensor("b.weight", {32, 2}, 8, q8);
  return w;
}

// Expects parsing to throw icae::Error of `kind` whose message contains `needle`.
void expect_error(std::vector<uint8_t> bytes, icae::ErrorKind kind, const std::string& needle) {
  try {
    GgufFile::from_memory(std::move(bytes), "t.gguf");
    FAIL() << "expected an error containing '" << needle << "'";
  } catch (const icae::Error& e) {
    EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(kind)) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.gguf"), std::string::npos) << e.what();
  }
}

template <typename T>
void poke(std::vector<uint8_t>& b, size_t pos, T v) {
  std::memcpy(b.data() + pos, &v, sizeof(T));
}

}  // namespace

TEST(GgufReader, ParsesMetadataAndTensors) {
  Writer w = small_writer();
  GgufFile f = GgufFile::from_memory(w.build(), "t.gguf");
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.metadata().size(), 9u);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(static_cast<float>(f.get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_TRUE(f.get_bool("general.flag", false));
  EXPECT_EQ(f.get_int("some.negative"), -7);
  EXPECT_EQ(f.get_int("some.big"), 1ll << 40);
  EXPECT_EQ(f.get_int("missing.key", 42), 42);
  EXPECT_EQ(f.get_strings("tokenizer.ggml.tokens"), (std::vector<std::string>{"a", "b", "\xc4\xa0the"}));
  EXPECT_EQ(f.get_ints("tokenizer.ggml.token_type"), (std::vector<int64_t>{1, 3, 1}));
  EXPECT_EQ(f.get_floats("tokenizer.ggml.scores"), (std::vector<double>{0.0, -1.5, 2.0}));
  EXPECT_EQ(f.get("tokenizer.ggml.tokens").element_type(), ValueType::String);

  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorInfo& a = f.tensor("a.weight");
  EXPECT_EQ(a.ne, (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(a.type, TensorType::F32);
  EXPECT_EQ(a.n_elements, 6);
  EXPECT_EQ(a.n_bytes, 24u);
  EXPECT_EQ(a.rows(), 2);
  EXPECT_EQ(a.shape_string(), "[3, 2]");
  float third;
  std::memcpy(&third, a.data + 8, 4);
  EXPECT_EQ(third, 1.0f);
  const TensorInfo& b = f.tensor("b.weight");
  EXPECT_EQ(b.type, TensorType::Q8_0);
  EXPECT_EQ(b.n_bytes, 68u);
  EXPECT_EQ(b.offset, 32u);
  EXPECT_EQ(f.find_tensor("nope"), nullptr);
  EXPECT_EQ(f.data_offset() % 32, 0u);
}

TEST(GgufReader, TypedAccessorsNameFileAndKey) {
  Writer w = small_writer();
  GgufFile f = GgufFile::from_memory(w.build(), "t.gguf");
  try {
    f.get_string("llama.block_count");
    FAIL();
  } catch (const icae::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("t.gguf"), std::string::npos) << m;
    EXPECT_NE(m.find("llama.block_count"), std::string::npos) << m;
    EXPECT_NE(m.find("expected a string"), std::string::npos) << m;
  }
  EXPECT_THROW(f.get_int("absent"), icae::Error);
  EXPECT_THROW(f.tensor("absent"), icae::Error);
  EXPECT_THROW(f.get_ints("tokenizer.ggml.tokens"), icae::Error);
}

TEST(GgufReader, HonoursAlignment) {
  Writer w = small_writer();
  w.alignment = 64;
  w.kv_u32("general.alignment", 64);
  GgufFile f = GgufFile::from_memory(w.build(), "t.gguf");
  EXPECT_EQ(f.alignment(), 64u);
  EXPECT_EQ(f.data_offset() % 64, 0u);
  EXPECT_EQ(f.tensor("b.weight").offset, 64u);
}

TEST(GgufReader, Version2IsAccepted) {
  Writer w = small_writer();
  w.version = 2;
  EXPECT_EQ(GgufFile::from_memory(w.build(), "t.gguf").version(), 2u);
}

TEST(GgufReader, OpensAFileByMmap) {
  Writer w = small_writer();
  auto bytes = w.build();
  std::string path = ::testing::TempDir() + "gguf_reader_test.gguf";
  {
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  }
  GgufFile f = GgufFile::open(path);
  GgufFile moved = std::move(f);  // data pointers stay valid across a move
  EXPECT_EQ(moved.tensors().size(), 2u);
  float v;
  std::memcpy(&v, moved.tensor("a.weight").data + 20, 4);
  EXPECT_EQ(v, 2.5f);
  std::remove(path.c_str());
}

TEST(GgufReader, MissingFileIsIoError) {
  try {
    GgufFile::open("/nonexistent/dir/x.gguf");
    FAIL();
  } catch (const icae::Error& e) {
    EXPECT_EQ(e.kind(), icae::ErrorKind::Io);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/dir/x.gguf"), std::string::npos);
  }
}

TEST(GgufReader, EveryTruncationIsAnError) {
  Writer w = small_writer();
  auto full = w.build();
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(n));
    EXPECT_THROW(GgufFile::from_memory(cut, "t.gguf"), icae::Error) << "truncated at " << n;
  }
}

TEST(GgufReader, BadMagic) {
  auto b = small_writer().build();
  b[0] = 'X';
  expect_error(b, icae::ErrorKind::BadInput, "bad magic");
}

TEST(GgufReader, UnsupportedVersions) {
  Writer w = small_writer();
  w.version = 1;
  expect_error(w.build(), icae::ErrorKind::Unsupported, "version 1");
  w.version = 4;
  expect_error(w.build(), icae::ErrorKind::Unsupported, "version 4");
  w.version = 0x03000000;  // a big-endian v3 file
  expect_error(w.build(), icae::ErrorKind::Unsupported, "big-endian");
}

TEST(GgufReader, AbsurdCounts) {
  Writer w = small_writer();
  auto b = w.build();
  auto c = b;
  poke<uint64_t>(c, w.tensor_count_pos, 1ull << 60);
  expect_error(c, icae::ErrorKind::BadInput, "tensor count");
  c = b;
  poke<uint64_t>(c, w.kv_count_pos, ~0ull);
  expect_error(c, icae::ErrorKind::BadInput, "metadata count");

  // An array length no file could hold.
  Writer a;
  a.kv_strs("tokenizer.ggml.tokens", {"x"});
  auto d = a.build();
  size_t len_pos = a.kv_count_pos + 8 + 8 + std::string("tokenizer.ggml.tokens").size() + 4 + 4;
  poke<uint64_t>(d, len_pos, 1ull << 62);
  expect_error(d, icae::ErrorKind::BadInput, "array length");
}

// Counts a file of this size could hold but whose parsed form would be far larger: a u8 array
// element is 1 byte in the file and a 96-byte Value in memory (a 100 MB file asked for 9.6 GB).
TEST(GgufReader, CountsBeyondTheFixedLimitsAreRefused) {
  {  // 2^23 + 1 u8 elements in one array
    Writer a;
    a.kvs.str("blob");
    a.kvs.put<uint32_t>(9);
    a.kvs.put<uint32_t>(0);
    a.kvs.put<uint64_t>((1ull << 23) + 1);
    a.kvs.data.resize(a.kvs.data.size() + (1ull << 23) + 1, 0);
    a.n_kv = 1;
    expect_error(a.build(), icae::ErrorKind::BadInput, "more than the limit of 8388608");
  }
  {  // the limit holds across arrays: two of 2^22 + 1
    Writer a;
    for (const char* k : {"one", "two"}) {
      a.kvs.str(k);
      a.kvs.put<uint32_t>(9);
      a.kvs.put<uint32_t>(0);
      a.kvs.put<uint64_t>((1ull << 22) + 1);
      a.kvs.data.resize(a.kvs.data.size() + (1ull << 22) + 1, 0);
      ++a.n_kv;
    }
    expect_error(a.build(), icae::ErrorKind::BadInput, "metadata 'two': array length 4194305 brings");
  }
  // Key and tensor counts the bytes left could hold, above the fixed limits.
  Writer w = small_writer();
  auto b = w.build();
  b.resize(b.size() + (uint64_t(1) << 26), 0);
  auto c = b;
  poke<uint64_t>(c, w.kv_count_pos, (1ull << 16) + 1);
  expect_error(c, icae::ErrorKind::BadInput, "metadata count 65537 exceeds the limit of 65536");
  Writer t;
  t.add_tensor("a.weight", {1}, 0, {0, 0, 0, 0});
  auto d = t.build();
  d.resize(d.size() + (uint64_t(1) << 26), 0);
  poke<uint64_t>(d, t.tensor_count_pos, (1ull << 20) + 1);
  expect_error(d, icae::ErrorKind::BadInput, "tensor count 1048577 exceeds the limit of 1048576");
}

TEST(GgufReader, StringLengthBeyondFile) {
  Writer w = small_writer();
  auto b = w.build();
  poke<uint64_t>(b, w.kv_count_pos + 8, 1ull << 40);  // the first key's length
  expect_error(b, icae::ErrorKind::BadInput, "string length");
}

TEST(GgufReader, TensorOffsetBeyondFile) {
  Writer w = small_writer();
  auto b = w.build();
  // The second tensor's offset field: after its name, n_dims, 2 dims and type.
  size_t pos = w.first_tensor_info_pos;
  pos += 8 + 8 + 4 + 16 + 4 + 8;               // a.weight's info
  pos += 8 + 8 + 4 + 16 + 4;                   // b.weight's name, n_dims, dims, type
  poke<uint64_t>(b, pos, 1ull << 20);
  expect_error(b, icae::ErrorKind::BadInput, "beyond the end of the file");
  poke<uint64_t>(b, pos, 33);
  expect_error(b, icae::ErrorKind::BadInput, "not a multiple of the alignment");
  poke<uint64_t>(b, pos, ~0ull - 31);
  expect_error(b, icae::ErrorKind::BadInput, "beyond the end of the file");
}

TEST(GgufReader, UnknownTypes) {
  Writer w = small_writer();
  w.tensors[0].type = 99;
  expect_error(w.build(), icae::ErrorKind::BadInput, "unknown or unsupported tensor type 99");

  Writer v;
  v.kv_u32("k", 1);
  auto b = v.build();
  poke<uint32_t>(b, v.kv_count_pos + 8 + 8 + 1, 13);  // value type of "k"
  expect_error(b, icae::ErrorKind::BadInput, "unknown value type 13");
}

TEST(GgufReader, BadTensorShapes) {
  Writer w = small_writer();
  w.tensors[0].ne = {3, 2, 1, 1, 1};
  expect_error(w.build(), icae::ErrorKind::BadInput, "5 dimensions");
  w = small_writer();
  w.tensors[0].ne = {3, 0};
  expect_error(w.build(), icae::ErrorKind::BadInput, "zero or too large");
  w = small_writer();
  w.tensors[0].ne = {1ull << 40, 1ull << 40};
  expect_error(w.build(), icae::ErrorKind::BadInput, "zero or too large");
  w = small_writer();
  w.tensors[1].ne = {16, 4};  // Q8_0 rows must be whole blocks of 32
  expect_error(w.build(), icae::ErrorKind::BadInput, "not a multiple of the Q8_0 block size");
}

TEST(GgufReader, DuplicatesAndBadValues) {
  Writer w = small_writer();
  w.kv_u32("llama.block_count", 3);
  expect_error(w.build(), icae::ErrorKind::BadInput, "duplicate metadata key 'llama.block_count'");
  w = small_writer();
  w.tensors[1].name = "a.weight";
  expect_error(w.build(), icae::ErrorKind::BadInput, "duplicate tensor name 'a.weight'");
  w = small_writer();
  w.kv_u32("general.alignment", 48);
  expect_error(w.build(), icae::ErrorKind::BadInput, "general.alignment");
  w = small_writer();
  w.kv_bool("bad.bool", true);
  auto b = w.build();
  // The bool is the last byte before the tensor infos.
  b[w.first_tensor_info_pos - 1] = 7;
  expect_error(b, icae::ErrorKind::BadInput, "not 0 or 1");
}

TEST(GgufReader, DeeplyNestedArraysAreRejected) {
  icae::gguf::testing::Bytes kv;
  kv.str("nest");
  kv.put<uint32_t>(9);
  for (int i = 0; i < 20; ++i) {
    kv.put<uint32_t>(9);
    kv.put<uint64_t>(1);
  }
  kv.put<uint32_t>(0);
  kv.put<uint64_t>(0);
  Writer w;
  w.kvs = kv;
  w.n_kv = 1;
  expect_error(w.build(), icae::ErrorKind::BadInput, "nested too deeply");
}
