// Dequantisation against values computed by hand or by an independent element-wise restatement
// of each format (element index -> byte, bits, scale), rather than by the block loops under test.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "gguf_test_writer.h"
#include "icae/formats/gguf.h"
#include "icae/formats/gguf_dequant.h"
#include "icae/util/error.h"

using namespace icae::gguf;
using icae::gguf::testing::put_f16;

namespace {

// Scales with exact half representations, so expected values are exact products.
constexpr uint16_t kHalfQuarter = 0x3400;  // 0.25
constexpr uint16_t kHalfHalf = 0x3800;     // 0.5
constexpr uint16_t kHalfOne = 0x3C00;      // 1
constexpr uint16_t kHalfMinusOne = 0xBC00; // -1
constexpr uint16_t kHalfTwo = 0x4000;      // 2

std::vector<float> run(TensorType t, const std::vector<uint8_t>& block, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n), NAN);
  dequantize(t, block.data(), out.data(), n);
  return out;
}

void expect_all_near(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], 1e-5f * std::max(1.0f, std::fabs(want[i]))) << "element " << i;
}

}  // namespace

TEST(GgufDequant, HalfAndBfloat16) {
  EXPECT_EQ(fp16_to_fp32(0x3C00), 1.0f);
  EXPECT_EQ(fp16_to_fp32(0xC000), -2.0f);
  EXPECT_EQ(fp16_to_fp32(0x7BFF), 65504.0f);
  EXPECT_EQ(fp16_to_fp32(0x0400), std::ldexp(1.0f, -14));   // smallest normal
  EXPECT_EQ(fp16_to_fp32(0x0001), std::ldexp(1.0f, -24));   // smallest subnormal
  EXPECT_EQ(fp16_to_fp32(0x03FF), std::ldexp(1023.0f, -24)); // largest subnormal
  EXPECT_EQ(fp16_to_fp32(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isinf(fp16_to_fp32(0x7C00)));
  EXPECT_TRUE(std::isnan(fp16_to_fp32(0x7E00)));
  EXPECT_TRUE(std::signbit(fp16_to_fp32(0x8000)));
  EXPECT_EQ(bf16_to_fp32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_fp32(0xC0A0), -5.0f);
  // Every half round-trips through float exactly: spot-check by re-encoding normals.
  for (uint32_t h = 0x0400; h < 0x7C00; h += 97) {
    float f = fp16_to_fp32(static_cast<uint16_t>(h));
    int e;
    float m = std::frexp(f, &e);  // f = m * 2^e, m in [0.5, 1)
    EXPECT_EQ(static_cast<uint32_t>((e - 1 + 15) << 10 | static_cast<uint32_t>((m * 2 - 1) * 1024)), h);
  }
}

TEST(GgufDequant, PlainTypes) {
  std::vector<uint8_t> b;
  put_f16(b, 0x3C00);
  put_f16(b, 0xC400);  // -4
  expect_all_near(run(TensorType::F16, b, 2), {1.0f, -4.0f});
  expect_all_near(run(TensorType::BF16, {0x80, 0x3F, 0x40, 0xC0}, 2), {1.0f, -3.0f});
  expect_all_near(run(TensorType::I8, {0xFF, 0x05}, 2), {-1.0f, 5.0f});
  float f[2] = {1.5f, -2.25f};
  std::vector<uint8_t> fb(reinterpret_cast<uint8_t*>(f), reinterpret_cast<uint8_t*>(f) + 8);
  expect_all_near(run(TensorType::F32, fb, 2), {1.5f, -2.25f});
}

TEST(GgufDequant, Q4_0) {
  // d = 0.5; byte j holds element j (low nibble j) and element j+16 (high nibble 15-j).
  std::vector<uint8_t> b;
  put_f16(b, kHalfHalf);
  for (int j = 0; j < 16; ++j) b.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = (j - 8) * 0.5f;
    want[j + 16] = (15 - j - 8) * 0.5f;
  }
  expect_all_near(run(TensorType::Q4_0, b, 32), want);
}

