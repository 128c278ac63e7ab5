// ICAE core: the golden check, objectives' layouts, batched compression, adapter files,
// what a training step may change, the parameter report.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "icae/core/adapter_file.h"
#include "icae/eval/golden_check.h"
#include "icae/core/icae.h"
#include "icae/core/objectives.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/train/step.h"
#include "icae/util/error.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;

namespace {

using test::to_ids;
using Fixture = test::GoldenFixture;
Fixture load(const std::string& name) { return test::load_golden_fixture(name); }

class IcaeGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(IcaeGolden, EveryGoldenTensorMatches) {
  GoldenReport r = check_golden(test::golden_dir(GetParam()));
  for (const auto& i : r.items) EXPECT_TRUE(i.ok) << i.name << ": error " << i.error << " > " << i.tolerance;
  EXPECT_EQ(r.items.size(), 16u);
}

TEST_P(IcaeGolden, ObjectivesBuildTheReferenceSequences) {
  Fixture f = load(GetParam());
  const auto context = to_ids(f.golden.at("context_ids"));
  TrainingSample ae = make_ae_sample(*f.icae, context, 2);
  EXPECT_EQ(ae.ids, to_ids(f.golden.at("ae_prompt_answer_ids")));
  EXPECT_EQ(ae.labels, to_ids(f.golden.at("ae_labels")));

  // LM: the golden continuation is everything after [slots, LM]; it was built without a
  // leave_tokens_for_lm window.
  const auto lm_ids = to_ids(f.golden.at("lm_prompt_answer_ids"));
  const std::vector<int64_t> continuation(lm_ids.begin() + 25, lm_ids.end());
  LmOptions lo;
  lo.leave_tokens_for_lm = 0;
  lo.min_tokens_for_lm = 1;
  auto lm = make_lm_sample(*f.icae, context, continuation, lo);
  ASSERT_TRUE(lm.has_value());
  EXPECT_EQ(lm->ids, lm_ids);
  EXPECT_EQ(lm->labels, to_ids(f.golden.at("lm_labels")));
  lo.leave_tokens_for_lm = 8;
  auto lm8 = make_lm_sample(*f.icae, context, continuation, lo);
  EXPECT_EQ(lm8->labels[25 + 7], -100);
  EXPECT_EQ(lm8->labels[25 + 8], continuation[8]);
  lo.min_tokens_for_lm = 64;
  EXPECT_FALSE(make_lm_sample(*f.icae, context, continuation, lo).has_value());

  // FT with the "none" template: [BOS] slots FT prompt, then answer EOS.
  const auto ft_ids = to_ids(f.golden.at("ft_prompt_answer_ids"));
  const std::vector<int64_t> prompt(ft_ids.begin() + 26, ft_ids.begin() + 32);
  const std::vector<int64_t> answer(ft_ids.begin() + 32, ft_ids.end() - 1);
  FtTemplate none{"none", {1}, {}};
  TrainingSample ft = make_ft_sample(*f.icae, none, context, prompt, answer, 2);
  EXPECT_EQ(ft.ids, ft_ids);
  EXPECT_EQ(ft.labels, to_ids(f.golden.at("ft_labels")));
}

TEST_P(IcaeGolden, BatchedCompressionEqualsOneByOne) {
  Fixture f = load(GetParam());
  at::NoGradGuard no_grad;
  const auto c75 = to_ids(f.golden.at("context_ids"));
  const auto c20 = to_ids(f.golden.at("context1_ids"));
  const std::vector<int64_t> c41(c75.begin() + 3, c75.begin() + 44);
  std::vector<at::Tensor> batch = f.icae->compress_batch({c75, c20, c41});
  ASSERT_EQ(batch.size(), 3u);
  EXPECT_EQ(batch[0].size(0), 24);
  EXPECT_EQ(batch[1].size(0), 8);
  EXPECT_EQ(batch[2].size(0), 16);
  EXPECT_LE(max_relative_error(batch[0], f.icae->compress(c75)), 1e-5);
  EXPECT_LE(max_relative_error(batch[1], f.icae->compress(c20)), 1e-5);
  EXPECT_LE(max_relative_error(batch[2], f.icae->compress(c41)), 1e-5);
}

TEST_P(IcaeGolden, TrainingStepChangesOnlyLoraAndMemoryEmbeddings) {
  Fixture f = load(GetParam());
  std::map<std::string, at::Tensor> before;
  for (const auto& name : f.base->weight_names()) before[name] = f.base->weight(name).clone();
  at::Tensor mem_before = f.icae->memory_embed().clone();
  std::vector<at::Tensor> lora_before;
  for (const auto& t : f.icae->lora().parameters()) lora_before.push_back(t.clone());

  // One update through the trainer's own step.
  f.icae->set_trainable(true);
  std::vector<train::OptimizedTensor> opt_params;
  for (auto& [name, t] : f.icae->named_trainable()) opt_params.push_back({name, t, 1e-3, 0.0});
  train::AdamW opt(opt_params, {});
  const auto context = to_ids(f.golden.at("context_ids"));
  train::Sample s;
  s.seq = make_ae_sample(*f.icae, context, 2);
  train::train_step(*f.icae, opt, {{s}}, {});

  for (const auto& name : f.base->weight_names()) {
    EXPECT_TRUE(at::equal(f.base->weight(name), before[name])) << name << " changed";
    EXPECT_FALSE(f.base->weight(name).requires_grad()) << name;
  }
  EXPECT_FALSE(at::equal(f.icae->memory_embed(), mem_before));
  auto params = f.icae->lora().parameters();
  int changed = 0;
  for (size_t i = 0; i < params.size(); ++i) changed += !at::equal(params[i], lora_before[i]);
  EXPECT_EQ(changed, static_cast<int>(params.size())) << "every LoRA tensor should move";
}

TEST_P(IcaeGolden, AdapterFileRoundTripsAndRefusesAnotherBase) {
  Fixture f = load(GetParam());
  const std::string path = ::testing::TempDir() + "icae_adapter_" + GetParam() + ".safetensors";
  AdapterInfo info;
  info.base_model = GetParam();
  info.chat_template = "chatml";
  save_adapter(path, *f.icae, info);
  LoadedAdapter back = load_adapter(path, f.base);
  EXPECT_FALSE(back.released_layout);
  EXPECT_EQ(back.info.chat_template, "chatml");
  EXPECT_EQ(back.icae->config().mem_size, 8);
  EXPECT_EQ(back.icae->config().lora.r, 8);
  EXPECT_DOUBLE_EQ(back.icae->config().lora.alpha, 32.0);
  at::NoGradGuard no_grad;
  const auto context = to_ids(f.golden.at("context_ids"));
  EXPECT_TRUE(at::equal(back.icae->compress(context), f.icae->compress(context)));

  // Same shapes, other weights: the fingerprint says no.
  TensorMap w = load_safetensors(test::golden_dir(GetParam()) + "/base/model.safetensors");
  w.at("model.layers.0.self_attn.q_proj.weight").mul_(1.5);
  auto other = std::make_shared<Transformer>(f.base->config(), w, ModelLoadOptions{});
  try {
    load_adapter(path, other);
    FAIL() << "loaded onto another base";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
    EXPECT_NE(std::string(e.what()).find("fingerprint"), std::string::npos) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Golden, IcaeGolden, ::testing::Values("tiny-llama", "tiny-mistral"));

TEST(IcaeAdapter, ReleasedLayoutThatDoesNotFitTheBaseIsAClearError) {
  auto llama = std::make_shared<Transformer>(load_transformer(test::golden_dir("tiny-llama") + "/base", {}));
  auto mistral = std::make_shared<Transformer>(load_transformer(test::golden_dir("tiny-mistral") + "/base", {}));
  auto expect_error = [](const std::string& path, std::shared_ptr<Transformer> base, const std::string& needle) {
    try {
      load_adapter(path, base);
      FAIL() << "loaded " << path;
    } catch (const Error& e) {
      EXPECT_EQ(e.kind(), ErrorKind::Mismatch);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  // tiny-llama's v_proj is [64, 64]; tiny-mistral's (GQA 4:2) is [32, 64].
  expect_error(test::golden_dir("tiny-llama") + "/icae.safetensors", mistral, "the base model's is [32, 64]");
  // tiny-mistral's adapter has 3 layers; tiny-llama 2.
  expect_error(test::golden_dir("tiny-mistral") + "/icae.safetensors", llama, "names layer 2");
}

TEST(IcaeSegments, PlanFollowsTheOriginal) {
  SegmentPlan p = plan_segments(75, 8, 4);
  EXPECT_EQ(p.num_segments, 3);
  EXPECT_EQ(p.segment_length, 25);
  p = plan_segments(5120, 128, 4);
  EXPECT_EQ(p.num_segments, 10);
  EXPECT_EQ(p.segment_length, 512);
  p = plan_segments(513, 128, 4);
  EXPECT_EQ(p.num_segments, 2);
  EXPECT_EQ(p.segment_length, 257);
  EXPECT_EQ(p.ranges.back().first, 257);
  EXPECT_EQ(p.ranges.back().second, 513);
  EXPECT_THROW(plan_segments(0, 128, 4), Error);
}

TEST(IcaeParameters, Llama2_7B_WithRank128OnQV_IsAboutOnePercent) {
  ModelConfig c;
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 11008;
  c.num_hidden_layers = 32;
  c.num_attention_heads = 32;
  c.num_key_value_heads = 32;
  c.head_dim = 128;
  IcaeConfig ic;
  ic.mem_size = 128;
  ic.lora.r = 128;
  ic.lora.target_modules = {"q_proj", "v_proj"};
  ParameterReport r = parameter_report(c, ic);
  EXPECT_EQ(r.base, 6738415616);  // Llama-2-7B's published parameter count
  EXPECT_EQ(r.lora, 32 * 2 * 128 * (4096 + 4096));
  EXPECT_NEAR(100 * r.share(), 1.0, 0.05);
}

}  // namespace

namespace {

TEST(IcaeLora, MergedAdapterGivesTheSameSlots) {
  Fixture f = load("tiny-mistral");
  at::NoGradGuard no_grad;
  const auto context = to_ids(f.golden.at("context_ids"));
  at::Tensor plain = f.icae->compress(context);
  f.icae->lora().merge(*f.base);
  EXPECT_TRUE(f.icae->lora().merged());
  EXPECT_LE(max_relative_error(f.icae->compress(context), plain), 1e-5);
  EXPECT_LE(max_relative_error(f.icae->compress(context), f.golden.at("memory_slots")), 1e-4);
  EXPECT_THROW(f.icae->compress(context, /*training=*/true), Error);
  f.icae->lora().unmerge();
  EXPECT_TRUE(at::equal(f.icae->compress(context), plain));
}

TEST(IcaeLora, AllTargetModulesTrainAndLeaveTheDecoderAlone) {
  auto base = std::make_shared<Transformer>(load_transformer(test::golden_dir("tiny-llama") + "/base", {}));
  IcaeConfig c;
  c.mem_size = 8;
  c.lora.r = 4;
  c.lora.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  Icae icae(base, c, /*seed=*/7);
  // B starts at zero: a fresh adapter changes nothing yet.
  at::Tensor ids = at::arange(1, 30, at::kLong).unsqueeze(0);
  ForwardOptions on;
  on.lora = &icae.lora();
  {
    at::NoGradGuard no_grad;
    // Equal up to float rounding (the fused q/k/v output is re-laid out when an adapter is on).
    EXPECT_LE(max_relative_error(base->forward({ids}, on).logits, base->forward({ids}).logits), 1e-6);
  }
  for (auto& p : icae.lora().parameters()) {
    at::NoGradGuard no_grad;
    if (p.size(0) != 4) p.normal_(0, 0.05);  // give every B some weight
  }
  at::NoGradGuard no_grad;
  at::Tensor with = base->forward({ids}, on).logits, without = base->forward({ids}).logits;
  EXPECT_GT((with - without).abs().max().item<double>(), 1e-3);
  icae.lora().merge(*base);
  EXPECT_LE(max_relative_error(base->forward({ids}, on).logits, with), 1e-5);
  EXPECT_EQ(icae.lora().parameter_count(), lora_parameter_count(base->config(), c.lora));
}

}  // namespace

#include "icae/infer/slot_file.h"

namespace {

TEST(SlotFile, RoundTripsAndRefusesAnotherBase) {
  Fixture f = load("tiny-llama");
  at::NoGradGuard no_grad;
  const auto context = to_ids(f.golden.at("context_ids"));
  at::Tensor slots = f.icae->compress(context);
  const std::string path = ::testing::TempDir() + "icae_slots.safetensors";
  save_slots(path, *f.icae, slots, static_cast<int64_t>(context.size()));
  Slots back = load_slots(path, *f.icae);
  EXPECT_TRUE(at::equal(back.tensor, slots));
  EXPECT_EQ(back.context_tokens, 75);
  EXPECT_EQ(back.mem_size, 8);
  // Slots of one base model are meaningless to another.
  Fixture other = load("tiny-mistral");
  EXPECT_THROW(load_slots(path, *other.icae), Error);
}

}  // namespace
