// Memory-slot files: compress once, ask many times. A safetensors file with one tensor
// "slots" [n k, H] (float32) and a header saying which base model and adapter made them.
#pragma once
#include <ATen/core/Tensor.h>

#include <string>

namespace icae {

class Icae;

struct SlotFile {
  at::Tensor slots;             // [n k, H]
  std::string base_fingerprint;
  int64_t mem_size = 0;
  int64_t context_tokens = 0;
};

void save_slots(const std::string& path, const Icae& icae, const at::Tensor& slots, int64_t context_tokens);
// Checks that the slots were made for this ICAE's base model and hidden size.
SlotFile load_slots(const std::string& path, const Icae& icae);

}  // namespace icae
