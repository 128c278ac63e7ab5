// Fuzzes the safetensors reader: any byte string is a file image; it must parse or throw
// icae::Error, and every view it hands out must lie inside the image.
#include <cstdint>
#include <cstring>
#include <vector>

#include "icae/formats/safetensors.h"
#include "icae/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace icae::formats;
  try {
    // In memory, not mmap'ed: ASan then sees any read past the image.
    const auto file = SafetensorsFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.safetensors");
    uint64_t sum = 0;
    for (const TensorView& t : file.tensors()) {
      // Touch the first and last byte of each tensor: out-of-range views fault here.
      if (t.nbytes > 0) sum += t.data[0] + t.data[t.nbytes - 1];
      sum += static_cast<uint64_t>(t.numel()) + dtype_size(t.dtype);
      (void)file.at(t.name);
    }
    for (const auto& [key, value] : file.metadata()) sum += key.size() + value.size();
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const icae::Error&) {
    // A clear error is the right answer to a bad file; anything else escaping is a finding.
  }
  return 0;
}
