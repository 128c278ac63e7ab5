// GGUF parsing: a cursor over the mapped bytes that checks every read against the end of the
// file, and limits that reject counts no file of this size could hold before allocating for them.
#include "icae/formats/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>

#include "icae/util/error.h"

namespace icae::gguf {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;              // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;        // arrays of arrays: no real file nests deeper than 2
// Each parsed item costs far more memory than its smallest encoding (a Value is 96 bytes, a u8
// array element 1 byte in the file), so counts are also capped outright. Real files: a few dozen
// keys, under 1M array elements in all (Gemma's 262k tokens x tokens/scores/types), a few
// thousand tensors.
constexpr uint64_t kMaxMetadataKeys = uint64_t(1) << 16;
constexpr uint64_t kMaxArrayElements = uint64_t(1) << 23;  // in all arrays of the file together
constexpr uint64_t kMaxTensors = uint64_t(1) << 20;

// Smallest encoded size of one element of each value type, so that an array or key count can
// be rejected before allocating when the rest of the file cannot hold that many.
uint64_t min_encoded_size(ValueType t) {
  switch (t) {
    case ValueType::UInt8: case ValueType::Int8: case ValueType::Bool: return 1;
    case ValueType::UInt16: case ValueType::Int16: return 2;
    case ValueType::UInt32: case ValueType::Int32: case ValueType::Float32: return 4;
    case ValueType::UInt64: case ValueType::Int64: case ValueType::Float64: return 8;
    case ValueType::String: return 8;        // the length
    case ValueType::Array: return 4 + 8;     // element type + count
  }
  return 1;
}

bool is_value_type(uint32_t t) { return t <= static_cast<uint32_t>(ValueType::Float64); }

// Reads little-endian values from [begin, end) and throws a BadInput error naming the file and
// the offset when a read would pass the end.
class Cursor {
 public:
  Cursor(const uint8_t* base, uint64_t size, const std::string& path)
      : base_(base), size_(size), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what) const {
    ::icae::fail(ErrorKind::BadInput, path_ + ": " + what + " (at byte " + std::to_string(pos_) + ")");
  }
  void need(uint64_t n, const char* what) const {
    if (n > remaining())
      fail(std::string("file truncated: ") + what + " needs " + std::to_string(n) + " bytes, " +
           std::to_string(remaining()) + " left");
  }
  template <typename T>
  T read(const char* what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, base_ + pos_, sizeof(T));  // unaligned-safe; the host is little-endian
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const char* what) {
    uint64_t n = read<uint64_t>(what);
    if (n > remaining())
      fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds the " +
           std::to_string(remaining()) + " bytes left in the file");
    std::string s(reinterpret_cast<const char*>(base_ + pos_), n);
    pos_ += n;
    return s;
  }
  // Counts array elements across the whole file against kMaxArrayElements.
  void add_array_elements(uint64_t n, const std::string& key) {
    if (n > kMaxArrayElements - array_elements_)
      fail("metadata '" + key + "': array length " + std::to_string(n) + " brings the file's array elements to more than " +
           "the limit of " + std::to_string(kMaxArrayElements));
    array_elements_ += n;
  }
  // Checks that `count` items of at least `min_size` bytes each can fit in the rest of the file.
  void check_count(uint64_t count, uint64_t min_size, const std::string& what) const {
    if (min_size != 0 && count > remaining() / min_size)
      fail(what + " " + std::to_string(count) + " is impossible: the " + std::to_string(remaining()) +
           " bytes left hold at most " + std::to_string(remaining() / min_size));
  }

 private:
  const uint8_t* base_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint64_t array_elements_ = 0;
  const std::string& path_;
};

