// Device helpers, and the golden checks and the inference session on CUDA (skipped where no GPU is
// present: run them on a GPU machine with `scripts/test -R Cuda`, or `scripts/gpu-run` there).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>

#include "icae/eval/golden_check.h"
#include "icae/infer/session.h"
#include "icae/util/device.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;

TEST(Device, CpuHelpersWork) {
  synchronize(at::kCPU);
  reset_peak_memory(at::kCPU);
  EXPECT_GT(peak_memory_bytes(at::kCPU), 0);
  EXPECT_FALSE(device_name(at::kCPU).empty());
}

// "auto" means bf16 only where the hardware computes it; the CPU's answer agrees with the
// kernel's own list of flags.
TEST(Device, AutoDtypeFollowsTheHardware) {
  std::ifstream in("/proc/cpuinfo");
  std::string word;
  bool native = false;
  while (in >> word) native = native || word == "avx512_bf16" || word == "amx_bf16";
  EXPECT_EQ(cpu_has_native_bf16(), native);
  EXPECT_EQ(resolve_auto_dtype("auto", at::kCPU), native ? "bf16" : "f32");
  EXPECT_EQ(resolve_auto_dtype("auto", at::Device(at::kCUDA, 0)), "bf16");
  EXPECT_EQ(resolve_auto_dtype("f32", at::Device(at::kCUDA, 0)), "f32");
  EXPECT_EQ(resolve_auto_dtype("bf16", at::kCPU), "bf16");
}

class CudaGolden : public ::testing::TestWithParam<std::tuple<std::string, bool>> {};

TEST_P(CudaGolden, EveryGoldenTensorMatchesOnCuda) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& [name, bf16] = GetParam();
  GoldenCheckOptions o;
  o.device = at::Device(at::kCUDA, 0);
  o.dtype = bf16 ? at::kBFloat16 : at::kFloat;
  GoldenReport r = check_golden(test::golden_dir(name), o);
  for (const auto& i : r.items) EXPECT_TRUE(i.ok) << i.name << ": error " << i.error << " > " << i.tolerance;
  reset_peak_memory(o.device);
  EXPECT_GE(peak_memory_bytes(o.device), 0);
}

INSTANTIATE_TEST_SUITE_P(Golden, CudaGolden,
                         ::testing::Combine(::testing::Values("tiny-llama", "tiny-mistral"), ::testing::Bool()));

// Key/value slots on CUDA against their reference (the kv_prefix, the capture and the
// position-ordered mask on the device).
TEST_P(CudaGolden, EveryKeyValueGoldenTensorMatchesOnCuda) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const auto& [name, bf16] = GetParam();
  GoldenCheckOptions o;
  o.device = at::Device(at::kCUDA, 0);
  o.dtype = bf16 ? at::kBFloat16 : at::kFloat;
  o.slot_kind = SlotKind::KeyValue;
  o.kv_golden = std::string(ICAE_SOURCE_DIR) + "/tests/data/golden-kv/" + name + ".safetensors";
  GoldenReport r = check_golden(test::golden_dir(name), o);
  for (const auto& i : r.items) EXPECT_TRUE(i.ok) << i.name << ": error " << i.error << " > " << i.tolerance;
}

// The inference session on CUDA: the golden greedy reconstruction (from the golden slots, which
// arrive on the CPU as from a slot file, and from the session's own compression), and batched
// generation with rows of different lengths equal, row for row, to one-by-one.
TEST(CudaSession, GoldenReconstructionAndBatchedGenerationOnCuda) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const std::string dir = test::golden_dir("tiny-llama");
  auto text = std::make_shared<TextModel>();
  text->path = dir + "/base";
  ModelLoadOptions mo;
  mo.device = at::Device(at::kCUDA, 0);
  text->model = std::make_shared<Transformer>(load_transformer(dir + "/base", mo));
  AdapterLoadOptions ao;
  ao.lora_alpha = 32;
  ao.compression_rate = 4;
  auto adapter = std::make_shared<LoadedAdapter>(load_adapter(dir + "/icae.safetensors", text->model, ao));
  const TensorMap golden = load_safetensors(dir + "/golden.safetensors");
  const auto want = test::to_ids(golden.at("ae_greedy_ids"));

  SessionOptions so;
  so.max_new_tokens = static_cast<int64_t>(want.size());
  Session s(text, adapter, so);
  EXPECT_EQ(s.reconstruct(golden.at("memory_slots")).ids, want);
  const auto context = test::to_ids(golden.at("context_ids"));
  at::Tensor slots = s.compress({context}).front();
  EXPECT_LE(max_relative_error(slots, golden.at("memory_slots")), 1e-4);
  EXPECT_EQ(s.reconstruct(slots).ids, want);

  const std::vector<int64_t> shorter(context.begin() + 3, context.begin() + 44);
  std::vector<at::Tensor> batch = s.compress({context, test::to_ids(golden.at("context1_ids")), shorter});
  std::vector<DecodeRow> rows = {s.reconstruct_row(batch[0]), s.answer_row(batch[1], std::vector<int64_t>{5, 9, 11}),
                                 s.reconstruct_row(batch[2]), s.generate_row({1, 40, 41, 42, 43, 44, 45})};
  rows[1].max_new_tokens = 7;
  const std::vector<Completion> together = s.run(rows);
  ASSERT_EQ(together.size(), rows.size());
  for (size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(together[i].ids, s.run({rows[i]}).front().ids) << "row " << i;
  EXPECT_GT(s.kv_cache_bytes(), 0);
}
