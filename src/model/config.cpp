#include "icae/model/config.h"

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <type_traits>

#include "icae/util/error.h"

namespace icae {

namespace {

// Sizes beyond these are refused before anything is allocated for them; they are far above any
// released Llama-family model (vocabularies ~256k, hidden 16k, 128 layers, 1M positions) and
// keep every product parameter_count() and the loaders form within int64.
constexpr int64_t kMaxVocab = int64_t(1) << 24;
constexpr int64_t kMaxWidth = int64_t(1) << 20;   // hidden, intermediate, heads x head_dim
constexpr int64_t kMaxLayers = int64_t(1) << 12;
constexpr int64_t kMaxPositions = int64_t(1) << 24;

template <typename T>
T get_or(const nlohmann::json& j, const char* key, T fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // nlohmann converts a float to an integer with a plain cast, undefined for 1e300: accept
    // only floats that are whole numbers in range (4096.0), and say which field is wrong.
    if (j[key].is_number_float()) {
      const double d = j[key].get<double>();
      ICAE_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9.0e15, ErrorKind::BadInput,
                 std::string("config.json: field '") + key + "' is not an integer");
      return static_cast<T>(d);
    }
  }
  try {
    return j[key].get<T>();
  } catch (const nlohmann::json::exception&) {
    fail(ErrorKind::BadInput, std::string("config.json: field '") + key + "' has the wrong type");
  }
}

int64_t required_int(const nlohmann::json& j, const char* key) {
  ICAE_CHECK(j.contains(key) && j[key].is_number_integer(), ErrorKind::BadInput,
             std::string("config.json: missing or non-integer field '") + key + "'");
  return j[key].get<int64_t>();
}

// Rope settings appear either under "rope_parameters" (transformers 5) or as top-level
// "rope_theta" + "rope_scaling" (older checkpoints). Both are read; the nested form wins.
RopeConfig parse_rope(const nlohmann::json& j) {
  RopeConfig rope;
  rope.theta = get_or<double>(j, "rope_theta", rope.theta);
  const nlohmann::json* scaling = nullptr;
  if (j.contains("rope_parameters") && j["rope_parameters"].is_object()) {
    scaling = &j["rope_parameters"];
    rope.theta = get_or<double>(*scaling, "rope_theta", rope.theta);
  } else if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    scaling = &j["rope_scaling"];
  }
  if (!scaling) return rope;
  std::string type = get_or<std::string>(*scaling, "rope_type", "");
  if (type.empty()) type = get_or<std::string>(*scaling, "type", "default");
  rope.type = type;
  if (type == "default") return rope;
  if (type == "linear") {
    rope.factor = get_or<double>(*scaling, "factor", 1.0);
    ICAE_CHECK(rope.factor > 0, ErrorKind::BadInput, "config.json: rope factor must be positive");
    return rope;
  }
  if (type == "llama3") {
    rope.factor = get_or<double>(*scaling, "factor", 8.0);
    rope.low_freq_factor = get_or<double>(*scaling, "low_freq_factor", 1.0);
    rope.high_freq_factor = get_or<double>(*scaling, "high_freq_factor", 4.0);
    rope.original_max_position_embeddings =
        get_or<int64_t>(*scaling, "original_max_position_embeddings", 8192);
    ICAE_CHECK(rope.high_freq_factor > rope.low_freq_factor, ErrorKind::BadInput,
               "config.json: llama3 rope needs high_freq_factor > low_freq_factor");
    return rope;
  }
  fail(ErrorKind::Unsupported, "config.json: rope type '" + type +
                                   "' is not supported (supported: default, linear, llama3)");
}

}  // namespace

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  ICAE_CHECK(j.is_object(), ErrorKind::BadInput, "config.json: not a JSON object");
  ModelConfig c;
  c.model_type = get_or<std::string>(j, "model_type", "llama");
  ICAE_CHECK(c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2",
             ErrorKind::Unsupported,
             "config.json: model_type '" + c.model_type + "' is not supported (llama, mistral, qwen2)");
  c.vocab_size = required_int(j, "vocab_size");
  c.hidden_size = required_int(j, "hidden_size");
  c.intermediate_size = required_int(j, "intermediate_size");
  c.num_hidden_layers = required_int(j, "num_hidden_layers");
  c.num_attention_heads = required_int(j, "num_attention_heads");
  c.num_key_value_heads = get_or<int64_t>(j, "num_key_value_heads", c.num_attention_heads);
  c.head_dim = get_or<int64_t>(j, "head_dim", 0);
  if (c.head_dim == 0 && c.num_attention_heads > 0) c.head_dim = c.hidden_size / c.num_attention_heads;
  c.max_position_embeddings = get_or<int64_t>(j, "max_position_embeddings", 2048);
  c.rms_norm_eps = get_or<double>(j, "rms_norm_eps", 1e-6);
  c.tie_word_embeddings = get_or<bool>(j, "tie_word_embeddings", false);
  c.attention_bias = c.model_type == "qwen2" ? true : get_or<bool>(j, "attention_bias", false);
  c.mlp_bias = get_or<bool>(j, "mlp_bias", false);
  const std::string act = get_or<std::string>(j, "hidden_act", "silu");
  ICAE_CHECK(act == "silu", ErrorKind::Unsupported,
             "config.json: hidden_act '" + act + "' is not supported (silu)");
  if (j.contains("sliding_window") && !j["sliding_window"].is_null() &&
      get_or<bool>(j, "use_sliding_window", c.model_type == "mistral")) {
    // A window at least as long as any sequence we run changes nothing; we do not implement
    // shorter windows, so say so instead of silently attending further back than the model did.
    const int64_t window = get_or<int64_t>(j, "sliding_window", 0);
    ICAE_CHECK(window >= c.max_position_embeddings, ErrorKind::Unsupported,
               "config.json: sliding_window " + std::to_string(window) +
                   " shorter than max_position_embeddings is not supported");
  }
  c.rope = parse_rope(j);
  if (j.contains("bos_token_id") && j["bos_token_id"].is_number_integer())
    c.bos_token_id = j["bos_token_id"].get<int64_t>();
  if (j.contains("eos_token_id")) {
    const auto& e = j["eos_token_id"];
    if (e.is_number_integer()) c.eos_token_id = e.get<int64_t>();
    else if (e.is_array() && !e.empty() && e[0].is_number_integer()) c.eos_token_id = e[0].get<int64_t>();
  }
  c.validate();
  return c;
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, path + ": invalid JSON: " + e.what());
  }
  try {
    return from_json(j);
  } catch (const Error& e) {
    throw Error(e.kind(), path + ": " + e.what());
  }
}