Value read_value(Cursor& c, ValueType t, const std::string& key, int depth) {
  switch (t) {
    case ValueType::UInt8: return Value::make_uint(t, c.read<uint8_t>("u8 value"));
    case ValueType::Int8: return Value::make_int(t, c.read<int8_t>("i8 value"));
    case ValueType::UInt16: return Value::make_uint(t, c.read<uint16_t>("u16 value"));
    case ValueType::Int16: return Value::make_int(t, c.read<int16_t>("i16 value"));
    case ValueType::UInt32: return Value::make_uint(t, c.read<uint32_t>("u32 value"));
    case ValueType::Int32: return Value::make_int(t, c.read<int32_t>("i32 value"));
    case ValueType::UInt64: return Value::make_uint(t, c.read<uint64_t>("u64 value"));
    case ValueType::Int64: return Value::make_int(t, c.read<int64_t>("i64 value"));
    case ValueType::Float32: return Value::make_float(t, c.read<float>("f32 value"));
    case ValueType::Float64: return Value::make_float(t, c.read<double>("f64 value"));
    case ValueType::Bool: {
      uint8_t b = c.read<uint8_t>("bool value");
      if (b > 1) c.fail("metadata '" + key + "': bool value " + std::to_string(b) + " is not 0 or 1");
      return Value::make_bool(b != 0);
    }
    case ValueType::String: return Value::make_string(c.read_string("string value"));
    case ValueType::Array: {
      if (depth >= kMaxArrayDepth) c.fail("metadata '" + key + "': arrays nested too deeply");
      uint32_t et = c.read<uint32_t>("array element type");
      if (!is_value_type(et))
        c.fail("metadata '" + key + "': unknown array element type " + std::to_string(et));
      auto etype = static_cast<ValueType>(et);
      uint64_t n = c.read<uint64_t>("array length");
      c.check_count(n, min_encoded_size(etype), "metadata '" + key + "': array length");
      c.add_array_elements(n, key);
      std::vector<Value> items;
      items.reserve(n);
      for (uint64_t i = 0; i < n; ++i) items.push_back(read_value(c, etype, key, depth + 1));
      return Value::make_array(etype, std::move(items));
    }
  }
  c.fail("metadata '" + key + "': unknown value type " + std::to_string(static_cast<uint32_t>(t)));
}

// n_bytes of a tensor, with overflow checks; ne[0] must be a whole number of blocks.
uint64_t tensor_bytes(const TensorInfo& t, const Cursor& c) {
  const TypeTraits& tr = type_traits(t.type);
  if (t.ne[0] % tr.block_size != 0)
    c.fail("tensor '" + t.name + "': row length " + std::to_string(t.ne[0]) +
           " is not a multiple of the " + tr.name + " block size " + std::to_string(tr.block_size));
  uint64_t rows = static_cast<uint64_t>(t.n_elements / t.ne[0]);
  uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / tr.block_size) * static_cast<uint64_t>(tr.type_size);
  if (rows != 0 && row_bytes > std::numeric_limits<uint64_t>::max() / rows)
    c.fail("tensor '" + t.name + "': size overflows");
  return rows * row_bytes;
}

}  // namespace

// --- type tables -------------------------------------------------------------------------------

const char* to_string(ValueType t) {
  static const char* names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < sizeof(names) / sizeof(names[0]) ? names[i] : "unknown";
}

namespace {
struct TypeEntry {
  TensorType type;
  TypeTraits traits;
};
// Block layouts from ggml's definitions (ggml-common.h): QK4_0 = QK8_0 = 32, QK_K = 256.
const TypeEntry kTypes[] = {
    {TensorType::F32, {"F32", 1, 4}},        {TensorType::F16, {"F16", 1, 2}},
    {TensorType::Q4_0, {"Q4_0", 32, 18}},    {TensorType::Q4_1, {"Q4_1", 32, 20}},
    {TensorType::Q5_0, {"Q5_0", 32, 22}},    {TensorType::Q5_1, {"Q5_1", 32, 24}},
    {TensorType::Q8_0, {"Q8_0", 32, 34}},    {TensorType::Q8_1, {"Q8_1", 32, 36}},
    {TensorType::Q2_K, {"Q2_K", 256, 84}},   {TensorType::Q3_K, {"Q3_K", 256, 110}},
    {TensorType::Q4_K, {"Q4_K", 256, 144}},  {TensorType::Q5_K, {"Q5_K", 256, 176}},
    {TensorType::Q6_K, {"Q6_K", 256, 210}},  {TensorType::Q8_K, {"Q8_K", 256, 292}},
    {TensorType::IQ4_NL, {"IQ4_NL", 32, 18}}, {TensorType::IQ4_XS, {"IQ4_XS", 256, 136}},
    {TensorType::I8, {"I8", 1, 1}},          {TensorType::I16, {"I16", 1, 2}},
    {TensorType::I32, {"I32", 1, 4}},        {TensorType::I64, {"I64", 1, 8}},
    {TensorType::F64, {"F64", 1, 8}},        {TensorType::BF16, {"BF16", 1, 2}},
};
const TypeEntry* find_type(uint32_t raw) {
  for (const auto& e : kTypes)
    if (static_cast<uint32_t>(e.type) == raw) return &e;
  return nullptr;
}
}  // namespace

