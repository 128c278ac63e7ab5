// The safetensors reader and writer: round trip, and a clear error for every kind of bad file.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "icae/formats/safetensors.h"
#include "icae/util/error.h"

using namespace icae;
using namespace icae::formats;

namespace {

std::string tmp_path(const std::string& name) { return ::testing::TempDir() + "icae_st_" + name; }

void write_raw(const std::string& path, uint64_t header_len, const std::string& header, const std::string& data) {
  std::ofstream out(path, std::ios::binary);
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>(header_len >> (8 * i)));
  out << header << data;
}

constexpr uint64_t kAuto = ~uint64_t(0);  // header length = the header's size

void expect_bad(const std::string& name, uint64_t len, const std::string& header, const std::string& data,
                const std::string& needle) {
  const std::string path = tmp_path(name);
  write_raw(path, len == kAuto ? header.size() : len, header, data);
  try {
    SafetensorsFile f(path);
    FAIL() << name << ": no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << name << ": " << e.what();
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << "message names the file";
  }
}

TEST(Safetensors, RoundTrip) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f};
  std::vector<int32_t> b = {1, -2, 3};
  const std::string path = tmp_path("roundtrip.safetensors");
  write_safetensors(path, {{"a", DType::F32, {2, 3}, a.data()}, {"b", DType::I32, {3}, b.data()}},
                    {{"format", "pt"}});
  SafetensorsFile f(path);
  ASSERT_EQ(f.tensors().size(), 2u);
  const TensorView& va = f.at("a");
  EXPECT_EQ(va.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::vector<float>(reinterpret_cast<const float*>(va.data), reinterpret_cast<const float*>(va.data) + 6), a);
  EXPECT_EQ(f.at("b").dtype, DType::I32);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.find("c"), nullptr);
  EXPECT_THROW(f.at("c"), Error);
}

TEST(Safetensors, BadFilesGiveClearErrors) {
  const std::string ok = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expect_bad("empty_header", 0, "", "", "invalid JSON");
  expect_bad("huge", uint64_t(1) << 40, "", "", "exceeds the limit");
  expect_bad("past_end", 1000, ok, std::string(8, '\0'), "runs past the end");
  expect_bad("json", kAuto, "{nope", "", "invalid JSON");
  expect_bad("dtype", kAuto, R"({"t":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}} )", std::string(8, '\0'),
             "unknown dtype 'Q4'");
  expect_bad("offsets", ok.size(), ok, std::string(4, '\0'), "outside the data section");
  expect_bad("size", kAuto, R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0'),
             "need 12");
  expect_bad("fields", kAuto, R"({"t":{"dtype":"F32"}} )", "", "needs dtype, shape and data_offsets");
  expect_bad("negative", kAuto, R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0'),
             "negative");
}

// A shape whose byte count wraps around uint64 (2^61 F64 elements = 2^64 bytes = 0) matched an
// empty data range, giving a view of 2^61 elements over no bytes; a dimension above int64 after a
// zero one was stored negative.
TEST(Safetensors, ShapesBeyondTheDataSectionAreRefused) {
  expect_bad("wrap", kAuto, R"({"t":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})", "",
             "shape overflows (2305843009213693952 elements of 8 bytes)");
  expect_bad("wrap2", kAuto, R"({"t":{"dtype":"F64","shape":[1073741824,2147483648],"data_offsets":[0,0]}})", "",
             "shape overflows");
  expect_bad("after_zero", kAuto, R"({"t":{"dtype":"F32","shape":[0,18446744073709551615],"data_offsets":[0,0]}})",
             "", "shape overflows");
  // Zero-sized tensors stay fine.
  const std::string path = tmp_path("zero_sized");
  write_raw(path, 56, R"({"t":{"dtype":"F64","shape":[0,5],"data_offsets":[0,0]}})", "");
  EXPECT_NO_THROW(SafetensorsFile{path});
}

TEST(Safetensors, TooShortFile) {
  const std::string path = tmp_path("three_bytes");
  std::ofstream(path, std::ios::binary) << "abc";
  try {
    SafetensorsFile f(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("need at least 8"), std::string::npos) << e.what();
  }
}

TEST(Safetensors, MissingFileIsAnIoError) {
  try {
    SafetensorsFile f("/nonexistent/x.safetensors");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}

}  // namespace
