// Decoding one token of one sequence on the CPU, the whole layer stack in plain loops over
// float32 buffers with the quantised projections (quant_matrix.h).
//
// Why: at batch 1 a decode step is ~25 small operations per layer; through ATen each costs
// several microseconds of dispatch, allocation and type conversion, which came to more than the
// matrix-vector products themselves (SmolLM2-135M: ~18 ms of ~27 ms per token). Here they cost
// what their arithmetic costs.
//
// Numerics: everything in float32 (the KV cache keeps its dtype). In a float32 model this is the
// ATen path up to summation order; in bf16 it skips the bf16 roundings between operations, so
// it is closer to the float32 reference than the bf16 ATen path is.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>

// GCC 12 warns about its own AVX-512 intrinsics (_mm512_undefined_*); nothing here is uninitialised.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cmath>
#include <vector>

#include "icae/model/decode_pool.h"
#include "icae/model/kv_cache.h"
#include "icae/model/transformer.h"
#include "icae/util/error.h"
#include "simd.h"

namespace icae {

namespace {

// Reads one element of a float32 or bfloat16 buffer (small vectors: norms, biases) as float.
struct FloatBuffer {
  const void* data = nullptr;
  bool bf16 = false;
  float get(int64_t i) const {
    return bf16 ? static_cast<float>(static_cast<const c10::BFloat16*>(data)[i]) : static_cast<const float*>(data)[i];
  }
};

FloatBuffer buffer_of(const at::Tensor& t) { return {t.data_ptr(), t.scalar_type() == at::kBFloat16}; }

// Hugging Face's RMSNorm in float32: x / rms(x) * weight.
void rms_norm(const float* x, const FloatBuffer& weight, int64_t n, double eps, float* out) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float inv = 1.0f / std::sqrt(static_cast<float>(ss / n) + static_cast<float>(eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * inv * weight.get(i);
}

// Rotary embedding of one head vector in place (rotate_half layout).
void rope(float* v, const float* cos, const float* sin, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = v[i], x2 = v[i + half];
    v[i] = x1 * cos[i] - x2 * sin[i];
    v[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

// Dot products and scaled adds over one cached key/value row (float32 or bfloat16), with
// AVX-512 where the CPU has it (the project is compiled for baseline x86-64).
template <typename T>
ICAE_AVX512 float dot_avx512(const float* q, const T* k, int64_t d) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= d; i += 16) acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), simd::load16(k + i), acc);
  float out = _mm512_reduce_add_ps(acc);
  for (; i < d; ++i) out += q[i] * static_cast<float>(k[i]);
  return out;
}

template <typename T>
ICAE_AVX512 void axpy_avx512(float a, const T* v, float* out, int64_t d) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t i = 0;
  for (; i + 16 <= d; i += 16)
    _mm512_storeu_ps(out + i, _mm512_fmadd_ps(av, simd::load16(v + i), _mm512_loadu_ps(out + i)));
  for (; i < d; ++i) out[i] += a * static_cast<float>(v[i]);
}

template <typename T>
float dot(const float* q, const T* k, int64_t d) {
  if (simd::cpu_has_avx512()) return dot_avx512(q, k, d);
  float out = 0;
  for (int64_t i = 0; i < d; ++i) out += q[i] * static_cast<float>(k[i]);
  return out;
}

template <typename T>
void axpy(float a, const T* v, float* out, int64_t d) {
  if (simd::cpu_has_avx512()) return axpy_avx512(a, v, out, d);
  for (int64_t i = 0; i < d; ++i) out[i] += a * static_cast<float>(v[i]);
}

// The softmax's numerator in place, sc[s] = exp(sc[s] - mx), and its sum.
float exp_in_place(float* sc, int64_t len, float mx) {
  float sum = 0;
  for (int64_t s = 0; s < len; ++s) sum += (sc[s] = std::exp(sc[s] - mx));
  return sum;
}

