// Reader of GGUF files (llama.cpp's model format, versions 2 and 3): metadata key/values, tensor
// infos and the tensor data, memory-mapped. Torch-free; dequantisation is in gguf_dequant.h.
//
// Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64 key/value count, the
// key/values, the tensor infos (name, n_dims, ne[n_dims] innermost first, u32 type, u64 offset),
// padding to general.alignment (default 32), then the data section; offsets are relative to it.
//
// Everything read from the file is bounds-checked: a malformed or truncated file throws
// icae::Error(BadInput) naming the file and what is wrong, never reads out of range.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace icae::gguf {

// Metadata value types (gguf_type in ggml).
enum class ValueType : uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
};
const char* to_string(ValueType t);

// Tensor element types (ggml_type). Only types whose block layout this reader knows are listed;
// a file with any other type is rejected when opened, since its data size cannot be checked.
enum class TensorType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ4_NL = 20, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, BF16 = 30,
};
const char* to_string(TensorType t);

// Elements per block and bytes per block of a tensor type.
struct TypeTraits {
  const char* name;
  int64_t block_size;
  int64_t type_size;
};
// Throws icae::Error(Unsupported) for a type this reader does not know.
const TypeTraits& type_traits(TensorType t);
bool is_known_type(uint32_t raw_type);

// One metadata value: a scalar, a string or an array of values (arrays may nest).
class Value {
 public:
  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::Array; }
  bool is_integer() const;  // any of the integer types (not bool)
  bool is_float() const { return type_ == ValueType::Float32 || type_ == ValueType::Float64; }
  // Element type of an array (arrays are homogeneous).
  ValueType element_type() const { return element_type_; }

  // These throw icae::Error(BadInput) when the value has another type; GgufFile's accessors
  // add the file and key to the message.
  int64_t to_int() const;      // any integer type; a u64 beyond int64's range is an error
  double to_double() const;    // float or integer
  bool to_bool() const;
  const std::string& str() const;
  const std::vector<Value>& items() const;

  static Value make_int(ValueType t, int64_t v);
  static Value make_uint(ValueType t, uint64_t v);
  static Value make_float(ValueType t, double v);
  static Value make_bool(bool v);
  static Value make_string(std::string v);
  static Value make_array(ValueType element_type, std::vector<Value> items);

 private:
  ValueType type_ = ValueType::UInt8;
  ValueType element_type_ = ValueType::UInt8;
  bool signed_ = false;
  int64_t i_ = 0;
  uint64_t u_ = 0;
  double f_ = 0.0;
  std::string s_;
  std::vector<Value> items_;
};

struct TensorInfo {
  std::string name;
  std::vector<int64_t> ne;   // dimensions, innermost first: ne[0] is the row length (columns)
  TensorType type = TensorType::F32;
  uint64_t offset = 0;       // from the start of the data section
  int64_t n_elements = 0;
  uint64_t n_bytes = 0;
  const uint8_t* data = nullptr;  // into the mapping, valid while the GgufFile lives

  int64_t rows() const { return ne.empty() ? 1 : n_elements / ne[0]; }
  std::string shape_string() const;  // "[576, 49152]" (innermost first, as in the file)
};

class GgufFile {
 public:
  // Maps and parses a file. Throws icae::Error: Io when it cannot be opened, BadInput when it is
  // malformed, Unsupported for a valid file this reader cannot handle (big-endian, v1, IQ types).
  static GgufFile open(const std::string& path);
  // Parses a file image held in memory; `name` is used in error messages. For tests and tools.
  static GgufFile from_memory(std::vector<uint8_t> bytes, const std::string& name);

  GgufFile(GgufFile&&) noexcept;
  GgufFile& operator=(GgufFile&&) noexcept;
  ~GgufFile();

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the data section starts
  uint64_t file_size() const { return size_; }

  // Metadata, in file order.
  const std::vector<std::pair<std::string, Value>>& metadata() const { return kv_; }
  bool has(const std::string& key) const { return kv_index_.count(key) != 0; }
  const Value* find(const std::string& key) const;  // nullptr when absent
  // Typed accessors: a missing key (without default) or a value of the wrong type throws
  // icae::Error(BadInput) naming the file and the key.
  const Value& get(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_float(const std::string& key) const;
  double get_float(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<std::string> get_strings(const std::string& key) const;
  std::vector<int64_t> get_ints(const std::string& key) const;
  std::vector<double> get_floats(const std::string& key) const;

  // Tensors, in file order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(const std::string& name) const;  // nullptr when absent
  const TensorInfo& tensor(const std::string& name) const;       // throws naming the tensor

 private:
  GgufFile() = default;
  void parse();
  void release();
  [[noreturn]] void fail_key(const std::string& key, const std::string& what) const;

  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  void* mapping_ = nullptr;          // mmap'ed region (size_ bytes) or nullptr
  std::vector<uint8_t> owned_;       // the image when parsed from memory
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, Value>> kv_;
  std::unordered_map<std::string, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> tensor_index_;
};

}  // namespace icae::gguf
