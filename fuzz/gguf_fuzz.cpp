// Fuzzes the GGUF reader and the dequantisation of every tensor the file declares.
#include <cstdint>
#include <vector>

#include "icae/formats/gguf.h"
#include "icae/formats/gguf_dequant.h"
#include "icae/util/error.h"

namespace {

// Visits a metadata value through the typed accessors, which must throw icae::Error on a mismatch.
uint64_t touch(const icae::gguf::Value& v) {
  uint64_t sum = static_cast<uint64_t>(v.type());
  try {
    if (v.is_array()) {
      for (const auto& item : v.items()) sum += touch(item);
    } else if (v.type() == icae::gguf::ValueType::String) {
      sum += v.str().size();
    } else if (v.type() == icae::gguf::ValueType::Bool) {
      sum += v.to_bool();
    } else {
      sum += v.to_double() > 0.0;  // a float cast to an integer could itself be UB: compare
      if (v.is_integer()) sum += static_cast<uint64_t>(v.to_int());
    }
  } catch (const icae::Error&) {
  }
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace icae::gguf;
  try {
    const GgufFile file = GgufFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.gguf");
    uint64_t sum = 0;
    for (const auto& [key, value] : file.metadata()) sum += key.size() + touch(value);
    for (const TensorInfo& t : file.tensors()) {
      sum += file.tensor(t.name).n_bytes;
      if (!can_dequantize(t.type)) continue;
      // The data lies inside the file (the reader checks), so the floats are bounded by the
      // input's size times the densest type's expansion; this cap only keeps runs fast.
      if (t.n_elements > (int64_t(1) << 20)) continue;
      const std::vector<float> values = dequantize(t);
      if (!values.empty()) sum += static_cast<uint64_t>(values.size()) + (values.front() == values.back());
      if (t.rows() > 0) {
        std::vector<float> row(static_cast<size_t>(t.ne.empty() ? 1 : t.ne[0]));
        dequantize_rows(t, t.rows() - 1, t.rows(), row.data());
      }
    }
    volatile uint64_t sink = sum;
    (void)sink;
  } catch (const icae::Error&) {
  }
  return 0;
}
