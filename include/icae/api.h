// The public API of icae, in one include: load a base model and an ICAE adapter, compress
// contexts into memory slots (icae::Slots: the tensor — [n, hidden] embedding slots or
// [n, layers, 2, kv_heads, head_dim] key/value slots — with its kind, k and the fingerprints of
// what made it), answer prompts from them.
//
//   #include <icae/api.h>
//   auto s = icae::open_session("SmolLM2.gguf", "adapter.safetensors");
//   icae::Slots slots = s.compress_slots(document_text);
//   std::string answer = s.answer(slots, "Who wrote it?").text;
//   icae::save_slots("doc.slots.safetensors", slots);   // icae::load_slots(path, s.icae()) reads them back
//
// (Session also takes and gives the bare tensors: compress(), answer(at::Tensor, ...).)
// Link with icae::icae (CMake: find_package(icae) — see examples/). Errors are icae::Error.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "icae/core/adapter_file.h"
#include "icae/infer/fingerprint.h"
#include "icae/infer/session.h"
#include "icae/infer/slot_file.h"
#include "icae/infer/text_model.h"
#include "icae/util/error.h"

namespace icae {

struct OpenOptions {
  std::string device = "cpu";      // cpu | cuda | cuda:N
  std::string dtype = "f32";       // f32 | bf16 | f16 | auto (bf16 on CUDA and CPUs with native bf16)
  int threads = 0;                 // CPU threads; 0: libtorch's default
  bool dense_decode = false;       // .gguf on the CPU: decode with dense weights, not the file's blocks
  std::string tokenizer;           // tokenizer.json instead of the model's own
  std::optional<double> lora_alpha;  // released v2 adapters store none (they used 32)
  SessionOptions session;
};

// The shared, read-only part: one per process, however many sessions use it.
struct LoadedModel {
  std::shared_ptr<const TextModel> text;
  std::shared_ptr<const LoadedAdapter> adapter;  // null when loaded without one
};

// Applies options.threads and turns device/dtype/dense_decode into load options (the one parser of
// them: the command line's --device/--dtype/--threads/--dense-decode come here too).
ModelLoadOptions load_options(const OpenOptions& options);

// Loads a model (Hugging Face folder or .gguf) and, when adapter_path is not empty, an adapter.
// A folder without tokenizer.json (and no OpenOptions::tokenizer) loads as weights only: the
// session then takes and gives token ids.
LoadedModel load_model(const std::string& model_path, const std::string& adapter_path = "",
                       const OpenOptions& options = {});
// A new session over a loaded model (cheap: no weights are copied).
Session new_session(const LoadedModel& model, const SessionOptions& options = {});
// Both in one call.
Session open_session(const std::string& model_path, const std::string& adapter_path = "",
                     const OpenOptions& options = {});

}  // namespace icae
