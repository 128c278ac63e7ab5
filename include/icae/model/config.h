// Hyper-parameters of a Llama-family model (llama, mistral, qwen2), read from a Hugging Face
// config.json or from GGUF metadata.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <nlohmann/json_fwd.hpp>

namespace icae {

// How rotary position embeddings are scaled (rope_scaling / rope_parameters.rope_type).
struct RopeConfig {
  std::string type = "default";      // default | linear | llama3
  double theta = 10000.0;
  double factor = 1.0;               // linear and llama3
  double low_freq_factor = 1.0;      // llama3
  double high_freq_factor = 4.0;     // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

struct ModelConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;   // < num_attention_heads: grouped-query attention
  int64_t head_dim = 0;              // explicit, or hidden_size / num_attention_heads
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  bool attention_bias = false;       // q/k/v bias (qwen2 always; llama when attention_bias=true)
  bool mlp_bias = false;
  RopeConfig rope;
  std::optional<int64_t> bos_token_id;
  std::optional<int64_t> eos_token_id;

  // Parses a config.json object; unknown or unsupported settings are clear errors.
  static ModelConfig from_json(const nlohmann::json& j);
  static ModelConfig from_file(const std::string& config_json_path);
  nlohmann::json to_json() const;
  // Throws icae::Error naming the bad field when sizes are inconsistent.
  void validate() const;
  // Number of parameters of the base model (embeddings counted once when tied).
  int64_t parameter_count() const;
};

}  // namespace icae