TEST(GgufDequant, Q4_1) {
  // d = 0.25, m = -1: x = q/4 - 1.
  std::vector<uint8_t> b;
  put_f16(b, kHalfQuarter);
  put_f16(b, kHalfMinusOne);
  for (int j = 0; j < 16; ++j) b.push_back(static_cast<uint8_t>(((j * 7) % 16) | (j << 4)));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = ((j * 7) % 16) * 0.25f - 1.0f;
    want[j + 16] = j * 0.25f - 1.0f;
  }
  expect_all_near(run(TensorType::Q4_1, b, 32), want);
  // Two blocks in a row: the second one starts 20 bytes later.
  auto two = b;
  two.insert(two.end(), b.begin(), b.end());
  two[20] = 0x00;  // second block's d = 0 -> all of it equals m
  two[21] = 0x00;
  auto got = run(TensorType::Q4_1, two, 64);
  for (int i = 32; i < 64; ++i) EXPECT_EQ(got[i], -1.0f);
}

TEST(GgufDequant, Q5_0AndQ5_1) {
  // Element e has 5-bit value (e * 11) % 32; its top bit is bit e of qh.
  std::vector<uint8_t> qs(16, 0);
  uint32_t qh = 0;
  std::vector<int> q(32);
  for (int e = 0; e < 32; ++e) {
    q[e] = (e * 11) % 32;
    qs[e % 16] |= static_cast<uint8_t>((q[e] & 15) << (e < 16 ? 0 : 4));
    if (q[e] & 16) qh |= 1u << e;
  }
  std::vector<uint8_t> b0;
  put_f16(b0, kHalfTwo);
  for (int i = 0; i < 4; ++i) b0.push_back(static_cast<uint8_t>(qh >> (8 * i)));
  b0.insert(b0.end(), qs.begin(), qs.end());
  std::vector<float> want0(32), want1(32);
  for (int e = 0; e < 32; ++e) {
    want0[e] = (q[e] - 16) * 2.0f;
    want1[e] = q[e] * 2.0f + 1.0f;
  }
  expect_all_near(run(TensorType::Q5_0, b0, 32), want0);
  std::vector<uint8_t> b1;
  put_f16(b1, kHalfTwo);
  put_f16(b1, kHalfOne);
  b1.insert(b1.end(), b0.begin() + 2, b0.end());
  expect_all_near(run(TensorType::Q5_1, b1, 32), want1);
}

TEST(GgufDequant, Q8_0AndQ8_1) {
  std::vector<uint8_t> b;
  put_f16(b, kHalfTwo);
  for (int j = 0; j < 32; ++j) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(j - 16)));
  std::vector<float> want(32);
  for (int j = 0; j < 32; ++j) want[j] = (j - 16) * 2.0f;
  expect_all_near(run(TensorType::Q8_0, b, 32), want);
  std::vector<uint8_t> b1;
  put_f16(b1, kHalfTwo);
  put_f16(b1, 0x0000);  // the sum field is not used for dequantisation
  b1.insert(b1.end(), b.begin() + 2, b.end());
  expect_all_near(run(TensorType::Q8_1, b1, 32), want);
}

TEST(GgufDequant, IQ4_NL) {
  static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  std::vector<uint8_t> b;
  put_f16(b, kHalfHalf);
  for (int j = 0; j < 16; ++j) b.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  std::vector<float> want(32);
  for (int j = 0; j < 16; ++j) {
    want[j] = kv[j] * 0.5f;
    want[j + 16] = kv[15 - j] * 0.5f;
  }
  expect_all_near(run(TensorType::IQ4_NL, b, 32), want);
}

