// A tiny random Llama with a real tokenizer (Llama 2's, from ../shared/testdata), written to a
// temporary folder: what tests need to run the text-facing trainer end to end in seconds.
#pragma once
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "icae/io/tensor_io.h"
#include "test_paths.h"

namespace icae::test {

struct TinyModelOptions {
  int64_t hidden = 32, layers = 2, heads = 4, kv_heads = 2, intermediate = 64;
  uint64_t seed = 3;
  bool nan_weight = false;  // poisons one weight: every loss is NaN
};

inline std::string make_tiny_text_model(const std::string& name, const TinyModelOptions& o = {}) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(::testing::TempDir()) / name;
  fs::create_directories(dir);
  const int64_t vocab = 32000, h = o.hidden, d = h / o.heads;
  std::ofstream(dir / "config.json") << "{\"model_type\": \"llama\", \"vocab_size\": " << vocab
                                     << ", \"hidden_size\": " << h << ", \"intermediate_size\": " << o.intermediate
                                     << ", \"num_hidden_layers\": " << o.layers
                                     << ", \"num_attention_heads\": " << o.heads
                                     << ", \"num_key_value_heads\": " << o.kv_heads
                                     << ", \"rms_norm_eps\": 1e-5, \"bos_token_id\": 1, \"eos_token_id\": 2, "
                                        "\"tie_word_embeddings\": true, \"max_position_embeddings\": 2048}";
  auto gen = at::make_generator<at::CPUGeneratorImpl>(o.seed);
  auto rnd = [&](std::vector<int64_t> shape, double std) { return at::empty(shape, at::kFloat).normal_(0, std, gen); };
  std::vector<std::pair<std::string, at::Tensor>> w;
  w.emplace_back("model.embed_tokens.weight", rnd({vocab, h}, 0.5));
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.emplace_back(p + "input_layernorm.weight", at::ones({h}));
    w.emplace_back(p + "post_attention_layernorm.weight", at::ones({h}));
    w.emplace_back(p + "self_attn.q_proj.weight", rnd({o.heads * d, h}, 0.1));
    w.emplace_back(p + "self_attn.k_proj.weight", rnd({o.kv_heads * d, h}, 0.1));
    w.emplace_back(p + "self_attn.v_proj.weight", rnd({o.kv_heads * d, h}, 0.1));
    w.emplace_back(p + "self_attn.o_proj.weight", rnd({h, o.heads * d}, 0.1));
    w.emplace_back(p + "mlp.gate_proj.weight", rnd({o.intermediate, h}, 0.1));
    w.emplace_back(p + "mlp.up_proj.weight", rnd({o.intermediate, h}, 0.1));
    w.emplace_back(p + "mlp.down_proj.weight", rnd({h, o.intermediate}, 0.1));
  }
  w.emplace_back("model.norm.weight", at::ones({h}));
  if (o.nan_weight) w[1].second[0] = std::numeric_limits<float>::quiet_NaN();
  save_safetensors((dir / "model.safetensors").string(), w);
  fs::copy_file(shared_dir() + "/testdata/tokenizers/llama2/tokenizer.json", dir / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  return dir.string();
}

}  // namespace icae::test
