// Dequantisation of ggml's block formats. Each dequant_* function converts one block; the byte
// layouts are those of ggml-common.h (all scalars little-endian, f16 scales as IEEE half).
#include "icae/formats/gguf_dequant.h"

#include <cstring>
#include <string>

#include "icae/util/error.h"

namespace icae::gguf {

float fp16_to_fp32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (mant << 13);  // inf / nan (payload kept)
  } else if (exp != 0) {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;  // +-0
  } else {
    // Subnormal half: normalise the mantissa into a normal float.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400) == 0);
    bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

float bf16_to_fp32(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

namespace {

constexpr int QK = 32;    // elements in a Q4_0 / Q4_1 / Q5_x / Q8_x / IQ4_NL block
constexpr int QK_K = 256; // elements in a K-quant super-block

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline float rdh(const uint8_t* p) { return fp16_to_fp32(rd16(p)); }
inline float rdf(const uint8_t* p) {
  uint32_t b = rd32(p);
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Non-linear 4-bit codebook of IQ4_NL / IQ4_XS.
const int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

// Q4_0: f16 d; u8 qs[16]. Low nibbles are elements 0..15, high nibbles 16..31; x = (q - 8) * d.
void dequant_q4_0(const uint8_t* b, float* y) {
  float d = rdh(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < QK / 2; ++j) {
    y[j] = static_cast<float>((qs[j] & 0x0f) - 8) * d;
    y[j + QK / 2] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

// Q4_1: f16 d; f16 m; u8 qs[16]; x = q * d + m.
void dequant_q4_1(const uint8_t* b, float* y) {
  float d = rdh(b), m = rdh(b + 2);
  const uint8_t* qs = b + 4;
  for (int j = 0; j < QK / 2; ++j) {
    y[j] = static_cast<float>(qs[j] & 0x0f) * d + m;
    y[j + QK / 2] = static_cast<float>(qs[j] >> 4) * d + m;
  }
}

// Q5_0: f16 d; u32 qh (fifth bit of element j is bit j); u8 qs[16]; x = (q - 16) * d.
void dequant_q5_0(const uint8_t* b, float* y) {
  float d = rdh(b);
  uint32_t qh = rd32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < QK / 2; ++j) {
    int x0 = (qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
    int x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(x0 - 16) * d;
    y[j + QK / 2] = static_cast<float>(x1 - 16) * d;
  }
}

// Q5_1: f16 d; f16 m; u32 qh; u8 qs[16]; x = q * d + m.
void dequant_q5_1(const uint8_t* b, float* y) {
  float d = rdh(b), m = rdh(b + 2);
  uint32_t qh = rd32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < QK / 2; ++j) {
    int x0 = (qs[j] & 0x0f) | (((qh >> j) & 1) << 4);
    int x1 = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4);
    y[j] = static_cast<float>(x0) * d + m;
    y[j + QK / 2] = static_cast<float>(x1) * d + m;
  }
}

// Q8_0: f16 d; i8 qs[32]; x = q * d.
void dequant_q8_0(const uint8_t* b, float* y) {
  float d = rdh(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// Q8_1: f16 d; f16 s (= d * sum(q), used only by dot products); i8 qs[32]; x = q * d.
void dequant_q8_1(const uint8_t* b, float* y) {
  float d = rdh(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < QK; ++j) y[j] = static_cast<float>(qs[j]) * d;
}

// IQ4_NL: f16 d; u8 qs[16]; x = d * codebook[nibble].
void dequant_iq4_nl(const uint8_t* b, float* y) {
  float d = rdh(b);
  const uint8_t* qs = b + 2;
  for (int j = 0; j < QK / 2; ++j) {
    y[j] = d * kIq4nlValues[qs[j] & 0x0f];
    y[j + QK / 2] = d * kIq4nlValues[qs[j] >> 4];
  }
}

// Q2_K: u8 scales[16] (low nibble scale, high nibble min, per 16 elements); u8 qs[64] (2 bits);
// f16 d; f16 dmin. Four 2-bit planes per 32 bytes of qs, 128 elements per half.
void dequant_q2_k(const uint8_t* b, float* y) {
  const uint8_t* scales = b;
  const uint8_t* q = b + 16;
  float d = rdh(b + 80), dmin = rdh(b + 82);
  int is = 0;
  for (int n = 0; n < QK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        uint8_t sc = scales[is++];
        float dl = d * static_cast<float>(sc & 0x0f), ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half] >> shift) & 3) - ml;
      }
    }
    q += 32;
  }
}

// Q3_K: u8 hmask[32] (third bit); u8 qs[64] (low 2 bits); u8 scales[12] (16 six-bit scales,
// stored offset by 32); f16 d. x = d * (scale - 32) * (q - (high bit set ? 0 : 4)).
void dequant_q3_k(const uint8_t* b, float* y) {
  const uint8_t* hm = b;
  const uint8_t* q = b + 32;
  const uint8_t* sc = b + 96;
  float d = rdh(b + 108);
  // Unpack: scale i has low 4 bits from sc[i % 8] (nibble i / 8) and high 2 bits from
  // sc[8 + i % 4] (bit pair i / 4).
  int scales[16];
  for (int i = 0; i < 16; ++i) {
    int lo = (sc[i % 8] >> (4 * (i / 8))) & 0x0f;
    int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    scales[i] = (lo | (hi << 4)) - 32;
  }
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < QK_K; n += 128) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int half = 0; half < 2; ++half) {
        float dl = d * static_cast<float>(scales[is++]);
        for (int l = 0; l < 16; ++l) {
          int k = l + 16 * half;
          int v = ((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
      m <<= 1;
    }
    q += 32;
  }
}

// Six-bit scale and min j (0..7) of Q4_K / Q5_K from their 12 packed bytes: j < 4 in the low six
// bits of bytes j and j+4; j >= 4 in the nibbles of byte j+4 plus the top two bits of j-4 and j.
inline void scale_min_k4(int j, const uint8_t* q, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q4_K: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]. Eight sub-blocks of 32: x = d*sc*q - dmin*m.
// Each 32 bytes of qs hold two sub-blocks: low nibbles then high nibbles.
void dequant_q4_k(const uint8_t* b, float* y) {
  float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int j = 0; j < 8; j += 2) {
    int sc, mn;
    scale_min_k4(j, scales, sc, mn);
    float d1 = d * sc, m1 = dmin * mn;
    scale_min_k4(j + 1, scales, sc, mn);
    float d2 = d * sc, m2 = dmin * mn;
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0x0f) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    q += 32;
  }
}

