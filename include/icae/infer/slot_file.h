// Memory-slot files: compress once, ask many times. A safetensors file with one tensor
// "slots" [n k, H] (float32) and a header saying which base model and which adapter made them:
// slots are only meaningful to the adapter's decoder prefix layout and the base model's
// embedding space, so loading checks both and names the mismatch.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace icae {

class Icae;

struct SlotFile {
  at::Tensor slots;                 // [n k, H], in the model's dtype and on its device
  std::string base_fingerprint;
  std::string adapter_fingerprint;  // empty in version-1 files (written before it was recorded)
  int64_t mem_size = 0;
  int64_t context_tokens = 0;
  int version = 0;
};

void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens);
// Checks that the slots were made for this ICAE's base model, by this adapter, and have its
// hidden size; throws icae::Error(Mismatch) saying which differs.
SlotFile load_slots(const std::string& path, const Icae& icae);

}  // namespace icae
