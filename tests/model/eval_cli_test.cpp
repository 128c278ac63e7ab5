// icae eval from the command line on SmolLM2 with a fresh (untrained) adapter saved to a file:
// the command's JSON equals the library's eval on the same data, so reading, tokenizing and
// reporting are plumbed right; and ft writes one JSONL line per PwC sample.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>

#include "icae/eval/icae_eval.h"
#include "icae/infer/session.h"
#include "icae/util/device.h"
#include "test_paths.h"

using namespace icae;
namespace fs = std::filesystem;

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

TEST(EvalCli, AeAndLmJsonEqualTheLibraryAndFtWritesJsonl) {
  const char* env = std::getenv("ICAE_SMOLLM2_GGUF");
  const std::string model =
      env ? env : std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::ifstream(model).good()) GTEST_SKIP() << "no " << model << " (run scripts/fetch-model)";
  const fs::path dir = fs::path(::testing::TempDir()) / "icae_eval_cli";
  fs::create_directories(dir);
  auto text = std::make_shared<TextModel>(load_text_model(model, {}));
  IcaeConfig ic;
  ic.mem_size = 8;
  ic.lora.r = 4;
  Icae fresh(text->model, ic, /*seed=*/3);
  AdapterInfo info;
  info.chat_template = "chatml";
  const std::string adapter_path = (dir / "adapter.safetensors").string();
  save_adapter(adapter_path, fresh, info);
  const std::vector<std::string> samples = {
      "The cat sat on the mat and looked out of the window at the birds in the garden below.",
      "Memory slots let a frozen language model read a compressed context instead of the context itself."};
  std::ofstream(dir / "data.jsonl") << "{\"text\": " << nlohmann::json(samples[0]).dump() << "}\n"
                                    << "{\"text\": " << nlohmann::json(samples[1]).dump() << "}\n";
  const std::string common = " --model " + model + " --adapter " + adapter_path + " --data " +
                             (dir / "data.jsonl").string() + " --threads 1 --json 2>/dev/null";

  auto adapter = std::make_shared<LoadedAdapter>(load_adapter(adapter_path, text->model));
  Session s(text, adapter);
  std::vector<std::vector<int64_t>> ids;
  for (const auto& t : samples) ids.push_back(s.tokenize(t));
  const std::string src = (dir / "data.jsonl").string();

  int status = 0;
  auto ae = nlohmann::json::parse(run_capture(std::string(ICAE_CLI_PATH) + " eval ae" + common, &status));
  ASSERT_EQ(status, 0);
  eval::AeReport want = eval::eval_ae(s, ids, {src + ":1", src + ":2"});
  ASSERT_EQ(ae.at("samples").size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(ae["samples"][i].at("source"), want.samples[i].source);
    EXPECT_EQ(ae["samples"][i].at("tokens").get<int64_t>(), want.samples[i].tokens);
    EXPECT_DOUBLE_EQ(ae["samples"][i].at("bleu4").get<double>(), want.samples[i].bleu);
    EXPECT_NEAR(ae["samples"][i].at("token_accuracy").get<double>(), want.samples[i].token_accuracy, 1e-12);
  }
  EXPECT_NEAR(ae.at("mean").at("bleu4").get<double>(), want.mean_bleu, 1e-12);
  // Each report says what it measured and in which arithmetic (scripts record it from here).
  EXPECT_EQ(ae.at("task"), "ae");
  EXPECT_EQ(ae.at("dtype"), "f32");  // the inference commands' default
  EXPECT_EQ(ae.at("device"), "cpu");

  auto lm = nlohmann::json::parse(
      run_capture(std::string(ICAE_CLI_PATH) + " eval lm --context-tokens 10 --continuation-tokens 8" + common, &status));
  ASSERT_EQ(status, 0);
  eval::LmEvalOptions lo;
  lo.context_tokens = 10;
  lo.continuation_tokens = 8;
  eval::LmReport lwant = eval::eval_lm(s, ids, {src + ":1", src + ":2"}, lo);
  EXPECT_EQ(lm.at("task"), "lm");
  EXPECT_EQ(lm.at("total").at("scored_tokens").get<int64_t>(), lwant.scored_tokens);
  EXPECT_NEAR(lm["total"].at("ppl_slots").get<double>() / lwant.ppl_slots, 1.0, 1e-6);
  EXPECT_NEAR(lm["total"].at("ppl_full_context").get<double>() / lwant.ppl_full, 1.0, 1e-6);
  EXPECT_NEAR(lm["total"].at("ppl_no_context").get<double>() / lwant.ppl_none, 1.0, 1e-6);
  // A real LM reading the text predicts its continuation better than reading nothing.
  EXPECT_LT(lwant.ppl_full, lwant.ppl_none);

  std::ofstream(dir / "pwc.jsonl") << nlohmann::json({{"input", samples[0]}, {"prompt", "Where did the cat sit?"},
                                                      {"answer", "On the mat."}}).dump()
                                   << "\n";
  const std::string out = (dir / "answers.jsonl").string();
  auto ft = nlohmann::json::parse(run_capture(std::string(ICAE_CLI_PATH) + " eval ft -n 12 -o " + out + " --model " +
                                                  model + " --adapter " + adapter_path + " --data " +
                                                  (dir / "pwc.jsonl").string() + " --dtype auto --threads 1 --json 2>/dev/null",
                                              &status));
  ASSERT_EQ(status, 0);
  ASSERT_EQ(ft.at("samples").size(), 1u);
  EXPECT_EQ(ft["samples"][0].at("reference"), "On the mat.");
  EXPECT_EQ(ft.at("task"), "ft");
  EXPECT_EQ(ft.at("dtype"), resolve_auto_dtype("auto", at::Device(at::kCPU)));  // auto, resolved
  EXPECT_TRUE(ft["samples"][0].contains("base_answer"));
  std::ifstream jl(out);
  std::string line;
  ASSERT_TRUE(std::getline(jl, line));
  EXPECT_EQ(nlohmann::json::parse(line).at("icae_answer"), ft["samples"][0].at("icae_answer"));
}

}  // namespace
