#include "icae/formats/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "icae/util/error.h"

namespace icae::formats {

namespace {
struct DTypeInfo {
  DType dtype;
  const char* name;
  size_t size;
};
constexpr DTypeInfo kDTypes[] = {
    {DType::F64, "F64", 8}, {DType::F32, "F32", 4}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2}, {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};
}  // namespace

DType parse_dtype(const std::string& name, const std::string& context) {
  for (const auto& d : kDTypes)
    if (name == d.name) return d.dtype;
  fail(ErrorKind::BadInput, context + ": unknown dtype '" + name + "'");
}

const char* dtype_name(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.name;
  return "?";
}

size_t dtype_size(DType dtype) {
  for (const auto& d : kDTypes)
    if (d.dtype == dtype) return d.size;
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(ErrorKind::Io, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, path + ": not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(ErrorKind::Io, path + ": cannot map: " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
}

// data_ stays null for an owned image, so data() reads owned_ and the destructor unmaps nothing.
MappedFile::MappedFile(std::vector<uint8_t> bytes, const std::string& name)
    : path_(name), owned_(std::move(bytes)) {
  size_ = owned_.size();
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : SafetensorsFile(std::make_shared<MappedFile>(path)) {}

SafetensorsFile SafetensorsFile::from_memory(std::vector<uint8_t> bytes, const std::string& name) {
  return SafetensorsFile(std::make_shared<MappedFile>(std::move(bytes), name));
}

SafetensorsFile::SafetensorsFile(std::shared_ptr<MappedFile> file) : file_(std::move(file)) {
  const std::string where = file_->path();
  const size_t size = file_->size();
  ICAE_CHECK(size >= 8, ErrorKind::BadInput,
             where + ": not a safetensors file (" + std::to_string(size) + " bytes, need at least 8)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | file_->data()[i];
  ICAE_CHECK(header_len <= kMaxSafetensorsHeader, ErrorKind::BadInput,
             where + ": header length " + std::to_string(header_len) + " exceeds the limit of " +
                 std::to_string(kMaxSafetensorsHeader) + " bytes");
  ICAE_CHECK(header_len <= size - 8, ErrorKind::BadInput,
             where + ": header length " + std::to_string(header_len) +
                 " runs past the end of the file (" + std::to_string(size) + " bytes): truncated?");
  const char* header_begin = reinterpret_cast<const char*>(file_->data() + 8);
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_len);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, where + ": invalid JSON header: " + e.what());
  }
  ICAE_CHECK(header.is_object(), ErrorKind::BadInput, where + ": header is not a JSON object");

  const uint8_t* data = file_->data() + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      ICAE_CHECK(it->is_object(), ErrorKind::BadInput, where + ": __metadata__ is not an object");
      for (auto m = it->begin(); m != it->end(); ++m) {
        ICAE_CHECK(m->is_string(), ErrorKind::BadInput,
                   where + ": __metadata__." + m.key() + " is not a string");
        metadata_[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string ctx = where + ": tensor '" + name + "'";
    const auto& info = *it;
    ICAE_CHECK(info.is_object() && info.contains("dtype") && info.contains("shape") &&
                   info.contains("data_offsets"),
               ErrorKind::BadInput, ctx + ": needs dtype, shape and data_offsets");
    ICAE_CHECK(info["dtype"].is_string(), ErrorKind::BadInput, ctx + ": dtype is not a string");
    TensorView view;
    view.name = name;
    view.dtype = parse_dtype(info["dtype"].get<std::string>(), ctx);
    ICAE_CHECK(info["shape"].is_array(), ErrorKind::BadInput, ctx + ": shape is not an array");
    uint64_t numel = 1;
    for (const auto& d : info["shape"]) {
      ICAE_CHECK(d.is_number_unsigned() || (d.is_number_integer() && d.get<int64_t>() >= 0),
                 ErrorKind::BadInput, ctx + ": shape has a negative or non-integer dimension");
      uint64_t dim = d.get<uint64_t>();
      // Each dimension on its own too: after a zero one the product stays 0, and a dimension
      // above int64 would be stored negative in the view.
      ICAE_CHECK(dim <= (uint64_t(1) << 62) && (dim == 0 || numel <= (uint64_t(1) << 62) / dim),
                 ErrorKind::BadInput, ctx + ": shape overflows");
      numel *= dim;
      view.shape.push_back(static_cast<int64_t>(dim));
    }
    const auto& off = info["data_offsets"];
    ICAE_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() &&
                   off[1].is_number_unsigned(),
               ErrorKind::BadInput, ctx + ": data_offsets must be two non-negative integers");
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    ICAE_CHECK(begin <= end && end <= data_size, ErrorKind::BadInput,
               ctx + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
                   "] lie outside the data section of " + std::to_string(data_size) + " bytes");
    // numel may be up to 2^62: times an 8-byte dtype that wrapped around uint64 (2^61 F64 elements
    // "needed" 0 bytes and matched an empty range).
    ICAE_CHECK(numel <= std::numeric_limits<uint64_t>::max() / dtype_size(view.dtype), ErrorKind::BadInput,
               ctx + ": shape overflows (" + std::to_string(numel) + " elements of " +
                   std::to_string(dtype_size(view.dtype)) + " bytes)");
    const uint64_t expected = numel * dtype_size(view.dtype);
    ICAE_CHECK(end - begin == expected, ErrorKind::BadInput,
               ctx + ": holds " + std::to_string(end - begin) + " bytes but its dtype and shape need " +
                   std::to_string(expected));
    view.data = data + begin;
    view.nbytes = expected;
    tensors_.push_back(std::move(view));
  }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

const TensorView& SafetensorsFile::at(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(ErrorKind::Mismatch, path() + ": no tensor named '" + name + "'");
  return *t;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::vector<uint64_t> sizes;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (auto d : t.shape) numel *= static_cast<uint64_t>(d);
    uint64_t nbytes = numel * dtype_size(t.dtype);
    ICAE_CHECK(!header.contains(t.name), ErrorKind::Internal,
               path + ": duplicate tensor name '" + t.name + "'");
    header[t.name] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
    sizes.push_back(nbytes);
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');  // keeps the data 8-byte aligned
  const std::string tmp = path + ".tmp";
  // POSIX I/O so the data can be fsync'ed before the rename: after a crash or power loss the
  // file under `path` is either the old one or the complete new one, never a torn write.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(ErrorKind::Io, tmp + ": cannot create: " + std::strerror(errno));
  auto write_all = [&](const void* data, uint64_t n) {
    const char* p = static_cast<const char*>(data);
    while (n > 0) {
      const ssize_t w = ::write(fd, p, n > (1u << 30) ? (1u << 30) : n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        const std::string why = std::strerror(errno);
        ::close(fd);
        std::remove(tmp.c_str());
        fail(ErrorKind::Io, tmp + ": write failed: " + why);
      }
      p += w;
      n -= static_cast<uint64_t>(w);
    }
  };
  uint64_t n = text.size();
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  write_all(len, 8);
  write_all(text.data(), text.size());
  // Failure injection for tests: a process killed in the middle of writing `path` (matched by
  // substring) must leave the previous file intact. Never set outside tests.
  const char* crash = std::getenv("ICAE_TEST_CRASH_WRITING");
  const bool crash_here = crash && *crash && path.find(crash) != std::string::npos;
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (crash_here && i == tensors.size() / 2) ::_exit(86);
    write_all(tensors[i].data, sizes[i]);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, tmp + ": cannot flush to disk: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    fail(ErrorKind::Io, path + ": cannot rename temporary file into place: " + std::strerror(errno));
  }
}

}  // namespace icae::formats
