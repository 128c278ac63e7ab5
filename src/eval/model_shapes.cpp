// Known model shapes and random weights (see model_shapes.h).
#include "icae/eval/model_shapes.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <optional>

#include "icae/model/tensor_names.h"
#include "icae/util/error.h"

namespace icae::eval {

const std::vector<std::string>& shape_names() {
  static const std::vector<std::string> names = {"llama2-7b", "mistral-7b", "smollm2-135m", "tinyllama-1.1b"};
  return names;
}

ModelConfig shape_config(const std::string& name) {
  // Any other size: a config.json (Hugging Face format) given by path.
  if (name.size() > 5 && name.compare(name.size() - 5, 5, ".json") == 0) return ModelConfig::from_file(name);
  ModelConfig c;
  c.model_type = "llama";
  c.max_position_embeddings = 4096;
  c.rms_norm_eps = 1e-5;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  auto set = [&](int64_t v, int64_t h, int64_t i, int64_t l, int64_t heads, int64_t kv) {
    c.vocab_size = v;
    c.hidden_size = h;
    c.intermediate_size = i;
    c.num_hidden_layers = l;
    c.num_attention_heads = heads;
    c.num_key_value_heads = kv;
    c.head_dim = h / heads;
  };
  if (name == "llama2-7b") {
    set(32000, 4096, 11008, 32, 32, 32);
  } else if (name == "mistral-7b") {
    set(32000, 4096, 14336, 32, 32, 8);
    c.model_type = "mistral";
    c.rope.theta = 1e6;
    c.max_position_embeddings = 32768;
  } else if (name == "smollm2-135m") {
    set(49152, 576, 1536, 30, 9, 3);
    c.tie_word_embeddings = true;
    c.rope.theta = 100000;
    c.max_position_embeddings = 8192;
    c.bos_token_id = 1;
    c.eos_token_id = 2;
  } else if (name == "tinyllama-1.1b") {
    set(32000, 2048, 5632, 22, 32, 4);
  } else {
    std::string known;
    for (const auto& n : shape_names()) known += (known.empty() ? "" : ", ") + n;
    fail(ErrorKind::Usage, "unknown --shape '" + name + "' (known: " + known + ")");
  }
  c.validate();
  return c;
}

TensorMap random_weights(const ModelConfig& c, at::Device device, at::ScalarType dtype, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto opts = at::TensorOptions().device(device).dtype(dtype);
  std::optional<at::Generator> gen;
  if (device.is_cpu()) gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto normal = [&](std::vector<int64_t> shape) { return at::empty(shape, opts).normal_(0.0, 0.02, gen); };
  TensorMap w;
  // Matrices drawn in the table's order (the random stream depends on it), norms one, biases zero.
  for (const ModelTensor& t : model_tensors(c)) {
    switch (role_info(t.role).kind) {
      case TensorKind::Matrix: w[t.name] = normal(t.shape); break;
      case TensorKind::Norm: w[t.name] = at::ones(t.shape, opts); break;
      case TensorKind::Bias: w[t.name] = at::zeros(t.shape, opts); break;
    }
  }
  return w;
}

}  // namespace icae::eval
