// config.json parsing, strict weight loading, sharded checkpoints, and the CLI's exit codes for
// bad files.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/core/adapter_file.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/model/config.h"
#include "icae/model/transformer.h"
#include "icae/util/error.h"
#include "test_paths.h"

using namespace icae;
namespace fs = std::filesystem;

namespace {

nlohmann::json base_config() {
  return {{"model_type", "llama"}, {"vocab_size", 512},       {"hidden_size", 64},
          {"intermediate_size", 176}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
          {"num_key_value_heads", 4}};
}

template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    FAIL() << "no error (expected one mentioning '" << needle << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(Config, RopeTopLevelOrNestedAndItsTypes) {
  auto j = base_config();
  j["rope_theta"] = 500000.0;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  ModelConfig c = ModelConfig::from_json(j);
  EXPECT_EQ(c.rope.type, "llama3");
  EXPECT_DOUBLE_EQ(c.rope.theta, 500000.0);
  EXPECT_DOUBLE_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.head_dim, 16);

  j = base_config();
  j["rope_parameters"] = {{"rope_type", "linear"}, {"rope_theta", 1e6}, {"factor", 2.0}};
  j["head_dim"] = 32;
  c = ModelConfig::from_json(j);
  EXPECT_EQ(c.rope.type, "linear");
  EXPECT_DOUBLE_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.head_dim, 32);  // explicit head_dim wins over hidden / heads

  j = base_config();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::Unsupported, "rope type 'yarn'");
  j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 4.0}};
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::Unsupported, "rope type 'dynamic'");
}

TEST(Config, FamiliesAndBadValues) {
  auto j = base_config();
  j["model_type"] = "qwen2";
  EXPECT_TRUE(ModelConfig::from_json(j).attention_bias);
  j["model_type"] = "gpt_neox";
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::Unsupported, "gpt_neox");
  j = base_config();
  j["num_key_value_heads"] = 3;
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::BadInput, "multiple of num_key_value_heads");
  j = base_config();
  j.erase("hidden_size");
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::BadInput, "hidden_size");
  j = base_config();
  j["hidden_act"] = "gelu";
  expect_error([&] { ModelConfig::from_json(j); }, ErrorKind::Unsupported, "gelu");
}

TensorMap golden_weights() {
  return load_safetensors(test::golden_dir("tiny-llama") + "/base/model.safetensors");
}

TEST(StrictLoading, MissingWrongShapeAndUnknownTensorsAreNamed) {
  const ModelConfig c = ModelConfig::from_file(test::golden_dir("tiny-llama") + "/base/config.json");
  TensorMap w = golden_weights();
  w.erase("model.layers.1.mlp.up_proj.weight");
  expect_error([&] { Transformer(c, w, {}); }, ErrorKind::Mismatch,
               "missing tensor 'model.layers.1.mlp.up_proj.weight' (expected shape [176, 64])");
  w = golden_weights();
  w["model.layers.0.self_attn.k_proj.weight"] = at::zeros({32, 64});
  expect_error([&] { Transformer(c, w, {}); }, ErrorKind::Mismatch,
               "'model.layers.0.self_attn.k_proj.weight' has shape [32, 64], expected [64, 64]");
  w = golden_weights();
  w["model.layers.2.self_attn.q_proj.weight"] = at::zeros({64, 64});
  expect_error([&] { Transformer(c, w, {}); }, ErrorKind::Mismatch, "unknown tensor 'model.layers.2.self_attn.q_proj.weight'");
}

