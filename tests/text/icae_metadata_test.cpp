// The metadata of slot files and adapters (src/formats/icae_metadata.cpp, torch-free: these run
// under the sanitizers too). What load_slots / load_adapter check before making tensors; the cases
// here once crashed, escaped as a non-icae exception or were undefined behaviour (docs/errors.md).
#include <gtest/gtest.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "icae/formats/icae_metadata.h"
#include "icae/formats/safetensors.h"
#include "icae/util/error.h"

namespace icae::formats {
namespace {

using nlohmann::json;

struct T {
  std::string name;
  std::vector<int64_t> shape;
};

// A safetensors image of F32 tensors (zeros) with the given metadata.
SafetensorsFile image(const std::vector<T>& tensors, const std::map<std::string, std::string>& metadata) {
  json h = json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& t : tensors) {
    size_t n = 4;
    for (int64_t d : t.shape) n *= static_cast<size_t>(d);
    h[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  const std::string header = h.dump();
  std::vector<uint8_t> bytes(8 + header.size() + offset, 0);
  const uint64_t len = header.size();
  std::memcpy(bytes.data(), &len, 8);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  return SafetensorsFile::from_memory(std::move(bytes), "a.safetensors");
}

template <typename F>
void expect_error(F&& f, ErrorKind kind, const std::string& needle) {
  try {
    f();
    FAIL() << "accepted; expected: " << needle;
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

json slot_header() {
  return {{"format", "icae-slots"}, {"version", 2}, {"base_fingerprint", "aa"}, {"adapter_fingerprint", "bb"},
          {"mem_size", 2}, {"hidden_size", 4}, {"context_tokens", 7}};
}

SafetensorsFile slot_file(const json& h, std::vector<int64_t> shape = {2, 4}) {
  return image({{"slots", shape}}, {{"icae_slots", h.dump()}});
}

TEST(IcaeMetadata, SlotHeaderReads) {
  const auto f = slot_file(slot_header());
  const SlotFileHeader h = read_slot_header(f, "a.safetensors");
  EXPECT_EQ(h.version, 2);
  EXPECT_EQ(h.base_fingerprint, "aa");
  EXPECT_EQ(h.adapter_fingerprint, "bb");
  EXPECT_EQ(h.mem_size, 2);
  EXPECT_EQ(h.context_tokens, 7);
  EXPECT_EQ(slot_tensor(f, "a.safetensors", 4).shape[0], 2);
  expect_error([&] { slot_tensor(f, "a.safetensors", 8); }, ErrorKind::Mismatch,
               "a.safetensors: slots have the wrong width for this model");
  expect_error([&] { slot_tensor(slot_file(slot_header(), {8}), "a.safetensors", 4); }, ErrorKind::Mismatch,
               "slots have the wrong width");
  expect_error([&] { read_slot_header(image({{"slots", {2, 4}}}, {}), "a.safetensors"); }, ErrorKind::BadInput,
               "a.safetensors: not an icae slot file (no icae_slots header)");
}

// Was: nlohmann's float-to-integer cast, undefined for 1e300 (UBSan: float-cast-overflow).
TEST(IcaeMetadata, SlotHeaderIntegersMustBeIntegers) {
  for (const char* key : {"mem_size", "version", "context_tokens"}) {
    json h = slot_header();
    h[key] = 1e300;
    expect_error([&] { read_slot_header(slot_file(h), "a.safetensors"); }, ErrorKind::BadInput,
                 std::string("a.safetensors: malformed icae_slots header: field '") + key + "' is not an integer");
  }
  json h = slot_header();
  h["mem_size"] = "two";
  expect_error([&] { read_slot_header(slot_file(h), "a.safetensors"); }, ErrorKind::BadInput,
               "a.safetensors: malformed icae_slots header: [json.exception.type_error.302]");
  h = slot_header();
  h["mem_size"] = 2.0;  // a whole float is taken
  EXPECT_EQ(read_slot_header(slot_file(h), "a.safetensors").mem_size, 2);
}

json adapter_header() {
  return {{"format", "icae-adapter"},
          {"base_model", {{"name", "tiny"}, {"fingerprint", "ff"}, {"vocab_size", 512}, {"hidden_size", 64},
                          {"num_hidden_layers", 2}}},
          {"mem_size", 2},
          {"compression_rate", 4.0},
          {"lora", {{"r", 2}, {"alpha", 32.0}, {"dropout", 0.05}, {"target_modules", {"q_proj", "v_proj"}}}},
          {"projector", "none"}};
}

TEST(IcaeMetadata, AdapterHeaderReadsAndChecksTheBase) {
  const AdapterBaseSizes tiny{64, 2, 512};
  const AdapterHeader a = parse_adapter_header(adapter_header().dump(), "a.safetensors", &tiny);
  EXPECT_EQ(a.mem_size, 2);
  EXPECT_EQ(a.lora_r, 2);
  EXPECT_EQ(a.target_modules, (std::vector<std::string>{"q_proj", "v_proj"}));
  const AdapterBaseSizes other{64, 3, 512};
  expect_error([&] { parse_adapter_header(adapter_header().dump(), "a.safetensors", &other); }, ErrorKind::Mismatch,
               "a.safetensors: adapter was trained on a base model with num_hidden_layers = 2, this base model has 3");
}

// Was: undefined behaviour (float casts), or values that later size tensors and divide: refused.
TEST(IcaeMetadata, AdapterHeaderValuesAreRangeChecked) {
  const AdapterBaseSizes tiny{64, 2, 512};
  auto bad = [&](auto edit, const std::string& needle) {
    json h = adapter_header();
    edit(h);
    expect_error([&] { parse_adapter_header(h.dump(), "a.safetensors", &tiny); }, ErrorKind::BadInput, needle);
  };
  bad([](json& h) { h["mem_size"] = 1e300; }, "a.safetensors: malformed icae header: field 'mem_size' is not an integer");
  bad([](json& h) { h["base_model"]["hidden_size"] = 1e300; },
      "a.safetensors: malformed icae header: field 'hidden_size' is not an integer");
  bad([](json& h) { h["lora"]["r"] = 2.5; }, "a.safetensors: malformed icae header: field 'r' is not an integer");
  bad([](json& h) { h["mem_size"] = 0; }, "a.safetensors: malformed icae header: mem_size = 0 is out of range [1, 1048576]");
  bad([](json& h) { h["mem_size"] = int64_t(1) << 62; }, "mem_size = 4611686018427387904 is out of range");
  bad([](json& h) { h["lora"]["r"] = -1; }, "a.safetensors: malformed icae header: lora.r = -1 is out of range [1, 65536]");
  bad([](json& h) { h["compression_rate"] = 0; }, "a.safetensors: malformed icae header: compression_rate = 0.0 is out of range");
  bad([](json& h) { h["compression_rate"] = 1e-300; }, "compression_rate = 1e-300 is out of range [1e-06, 1e+06]");
  bad([](json& h) { h["lora"]["dropout"] = 1; }, "a.safetensors: malformed icae header: lora.dropout = 1.0 is out of range [0, 1)");
  bad([](json& h) { h["lora"]["target_modules"] = {"q_proj", "x_proj"}; }, "unknown LoRA target module 'x_proj'");
  bad([](json& h) { h["projector"] = "conv"; }, "unknown slot projector 'conv' (expected none, linear or mlp)");
  bad([](json& h) { h["lora"] = 3; }, "a.safetensors: malformed icae header: [json.exception.type_error.");
}

std::string lora(int64_t layer, const char* module, char ab) {
  return "icae.base_model.model.model.layers." + std::to_string(layer) + ".self_attn." + module + ".lora_" + ab +
         ".default.weight";
}

TEST(IcaeMetadata, AdapterLayoutSortsTensorsByRole) {
  const auto f = image({{lora(0, "q_proj", 'A'), {2, 4}}, {lora(0, "q_proj", 'B'), {4, 2}},
                        {lora(1, "q_proj", 'A'), {2, 4}}, {"memory_token_embed.weight", {5, 4}},
                        {"projector.weight", {4, 4}}, {"model.norm.weight", {4}}},
                       {});
  const AdapterLayout l = read_adapter_layout(f, "a.safetensors", false, 2);
  ASSERT_NE(l.memory, nullptr);
  EXPECT_EQ(l.pairs.size(), 2u);
  EXPECT_NE(l.pairs.at({0, static_cast<int>(Proj::Q)}).B, nullptr);
  EXPECT_EQ(l.pairs.at({1, static_cast<int>(Proj::Q)}).B, nullptr);
  EXPECT_EQ(l.projector.size(), 1u);
  EXPECT_EQ(l.ignored, std::vector<std::string>{"model.norm.weight"});
  EXPECT_EQ(l.targets, std::set<std::string>{"q_proj"});
  // Released layout: projector.* are not ours to read.
  EXPECT_EQ(read_adapter_layout(f, "a.safetensors", true, 2).ignored.size(), 2u);
  expect_error([&] { read_adapter_layout(f, "a.safetensors", false, 1); }, ErrorKind::Mismatch,
               "a.safetensors: '" + lora(1, "q_proj", 'A') + "' names layer 1 but the base model has 1 layers");
}

// Was: std::stoll's std::out_of_range escaping load_adapter (not an icae::Error).
TEST(IcaeMetadata, LayerNumbersBeyondInt64AreNamedAsWritten) {
  const std::string name = "icae.base_model.model.model.layers.99999999999999999999.mlp.up_proj.lora_A.default.weight";
  const auto f = image({{name, {2, 4}}, {"memory_token_embed.weight", {5, 4}}}, {});
  expect_error([&] { read_adapter_layout(f, "a.safetensors", true, 2); }, ErrorKind::Mismatch,
               "names layer 99999999999999999999 but the base model has 2 layers");
}

// Was: std::regex_match recursing once per character: a tensor name of 100,000 characters
// overflowed the stack (segfault) in load_adapter.
TEST(IcaeMetadata, LongTensorNamesDoNotExhaustTheStack) {
  const std::string module = std::string(1000000, 'a') + "_proj";
  const std::string name = "icae.base_model.model.model.layers.0.self_attn." + module + ".lora_A.default.weight";
  const auto f = image({{name, {2, 4}}, {"memory_token_embed.weight", {5, 4}}}, {});
  expect_error([&] { read_adapter_layout(f, "a.safetensors", true, 2); }, ErrorKind::BadInput,
               "unknown LoRA target module 'aaaa");
  const auto g = image({{std::string(1000000, 'x'), {1}}, {lora(0, "v_proj", 'B'), {4, 2}},
                        {"memory_token_embed.weight", {5, 4}}},
                       {});
  EXPECT_EQ(read_adapter_layout(g, "a.safetensors", true, 2).ignored.size(), 1u);
}

// Was: c10 errors (an index out of range, not an icae::Error) from tensors of the wrong rank, and a
// released adapter with fewer than 4 memory rows got k <= 0.
TEST(IcaeMetadata, TensorShapesAreChecked) {
  expect_error([&] {
    read_adapter_layout(image({{lora(0, "q_proj", 'A'), {8}}, {"memory_token_embed.weight", {5, 4}}}, {}),
                        "a.safetensors", true, 2);
  }, ErrorKind::BadInput, "a.safetensors: tensor '" + lora(0, "q_proj", 'A') + "' must be 2-D, its shape is [8]");
  expect_error([&] {
    read_adapter_layout(image({{lora(0, "q_proj", 'A'), {2, 4}}, {"memory_token_embed.weight", {20}}}, {}),
                        "a.safetensors", true, 2);
  }, ErrorKind::BadInput, "tensor 'memory_token_embed.weight' must be 2-D, its shape is [20]");
  expect_error([&] {
    read_adapter_layout(image({{lora(0, "q_proj", 'A'), {2, 4}}, {"memory_token_embed.weight", {3, 4}}}, {}),
                        "a.safetensors", true, 2);
  }, ErrorKind::BadInput, "a.safetensors: memory_token_embed.weight has 3 rows; it needs mem_size + 3 with mem_size in [1, 1048576]");
  expect_error([&] { read_adapter_layout(image({{"memory_token_embed.weight", {5, 4}}}, {}), "a.safetensors", true, 2); },
               ErrorKind::BadInput, "a.safetensors: no LoRA tensors");
  expect_error([&] { read_adapter_layout(image({{lora(0, "q_proj", 'A'), {2, 4}}}, {}), "a.safetensors", true, 2); },
               ErrorKind::BadInput, "a.safetensors: no tensor 'memory_token_embed.weight'");
}

}  // namespace
}  // namespace icae::formats
