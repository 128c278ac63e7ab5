// icae bench on the tiny golden model: the default table (1x512, 8x512, 8x2048, 32x512, 128
// generated tokens) in under a minute, with the shapes of the numbers right.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "test_paths.h"

namespace {

std::string run_capture(const std::string& cmd, int* status) {
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) out.append(buf.data(), n);
  *status = pclose(pipe.release());
  return out;
}

TEST(BenchCli, TinyModelDefaultTableInUnderAMinute) {
  const std::string dir = icae::test::golden_dir("tiny-llama");
  const std::string cmd = std::string(ICAE_CLI_PATH) + " bench --model " + dir + "/base --adapter " + dir +
                          "/icae.safetensors --lora-alpha 32 --threads 1 --json 2>/dev/null";
  const auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  const std::string out = run_capture(cmd, &status);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(status, 0) << out;
  EXPECT_LT(s, 60.0);
  auto j = nlohmann::json::parse(out);
  ASSERT_EQ(j.at("rows").size(), 4u);
  const int64_t want[4][2] = {{1, 512}, {8, 512}, {8, 2048}, {32, 512}};
  for (size_t i = 0; i < 4; ++i) {
    const auto& r = j["rows"][i];
    EXPECT_EQ(r.at("batch").get<int64_t>(), want[i][0]);
    EXPECT_EQ(r.at("context").get<int64_t>(), want[i][1]);
    // k = 8 slots per 32 tokens: 4x fewer positions than the context.
    EXPECT_EQ(r.at("slots").get<int64_t>(), want[i][1] / 4);
    EXPECT_GT(r.at("compress_ms").get<double>(), 0);
    EXPECT_GT(r.at("decode_slots_ms").get<double>(), 0);
    EXPECT_GT(r.at("decode_full_ms").get<double>(), 0);
    // KV cache: slots + template + prompt + generated vs context + prompt + generated.
    EXPECT_LT(r.at("kv_bytes_slots").get<int64_t>(), r.at("kv_bytes_full").get<int64_t>());
    EXPECT_GT(r.at("peak_bytes_full").get<int64_t>(), 0);
  }
}

}  // namespace

// The bundled fine-tuned adapter answers through SmolLM2's chatml template, which needs the GGUF's
// own tokenizer (once refused: "FT template 'chatml' needs the model's tokenizer"); and a random
// adapter of either slot kind.
TEST(BenchCli, BundledChatmlAdapterAndBothSlotKindsOnSmolLM2) {
  const std::string model = std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (std::FILE* f = std::fopen(model.c_str(), "rb")) {
    std::fclose(f);
  } else {
    GTEST_SKIP() << "no " << model << " (scripts/fetch-model)";
  }
  const std::string base = std::string(ICAE_CLI_PATH) + " bench --model " + model +
                           " --batch 1 --context 64 --gen 2 --threads 1 --json 2>/dev/null";
  for (const std::string extra : {" --adapter " + std::string(ICAE_SOURCE_DIR) + "/models/demo/adapter-ft.safetensors",
                                  std::string(" -k 16 --lora-r 4 --slot-kind embedding"),
                                  std::string(" -k 16 --lora-r 4 --slot-kind kv")}) {
    int status = 0;
    const std::string out = run_capture(base + extra, &status);
    ASSERT_EQ(status, 0) << extra << ": " << out;
    const auto j = nlohmann::json::parse(out);
    EXPECT_EQ(j.at("rows").size(), 1u);
    if (extra.find("kv") != std::string::npos) EXPECT_EQ(j.at("slot_kind"), "kv");
  }
}
