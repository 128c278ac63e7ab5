// GGUF -> Hugging Face weights: a tiny Llama written as llama.cpp's converter would (Q/K rows
// permuted, dimensions reversed) loads back to the original tensors; the real SmolLM2 file, when
// fetched, loads into a Transformer.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdio>
#include <fstream>

#include "../text/gguf_test_writer.h"
#include "icae/formats/gguf.h"
#include "icae/io/gguf_model.h"
#include "icae/model/tensor_names.h"
#include "icae/model/transformer.h"
#include "icae/util/error.h"

using icae::gguf::testing::Writer;

namespace {

constexpr int64_t H = 8, NH = 2, NKV = 1, D = 4, I = 16, V = 12;

std::vector<uint8_t> f32_bytes(const at::Tensor& t) {
  at::Tensor c = t.contiguous().to(at::kFloat);
  const auto* p = reinterpret_cast<const uint8_t*>(c.data_ptr<float>());
  return std::vector<uint8_t>(p, p + c.numel() * 4);
}

// What convert_hf_to_gguf.py does to Q and K of Llama models.
at::Tensor permute_like_converter(const at::Tensor& w, int64_t n_head) {
  return w.reshape({n_head, 2, w.size(0) / n_head / 2, w.size(1)}).transpose(1, 2).reshape(w.sizes());
}

struct TinyModel {
  std::map<std::string, at::Tensor> hf;  // original weights under HF names
  Writer writer;
};

TinyModel tiny_llama() {
  torch::manual_seed(7);
  TinyModel m;
  auto add = [&](const std::string& gguf_name, const std::string& hf_name, at::Tensor t, at::Tensor file_t) {
    m.hf[hf_name] = t;
    std::vector<uint64_t> ne(file_t.sizes().rbegin(), file_t.sizes().rend());
    m.writer.add_tensor(gguf_name, ne, 0, f32_bytes(file_t));
  };
  auto plain = [&](const std::string& g, const std::string& h, std::vector<int64_t> shape) {
    at::Tensor t = torch::randn(shape);
    add(g, h, t, t);
  };
  plain("token_embd.weight", "model.embed_tokens.weight", {V, H});
  plain("output_norm.weight", "model.norm.weight", {H});
  const std::string L = "model.layers.0.";
  plain("blk.0.attn_norm.weight", L + "input_layernorm.weight", {H});
  plain("blk.0.ffn_norm.weight", L + "post_attention_layernorm.weight", {H});
  at::Tensor q = torch::randn({NH * D, H}), k = torch::randn({NKV * D, H});
  add("blk.0.attn_q.weight", L + "self_attn.q_proj.weight", q, permute_like_converter(q, NH));
  add("blk.0.attn_k.weight", L + "self_attn.k_proj.weight", k, permute_like_converter(k, NKV));
  plain("blk.0.attn_v.weight", L + "self_attn.v_proj.weight", {NKV * D, H});
  plain("blk.0.attn_output.weight", L + "self_attn.o_proj.weight", {H, NH * D});
  plain("blk.0.ffn_gate.weight", L + "mlp.gate_proj.weight", {I, H});
  plain("blk.0.ffn_up.weight", L + "mlp.up_proj.weight", {I, H});
  plain("blk.0.ffn_down.weight", L + "mlp.down_proj.weight", {H, I});
  Writer& w = m.writer;
  w.kv_str("general.architecture", "llama");
  w.kv_u32("llama.context_length", 256);
  w.kv_u32("llama.embedding_length", H);
  w.kv_u32("llama.feed_forward_length", I);
  w.kv_u32("llama.block_count", 1);
  w.kv_u32("llama.attention.head_count", NH);
  w.kv_u32("llama.attention.head_count_kv", NKV);
  w.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  w.kv_f32("llama.rope.freq_base", 100000.f);
  w.kv_u32("llama.rope.dimension_count", D);
  w.kv_u32("tokenizer.ggml.bos_token_id", 1);
  w.kv_u32("tokenizer.ggml.eos_token_id", 2);
  return m;
}

std::string write_temp(const std::vector<uint8_t>& bytes, const std::string& name) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  return path;
}

}  // namespace