// One query head over positions 0..len-1 of its key/value rows, head_dim D = 16 V, with AVX-512:
// q and the output accumulator stay in registers (V vectors each) instead of being re-read and
// re-written per position, the way the generic loop below does. sc: len scores of scratch.
template <typename T, int V>
ICAE_AVX512 void attend_head_avx512(const float* q, const T* k, const T* v, int64_t len,
                                                               float scale, float* sc, float* out) {
  constexpr int64_t D = 16 * V;
  __m512 qv[V];
  for (int i = 0; i < V; ++i) qv[i] = _mm512_loadu_ps(q + 16 * i);
  float mx = -INFINITY;
  for (int64_t s = 0; s < len; ++s) {
    const T* ks = k + s * D;
    __m512 a = _mm512_mul_ps(qv[0], simd::load16(ks));
    for (int i = 1; i < V; ++i) a = _mm512_fmadd_ps(qv[i], simd::load16(ks + 16 * i), a);
    sc[s] = _mm512_reduce_add_ps(a) * scale;
    mx = std::max(mx, sc[s]);
  }
  const float sum = exp_in_place(sc, len, mx);
  __m512 o[V];
  for (int i = 0; i < V; ++i) o[i] = _mm512_setzero_ps();
  for (int64_t s = 0; s < len; ++s) {
    const __m512 w = _mm512_set1_ps(sc[s]);
    const T* vs = v + s * D;
    for (int i = 0; i < V; ++i) o[i] = _mm512_fmadd_ps(w, simd::load16(vs + 16 * i), o[i]);
  }
  const __m512 inv = _mm512_set1_ps(1.0f / sum);
  for (int i = 0; i < V; ++i) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(o[i], inv));
}

// The same for any head_dim and CPU, through dot / axpy.
template <typename T>
void attend_head_generic(const float* q, const T* k, const T* v, int64_t len, int64_t d, float scale, float* sc,
                         float* out) {
  float mx = -INFINITY;
  for (int64_t s = 0; s < len; ++s) {
    sc[s] = dot(q, k + s * d, d) * scale;
    mx = std::max(mx, sc[s]);
  }
  const float sum = exp_in_place(sc, len, mx);
  const float inv_sum = 1.0f / sum;
  std::fill(out, out + d, 0.0f);
  for (int64_t s = 0; s < len; ++s) axpy(sc[s] * inv_sum, v + s * d, out, d);
}

// Writes this position's k and v into the cache and computes softmax(q k^T / sqrt(D)) v for
// every query head over positions 0..pos. T is the cache's element type.
template <typename T>
void attend(const KVCache& cache, int64_t layer, int64_t pos, const float* qkv, int64_t hq, int64_t hkv, int64_t d,
            float* scores, float* attn) {
  T* keys = static_cast<T*>(cache.key_buffer(layer).data_ptr());
  T* values = static_cast<T*>(cache.value_buffer(layer).data_ptr());
  const int64_t cap = cache.capacity(), len = pos + 1, group = hq / hkv;
  for (int64_t g = 0; g < hkv; ++g)
    for (int64_t i = 0; i < d; ++i) {
      keys[(g * cap + pos) * d + i] = static_cast<T>(qkv[(hq + g) * d + i]);
      values[(g * cap + pos) * d + i] = static_cast<T>(qkv[(hq + hkv + g) * d + i]);
    }
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  const bool avx512 = simd::cpu_has_avx512();
  // One contiguous run of heads per thread rather than many small chunks: the query heads of a
  // group read the same keys and values, and a thread that takes all of a group's heads reads them
  // once (from its own cache after the first head). Small chunks handed out as threads came sent
  // both threads over every group, and decoding at depth 512 was ~10% slower for it.
  const int64_t per_thread = (hq + at::get_num_threads() - 1) / at::get_num_threads();
  decode_parallel_for(hq, per_thread, [&](int64_t h0, int64_t h1) {
    for (int64_t head = h0; head < h1; ++head) {
      const int64_t g = head / group;
      const float* qh = qkv + head * d;
      const T* kg = keys + g * cap * d;
      const T* vg = values + g * cap * d;
      float* sc = scores + head * len;
      float* out = attn + head * d;
      if (avx512 && d == 64) attend_head_avx512<T, 4>(qh, kg, vg, len, scale, sc, out);
      else if (avx512 && d == 128) attend_head_avx512<T, 8>(qh, kg, vg, len, scale, sc, out);
      else attend_head_generic(qh, kg, vg, len, d, scale, sc, out);
    }
  });
}

}  // namespace

