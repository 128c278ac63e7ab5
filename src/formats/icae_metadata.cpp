#include "icae/formats/icae_metadata.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>

#include "icae/util/error.h"

namespace icae {

namespace {
constexpr const char* kProjNames[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
}  // namespace

const char* proj_name(Proj p) { return kProjNames[static_cast<int>(p)]; }

Proj parse_proj(const std::string& name) {
  for (int i = 0; i < kNumProj; ++i)
    if (name == kProjNames[i]) return static_cast<Proj>(i);
  fail(ErrorKind::BadInput, "unknown LoRA target module '" + name +
                                "' (expected q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)");
}

namespace formats {

namespace {

using nlohmann::json;

constexpr const char* kMemoryKey = "memory_token_embed.weight";

// j[key] as an integer. nlohmann converts a float to an integer with a plain cast, undefined for
// 1e300: only whole floats within ±9e15 are taken (2.0), other floats are refused naming the field.
// Missing keys and other types throw nlohmann's own exceptions (the callers turn them into
// "malformed … header").
int64_t int_at(const json& j, const char* key, const std::string& malformed) {
  const json& v = j.at(key);
  if (v.is_number_float()) {
    const double d = v.get<double>();
    ICAE_CHECK(std::isfinite(d) && d == std::floor(d) && std::fabs(d) <= 9.0e15, ErrorKind::BadInput,
               malformed + "field '" + key + "' is not an integer");
    return static_cast<int64_t>(d);
  }
  return v.get<int64_t>();
}

int64_t int_or(const json& j, const char* key, int64_t fallback, const std::string& malformed) {
  if (!j.is_object()) return j.value(key, fallback);  // nlohmann's type_error, as before
  return j.contains(key) ? int_at(j, key, malformed) : fallback;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void check_2d(const TensorView& v, const std::string& path) {
  ICAE_CHECK(v.shape.size() == 2, ErrorKind::BadInput,
             path + ": tensor '" + v.name + "' must be 2-D, its shape is " + shape_text(v.shape));
}

// icae.base_model.model.model.layers.<digits>.<self_attn|mlp>.<word chars ending in _proj>.lora_<A|B>.default.weight
// (the peft key layout), parsed by hand: std::regex recurses once per character and a long
// tensor name would exhaust the stack.
struct LoraKey {
  std::string layer, module;
  bool is_A = false;
};

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool starts(const std::string& s, size_t at, const char* lit) {
  const size_t n = std::strlen(lit);
  return at <= s.size() && s.size() - at >= n && s.compare(at, n, lit) == 0;
}

bool parse_lora_key(const std::string& name, LoraKey& key) {
  static const char* kHead = "icae.base_model.model.model.layers.";
  static const char* kTail = ".default.weight";
  size_t i = std::strlen(kHead);
  if (!starts(name, 0, kHead)) return false;
  const size_t digits = i;
  while (i < name.size() && name[i] >= '0' && name[i] <= '9') ++i;
  if (i == digits || i >= name.size() || name[i] != '.') return false;
  key.layer = name.substr(digits, i - digits);
  ++i;
  if (starts(name, i, "self_attn.")) i += std::strlen("self_attn.");
  else if (starts(name, i, "mlp.")) i += std::strlen("mlp.");
  else return false;
  const size_t module = i;
  while (i < name.size() && is_word(name[i])) ++i;
  key.module = name.substr(module, i - module);
  if (key.module.size() < 6 || key.module.compare(key.module.size() - 5, 5, "_proj") != 0) return false;
  if (!starts(name, i, ".lora_") || i + 7 > name.size()) return false;
  i += std::strlen(".lora_");
  if (name[i] != 'A' && name[i] != 'B') return false;
  key.is_A = name[i] == 'A';
  ++i;
  return name.size() - i == std::strlen(kTail) && starts(name, i, kTail);
}

}  // namespace

SlotFileHeader read_slot_header(const SafetensorsFile& file, const std::string& path) {
  auto meta = file.metadata().find("icae_slots");
  ICAE_CHECK(meta != file.metadata().end(), ErrorKind::BadInput, path + ": not an icae slot file (no icae_slots header)");
  const std::string malformed = path + ": malformed icae_slots header: ";
  SlotFileHeader s;
  try {
    const json h = json::parse(meta->second);
    s.version = int_or(h, "version", 1, malformed);
    s.base_fingerprint = h.at("base_fingerprint").get<std::string>();
    s.adapter_fingerprint = h.value("adapter_fingerprint", std::string());
    s.mem_size = int_at(h, "mem_size", malformed);
    s.context_tokens = int_or(h, "context_tokens", 0, malformed);
    s.slot_kind = h.value("slot_kind", "embedding");
  } catch (const json::exception& e) {
    fail(ErrorKind::BadInput, malformed + e.what());
  }
  ICAE_CHECK(s.slot_kind == "embedding" || s.slot_kind == "kv", ErrorKind::BadInput,
             malformed + "unknown slot kind '" + s.slot_kind + "' (expected embedding or kv)");
  return s;
}

const TensorView& slot_tensor(const SafetensorsFile& file, const std::string& path, int64_t hidden) {
  return slot_tensor(file, path, std::vector<int64_t>{hidden});
}

const TensorView& slot_tensor(const SafetensorsFile& file, const std::string& path,
                              const std::vector<int64_t>& slot_shape) {
  const TensorView& v = file.at("slots");
  ICAE_CHECK(v.shape.size() == slot_shape.size() + 1 &&
                 std::equal(slot_shape.begin(), slot_shape.end(), v.shape.begin() + 1),
             ErrorKind::Mismatch,
             path + (slot_shape.size() == 1 ? ": slots have the wrong width for this model"
                                            : ": slots have the wrong shape for this model and adapter (key/value "
                                              "slots of another model?)"));
  return v;
}

AdapterHeader parse_adapter_header(const std::string& text, const std::string& path, const AdapterBaseSizes* base) {
  const std::string malformed = path + ": malformed icae header: ";
  AdapterHeader a;
  try {
    const json header = json::parse(text);
    const auto& b = header.at("base_model");
    if (base) {
      auto check = [&](const char* key, int64_t have) {
        const int64_t want = int_at(b, key, malformed);
        ICAE_CHECK(want == have, ErrorKind::Mismatch,
                   path + ": adapter was trained on a base model with " + key + " = " + std::to_string(want) +
                       ", this base model has " + std::to_string(have));
      };
      check("hidden_size", base->hidden_size);
      check("num_hidden_layers", base->num_hidden_layers);
      check("vocab_size", base->vocab_size);
    }
    a.base_model = b.value("name", "");
    a.base_fingerprint = b.value("fingerprint", "");
    a.chat_template = header.value("chat_template", "none");
    a.notes = header.value("notes", "");
    a.mem_size = int_at(header, "mem_size", malformed);
    a.compression_rate = header.at("compression_rate").get<double>();
    const auto& l = header.at("lora");
    a.lora_r = int_at(l, "r", malformed);
    a.lora_alpha = l.at("alpha").get<double>();
    a.lora_dropout = l.value("dropout", 0.0);
    a.target_modules = l.at("target_modules").get<std::vector<std::string>>();
    a.projector = header.value("projector", "none");
    a.slot_kind = header.value("slot_kind", "embedding");
    a.memory_positions = header.value("memory_positions", "after");
    if (header.contains("training")) a.training = header.at("training");
  } catch (const json::exception& e) {
    fail(ErrorKind::BadInput, malformed + e.what());
  }
  // Values that size tensors or divide: refused here, before anything is allocated from them.
  auto range = [&](bool ok, const std::string& what) { ICAE_CHECK(ok, ErrorKind::BadInput, malformed + what); };
  range(a.mem_size >= 1 && a.mem_size <= kMaxAdapterMemSize,
        "mem_size = " + std::to_string(a.mem_size) + " is out of range [1, " + std::to_string(kMaxAdapterMemSize) + "]");
  range(std::isfinite(a.compression_rate) && a.compression_rate >= 1e-6 && a.compression_rate <= 1e6,
        "compression_rate = " + json(a.compression_rate).dump() + " is out of range [1e-06, 1e+06]");
  range(a.lora_r >= 1 && a.lora_r <= kMaxLoraRank,
        "lora.r = " + std::to_string(a.lora_r) + " is out of range [1, " + std::to_string(kMaxLoraRank) + "]");
  range(std::isfinite(a.lora_alpha), "lora.alpha is not a finite number");
  range(a.lora_dropout >= 0 && a.lora_dropout < 1, "lora.dropout = " + json(a.lora_dropout).dump() + " is out of range [0, 1)");
  for (const auto& t : a.target_modules) (void)parse_proj(t);
  ICAE_CHECK(a.projector == "none" || a.projector == "linear" || a.projector == "mlp", ErrorKind::BadInput,
             "unknown slot projector '" + a.projector + "' (expected none, linear or mlp)");
  ICAE_CHECK(a.slot_kind == "embedding" || a.slot_kind == "kv", ErrorKind::BadInput,
             malformed + "unknown slot kind '" + a.slot_kind + "' (expected embedding or kv)");
  ICAE_CHECK(a.memory_positions == "after" || a.memory_positions == "spread", ErrorKind::BadInput,
             malformed + "unknown memory positions '" + a.memory_positions + "' (expected after or spread)");
  ICAE_CHECK(a.slot_kind == "embedding" || a.projector == "none", ErrorKind::BadInput,
             malformed + "key/value slots take no slot projector, but the header names '" + a.projector + "'");
  return a;
}

AdapterLayout read_adapter_layout(const SafetensorsFile& file, const std::string& path, bool released_layout,
                                  int64_t num_layers) {
  AdapterLayout out;
  for (const auto& view : file.tensors()) {
    LoraKey key;
    if (view.name == kMemoryKey) {
      check_2d(view, path);
      out.memory = &view;
    } else if (view.name.rfind("projector.", 0) == 0 && !released_layout) {
      out.projector.push_back(&view);
    } else if (parse_lora_key(view.name, key)) {
      // Digits beyond int64 name a layer no model has: saturated, and named as written.
      int64_t layer = INT64_MAX;
      const auto [end, ec] = std::from_chars(key.layer.data(), key.layer.data() + key.layer.size(), layer);
      if (ec != std::errc() || end != key.layer.data() + key.layer.size()) layer = INT64_MAX;
      const std::string layer_text = layer == INT64_MAX ? key.layer : std::to_string(layer);
      ICAE_CHECK(num_layers < 0 || layer < num_layers, ErrorKind::Mismatch,
                 path + ": '" + view.name + "' names layer " + layer_text + " but the base model has " +
                     std::to_string(num_layers) + " layers");
      const Proj p = parse_proj(key.module);
      check_2d(view, path);
      out.targets.insert(key.module);
      auto& pair = out.pairs[{layer, static_cast<int>(p)}];
      (key.is_A ? pair.A : pair.B) = &view;
    } else {
      out.ignored.push_back(view.name);
    }
  }
  ICAE_CHECK(out.memory != nullptr, ErrorKind::BadInput, path + ": no tensor '" + std::string(kMemoryKey) + "'");
  ICAE_CHECK(!out.pairs.empty(), ErrorKind::BadInput, path + ": no LoRA tensors (icae.base_model.model.model.layers.N...)");
  if (released_layout) {
    // The released layout's k comes from the memory rows (k memory tokens, then AE, LM, FT).
    const int64_t rows = out.memory->shape[0];
    ICAE_CHECK(rows >= 4 && rows - 3 <= kMaxAdapterMemSize, ErrorKind::BadInput,
               path + ": " + kMemoryKey + " has " + std::to_string(rows) + " rows; it needs mem_size + 3 with mem_size in [1, " +
                   std::to_string(kMaxAdapterMemSize) + "]");
  }
  return out;
}

}  // namespace formats
}  // namespace icae
