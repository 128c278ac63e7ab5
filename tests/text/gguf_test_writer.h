// A tiny GGUF writer for the tests: builds valid files byte by byte, and lets a test corrupt any
// field afterwards (it records where each one went).
#pragma once
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace icae::gguf::testing {

class Bytes {
 public:
  std::vector<uint8_t> data;
  template <typename T>
  void put(T v) {
    uint8_t b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    data.insert(data.end(), b, b + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    data.insert(data.end(), s.begin(), s.end());
  }
  void raw(const std::vector<uint8_t>& b) { data.insert(data.end(), b.begin(), b.end()); }
  size_t size() const { return data.size(); }
};

struct TestTensor {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  std::vector<uint8_t> bytes;
};

// Writes a GGUF v3 file: header, the key/values (already encoded as key + type + value by the
// caller through the kv_* helpers), tensor infos, padding to `alignment`, data.
class Writer {
 public:
  uint32_t version = 3;
  uint64_t alignment = 32;
  Bytes kvs;
  uint64_t n_kv = 0;
  std::vector<TestTensor> tensors;
  // Filled by build(): where the fields went, for corruption tests.
  size_t tensor_count_pos = 0, kv_count_pos = 0, first_tensor_info_pos = 0, data_pos = 0;

  void kv_u32(const std::string& k, uint32_t v) { key(k, 4); kvs.put(v); }
  void kv_i32(const std::string& k, int32_t v) { key(k, 5); kvs.put(v); }
  void kv_f32(const std::string& k, float v) { key(k, 6); kvs.put(v); }
  void kv_bool(const std::string& k, bool v) { key(k, 7); kvs.put<uint8_t>(v); }
  void kv_str(const std::string& k, const std::string& v) { key(k, 8); kvs.str(v); }
  void kv_u64(const std::string& k, uint64_t v) { key(k, 10); kvs.put(v); }
  void kv_strs(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9);
    kvs.put<uint32_t>(8);
    kvs.put<uint64_t>(v.size());
    for (const auto& s : v) kvs.str(s);
  }
  void kv_i32s(const std::string& k, const std::vector<int32_t>& v) {
    key(k, 9);
    kvs.put<uint32_t>(5);
    kvs.put<uint64_t>(v.size());
    for (int32_t x : v) kvs.put(x);
  }
  void kv_f32s(const std::string& k, const std::vector<float>& v) {
    key(k, 9);
    kvs.put<uint32_t>(6);
    kvs.put<uint64_t>(v.size());
    for (float x : v) kvs.put(x);
  }
  void add_tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, std::vector<uint8_t> bytes) {
    tensors.push_back({name, std::move(ne), type, std::move(bytes)});
  }

  std::vector<uint8_t> build() {
    Bytes b;
    b.raw({'G', 'G', 'U', 'F'});
    b.put<uint32_t>(version);
    tensor_count_pos = b.size();
    b.put<uint64_t>(tensors.size());
    kv_count_pos = b.size();
    b.put<uint64_t>(n_kv);
    b.raw(kvs.data);
    first_tensor_info_pos = b.size();
    uint64_t off = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors) {
      b.str(t.name);
      b.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t n : t.ne) b.put<uint64_t>(n);
      b.put<uint32_t>(t.type);
      b.put<uint64_t>(off);
      offsets.push_back(off);
      off += (t.bytes.size() + alignment - 1) / alignment * alignment;
    }
    while (b.size() % alignment) b.put<uint8_t>(0);
    data_pos = b.size();
    for (size_t i = 0; i < tensors.size(); ++i) {
      b.raw(tensors[i].bytes);
      if (i + 1 < tensors.size())
        while ((b.size() - data_pos) % alignment) b.put<uint8_t>(0);
    }
    return b.data;
  }

 private:
  void key(const std::string& k, uint32_t type) {
    kvs.str(k);
    kvs.put<uint32_t>(type);
    ++n_kv;
  }
};

inline void put_f16(std::vector<uint8_t>& out, uint16_t h) {
  out.push_back(static_cast<uint8_t>(h & 0xff));
  out.push_back(static_cast<uint8_t>(h >> 8));
}

}  // namespace icae::gguf::testing