// K-quants: random 6-bit scales/mins and quants, packed by an element-wise restatement of the
// layout; expected values from the format's formula.
class KQuant : public ::testing::Test {
 protected:
  std::mt19937 rng{1234};
  int rnd(int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); }
  // Packs eight 6-bit scales and mins as Q4_K/Q5_K do.
  static std::vector<uint8_t> pack_k4_scales(const int* sc, const int* mn) {
    std::vector<uint8_t> q(12, 0);
    for (int j = 0; j < 4; ++j) {
      q[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
      q[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
      q[j + 8] = static_cast<uint8_t>((sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4));
    }
    return q;
  }
};

TEST_F(KQuant, Q4_K) {
  int sc[8], mn[8], q[256];
  for (int j = 0; j < 8; ++j) sc[j] = rnd(64), mn[j] = rnd(64);
  for (int& v : q) v = rnd(16);
  std::vector<uint8_t> b;
  put_f16(b, kHalfQuarter);  // d
  put_f16(b, kHalfHalf);     // dmin
  auto s = pack_k4_scales(sc, mn);
  b.insert(b.end(), s.begin(), s.end());
  std::vector<uint8_t> qs(128, 0);
  for (int e = 0; e < 256; ++e) {
    int j = e / 32, l = e % 32;  // sub-block j, element l; sub-blocks 2k, 2k+1 share 32 bytes
    qs[(j / 2) * 32 + l] |= static_cast<uint8_t>(q[e] << (4 * (j % 2)));
  }
  b.insert(b.end(), qs.begin(), qs.end());
  ASSERT_EQ(b.size(), 144u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.25f * sc[e / 32] * q[e] - 0.5f * mn[e / 32];
  expect_all_near(run(TensorType::Q4_K, b, 256), want);
}

TEST_F(KQuant, Q5_K) {
  int sc[8], mn[8], q[256];
  for (int j = 0; j < 8; ++j) sc[j] = rnd(64), mn[j] = rnd(64);
  for (int& v : q) v = rnd(32);
  std::vector<uint8_t> b;
  put_f16(b, kHalfHalf);
  put_f16(b, kHalfQuarter);
  auto s = pack_k4_scales(sc, mn);
  b.insert(b.end(), s.begin(), s.end());
  std::vector<uint8_t> qh(32, 0), qs(128, 0);
  for (int e = 0; e < 256; ++e) {
    int j = e / 32, l = e % 32;
    qs[(j / 2) * 32 + l] |= static_cast<uint8_t>((q[e] & 15) << (4 * (j % 2)));
    if (q[e] & 16) qh[l] |= static_cast<uint8_t>(1 << j);
  }
  b.insert(b.end(), qh.begin(), qh.end());
  b.insert(b.end(), qs.begin(), qs.end());
  ASSERT_EQ(b.size(), 176u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * sc[e / 32] * q[e] - 0.25f * mn[e / 32];
  expect_all_near(run(TensorType::Q5_K, b, 256), want);
}

TEST_F(KQuant, Q6_K) {
  int sc[16], q[256];
  for (int& v : sc) v = rnd(256) - 128;
  for (int& v : q) v = rnd(64);
  std::vector<uint8_t> ql(128, 0), qh(64, 0);
  for (int e = 0; e < 256; ++e) {
    int half = e / 128, r = e % 128, k = r / 32, l = r % 32;
    ql[half * 64 + l + 32 * (k % 2)] |= static_cast<uint8_t>((q[e] & 15) << (4 * (k / 2)));
    qh[half * 32 + l] |= static_cast<uint8_t>((q[e] >> 4) << (2 * k));
  }
  std::vector<uint8_t> b = ql;
  b.insert(b.end(), qh.begin(), qh.end());
  for (int v : sc) b.push_back(static_cast<uint8_t>(static_cast<int8_t>(v)));
  put_f16(b, kHalfQuarter);
  ASSERT_EQ(b.size(), 210u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.25f * sc[e / 16] * (q[e] - 32);
  expect_all_near(run(TensorType::Q6_K, b, 256), want);
}

TEST_F(KQuant, Q2_K) {
  int sc[16], mn[16], q[256];
  for (int i = 0; i < 16; ++i) sc[i] = rnd(16), mn[i] = rnd(16);
  for (int& v : q) v = rnd(4);
  std::vector<uint8_t> b;
  for (int i = 0; i < 16; ++i) b.push_back(static_cast<uint8_t>(sc[i] | (mn[i] << 4)));
  std::vector<uint8_t> qs(64, 0);
  for (int e = 0; e < 256; ++e) {
    int half = e / 128, r = e % 128, plane = r / 32, l = r % 32;
    qs[half * 32 + l] |= static_cast<uint8_t>(q[e] << (2 * plane));
  }
  b.insert(b.end(), qs.begin(), qs.end());
  put_f16(b, kHalfHalf);     // d
  put_f16(b, kHalfQuarter);  // dmin
  ASSERT_EQ(b.size(), 84u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * sc[e / 16] * q[e] - 0.25f * mn[e / 16];
  expect_all_near(run(TensorType::Q2_K, b, 256), want);
}

TEST_F(KQuant, Q3_K) {
  int sc[16], q[256];  // sc in [-32, 31], q in [-4, 3]
  for (int& v : sc) v = rnd(64) - 32;
  for (int& v : q) v = rnd(8) - 4;
  std::vector<uint8_t> hm(32, 0), qs(64, 0), scales(12, 0);
  for (int e = 0; e < 256; ++e) {
    int half = e / 128, r = e % 128, plane = r / 32, l = r % 32;
    int u = q[e] + 4;  // 0..7: low two bits in qs; the high bit set means "no -4"
    qs[half * 32 + l] |= static_cast<uint8_t>((u & 3) << (2 * plane));
    if (u & 4) hm[l] |= static_cast<uint8_t>(1 << (half * 4 + plane));
  }
  for (int i = 0; i < 16; ++i) {
    int s = sc[i] + 32;
    scales[i % 8] |= static_cast<uint8_t>((s & 15) << (4 * (i / 8)));
    scales[8 + i % 4] |= static_cast<uint8_t>((s >> 4) << (2 * (i / 4)));
  }
  std::vector<uint8_t> b = hm;
  b.insert(b.end(), qs.begin(), qs.end());
  b.insert(b.end(), scales.begin(), scales.end());
  put_f16(b, kHalfHalf);
  ASSERT_EQ(b.size(), 110u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * sc[e / 16] * q[e];
  expect_all_near(run(TensorType::Q3_K, b, 256), want);
}

TEST_F(KQuant, Q8_K) {
  std::vector<uint8_t> b;
  float d = 0.125f;
  uint8_t db[4];
  std::memcpy(db, &d, 4);
  b.insert(b.end(), db, db + 4);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) {
    int v = rnd(256) - 128;
    b.push_back(static_cast<uint8_t>(static_cast<int8_t>(v)));
    want[e] = v * d;
  }
  b.resize(292, 0);
  expect_all_near(run(TensorType::Q8_K, b, 256), want);
}

TEST_F(KQuant, IQ4_XS) {
  static const int kv[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
  int sc[8], q[256];
  for (int& v : sc) v = rnd(64);
  for (int& v : q) v = rnd(16);
  uint16_t sh = 0;
  std::vector<uint8_t> sl(4, 0), qs(128, 0);
  for (int ib = 0; ib < 8; ++ib) {
    sl[ib / 2] |= static_cast<uint8_t>((sc[ib] & 15) << (4 * (ib % 2)));
    sh |= static_cast<uint16_t>((sc[ib] >> 4) << (2 * ib));
  }
  for (int e = 0; e < 256; ++e) {
    int ib = e / 32, r = e % 32;
    qs[ib * 16 + r % 16] |= static_cast<uint8_t>(q[e] << (4 * (r / 16)));
  }
  std::vector<uint8_t> b;
  put_f16(b, kHalfHalf);
  put_f16(b, sh);
  b.insert(b.end(), sl.begin(), sl.end());
  b.insert(b.end(), qs.begin(), qs.end());
  ASSERT_EQ(b.size(), 136u);
  std::vector<float> want(256);
  for (int e = 0; e < 256; ++e) want[e] = 0.5f * (sc[e / 32] - 32) * kv[q[e]];
  expect_all_near(run(TensorType::IQ4_XS, b, 256), want);
}

TEST(GgufDequant, PartialBlocksAndUnsupportedTypes) {
  std::vector<uint8_t> b(34, 0);
  std::vector<float> out(32);
  EXPECT_THROW(dequantize(TensorType::Q8_0, b.data(), out.data(), 16), icae::Error);
  EXPECT_THROW(dequantize(TensorType::I64, b.data(), out.data(), 1), icae::Error);
  EXPECT_FALSE(can_dequantize(TensorType::I64));
  EXPECT_TRUE(can_dequantize(TensorType::Q6_K));
}

TEST(GgufDequant, RowsOfATensorInAFile) {
  // A Q8_0 tensor of 3 rows x 64: row r, block k has d = 1 and q[j] = r * 10 + k.
  icae::gguf::testing::Writer w;
  std::vector<uint8_t> data;
  for (int r = 0; r < 3; ++r)
    for (int k = 0; k < 2; ++k) {
      put_f16(data, kHalfOne);
      for (int j = 0; j < 32; ++j) data.push_back(static_cast<uint8_t>(r * 10 + k));
    }
  w.add_tensor("t", {64, 3}, 8, data);
  GgufFile f = GgufFile::from_memory(w.build(), "rows.gguf");
  const TensorInfo& t = f.tensor("t");
  std::vector<float> rows(2 * 64);
  dequantize_rows(t, 1, 3, rows.data());
  EXPECT_EQ(rows[0], 10.0f);
  EXPECT_EQ(rows[63], 11.0f);
  EXPECT_EQ(rows[64], 20.0f);
  EXPECT_EQ(rows[127], 21.0f);
  auto all = dequantize(t);
  EXPECT_EQ(all.size(), 192u);
  EXPECT_EQ(all[32], 1.0f);
  EXPECT_THROW(dequantize_rows(t, 2, 4, rows.data()), icae::Error);
}
