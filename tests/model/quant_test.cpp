// The quantised decoding kernels against dense float32 products with the dequantised weights.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "icae/eval/golden_check.h"
#include "icae/eval/model_shapes.h"
#include "icae/io/model_loader.h"
#include "icae/model/kv_cache.h"
#include "icae/model/quant_matrix.h"
#include "icae/model/tensor_names.h"
#include "icae/model/transformer.h"
#include "test_paths.h"

using namespace icae;

namespace {

// Random but valid blocks: finite f16 scales (and mins), random quants.
QuantMatrix random_matrix(QuantFormat f, int64_t rows, int64_t cols, uint64_t seed, double scale = 0.05) {
  at::manual_seed(seed);
  QuantMatrix m;
  m.format = f;
  m.rows = rows;
  m.cols = cols;
  const int64_t blocks = cols / kQuantBlock, bytes = quant_block_bytes(f);
  m.data = at::randint(0, 256, {rows, blocks * bytes}, at::kLong).to(at::kByte);
  at::Tensor scales = ((at::rand({rows, blocks, f == QuantFormat::Q4_1 ? 2 : 1}) * 2 - 1) * scale).to(at::kHalf);
  auto view = m.data.view({rows, blocks, bytes});
  view.narrow(2, 0, scales.size(2) * 2).copy_(scales.view(at::kByte).view({rows, blocks, scales.size(2) * 2}));
  m.prepare();
  return m;
}

class QuantKernel : public ::testing::TestWithParam<QuantFormat> {};

// x with each block of 32 rounded as the int8 kernels round it (dequantised again), and half of
// each element's rounding step (its block's scale / 2): the most that rounding to nearest moves it.
struct Int8Rounding {
  at::Tensor rounded, half_steps;
};

Int8Rounding round_like_int8_kernels(const at::Tensor& x) {
  at::Tensor c = x.contiguous();
  const int64_t blocks = c.numel() / kQuantBlock;
  std::vector<int8_t> q(c.numel());
  std::vector<float> d(blocks);
  quantise_activations(c.data_ptr<float>(), blocks, q.data(), d.data());
  Int8Rounding r{at::empty_like(c), at::empty_like(c)};
  for (int64_t i = 0; i < c.numel(); ++i) {
    r.rounded.data_ptr<float>()[i] = d[i / kQuantBlock] * q[i];
    r.half_steps.data_ptr<float>()[i] = d[i / kQuantBlock] / 2;
  }
  return r;
}

// Every kernel this CPU runs against a double-precision product: the float kernels with x as it
// is, the int8 kernels with x rounded as they round it (so both are exact up to summation order).
TEST_P(QuantKernel, EqualsDenseProductWithDequantisedWeights) {
  QuantMatrix w = random_matrix(GetParam(), 202, 576, 3);
  at::Tensor dense = w.dequantize();
  ASSERT_TRUE(dense.isfinite().all().item<bool>());
  // Q4_1's min part of the weights alone (the same blocks with zero quants).
  QuantMatrix zero_quants = w;
  if (w.format == QuantFormat::Q4_1) {
    zero_quants.data = w.data.clone();
    zero_quants.data.view({w.rows, -1, quant_block_bytes(w.format)}).narrow(2, 4, 16).zero_();
    zero_quants.prepare();
  }
  const at::Tensor mins = w.format == QuantFormat::Q4_1 ? zero_quants.dequantize() : at::zeros_like(dense);
  int kernels = 0;
  for (QuantKernelKind k : all_quant_kernels()) {
    if (!quant_kernel_supported(k)) continue;
    ++kernels;
    for (int64_t n : {1, 3, 8, 11}) {  // 202 rows: 4-row steps and a remainder
      at::manual_seed(100 + n);  // the same x for every kernel, whichever ones this CPU runs
      at::Tensor x = at::randn({n, 576});
      if (n == 3) x[1].narrow(0, 64, 32).zero_();  // an all-zero block (scale 0)
      if (n == 8) x[2][100] = 300.0f;               // an outlier (fixed-vnni: small values rounded)
      const bool rounds = quant_kernel_rounds_activations(k);
      at::Tensor ref = at::matmul(x.to(at::kDouble), dense.to(at::kDouble).t());
      const Int8Rounding xr = round_like_int8_kernels(x);
      if (rounds)  // the scale term with the rounded x; Q4_1's min term keeps exact sums of x
        ref = ref - at::matmul((x - xr.rounded).to(at::kDouble), (dense - mins).to(at::kDouble).t());
      const at::Tensor y = quant_linear(x, w, k);
      EXPECT_LE(max_relative_error(y, ref), 1e-5) << quant_kernel_name(k) << ", " << n << " vectors";
      if (rounds) {  // and within what rounding x to 8 bits per block can change (Q4_1's min term exact)
        at::Tensor exact = at::matmul(x.to(at::kDouble), dense.to(at::kDouble).t());
        at::Tensor bound = at::matmul(xr.half_steps.to(at::kDouble), (dense - mins).abs().to(at::kDouble).t());
        const double slack = 1e-5 * exact.abs().max().item<double>();  // float32 summation
        EXPECT_TRUE(((y.to(at::kDouble) - exact).abs() <= bound + slack).all().item<bool>())
            << quant_kernel_name(k) << ", " << n << " vectors";
      }
    }
  }
  EXPECT_GE(kernels, 2);  // at least the two portable loops
  // Leading dimensions and bf16 inputs are handled.
  at::Tensor x = at::randn({2, 1, 576});
  EXPECT_EQ(quant_linear(x, w).sizes(), (std::vector<int64_t>{2, 1, 202}));
  EXPECT_EQ(quant_linear(x.to(at::kBFloat16), w).scalar_type(), at::kBFloat16);
}

TEST_P(QuantKernel, StackedRowsDequantiseInOrder) {
  QuantMatrix a = random_matrix(GetParam(), 64, 128, 1), b = random_matrix(GetParam(), 32, 128, 2);
  QuantMatrix ab = QuantMatrix::cat_rows({a, b});
  EXPECT_EQ(ab.rows, 96);
  EXPECT_TRUE(at::equal(ab.dequantize(), at::cat({a.dequantize(), b.dequantize()}, 0)));
}

TEST(QuantActivations, RoundsEachBlockToInt8WithItsMaxScale) {
  std::vector<float> x(64, 0.0f);
  x[0] = 127.0f;  // the block's maximum: scale 1
  x[1] = -63.5f;  // halves round to even
  x[2] = 0.25f;
  x[3] = 0.75f;
  x[4] = 2.5f;
  std::vector<int8_t> q(64);
  std::vector<float> d(2);
  quantise_activations(x.data(), 2, q.data(), d.data());
  EXPECT_EQ(d[0], 1.0f);
  EXPECT_EQ(q[0], 127);
  EXPECT_EQ(q[1], -64);
  EXPECT_EQ(q[2], 0);
  EXPECT_EQ(q[3], 1);
  EXPECT_EQ(q[4], 2);
  EXPECT_EQ(d[1], 0.0f);  // the all-zero second block
  EXPECT_EQ(q[40], 0);
}

// The fixed-point kernel's activations: exact where |x| >= max / 8, within about 2^-28 max elsewhere.
TEST(QuantActivations, DigitsWriteEachBlockAsA29BitInteger) {
  if (!quant_kernel_supported(QuantKernelKind::FixedVnni)) GTEST_SKIP() << "no AVX-512 VNNI on this CPU";
  const int64_t blocks = 6;
  at::manual_seed(5);
  at::Tensor xt = at::randn({blocks * kQuantBlock});
  xt[3] = 1000.0f;                            // block 0: an outlier, the rest far below max / 8
  xt.narrow(0, 32, 32).zero_();               // block 1: all zero
  xt.narrow(0, 64, 32).mul_(1e-39f);          // block 2: subnormal floats
  xt.narrow(0, 96, 32).mul_(1e37f);           // block 3: near the float range
  xt[100] = -3.0e38f;
  xt[128 + 7] = std::nanf("");                // block 4: a NaN
  const float* x = xt.data_ptr<float>();     // block 5: plain normal values
  // Per block 4 digits x 2 halves of 16 activations, each half written 4 times (one per 128-bit lane).
  std::vector<int8_t> digits(blocks * 4 * 2 * 64);
  std::vector<float> unit(blocks);
  split_activation_digits(x, blocks, digits.data(), unit.data());
  EXPECT_EQ(unit[1], 0.0f);
  EXPECT_TRUE(std::isnan(unit[4]));
  for (int64_t b : {0, 2, 3, 5}) {
    float amax = 0;
    for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[b * 32 + j]));
    int e = 0;
    EXPECT_EQ(std::frexp(unit[b], &e), 0.5f) << "unit is a power of two, block " << b;
    for (int j = 0; j < 32; ++j) {
      const int8_t* d = digits.data() + b * 512 + 64 * (j / 16) + j % 16;  // digit k at d[128 k]
      for (int k = 0; k < 4; ++k)
        for (int lane = 1; lane < 4; ++lane) EXPECT_EQ(d[128 * k + 16 * lane], d[128 * k]) << "lane copies, " << b << " " << j;
      EXPECT_LE(std::abs(static_cast<int>(d[0])), 127);
      for (int k = 1; k < 4; ++k) EXPECT_TRUE(d[128 * k] >= -64 && d[128 * k] <= 63) << b << " " << j << " " << k;
      const int64_t X = (int64_t{d[0]} << 21) + (int64_t{d[128]} << 14) + (int64_t{d[256]} << 7) + d[384];
      EXPECT_LE(std::llabs(X), int64_t{127} << 21);
      const double back = static_cast<double>(X) * unit[b], xj = x[b * 32 + j];
      if (std::fabs(xj) >= amax / 8) EXPECT_EQ(back, xj) << "block " << b << ", " << j;
      else EXPECT_LE(std::fabs(back - xj), amax / (127.0 * (1 << 21))) << "block " << b << ", " << j;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Formats, QuantKernel, ::testing::Values(QuantFormat::Q4_1, QuantFormat::Q8_0));

// The real model: decoding from the file's blocks gives the dense model's logits.
TEST(QuantDecode, SmolLM2DecodesLikeTheDenseModel) {
  const std::string path = std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run scripts/fetch-model first";
  ModelLoadOptions dense_opts;
  dense_opts.quantized_decode = ModelLoadOptions::QuantDecode::Off;
  ModelLoadOptions quant_opts;
  quant_opts.quantized_decode = ModelLoadOptions::QuantDecode::On;
  Transformer quant = load_transformer(path, quant_opts);
  Transformer dense = load_transformer(path, dense_opts);
  ASSERT_TRUE(quant.has_quantized());
  ASSERT_FALSE(dense.has_quantized());
  at::NoGradGuard no_grad;
  at::Tensor ids = at::tensor(std::vector<int64_t>{1, 504, 3458, 282, 4649, 314, 253, 1345, 30}, at::kLong).unsqueeze(0);
  KVCache cq(quant.config(), {1, 16, at::kCPU, at::kFloat}), cd(dense.config(), {1, 16, at::kCPU, at::kFloat});
  ForwardOptions oq, od;
  oq.cache = &cq;
  od.cache = &cd;
  quant.forward({ids}, oq);
  dense.forward({ids}, od);
  for (int64_t id : {28, 1390, 17}) {
    at::Tensor step = at::full({1, 1}, id, at::kLong);
    at::Tensor lq = quant.forward({step}, oq).logits, ld = dense.forward({step}, od).logits;
    EXPECT_LE(max_relative_error(lq, ld), 1e-4);
    EXPECT_EQ(lq.argmax(-1).item<int64_t>(), ld.argmax(-1).item<int64_t>());
  }
}

}  // namespace