bool is_known_type(uint32_t raw_type) { return find_type(raw_type) != nullptr; }

const TypeTraits& type_traits(TensorType t) {
  const TypeEntry* e = find_type(static_cast<uint32_t>(t));
  if (!e) fail(ErrorKind::Unsupported, "GGUF tensor type " + std::to_string(static_cast<uint32_t>(t)) + " is not supported");
  return e->traits;
}

const char* to_string(TensorType t) {
  const TypeEntry* e = find_type(static_cast<uint32_t>(t));
  return e ? e->traits.name : "unknown";
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// --- Value -------------------------------------------------------------------------------------

bool Value::is_integer() const {
  switch (type_) {
    case ValueType::UInt8: case ValueType::Int8: case ValueType::UInt16: case ValueType::Int16:
    case ValueType::UInt32: case ValueType::Int32: case ValueType::UInt64: case ValueType::Int64:
      return true;
    default: return false;
  }
}

int64_t Value::to_int() const {
  if (!is_integer()) fail(ErrorKind::BadInput, std::string("expected an integer, found ") + to_string(type_));
  if (signed_) return i_;
  if (u_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    fail(ErrorKind::BadInput, "integer " + std::to_string(u_) + " is out of range");
  return static_cast<int64_t>(u_);
}

double Value::to_double() const {
  if (is_float()) return f_;
  if (is_integer()) return signed_ ? static_cast<double>(i_) : static_cast<double>(u_);
  fail(ErrorKind::BadInput, std::string("expected a number, found ") + to_string(type_));
}

bool Value::to_bool() const {
  if (type_ != ValueType::Bool) fail(ErrorKind::BadInput, std::string("expected a bool, found ") + to_string(type_));
  return u_ != 0;
}

const std::string& Value::str() const {
  if (type_ != ValueType::String) fail(ErrorKind::BadInput, std::string("expected a string, found ") + to_string(type_));
  return s_;
}

const std::vector<Value>& Value::items() const {
  if (type_ != ValueType::Array) fail(ErrorKind::BadInput, std::string("expected an array, found ") + to_string(type_));
  return items_;
}

Value Value::make_int(ValueType t, int64_t v) {
  Value x;
  x.type_ = t;
  x.signed_ = true;
  x.i_ = v;
  return x;
}
Value Value::make_uint(ValueType t, uint64_t v) {
  Value x;
  x.type_ = t;
  x.u_ = v;
  return x;
}
Value Value::make_float(ValueType t, double v) {
  Value x;
  x.type_ = t;
  x.f_ = v;
  return x;
}
Value Value::make_bool(bool v) {
  Value x;
  x.type_ = ValueType::Bool;
  x.u_ = v ? 1 : 0;
  return x;
}
Value Value::make_string(std::string v) {
  Value x;
  x.type_ = ValueType::String;
  x.s_ = std::move(v);
  return x;
}
Value Value::make_array(ValueType element_type, std::vector<Value> items) {
  Value x;
  x.type_ = ValueType::Array;
  x.element_type_ = element_type;
  x.items_ = std::move(items);
  return x;
}

// --- GgufFile ----------------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.path_ = path;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::Io, path + ": cannot open: " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    fail(ErrorKind::Io, path + ": cannot stat: " + std::strerror(e));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, path + ": not a regular file");
  }
  f.size_ = static_cast<uint64_t>(st.st_size);
  if (f.size_ > 0) {
    void* m = ::mmap(nullptr, f.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    ::close(fd);
    if (m == MAP_FAILED) fail(ErrorKind::Io, path + ": cannot mmap: " + std::strerror(e));
    f.mapping_ = m;
    f.base_ = static_cast<const uint8_t*>(m);
  } else {
    ::close(fd);
  }
  f.parse();  // on a throw, f's destructor unmaps
  return f;
}

GgufFile GgufFile::from_memory(std::vector<uint8_t> bytes, const std::string& name) {
  GgufFile f;
  f.path_ = name;
  f.owned_ = std::move(bytes);
  f.base_ = f.owned_.data();
  f.size_ = f.owned_.size();
  f.parse();
  return f;
}

GgufFile::GgufFile(GgufFile&& o) noexcept { *this = std::move(o); }

GgufFile& GgufFile::operator=(GgufFile&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    base_ = o.base_;
    size_ = o.size_;
    mapping_ = o.mapping_;
    owned_ = std::move(o.owned_);  // the buffer (and so every TensorInfo::data) does not move
    version_ = o.version_;
    alignment_ = o.alignment_;
    data_offset_ = o.data_offset_;
    kv_ = std::move(o.kv_);
    kv_index_ = std::move(o.kv_index_);
    tensors_ = std::move(o.tensors_);
    tensor_index_ = std::move(o.tensor_index_);
    o.mapping_ = nullptr;
    o.base_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

GgufFile::~GgufFile() { release(); }

void GgufFile::release() {
  if (mapping_) ::munmap(mapping_, size_);
  mapping_ = nullptr;
}

void GgufFile::parse() {
  Cursor c(base_, size_, path_);
  if (size_ < 4) c.fail("not a GGUF file: only " + std::to_string(size_) + " bytes");
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != kMagic) c.fail("not a GGUF file: bad magic");
  version_ = c.read<uint32_t>("version");
  if (version_ == 1) fail(ErrorKind::Unsupported, path_ + ": GGUF version 1 is not supported (convert the file to v3)");
  if (version_ != 2 && version_ != 3) {
    // A big-endian file stores its version byte-swapped: 3 reads as 0x03000000 here.
    if ((version_ & 0xffff) == 0 && (version_ >> 24) >= 1 && (version_ >> 24) <= 3)
      fail(ErrorKind::Unsupported, path_ + ": big-endian GGUF files are not supported");
    fail(ErrorKind::Unsupported, path_ + ": unsupported GGUF version " + std::to_string(version_));
  }
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key/value is at least key length + value type + 1 byte; a tensor info at least name length
  // + n_dims + type + offset (+ one dimension).
  c.check_count(n_kv, 8 + 4 + 1, "metadata count");
  if (n_kv > kMaxMetadataKeys)
    c.fail("metadata count " + std::to_string(n_kv) + " exceeds the limit of " + std::to_string(kMaxMetadataKeys));
  kv_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string("metadata key");
    if (key.empty()) c.fail("metadata entry " + std::to_string(i) + " has an empty key");
    uint32_t t = c.read<uint32_t>("metadata value type");
    if (!is_value_type(t)) c.fail("metadata '" + key + "': unknown value type " + std::to_string(t));
    Value v = read_value(c, static_cast<ValueType>(t), key, 0);
    if (!kv_index_.emplace(key, kv_.size()).second) c.fail("duplicate metadata key '" + key + "'");
    kv_.emplace_back(std::move(key), std::move(v));
  }
  c.check_count(n_tensors, 8 + 4 + 8 + 4 + 8, "tensor count");
  if (n_tensors > kMaxTensors)
    c.fail("tensor count " + std::to_string(n_tensors) + " exceeds the limit of " + std::to_string(kMaxTensors));

  if (const Value* a = find("general.alignment")) {
    if (!a->is_integer()) fail_key("general.alignment", std::string("expected an integer, found ") + to_string(a->type()));
    int64_t al = a->to_int();
    if (al <= 0 || (al & (al - 1)) != 0 || al > (1 << 20))
      fail_key("general.alignment", "alignment " + std::to_string(al) + " is not a power of two up to 1 MiB");
    alignment_ = static_cast<uint64_t>(al);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    TensorInfo t;
    t.name = c.read_string("tensor name");
    if (t.name.empty()) c.fail("tensor " + std::to_string(i) + " has an empty name");
    uint32_t n_dims = c.read<uint32_t>("tensor n_dims");
    if (n_dims == 0 || n_dims > kMaxDims)
      c.fail("tensor '" + t.name + "': " + std::to_string(n_dims) + " dimensions (1 to 4 allowed)");
    t.n_elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t n = c.read<uint64_t>("tensor dimension");
      if (n == 0 || n > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          static_cast<int64_t>(n) > std::numeric_limits<int64_t>::max() / t.n_elements)
        c.fail("tensor '" + t.name + "': dimension " + std::to_string(d) + " = " + std::to_string(n) +
               " is zero or too large");
      t.ne.push_back(static_cast<int64_t>(n));
      t.n_elements *= static_cast<int64_t>(n);
    }
    uint32_t type = c.read<uint32_t>("tensor type");
    if (!is_known_type(type))
      c.fail("tensor '" + t.name + "': unknown or unsupported tensor type " + std::to_string(type));
    t.type = static_cast<TensorType>(type);
    t.offset = c.read<uint64_t>("tensor offset");
    t.n_bytes = tensor_bytes(t, c);
    if (!tensor_index_.emplace(t.name, tensors_.size()).second) c.fail("duplicate tensor name '" + t.name + "'");
    tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment. A file without tensors may
  // end right after its metadata.
  uint64_t pos = c.pos();
  data_offset_ = (pos + alignment_ - 1) / alignment_ * alignment_;
  if (n_tensors == 0) return;
  if (data_offset_ > size_) c.fail("file truncated before its data section");
  uint64_t data_size = size_ - data_offset_;
  for (TensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0)
      fail(ErrorKind::BadInput, path_ + ": tensor '" + t.name + "': offset " + std::to_string(t.offset) +
                                    " is not a multiple of the alignment " + std::to_string(alignment_));
    if (t.offset > data_size || t.n_bytes > data_size - t.offset)
      fail(ErrorKind::BadInput, path_ + ": tensor '" + t.name + "': data [" + std::to_string(t.offset) + ", +" +
                                    std::to_string(t.n_bytes) + ") lies beyond the end of the file (data section is " +
                                    std::to_string(data_size) + " bytes; truncated file?)");
    t.data = base_ + data_offset_ + t.offset;
  }
}