// Q5_K: as Q4_K plus u8 qh[32] before qs: the fifth bit of element l of sub-block j is bit j of
// qh[l].
void dequant_q5_k(const uint8_t* b, float* y) {
  float d = rdh(b), dmin = rdh(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* q = b + 48;
  for (int j = 0; j < 8; j += 2) {
    int sc, mn;
    scale_min_k4(j, scales, sc, mn);
    float d1 = d * sc, m1 = dmin * mn;
    scale_min_k4(j + 1, scales, sc, mn);
    float d2 = d * sc, m2 = dmin * mn;
    for (int l = 0; l < 32; ++l)
      *y++ = d1 * static_cast<float>((q[l] & 0x0f) | (((qh[l] >> j) & 1) << 4)) - m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d2 * static_cast<float>((q[l] >> 4) | (((qh[l] >> (j + 1)) & 1) << 4)) - m2;
    q += 32;
  }
}

// Q6_K: u8 ql[128] (low 4 bits); u8 qh[64] (high 2 bits); i8 scales[16]; f16 d.
// x = d * scale * (q - 32), one scale per 16 elements. Per half of 128 elements, element l + 32*k
// (k = 0..3) takes the nibble (k / 2) of ql[l + 32*(k % 2)] and bit pair k of qh[l].
void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* sc = reinterpret_cast<const int8_t*>(b + 192);
  float d = rdh(b + 208);
  for (int n = 0; n < QK_K; n += 128) {
    for (int l = 0; l < 32; ++l) {
      int is = l / 16;
      int q1 = ((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32;
      int q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32;
      int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

// Q8_K: f32 d; i8 qs[256]; i16 bsums[16] (sums for dot products, unused here).
void dequant_q8_k(const uint8_t* b, float* y) {
  float d = rdf(b);
  const auto* qs = reinterpret_cast<const int8_t*>(b + 4);
  for (int j = 0; j < QK_K; ++j) y[j] = d * qs[j];
}

// IQ4_XS: f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]. Eight sub-blocks of 32, each with a
// six-bit scale (low nibble from scales_l, high two bits from scales_h) offset by 32.
void dequant_iq4_xs(const uint8_t* b, float* y) {
  float d = rdh(b);
  uint16_t sh = rd16(b + 2);
  const uint8_t* sl = b + 4;
  const uint8_t* qs = b + 8;
  for (int ib = 0; ib < 8; ++ib) {
    int ls = ((sl[ib / 2] >> (4 * (ib % 2))) & 0x0f) | (((sh >> (2 * ib)) & 3) << 4);
    float dl = d * static_cast<float>(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[j] = dl * kIq4nlValues[qs[j] & 0x0f];
      y[j + 16] = dl * kIq4nlValues[qs[j] >> 4];
    }
    y += 32;
    qs += 16;
  }
}

using BlockFn = void (*)(const uint8_t*, float*);

BlockFn block_fn(TensorType t) {
  switch (t) {
    case TensorType::Q4_0: return dequant_q4_0;
    case TensorType::Q4_1: return dequant_q4_1;
    case TensorType::Q5_0: return dequant_q5_0;
    case TensorType::Q5_1: return dequant_q5_1;
    case TensorType::Q8_0: return dequant_q8_0;
    case TensorType::Q8_1: return dequant_q8_1;
    case TensorType::Q2_K: return dequant_q2_k;
    case TensorType::Q3_K: return dequant_q3_k;
    case TensorType::Q4_K: return dequant_q4_k;
    case TensorType::Q5_K: return dequant_q5_k;
    case TensorType::Q6_K: return dequant_q6_k;
    case TensorType::Q8_K: return dequant_q8_k;
    case TensorType::IQ4_NL: return dequant_iq4_nl;
    case TensorType::IQ4_XS: return dequant_iq4_xs;
    default: return nullptr;
  }
}

bool is_plain(TensorType t) {
  switch (t) {
    case TensorType::F32: case TensorType::F16: case TensorType::BF16: case TensorType::F64:
    case TensorType::I8: case TensorType::I16: case TensorType::I32:
      return true;
    default: return false;
  }
}

}  // namespace

bool can_dequantize(TensorType t) { return is_plain(t) || block_fn(t) != nullptr; }

void dequantize(TensorType t, const void* src, float* dst, int64_t n) {
  if (!can_dequantize(t))
    fail(ErrorKind::Unsupported, std::string("cannot dequantise GGUF tensor type ") + to_string(t));
  const TypeTraits& tr = type_traits(t);
  if (n < 0 || n % tr.block_size != 0)
    fail(ErrorKind::BadInput, std::to_string(n) + " elements are not a whole number of " + tr.name + " blocks");
  const auto* p = static_cast<const uint8_t*>(src);
  switch (t) {
    case TensorType::F32: std::memcpy(dst, p, static_cast<size_t>(n) * 4); return;
    case TensorType::F16: for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(rd16(p + 2 * i)); return;
    case TensorType::BF16: for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(rd16(p + 2 * i)); return;
    case TensorType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, p + 8 * i, 8);
        dst[i] = static_cast<float>(v);
      }
      return;
    case TensorType::I8: for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int8_t>(p[i]); return;
    case TensorType::I16:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int16_t>(rd16(p + 2 * i));
      return;
    case TensorType::I32:
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<int32_t>(rd32(p + 4 * i)));
      return;
    default: break;
  }
  BlockFn fn = block_fn(t);
  int64_t blocks = n / tr.block_size;
  for (int64_t i = 0; i < blocks; ++i) fn(p + i * tr.type_size, dst + i * tr.block_size);
}

void dequantize_rows(const TensorInfo& t, int64_t row_begin, int64_t row_end, float* dst) {
  if (row_begin < 0 || row_end < row_begin || row_end > t.rows())
    fail(ErrorKind::Internal, "tensor '" + t.name + "': rows [" + std::to_string(row_begin) + ", " +
                                  std::to_string(row_end) + ") out of range");
  if (!t.data) fail(ErrorKind::Internal, "tensor '" + t.name + "' has no data");
  const TypeTraits& tr = type_traits(t.type);
  int64_t row_bytes = t.ne[0] / tr.block_size * tr.type_size;
  try {
    dequantize(t.type, t.data + row_begin * row_bytes, dst, (row_end - row_begin) * t.ne[0]);
  } catch (const Error& e) {
    fail(e.kind(), "tensor '" + t.name + "': " + e.what());
  }
}

std::vector<float> dequantize(const TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements));
  dequantize_rows(t, 0, t.rows(), out.data());
  return out;
}

}  // namespace icae::gguf
