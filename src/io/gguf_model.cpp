// GGUF -> (ModelConfig, Hugging Face-named tensors). Dequantisation runs in parallel over rows
// (at::parallel_for); each tensor goes through float32 and is converted to the requested dtype.
#include "icae/io/gguf_model.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <regex>

#include "icae/formats/gguf.h"
#include "icae/formats/gguf_dequant.h"
#include "icae/model/tensor_names.h"
#include "icae/util/error.h"

namespace icae {
namespace {

// Architectures whose GGUF converter permutes Q/K rows (llama.cpp's LlamaModel and its
// subclasses; Mistral files are written with architecture "llama").
bool permutes_qk(const std::string& arch) { return arch == "llama" || arch == "mistral"; }

[[noreturn]] void fail_in(const gguf::GgufFile& f, ErrorKind kind, const std::string& what) {
  fail(kind, f.path() + ": " + what);
}

// Tensor of `info` dequantised to float32 with Hugging Face's dimension order (GGUF's reversed).
at::Tensor dequantize_tensor(const gguf::TensorInfo& info) {
  std::vector<int64_t> shape(info.ne.rbegin(), info.ne.rend());
  at::Tensor out = at::empty(shape, at::kFloat);
  float* dst = out.data_ptr<float>();
  const int64_t row = info.ne[0];
  // ~64K elements a task: small tensors stay on one thread.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 16) / row);
  std::exception_ptr error;
  std::mutex error_mutex;
  at::parallel_for(0, info.rows(), grain, [&](int64_t begin, int64_t end) {
    try {
      gguf::dequantize_rows(info, begin, end, dst + begin * row);
    } catch (...) {
      std::lock_guard<std::mutex> lock(error_mutex);
      if (!error) error = std::current_exception();
    }
  });
  if (error) std::rethrow_exception(error);
  return out;
}

}  // namespace

namespace {
// Splits "blk.N.rest" into N (as written) and rest; false for a global name.
bool split_layer_name(const std::string& name, std::string& layer, std::string& rest) {
  static const std::regex layer_re(R"(blk\.(\d+)\.(.+))");
  std::smatch m;
  if (!std::regex_match(name, m, layer_re)) return false;
  layer = m[1].str();
  rest = m[2].str();
  return true;
}
}  // namespace

const TensorRoleInfo* gguf_tensor_role(const std::string& name) {
  if (const TensorRoleInfo* r = find_gguf_role(name, false)) return r;
  std::string layer, rest;
  return split_layer_name(name, layer, rest) ? find_gguf_role(rest, true) : nullptr;
}

std::string gguf_to_hf_name(const std::string& name) {
  const TensorRoleInfo* r = gguf_tensor_role(name);
  if (!r) return "";
  if (!r->per_layer) return r->hf;
  // The layer index is carried over as written; load_gguf_model checks its range.
  std::string layer, rest;
  split_layer_name(name, layer, rest);
  return std::string(kHfLayerPrefix) + layer + "." + r->hf;
}

at::Tensor unpermute_rotary_rows(const at::Tensor& w, int64_t n_head) {
  // The converter did w.reshape(n_head, 2, D/2, in).swapaxes(1, 2).reshape(out, in): within a
  // head, HF row j*(D/2) + i went to row 2i + j. Undo: view (n_head, D/2, 2, ...) and swap back.
  ICAE_CHECK(w.dim() >= 1 && n_head > 0 && w.size(0) % (2 * n_head) == 0, ErrorKind::Mismatch,
             "cannot undo the rotary permutation: " + std::to_string(w.size(0)) + " rows for " +
                 std::to_string(n_head) + " heads");
  const int64_t half = w.size(0) / n_head / 2;
  std::vector<int64_t> shape = {n_head, half, 2};
  for (int64_t d = 1; d < w.dim(); ++d) shape.push_back(w.size(d));
  return w.reshape(shape).transpose(1, 2).reshape(w.sizes()).contiguous();
}

ModelConfig gguf_model_config(const gguf::GgufFile& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama" && arch != "mistral" && arch != "qwen2")
    fail_in(f, ErrorKind::Unsupported, "architecture '" + arch + "' is not supported (llama, mistral, qwen2)");
  const std::string p = arch + ".";
  ModelConfig c;
  c.model_type = arch;
  c.hidden_size = f.get_int(p + "embedding_length");
  c.intermediate_size = f.get_int(p + "feed_forward_length");
  c.num_hidden_layers = f.get_int(p + "block_count");
  c.num_attention_heads = f.get_int(p + "attention.head_count");
  c.num_key_value_heads = f.get_int(p + "attention.head_count_kv", c.num_attention_heads);
  ICAE_CHECK(c.num_attention_heads > 0, ErrorKind::BadInput, f.path() + ": " + p + "attention.head_count must be positive");
  c.head_dim = f.get_int(p + "attention.key_length", c.hidden_size / c.num_attention_heads);
  const int64_t value_length = f.get_int(p + "attention.value_length", c.head_dim);
  if (value_length != c.head_dim)
    fail_in(f, ErrorKind::Unsupported, "attention.value_length " + std::to_string(value_length) +
                                           " differs from key_length " + std::to_string(c.head_dim));
  const int64_t n_rot = f.get_int(p + "rope.dimension_count", c.head_dim);
  if (n_rot != c.head_dim)
    fail_in(f, ErrorKind::Unsupported, "partial rotary embeddings (rope.dimension_count " + std::to_string(n_rot) +
                                           " < head_dim " + std::to_string(c.head_dim) + ") are not supported");
  c.max_position_embeddings = f.get_int(p + "context_length", 2048);
  c.rms_norm_eps = f.get_float(p + "attention.layer_norm_rms_epsilon");
  c.rope.theta = f.get_float(p + "rope.freq_base", 10000.0);
  const std::string scaling = f.get_string(p + "rope.scaling.type", "none");
  if (scaling == "linear") {
    c.rope.type = "linear";
    c.rope.factor = f.get_float(p + "rope.scaling.factor");
  } else if (scaling != "none") {
    fail_in(f, ErrorKind::Unsupported, "rope scaling '" + scaling + "' is not supported (none, linear)");
  }
  // Llama 3.1-style files carry the scaled frequencies as a tensor rather than parameters.
  if (f.find_tensor("rope_freqs.weight"))
    fail_in(f, ErrorKind::Unsupported, "tensor 'rope_freqs.weight' (llama3 rope scaling) is not supported");
  c.attention_bias = f.find_tensor(gguf_name(TensorRole::AttnQBias, 0)) != nullptr;

  const std::string embed_name = gguf_name(TensorRole::TokenEmbedding);
  const gguf::TensorInfo& embed = f.tensor(embed_name);
  ICAE_CHECK(embed.ne.size() == 2 && embed.ne[0] == c.hidden_size, ErrorKind::BadInput,
             f.path() + ": " + embed_name + " has shape " + embed.shape_string() + ", expected [" +
                 std::to_string(c.hidden_size) + ", vocab]");
  c.vocab_size = embed.ne[1];
  if (f.has("tokenizer.ggml.tokens")) {
    const int64_t n_tokens = static_cast<int64_t>(f.get("tokenizer.ggml.tokens").items().size());
    ICAE_CHECK(n_tokens <= c.vocab_size, ErrorKind::BadInput,
               f.path() + ": " + std::to_string(n_tokens) + " tokens but " + embed_name + " has only " +
                   std::to_string(c.vocab_size) + " rows");
  }
  c.tie_word_embeddings = f.find_tensor(gguf_name(TensorRole::Output)) == nullptr;
  if (f.has("tokenizer.ggml.bos_token_id")) c.bos_token_id = f.get_int("tokenizer.ggml.bos_token_id");
  if (f.has("tokenizer.ggml.eos_token_id")) c.eos_token_id = f.get_int("tokenizer.ggml.eos_token_id");
  try {
    c.validate();
  } catch (const Error& e) {
    fail_in(f, e.kind(), e.what());
  }
  return c;
}

LoadedWeights load_gguf_model(const std::string& path, at::ScalarType dtype) {
  return load_gguf_model(gguf::GgufFile::open(path), dtype);
}

LoadedWeights load_gguf_model(const gguf::GgufFile& f, at::ScalarType dtype) {
  ICAE_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, ErrorKind::Usage,
             "GGUF weights load as float32 or bfloat16, not " + std::string(c10::toString(dtype)));
  LoadedWeights out;
  out.config = gguf_model_config(f);
  const ModelConfig& c = out.config;
  const bool permute = permutes_qk(f.get_string("general.architecture"));

