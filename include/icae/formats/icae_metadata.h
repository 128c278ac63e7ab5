// The metadata of icae's own safetensors files, read and checked without libtorch: slot files
// (the "icae_slots" header and the "slots" tensor) and adapters (the "icae" header, and the tensor
// names and shapes of both our layout and the released ICAE v2 one). The libtorch loaders
// (infer/slot_file.cpp, core/adapter_file.cpp) call these first and only turn views into tensors;
// fuzz/icae_files_fuzz.cpp runs them on arbitrary file images.
#pragma once
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "icae/formats/safetensors.h"
#include "icae/model/proj.h"

namespace icae::formats {

// ---- slot files (icae compress --out)

struct SlotFileHeader {
  int64_t version = 1;
  std::string base_fingerprint;
  std::string adapter_fingerprint;  // version >= 2
  int64_t mem_size = 0;
  int64_t context_tokens = 0;
  std::string slot_kind = "embedding";  // embedding | kv (absent before kv slots: embedding)
};

// The "icae_slots" metadata. Throws BadInput "<path>: not an icae slot file (no icae_slots
// header)" or "<path>: malformed icae_slots header: ...".
SlotFileHeader read_slot_header(const SafetensorsFile& file, const std::string& path);
// The "slots" tensor, checked to be [n, hidden] (Mismatch "<path>: slots have the wrong width for
// this model"; "<path>: no tensor named 'slots'" when absent).
const TensorView& slot_tensor(const SafetensorsFile& file, const std::string& path, int64_t hidden);
// The same for slots of any kind: each slot of shape `slot_shape` ([hidden] for embedding slots,
// [layers, 2, kv_heads, head_dim] for key/value slots).
const TensorView& slot_tensor(const SafetensorsFile& file, const std::string& path,
                              const std::vector<int64_t>& slot_shape);

// ---- adapters (icae train --out, or the released ICAE v2 checkpoints)

// The sizes of the base model an adapter is loaded onto, checked against its header.
struct AdapterBaseSizes {
  int64_t hidden_size = 0, num_hidden_layers = 0, vocab_size = 0;
};

// The "icae" header of our adapter files.
struct AdapterHeader {
  std::string base_model, base_fingerprint;
  std::string chat_template = "none";
  std::string notes;
  int64_t mem_size = 0;
  double compression_rate = 0;
  int64_t lora_r = 0;
  double lora_alpha = 0, lora_dropout = 0;
  std::vector<std::string> target_modules;  // each a known projection name
  std::string projector = "none";           // none | linear | mlp
  std::string slot_kind = "embedding";      // embedding | kv (absent in files older than kv slots)
  std::string memory_positions = "after";   // after | spread (IcaeConfig::spread_memory_positions)
  nlohmann::json training;                  // null when absent
};

// Limits on header values; beyond them a file is refused (BadInput) before anything is sized by them.
constexpr int64_t kMaxAdapterMemSize = int64_t(1) << 20;
constexpr int64_t kMaxLoraRank = int64_t(1) << 16;

// Parses the "icae" header text. With `base`, its sizes are checked against the header's
// base_model first (Mismatch "<path>: adapter was trained on a base model with hidden_size = …").
// Malformed JSON, missing fields and wrong types: BadInput "<path>: malformed icae header: …".
AdapterHeader parse_adapter_header(const std::string& text, const std::string& path,
                                   const AdapterBaseSizes* base = nullptr);

// The tensors of an adapter file, by role. Views point into the file.
struct AdapterLayout {
  const TensorView* memory = nullptr;          // memory_token_embed.weight, 2-D
  std::vector<const TensorView*> projector;    // projector.* (our layout only)
  struct Pair {
    const TensorView* A = nullptr;  // 2-D each
    const TensorView* B = nullptr;
  };
  std::map<std::pair<int64_t, int>, Pair> pairs;  // (layer, Proj) -> lora_A / lora_B
  std::set<std::string> targets;                  // the projection names that have LoRA tensors
  std::vector<std::string> ignored;               // other tensors (e.g. base weights saved alongside)
};

// Sorts the tensors of an adapter file by role, in file order. A LoRA tensor naming layer >=
// num_layers is a Mismatch ("<path>: '<name>' names layer N but the base model has L layers");
// num_layers < 0 skips that check. Also BadInput: an unknown projection, a LoRA or memory tensor
// that is not 2-D, no memory_token_embed.weight, no LoRA tensors.
AdapterLayout read_adapter_layout(const SafetensorsFile& file, const std::string& path, bool released_layout,
                                  int64_t num_layers = -1);

}  // namespace icae::formats
