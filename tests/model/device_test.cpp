// Device helpers, and the golden checks on CUDA (skipped where no GPU is present: run them on a
// GPU machine with `scripts/test -R Cuda`).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "icae/eval/golden_check.h"
#include "icae/util/device.h"
#include "test_paths.h"

using namespace icae;

TEST(Device, CpuHelpersWork) {
  synchronize(at::kCPU);
  reset_peak_memory(at::kCPU);
  EXPECT_GT(peak_memory_bytes(at::kCPU), 0);
  EXPECT_FALSE(device_name(at::kCPU).empty());
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