  std::vector<std::string> unknown;
  for (const gguf::TensorInfo& info : f.tensors()) {
    std::string hf = gguf_to_hf_name(info.name);
    if (hf.empty()) {
      unknown.push_back(info.name);
      continue;
    }
    static const std::regex layer_re(R"(blk\.(\d+)\..*)");
    std::smatch m;
    if (std::regex_match(info.name, m, layer_re)) {
      const std::string& idx = m[1].str();
      if (idx.size() > 9 || std::stoll(idx) >= c.num_hidden_layers)
        fail_in(f, ErrorKind::BadInput, "tensor '" + info.name + "': layer " + idx + " beyond block_count " +
                                            std::to_string(c.num_hidden_layers));
    }
    if (!gguf::can_dequantize(info.type))
      fail_in(f, ErrorKind::Unsupported, "tensor '" + info.name + "' has type " + gguf::to_string(info.type) +
                                             ", which icae cannot dequantise");
    at::Tensor t;
    try {
      t = dequantize_tensor(info);
    } catch (const Error& e) {
      fail_in(f, e.kind(), e.what());
    }
    const RotaryRows rotary = gguf_tensor_role(info.name)->rotary;
    const bool is_q = rotary == RotaryRows::QueryHeads;
    if (permute && rotary != RotaryRows::None) {
      const int64_t heads = is_q ? c.num_attention_heads : c.num_key_value_heads;
      if (t.size(0) != heads * c.head_dim)
        fail_in(f, ErrorKind::Mismatch, "tensor '" + info.name + "' has " + std::to_string(t.size(0)) +
                                            " rows, expected " + std::to_string(heads * c.head_dim));
      t = unpermute_rotary_rows(t, heads);
    }
    if (dtype != at::kFloat) t = t.to(dtype);
    if (!out.tensors.emplace(hf, std::move(t)).second)
      fail_in(f, ErrorKind::BadInput, "two tensors map to '" + hf + "'");
  }
  if (!unknown.empty()) {
    std::string list;
    for (size_t i = 0; i < unknown.size() && i < 8; ++i) list += (i ? ", " : "") + unknown[i];
    if (unknown.size() > 8) list += ", ... (" + std::to_string(unknown.size()) + " in all)";
    fail_in(f, ErrorKind::Unsupported, "unknown tensors: " + list);
  }
  return out;
}

}  // namespace icae