TEST(GgufModel, NamesMapToHuggingFace) {
  EXPECT_EQ(icae::gguf_to_hf_name("blk.12.attn_q.weight"), "model.layers.12.self_attn.q_proj.weight");
  EXPECT_EQ(icae::gguf_to_hf_name("blk.0.ffn_down.weight"), "model.layers.0.mlp.down_proj.weight");
  EXPECT_EQ(icae::gguf_to_hf_name("output.weight"), "lm_head.weight");
  EXPECT_EQ(icae::gguf_to_hf_name("blk.0.attn_qkv.weight"), "");
  EXPECT_EQ(icae::gguf_to_hf_name("rope_freqs.weight"), "");
}

// The tensor table: both names of every role agree, a config picks its tensors in the models'
// own order, and the fused row blocks tile their matrix.
TEST(TensorTable, NamesShapesAndFusedRows) {
  using icae::TensorRole;
  for (const icae::TensorRoleInfo& r : icae::tensor_roles())
    EXPECT_EQ(icae::gguf_to_hf_name(icae::gguf_name(r.role, 3)), icae::hf_name(r.role, 3));
  icae::ModelConfig c;
  c.vocab_size = V, c.hidden_size = H, c.intermediate_size = I, c.num_hidden_layers = 2;
  c.num_attention_heads = NH, c.num_key_value_heads = NKV, c.head_dim = D, c.attention_bias = true;
  std::vector<icae::ModelTensor> all = icae::model_tensors(c);
  ASSERT_EQ(all.size(), 1u + 2 * 12 + 2);
  EXPECT_EQ(all[0].name, "model.embed_tokens.weight");
  EXPECT_EQ(all[1].name, "model.layers.0.input_layernorm.weight");
  EXPECT_EQ(all[4].name, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(all[25].name, "model.norm.weight");
  EXPECT_EQ(all[26].shape, (std::vector<int64_t>{V, H}));
  EXPECT_EQ(icae::tensor_shape(c, TensorRole::AttnOutput), (std::vector<int64_t>{H, NH * D}));
  EXPECT_EQ(icae::fused_rows(c, TensorRole::AttnK).offset, NH * D);
  EXPECT_EQ(icae::fused_rows(c, TensorRole::AttnV).offset, NH * D + NKV * D);
  EXPECT_EQ(icae::fused_rows(c, TensorRole::FfnUp).offset, I);
  EXPECT_EQ(icae::hf_module(TensorRole::FfnGate, 1), "model.layers.1.mlp.gate_proj");
  c.attention_bias = false, c.tie_word_embeddings = true;
  EXPECT_EQ(icae::model_tensors(c).size(), 1u + 2 * 9 + 1);
}

TEST(GgufModel, UnpermuteInvertsTheConverter) {
  at::Tensor w = torch::arange(6 * 8 * 3, torch::kFloat).reshape({6 * 8, 3});
  EXPECT_TRUE(icae::unpermute_rotary_rows(permute_like_converter(w, 6), 6).equal(w));
  // Within one head of 4 rows the converter interleaves the halves: [r0, r2, r1, r3].
  at::Tensor one = torch::arange(4, torch::kFloat).reshape({4, 1});
  EXPECT_TRUE(permute_like_converter(one, 1).flatten().equal(torch::tensor({0.f, 2.f, 1.f, 3.f})));
}

TEST(GgufModel, TinyLlamaLoadsBackToTheOriginalWeights) {
  TinyModel m = tiny_llama();
  std::string path = write_temp(m.writer.build(), "tiny_llama.gguf");
  icae::LoadedWeights lw = icae::load_gguf_model(path, at::kFloat);
  const icae::ModelConfig& c = lw.config;
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.hidden_size, H);
  EXPECT_EQ(c.intermediate_size, I);
  EXPECT_EQ(c.num_hidden_layers, 1);
  EXPECT_EQ(c.num_attention_heads, NH);
  EXPECT_EQ(c.num_key_value_heads, NKV);
  EXPECT_EQ(c.head_dim, D);
  EXPECT_EQ(c.vocab_size, V);
  EXPECT_EQ(c.max_position_embeddings, 256);
  EXPECT_NEAR(c.rms_norm_eps, 1e-5, 1e-12);
  EXPECT_EQ(c.rope.theta, 100000.0);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.bos_token_id.value_or(-1), 1);
  EXPECT_EQ(c.eos_token_id.value_or(-1), 2);
  ASSERT_EQ(lw.tensors.size(), m.hf.size());
  for (const auto& [name, want] : m.hf) {
    ASSERT_TRUE(lw.tensors.count(name)) << name;
    EXPECT_TRUE(lw.tensors.at(name).equal(want)) << name;
  }
  icae::LoadedWeights bf = icae::load_gguf_model(path, at::kBFloat16);
  EXPECT_EQ(bf.tensors.at("model.layers.0.self_attn.q_proj.weight").scalar_type(), at::kBFloat16);
  // The weights fit the transformer.
  icae::Transformer model(lw.config, lw.tensors, {});
  icae::ForwardInput in;
  in.input_ids = torch::tensor({{1, 5, 7}}, torch::kLong);
  EXPECT_EQ(model.forward(in).logits.sizes(), (at::IntArrayRef{1, 3, V}));
  std::remove(path.c_str());
}