[[noreturn]] void GgufFile::fail_key(const std::string& key, const std::string& what) const {
  ::icae::fail(ErrorKind::BadInput, path_ + ": metadata '" + key + "': " + what);
}

const Value* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const Value& GgufFile::get(const std::string& key) const {
  const Value* v = find(key);
  if (!v) fail_key(key, "missing");
  return *v;
}

// Runs an accessor of a Value and rewrites its error to name the file and key.
template <typename F>
static auto with_key(const GgufFile& f, const std::string& key, F&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    ::icae::fail(e.kind(), f.path() + ": metadata '" + key + "': " + e.what());
  }
}

int64_t GgufFile::get_int(const std::string& key) const {
  return with_key(*this, key, [&] { return get(key).to_int(); });
}
int64_t GgufFile::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}
double GgufFile::get_float(const std::string& key) const {
  return with_key(*this, key, [&] { return get(key).to_double(); });
}
double GgufFile::get_float(const std::string& key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? with_key(*this, key, [&] { return get(key).to_bool(); }) : fallback;
}
std::string GgufFile::get_string(const std::string& key) const {
  return with_key(*this, key, [&] { return get(key).str(); });
}
std::string GgufFile::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
std::vector<std::string> GgufFile::get_strings(const std::string& key) const {
  return with_key(*this, key, [&] {
    std::vector<std::string> out;
    const auto& items = get(key).items();
    out.reserve(items.size());
    for (const Value& v : items) out.push_back(v.str());
    return out;
  });
}
std::vector<int64_t> GgufFile::get_ints(const std::string& key) const {
  return with_key(*this, key, [&] {
    std::vector<int64_t> out;
    const auto& items = get(key).items();
    out.reserve(items.size());
    for (const Value& v : items) out.push_back(v.to_int());
    return out;
  });
}
std::vector<double> GgufFile::get_floats(const std::string& key) const {
  return with_key(*this, key, [&] {
    std::vector<double> out;
    const auto& items = get(key).items();
    out.reserve(items.size());
    for (const Value& v : items) out.push_back(v.to_double());
    return out;
  });
}

const TensorInfo* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& GgufFile::tensor(const std::string& name) const {
  const TensorInfo* t = find_tensor(name);
  if (!t) fail(ErrorKind::BadInput, path_ + ": no tensor '" + name + "'");
  return *t;
}

}  // namespace icae::gguf