bool Transformer::quant_decode_ready(at::ScalarType cache_type) const {
  if (quant_layers_.empty() || !quant_lm_head_.defined() || !options_.device.is_cpu()) return false;
  if (at::GradMode::is_enabled()) return false;
  if (cache_type != at::kFloat && cache_type != at::kBFloat16) return false;
  if (options_.dtype != at::kFloat && options_.dtype != at::kBFloat16) return false;
  for (const auto& q : quant_layers_)
    if (!q.qkv.defined() || !q.o.defined() || !q.gate_up.defined() || !q.down.defined()) return false;
  return true;
}

bool Transformer::uses_fast_decode(const ForwardInput& in, const ForwardOptions& opt) const {
  if (opt.lora || !opt.cache || opt.training) return false;
  if (in.attention_mask.defined() || in.position_ids.defined() || in.kv_prefix.defined() || opt.kv_capture) return false;
  if (opt.cache->batch() != 1 || !quant_decode_ready(opt.cache->key_buffer(0).scalar_type())) return false;
  const at::Tensor& x = in.input_ids.defined() ? in.input_ids : in.inputs_embeds;
  return x.size(0) == 1 && x.size(1) == 1 && x.device().is_cpu();
}

void Transformer::decode_rows_cpu(std::vector<float>& x, const std::vector<KVCache*>& caches, float* logits) const {
  const ModelConfig& c = config_;
  const int64_t n = static_cast<int64_t>(caches.size());
  const int64_t h = c.hidden_size, hq = c.num_attention_heads, hkv = c.num_key_value_heads, d = c.head_dim,
                inter = c.intermediate_size, qkv_w = (hq + 2 * hkv) * d;
  ICAE_CHECK(static_cast<int64_t>(x.size()) == n * h, ErrorKind::Internal, "decode_rows_cpu: input size");
  // Row r's new token sits at position pos[r] of its own cache.
  std::vector<int64_t> pos(n);
  int64_t longest = 0;
  for (int64_t r = 0; r < n; ++r) {
    const KVCache& cache = *caches[r];
    pos[r] = cache.length();
    ICAE_CHECK(pos[r] + 1 <= cache.capacity(), ErrorKind::Usage,
               "KV cache full: " + std::to_string(pos[r]) + " + 1 positions > capacity " +
                   std::to_string(cache.capacity()));
    longest = std::max(longest, pos[r] + 1);
  }
  std::vector<float> hbuf(n * h), qkv(n * qkv_w), attn(n * hq * d), tmp(n * h), gu(n * 2 * inter), act(n * inter);

  // cos/sin of each row's position, as the ATen path computes them (float32 position * inv_freq).
  std::vector<float> cos(n * d / 2), sin(n * d / 2);
  const float* inv = inv_freq_.data_ptr<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < d / 2; ++i) {
      const float f = static_cast<float>(pos[r]) * inv[i];
      cos[r * d / 2 + i] = std::cos(f);
      sin[r * d / 2 + i] = std::sin(f);
    }
  std::vector<float> scores(hq * longest);

  // Every step below is row by row or a quant_gemv over the rows, which computes each row on its
  // own: a row's numbers do not depend on which other rows share the call.
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerWeights& w = layers_[l];
    const QuantLayer& q = quant_layers_[l];
    // --- attention
    for (int64_t r = 0; r < n; ++r) rms_norm(&x[r * h], buffer_of(w.input_norm), h, c.rms_norm_eps, &hbuf[r * h]);
    quant_gemv(q.qkv, hbuf.data(), n, qkv.data());
    if (w.qkv_bias.defined()) {
      const FloatBuffer bias = buffer_of(w.qkv_bias);
      for (int64_t r = 0; r < n; ++r)
        for (int64_t i = 0; i < qkv_w; ++i) qkv[r * qkv_w + i] += bias.get(i);
    }
    for (int64_t r = 0; r < n; ++r) {
      float* row = &qkv[r * qkv_w];
      for (int64_t head = 0; head < hq + hkv; ++head) rope(row + head * d, &cos[r * d / 2], &sin[r * d / 2], d);
      // Append k and v at pos[r] of the row's cache (buffers [1, Hkv, capacity, D]), then attend.
      if (caches[r]->key_buffer(l).scalar_type() == at::kBFloat16)
        attend<c10::BFloat16>(*caches[r], l, pos[r], row, hq, hkv, d, scores.data(), &attn[r * hq * d]);
      else
        attend<float>(*caches[r], l, pos[r], row, hq, hkv, d, scores.data(), &attn[r * hq * d]);
    }
    quant_gemv(q.o, attn.data(), n, tmp.data());
    for (int64_t i = 0; i < n * h; ++i) x[i] += tmp[i];
    // --- MLP (SwiGLU)
    for (int64_t r = 0; r < n; ++r) rms_norm(&x[r * h], buffer_of(w.post_norm), h, c.rms_norm_eps, &hbuf[r * h]);
    quant_gemv(q.gate_up, hbuf.data(), n, gu.data());
    for (int64_t r = 0; r < n; ++r)
      for (int64_t i = 0; i < inter; ++i) {
        const float g = gu[r * 2 * inter + i];
        act[r * inter + i] = g / (1.0f + std::exp(-g)) * gu[r * 2 * inter + inter + i];
      }
    quant_gemv(q.down, act.data(), n, tmp.data());
    for (int64_t i = 0; i < n * h; ++i) x[i] += tmp[i];
  }
  for (KVCache* cache : caches) cache->advance(1);
  for (int64_t r = 0; r < n; ++r) rms_norm(&x[r * h], buffer_of(norm_), h, c.rms_norm_eps, &hbuf[r * h]);
  if (logits) quant_gemv(quant_lm_head_, hbuf.data(), n, logits);
  x.swap(hbuf);
}