namespace {

// The fused CPU decoding path (bf16 model and cache) against the dense float32 model.
TEST(QuantDecode, FusedBf16DecodingStaysCloseToFloat32) {
  const std::string path = std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run scripts/fetch-model first";
  ModelLoadOptions bf16_opts{at::kCPU, at::kBFloat16}, f32_opts;
  f32_opts.quantized_decode = ModelLoadOptions::QuantDecode::Off;
  Transformer fast = load_transformer(path, bf16_opts), ref = load_transformer(path, f32_opts);
  at::NoGradGuard no_grad;
  KVCache cf(fast.config(), {1, 16, at::kCPU, at::kBFloat16}), cr(ref.config(), {1, 16, at::kCPU, at::kFloat});
  ForwardOptions of, orf;
  of.cache = &cf;
  orf.cache = &cr;
  // Token by token from the start, so every position goes through the fused path.
  for (int64_t id : {1, 504, 3458, 282, 4649, 314}) {
    ForwardInput in;
    in.input_ids = at::full({1, 1}, id, at::kLong);
    ASSERT_TRUE(fast.uses_fast_decode(in, of));
    at::Tensor lf = fast.forward(in, of).logits, lr = ref.forward(in, orf).logits;
    EXPECT_EQ(lf.scalar_type(), at::kBFloat16);
    EXPECT_LE(max_relative_error(lf, lr), 3e-2) << "token " << id;
  }
  EXPECT_EQ(cf.length(), 6);
}

}  // namespace

