// Memory slots for other inference engines. Neither vLLM nor llama.cpp knows ICAE's special
// tokens (AE, FT) or its memory-token rows, so what they get is the *whole decoder prefix* as
// input embeddings — template tokens, slots, AE/FT, prompt — exactly the rows
// Icae::decoder_embeddings() feeds the frozen base model; the engine runs the same base model
// from there. A JSON file beside the tensor describes the layout (docs/engines.md):
//   vllm:     safetensors, one tensor "prompt_embeds" [T, H] in the model's dtype
//             (vLLM's prompt_embeds input, after torch.load-ing it with safetensors)
//   llamacpp: raw little-endian float32, row-major [T, H] (llama_batch.embd, n_tokens = T)
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <vector>

#include "icae/core/prompt_layout.h"

namespace icae {

class Icae;

enum class SlotFormat { Safetensors, Vllm, Llamacpp };
SlotFormat parse_slot_format(const std::string& name);  // safetensors | vllm | llamacpp

struct PrefixExport {
  std::vector<int64_t> prefix;   // decoder ids, slot placeholders included
  std::string kind;              // "ae" (reconstruct) or "ft" (answer)
  FtTemplate ft_template;        // for "ft": the template used
  std::vector<int64_t> prompt;   // for "ft": the prompt ids inside it (may be empty)
  int64_t context_tokens = 0;
};

// Writes the prefix embeddings to `path` (vllm: safetensors, llamacpp: raw f32) and the layout
// to path + ".json". Returns the JSON written.
std::string export_prefix(const std::string& path, SlotFormat format, const Icae& icae, const at::Tensor& slots,
                          const PrefixExport& what);

}  // namespace icae