namespace {
// A token's embedding row as float32, appended to x.
void append_embedding(const at::Tensor& embed, int64_t id, int64_t vocab, std::vector<float>& x) {
  ICAE_CHECK(id >= 0 && id < vocab, ErrorKind::BadInput,
             "token id " + std::to_string(id) + " out of range [0, " + std::to_string(vocab) + ")");
  const at::Tensor row = embed[id].to(at::kFloat).contiguous();
  x.insert(x.end(), row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
}
}  // namespace

ForwardOutput Transformer::decode_step_cpu(const ForwardInput& in, const ForwardOptions& opt) const {
  const int64_t h = config_.hidden_size;
  std::vector<float> x;
  if (in.input_ids.defined()) {
    append_embedding(embed_, in.input_ids.reshape({-1})[0].item<int64_t>(), config_.vocab_size, x);
  } else {
    const at::Tensor row = in.inputs_embeds.reshape({h}).to(at::kFloat).contiguous();
    x.assign(row.data_ptr<float>(), row.data_ptr<float>() + h);
  }
  at::Tensor logits;
  if (opt.compute_logits) logits = at::empty({1, 1, config_.vocab_size}, at::kFloat);
  decode_rows_cpu(x, {opt.cache}, opt.compute_logits ? logits.data_ptr<float>() : nullptr);
  ForwardOutput out;
  at::Tensor hidden = at::empty({1, 1, h}, at::kFloat);
  std::copy(x.begin(), x.end(), hidden.data_ptr<float>());
  if (opt.compute_logits) out.logits = logits.to(options_.dtype);
  out.hidden = hidden.to(options_.dtype);
  return out;
}

at::Tensor Transformer::decode_rows(const std::vector<int64_t>& ids, const std::vector<KVCache*>& caches) const {
  ICAE_CHECK(!ids.empty() && ids.size() == caches.size(), ErrorKind::Usage,
             "decode_rows: " + std::to_string(ids.size()) + " ids for " + std::to_string(caches.size()) + " caches");
  const at::ScalarType cache_type = caches.front()->key_buffer(0).scalar_type();
  for (const KVCache* cache : caches)
    ICAE_CHECK(cache && cache->batch() == 1 && cache->key_buffer(0).scalar_type() == cache_type, ErrorKind::Usage,
               "decode_rows: every row needs its own KV cache of batch 1, all of one dtype");
  const int64_t b = static_cast<int64_t>(ids.size());
  if (b <= kQuantMaxRows && quant_decode_ready(cache_type)) {
    std::vector<float> x;
    x.reserve(b * config_.hidden_size);
    for (int64_t id : ids) append_embedding(embed_, id, config_.vocab_size, x);
    at::Tensor logits = at::empty({b, config_.vocab_size}, at::kFloat);
    decode_rows_cpu(x, caches, logits.data_ptr<float>());
    return logits.to(options_.dtype);
  }
  return decode_rows_aten(ids, caches);
}

}  // namespace icae