TEST(GgufModel, UnknownTensorsAndBadLayersAreErrors) {
  {
    TinyModel m = tiny_llama();
    m.writer.add_tensor("blk.0.mystery.weight", {4}, 0, std::vector<uint8_t>(16, 0));
    auto f = icae::gguf::GgufFile::from_memory(m.writer.build(), "x.gguf");
    try {
      icae::load_gguf_model(f, at::kFloat);
      FAIL();
    } catch (const icae::Error& e) {
      EXPECT_NE(std::string(e.what()).find("blk.0.mystery.weight"), std::string::npos) << e.what();
    }
  }
  {
    TinyModel m = tiny_llama();
    m.writer.add_tensor("blk.3.attn_norm.weight", {H}, 0, std::vector<uint8_t>(H * 4, 0));
    auto f = icae::gguf::GgufFile::from_memory(m.writer.build(), "x.gguf");
    EXPECT_THROW(icae::load_gguf_model(f, at::kFloat), icae::Error);
  }
  {
    TinyModel m = tiny_llama();
    m.writer.kv_str("llama.rope.scaling.type", "yarn");
    auto f = icae::gguf::GgufFile::from_memory(m.writer.build(), "x.gguf");
    EXPECT_THROW(icae::gguf_model_config(f), icae::Error);
  }
}

TEST(GgufModel, SmolLM2LoadsIntoATransformer) {
  const char* env = std::getenv("ICAE_SMOLLM2_GGUF");
  std::string path = env ? env : std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path << " (run scripts/fetch-model)";
  icae::LoadedWeights lw = icae::load_gguf_model(path, at::kFloat);
  EXPECT_EQ(lw.config.num_hidden_layers, 30);
  EXPECT_EQ(lw.config.hidden_size, 576);
  EXPECT_EQ(lw.config.num_key_value_heads, 3);
  EXPECT_EQ(lw.config.vocab_size, 49152);
  EXPECT_TRUE(lw.config.tie_word_embeddings);
  EXPECT_EQ(lw.tensors.size(), 272u);
  icae::Transformer model(lw.config, lw.tensors, {});
  icae::ForwardInput in;
  in.input_ids = torch::tensor({{1, 4093, 198, 6004, 2}}, torch::kLong);
  at::Tensor logits = model.forward(in).logits;
  EXPECT_TRUE(logits.isfinite().all().item<bool>());
}
