// Fuzzes the metadata of icae's own safetensors files (formats/icae_metadata.cpp), what the
// libtorch loaders load_slots and load_adapter check before making tensors: any byte string is a
// file image, read as a slot file and as an adapter (our header and the released layout), against
// no base model and against the tiny golden one's sizes (hidden 64, 2 layers, vocab 512).
#include <cstdint>
#include <vector>

#include "icae/formats/icae_metadata.h"
#include "icae/formats/safetensors.h"
#include "icae/util/error.h"

namespace {

using namespace icae::formats;

uint64_t touch(const TensorView* v) {
  // The loaders read every byte of these views: out-of-range ones fault here under ASan.
  return v && v->nbytes ? v->data[0] + v->data[v->nbytes - 1] + v->shape.size() : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<SafetensorsFile> file;
  try {
    file = std::make_unique<SafetensorsFile>(
        SafetensorsFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.safetensors"));
  } catch (const icae::Error&) {
    return 0;  // the safetensors reader has its own target
  }
  const std::string path = file->path();
  uint64_t sum = 0;
  try {
    const SlotFileHeader h = read_slot_header(*file, path);
    sum += h.base_fingerprint.size() + static_cast<uint64_t>(h.mem_size);
    sum += touch(&slot_tensor(*file, path, 64));
  } catch (const icae::Error&) {
  }
  const AdapterBaseSizes tiny{64, 2, 512};
  const bool has_header = file->metadata().count("icae") > 0;
  for (const AdapterBaseSizes* base : {static_cast<const AdapterBaseSizes*>(nullptr), &tiny}) {
    try {
      if (has_header) {
        const AdapterHeader a = parse_adapter_header(file->metadata().at("icae"), path, base);
        sum += a.target_modules.size() + static_cast<uint64_t>(a.mem_size + a.lora_r) + a.training.size();
      }
      const AdapterLayout l = read_adapter_layout(*file, path, !has_header, base ? base->num_hidden_layers : -1);
      sum += touch(l.memory);
      for (const auto* v : l.projector) sum += touch(v);
      for (const auto& [key, pair] : l.pairs) {
        if (key.first < 0 || key.second < 0 || key.second >= icae::kNumProj) __builtin_trap();
        if (base && key.first >= base->num_hidden_layers) __builtin_trap();
        sum += touch(pair.A) + touch(pair.B);
        // What the loader reads of each: rows and columns of 2-D tensors.
        for (const TensorView* v : {pair.A, pair.B})
          if (v && v->shape.size() != 2) __builtin_trap();
      }
      if (l.memory->shape.size() != 2) __builtin_trap();
    } catch (const icae::Error&) {
    }
  }
  volatile uint64_t sink = sum;
  (void)sink;
  return 0;
}