namespace {

// The fused CPU decoding path against the ATen path on random Q8_0 weights, for head sizes that
// take each attention loop: 64 and 128 the register-resident AVX-512 one (where the CPU has it),
// 32 the generic one. The dense model holds the blocks' exact values, so only summation order
// differs; 40 positions make the attention span several cache lines of scores.
class FusedDecodeHeadDim : public ::testing::TestWithParam<int64_t> {};

TEST_P(FusedDecodeHeadDim, EqualsTheAtenPathTokenByToken) {
  ModelConfig c;
  c.vocab_size = 96;
  c.head_dim = GetParam();
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.hidden_size = 256;
  c.intermediate_size = 320;
  c.num_hidden_layers = 2;
  c.tie_word_embeddings = true;
  c.max_position_embeddings = 64;
  c.validate();
  TensorMap dense = eval::random_weights(c, at::kCPU, at::kFloat, 5);
  std::unordered_map<std::string, QuantMatrix> blocks;
  uint64_t seed = 100;
  for (const TensorRoleInfo& info : tensor_roles()) {
    if (info.kind != TensorKind::Matrix || !has_tensor(c, info.role)) continue;
    for (int64_t l = 0; l < (info.per_layer ? c.num_hidden_layers : 1); ++l) {
      const std::string name = hf_name(info.role, info.per_layer ? l : -1);
      const std::vector<int64_t> shape = tensor_shape(c, info.role);
      QuantMatrix m = random_matrix(QuantFormat::Q8_0, shape[0], shape[1], ++seed, 4e-4);
      dense[name] = m.dequantize();
      blocks.emplace(name, std::move(m));
    }
  }
  Transformer ref(c, dense, ModelLoadOptions{});
  Transformer fast(c, dense, ModelLoadOptions{});
  fast.attach_quantized(blocks);
  at::NoGradGuard no_grad;
  KVCache cf(c, {1, 48, at::kCPU, at::kFloat}), cr(c, {1, 48, at::kCPU, at::kFloat});
  ForwardOptions of, orf;
  of.cache = &cf;
  orf.cache = &cr;
  for (int64_t t = 0; t < 40; ++t) {
    ForwardInput in;
    in.input_ids = at::full({1, 1}, (t * 37 + 11) % c.vocab_size, at::kLong);
    ASSERT_TRUE(fast.uses_fast_decode(in, of));
    ASSERT_FALSE(ref.uses_fast_decode(in, orf));
    at::Tensor lf = fast.forward(in, of).logits, lr = ref.forward(in, orf).logits;
    ASSERT_LE(max_relative_error(lf, lr), 1e-4) << "position " << t;
  }
}

INSTANTIATE_TEST_SUITE_P(HeadDims, FusedDecodeHeadDim, ::testing::Values(int64_t{32}, int64_t{64}, int64_t{128}));

}  // namespace