TEST(StrictLoading, ShardedCheckpointLoadsLikeOneFile) {
  const fs::path dir = fs::path(::testing::TempDir()) / "icae_sharded";
  fs::create_directories(dir);
  fs::copy_file(test::golden_dir("tiny-llama") + "/base/config.json", dir / "config.json",
                fs::copy_options::overwrite_existing);
  TensorMap w = golden_weights();
  std::vector<std::pair<std::string, at::Tensor>> a, b;
  nlohmann::json index = {{"metadata", {{"total_size", 0}}}, {"weight_map", nlohmann::json::object()}};
  for (const auto& [name, t] : w) {
    const bool first = name.find("layers.1.") == std::string::npos;
    (first ? a : b).emplace_back(name, t);
    index["weight_map"][name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  save_safetensors((dir / "model-00001-of-00002.safetensors").string(), a);
  save_safetensors((dir / "model-00002-of-00002.safetensors").string(), b);
  std::ofstream(dir / "model.safetensors.index.json") << index.dump();
  Transformer sharded = load_transformer(dir.string(), {});
  Transformer single = load_transformer(test::golden_dir("tiny-llama") + "/base", {});
  at::Tensor ids = at::arange(1, 20, at::kLong).unsqueeze(0);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(sharded.forward({ids}).logits, single.forward({ids}).logits));
  EXPECT_EQ(sharded.fingerprint(), single.fingerprint());
}

TEST(StrictLoading, FingerprintIgnoresDtypeButNotWeights) {
  Transformer f32 = load_transformer(test::golden_dir("tiny-llama") + "/base", {});
  Transformer bf16 = load_transformer(test::golden_dir("tiny-llama") + "/base", {at::kCPU, at::kBFloat16});
  Transformer other = load_transformer(test::golden_dir("tiny-mistral") + "/base", {});
  EXPECT_EQ(f32.fingerprint(), bf16.fingerprint());
  EXPECT_NE(f32.fingerprint(), other.fingerprint());
}

TEST(Adapter, ReleasedFileWithBaseModelTensorsReportsThem) {
  const std::string src = test::golden_dir("tiny-llama") + "/icae.safetensors";
  TensorMap t = load_safetensors(src);
  std::vector<std::pair<std::string, at::Tensor>> items(t.begin(), t.end());
  items.emplace_back("icae.base_model.model.model.embed_tokens.weight", at::zeros({512, 64}));
  const std::string path = ::testing::TempDir() + "icae_released_extra.safetensors";
  save_safetensors(path, items);
  auto base = std::make_shared<Transformer>(load_transformer(test::golden_dir("tiny-llama") + "/base", {}));
  LoadedAdapter a = load_adapter(path, base);
  EXPECT_TRUE(a.released_layout);
  ASSERT_EQ(a.ignored_keys.size(), 1u);
  EXPECT_EQ(a.ignored_keys[0], "icae.base_model.model.model.embed_tokens.weight");
  EXPECT_EQ(a.icae->config().mem_size, 8);
  EXPECT_DOUBLE_EQ(a.icae->config().lora.alpha, 32.0);  // the released default
}

// The CLI turns each kind of failure into a message and an exit status, never a crash.
int run_cli(const std::string& args) {
  const std::string cmd = std::string(ICAE_CLI_PATH) + " " + args + " >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(Cli, ExitCodesForBadInput) {
  const std::string model = test::golden_dir("tiny-llama") + "/base";
  EXPECT_EQ(run_cli("forward --model " + model + " --ids 1,5,9"), 0);
  EXPECT_EQ(run_cli("forward --model /nonexistent --ids 1"), 4);
  EXPECT_EQ(run_cli("forward --model " + model + " --ids 1,abc"), 2);
  EXPECT_EQ(run_cli("forward --model " + model + " --ids 1,100000"), 3);
  // A model folder whose weights file is truncated.
  const fs::path dir = fs::path(::testing::TempDir()) / "icae_truncated";
  fs::create_directories(dir);
  fs::copy_file(model + "/config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  {
    std::ifstream in(model + "/model.safetensors", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(dir / "model.safetensors", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }
  EXPECT_EQ(run_cli("forward --model " + dir.string() + " --ids 1"), 3);
  EXPECT_EQ(run_cli("forward --model " + model + " --ids 1 --device cuda:7"), 2);
  EXPECT_EQ(run_cli("check-golden " + test::golden_dir("tiny-mistral")), 0);
}

}  // namespace
