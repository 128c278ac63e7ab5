// The safetensors format, without tensors: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}, raw data.
// Reading maps the file and checks every offset; writing goes to a temporary file renamed into
// place, so a failed write never leaves a half-written file under the final name.
#pragma once
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace icae::formats {

enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

// "F32" -> DType::F32; throws icae::Error(BadInput) naming the unknown dtype.
DType parse_dtype(const std::string& name, const std::string& context);
const char* dtype_name(DType dtype);
size_t dtype_size(DType dtype);

struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // points into the mapped file
  size_t nbytes = 0;
  int64_t numel() const;
};

// A read-only memory map of one file; shared by the views that point into it.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);  // throws icae::Error(Io)
  // A file image held in memory instead (tests, fuzzing); `name` stands in for the path.
  MappedFile(std::vector<uint8_t> bytes, const std::string& name);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_ ? data_ : owned_.data(); }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::vector<uint8_t> owned_;  // the image when not mapped
};

class SafetensorsFile {
 public:
  // Maps and validates the whole header; throws icae::Error(BadInput) with the file name and
  // the offending tensor for every inconsistency.
  explicit SafetensorsFile(const std::string& path);
  // The same checks on a file image held in memory; `name` is used in error messages.
  static SafetensorsFile from_memory(std::vector<uint8_t> bytes, const std::string& name);

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }
  const TensorView* find(const std::string& name) const;   // nullptr when absent
  const TensorView& at(const std::string& name) const;     // throws when absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  explicit SafetensorsFile(std::shared_ptr<MappedFile> file);

  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// Largest header we accept: real checkpoints have headers of a few MB at most.
constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

struct TensorToWrite {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  const void* data;  // nbytes = numel * dtype_size, little-endian
};

// Writes tensors (in the given order) and string metadata atomically (temp file + rename).
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace icae::formats