nlohmann::json ModelConfig::to_json() const {
  nlohmann::json j = {
      {"model_type", model_type},
      {"vocab_size", vocab_size},
      {"hidden_size", hidden_size},
      {"intermediate_size", intermediate_size},
      {"num_hidden_layers", num_hidden_layers},
      {"num_attention_heads", num_attention_heads},
      {"num_key_value_heads", num_key_value_heads},
      {"head_dim", head_dim},
      {"max_position_embeddings", max_position_embeddings},
      {"rms_norm_eps", rms_norm_eps},
      {"tie_word_embeddings", tie_word_embeddings},
      {"attention_bias", attention_bias},
      {"mlp_bias", mlp_bias},
      {"hidden_act", "silu"},
  };
  nlohmann::json rope_j = {{"rope_type", rope.type}, {"rope_theta", rope.theta}};
  if (rope.type != "default") rope_j["factor"] = rope.factor;
  if (rope.type == "llama3") {
    rope_j["low_freq_factor"] = rope.low_freq_factor;
    rope_j["high_freq_factor"] = rope.high_freq_factor;
    rope_j["original_max_position_embeddings"] = rope.original_max_position_embeddings;
  }
  j["rope_parameters"] = rope_j;
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  return j;
}

void ModelConfig::validate() const {
  auto positive = [](int64_t v, const char* name) {
    ICAE_CHECK(v > 0, ErrorKind::BadInput,
               std::string("config: ") + name + " must be positive, got " + std::to_string(v));
  };
  positive(vocab_size, "vocab_size");
  positive(hidden_size, "hidden_size");
  positive(intermediate_size, "intermediate_size");
  positive(num_hidden_layers, "num_hidden_layers");
  positive(num_attention_heads, "num_attention_heads");
  positive(num_key_value_heads, "num_key_value_heads");
  positive(head_dim, "head_dim");
  positive(max_position_embeddings, "max_position_embeddings");
  auto at_most = [](int64_t v, int64_t limit, const char* name) {
    ICAE_CHECK(v <= limit, ErrorKind::BadInput,
               std::string("config: ") + name + " = " + std::to_string(v) + " exceeds the limit of " +
                   std::to_string(limit));
  };
  at_most(vocab_size, kMaxVocab, "vocab_size");
  at_most(hidden_size, kMaxWidth, "hidden_size");
  at_most(intermediate_size, kMaxWidth, "intermediate_size");
  at_most(num_hidden_layers, kMaxLayers, "num_hidden_layers");
  at_most(num_attention_heads, kMaxWidth, "num_attention_heads");
  at_most(head_dim, kMaxWidth, "head_dim");
  at_most(num_attention_heads * head_dim, kMaxWidth, "num_attention_heads * head_dim");
  at_most(max_position_embeddings, kMaxPositions, "max_position_embeddings");
  ICAE_CHECK(num_attention_heads % num_key_value_heads == 0, ErrorKind::BadInput,
             "config: num_attention_heads (" + std::to_string(num_attention_heads) +
                 ") must be a multiple of num_key_value_heads (" +
                 std::to_string(num_key_value_heads) + ")");
  ICAE_CHECK(head_dim % 2 == 0, ErrorKind::BadInput, "config: head_dim must be even for rotary embeddings");
  ICAE_CHECK(rms_norm_eps > 0, ErrorKind::BadInput, "config: rms_norm_eps must be positive");
}

int64_t ModelConfig::parameter_count() const {
  const int64_t q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attn = hidden_size * q + 2 * hidden_size * kv + q * hidden_size;
  if (attention_bias) attn += q + 2 * kv;
  const int64_t mlp = 3 * hidden_size * intermediate_size;
  const int64_t layer = attn + mlp + 2 * hidden_size;
  const int64_t embed = vocab_size * hidden_size;
  return embed * (tie_word_embeddings ? 1 : 2) + num_hidden_layers * layer + hidden_size;
}

}  // namespace icae
