// The transformer against Hugging Face's logits (goldens), KV-cache equivalence, padding.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "icae/formats/safetensors.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/model/kv_cache.h"
#include "icae/model/transformer.h"
#include "test_paths.h"

using namespace icae;

namespace {

double rel_error(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() /
         b.to(at::kDouble).abs().max().item<double>();
}

class GoldenModel : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenModel, BaseLogitsMatchHuggingFace) {
  const std::string dir = test::golden_dir(GetParam());
  Transformer model = load_transformer(dir + "/base", {});
  TensorMap golden = load_safetensors(dir + "/golden.safetensors");
  at::Tensor ids = golden.at("base_input_ids").to(at::kLong);
  at::NoGradGuard no_grad;
  at::Tensor logits = model.forward({ids}).logits.squeeze(0);
  EXPECT_LE(rel_error(logits, golden.at("base_logits")), 1e-4);
}

TEST_P(GoldenModel, KVCacheEqualsRecomputation) {
  const std::string dir = test::golden_dir(GetParam());
  Transformer model = load_transformer(dir + "/base", {});
  at::NoGradGuard no_grad;
  at::Tensor ids = load_safetensors(dir + "/golden.safetensors").at("base_input_ids").to(at::kLong);
  const int64_t n = ids.size(1), prefix = 17;
  at::Tensor full = model.forward({ids}).logits;
  KVCache cache(model.config(), {1, n, at::kCPU, at::kFloat});
  // A prefill of several tokens, then one token at a time, then a block of three.
  at::Tensor step = model.forward({ids.narrow(1, 0, prefix)}, {nullptr, &cache}).logits;
  EXPECT_LE(rel_error(step, full.narrow(1, 0, prefix)), 1e-5);
  int64_t pos = prefix;
  for (; pos < n - 3; ++pos) {
    at::Tensor l = model.forward({ids.narrow(1, pos, 1)}, {nullptr, &cache}).logits;
    EXPECT_LE(rel_error(l, full.narrow(1, pos, 1)), 1e-5) << "position " << pos;
    EXPECT_EQ(l.argmax(-1).item<int64_t>(), full.narrow(1, pos, 1).argmax(-1).item<int64_t>());
  }
  at::Tensor tail = model.forward({ids.narrow(1, pos, 3)}, {nullptr, &cache}).logits;
  EXPECT_LE(rel_error(tail, full.narrow(1, pos, 3)), 1e-5);
  EXPECT_EQ(cache.length(), n);
}

TEST_P(GoldenModel, LeftAndRightPaddingGiveTheUnpaddedLogits) {
  const std::string dir = test::golden_dir(GetParam());
  Transformer model = load_transformer(dir + "/base", {});
  at::NoGradGuard no_grad;
  at::Tensor ids = load_safetensors(dir + "/golden.safetensors").at("base_input_ids").to(at::kLong);
  at::Tensor a = ids.narrow(1, 0, 30), b = ids.narrow(1, 10, 22);
  at::Tensor la = model.forward({a}).logits, lb = model.forward({b}).logits;
  const int64_t pad = 8;
  // Left padding: b is shifted right, positions count from its first real token.
  at::Tensor left_ids = at::cat({a, at::cat({at::zeros({1, pad}, at::kLong), b}, 1)}, 0);
  at::Tensor mask = at::ones({2, 30}, at::kLong);
  mask.index_put_({1, at::indexing::Slice(0, pad)}, 0);
  at::Tensor pos = (mask.cumsum(1) - 1).clamp_min(0);
  at::Tensor left = model.forward({left_ids, {}, mask, pos}).logits;
  EXPECT_LE(rel_error(left[0], la[0]), 1e-5);
  EXPECT_LE(rel_error(left[1].narrow(0, pad, 22), lb[0]), 1e-5);
  // Right padding.
  at::Tensor right_ids = at::cat({a, at::cat({b, at::zeros({1, pad}, at::kLong)}, 1)}, 0);
  at::Tensor rmask = at::ones({2, 30}, at::kLong);
  rmask.index_put_({1, at::indexing::Slice(22, 30)}, 0);
  at::Tensor right = model.forward({right_ids, {}, rmask}).logits;
  EXPECT_LE(rel_error(right[1].narrow(0, 0, 22), lb[0]), 1e-5);
}

TEST_P(GoldenModel, InputsEmbedsEqualInputIds) {
  const std::string dir = test::golden_dir(GetParam());
  Transformer model = load_transformer(dir + "/base", {});
  at::NoGradGuard no_grad;
  at::Tensor ids = load_safetensors(dir + "/golden.safetensors").at("base_input_ids").to(at::kLong);
  ForwardInput by_embeds;
  by_embeds.inputs_embeds = model.embed(ids);
  EXPECT_LE(rel_error(model.forward(by_embeds).logits, model.forward({ids}).logits), 1e-7);
}

INSTANTIATE_TEST_SUITE_P(Golden, GoldenModel, ::testing::Values("tiny-llama", "tiny-mistral"));

}  // namespace
