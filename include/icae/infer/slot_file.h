// Memory slots as a value that knows what made it, and slot files: compress once, ask many times.
// Slots are only meaningful to the adapter's decoder and the base model's embedding (or key/value)
// space, so they carry the base model's and the adapter's fingerprints, k and their kind, and
// whatever reads them checks the fit and names the mismatch.
//
// A slot file is a safetensors file with one tensor "slots" (float32) — [n k, hidden] for
// embedding slots, [n k, layers, 2, kv_heads, head_dim] for key/value slots — and the header
// "icae_slots" (fingerprints, k, rate, context tokens, slot kind).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>

#include "icae/core/slot_kind.h"

namespace icae {

class Icae;

struct Slots {
  at::Tensor tensor;                // see above; in the model's dtype and on its device once checked
  SlotKind kind = SlotKind::Embedding;
  std::string base_fingerprint;
  std::string adapter_fingerprint;  // empty in version-1 files (written before it was recorded)
  int64_t mem_size = 0;             // k: slots per segment
  int64_t context_tokens = 0;       // tokens the slots stand for (0: not recorded)
  int version = 2;                  // of the file format the slots came from
  int64_t count() const { return tensor.defined() ? tensor.size(0) : 0; }
};

// Slots made by this ICAE from a context of `context_tokens` tokens (the tensor as compress gave it).
Slots make_slots(const Icae& icae, const at::Tensor& tensor, int64_t context_tokens);

// Writes atomically; the tensor is stored as float32.
void save_slots(const std::string& path, const Slots& slots);
void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens);

// Reads a slot file without a model (float32, on the CPU): its header and a tensor whose shape
// fits its kind. BadInput for a file that is not one.
Slots read_slots(const std::string& path);
// Throws icae::Error(Mismatch) unless the slots were made for this ICAE: the same base model,
// adapter (when recorded), k, kind and per-slot shape. `origin` starts the message (a path).
void check_slots_fit(const Slots& slots, const Icae& icae, const std::string& origin);
// read_slots + check_slots_fit, the tensor moved to the model's device and dtype.
Slots load_slots(const std::string& path, const Icae& icae);

}  // namespace icae
