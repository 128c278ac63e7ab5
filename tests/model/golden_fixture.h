// A golden tiny model (../shared/testdata/golden/NAME) with its released-layout adapter and its
// reference tensors, as several test files load it.
#pragma once
#include <ATen/ATen.h>

#include <memory>
#include <string>
#include <vector>

#include "icae/core/adapter_file.h"
#include "icae/infer/text_model.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "test_paths.h"

namespace icae::test {

inline std::vector<int64_t> to_ids(const at::Tensor& t) {
  at::Tensor c = t.reshape({-1}).to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

struct GoldenFixture {
  std::shared_ptr<Transformer> base;
  std::unique_ptr<Icae> icae;
  TensorMap golden;
};

// The same trained tensors read as a key/value-slot ICAE (the golden-kv reference did this).
inline std::unique_ptr<Icae> as_key_value(const Icae& e) {
  IcaeConfig c = e.config();
  c.slot_kind = SlotKind::KeyValue;
  return std::make_unique<Icae>(e.base_ptr(), c, e.lora(), e.memory_embed(), e.projector());
}

inline GoldenFixture load_golden_fixture(const std::string& name, at::Device device = at::kCPU) {
  const std::string dir = golden_dir(name);
  GoldenFixture f;
  ModelLoadOptions mo;
  mo.device = device;
  f.base = std::make_shared<Transformer>(load_transformer(dir + "/base", mo));
  AdapterLoadOptions o;
  o.lora_alpha = 32;  // the released layout stores no alpha
  f.icae = load_adapter(dir + "/icae.safetensors", f.base, o).icae;
  f.golden = load_safetensors(dir + "/golden.safetensors");
  return f;
}

// The same as an inference session takes it: the tiny golden models have no tokenizer, so a
// TextModel of weights alone (ids in and out) and the adapter at its released compression rate.
struct GoldenSession {
  std::shared_ptr<TextModel> text;
  std::shared_ptr<LoadedAdapter> adapter;
  TensorMap golden;
};

inline GoldenSession load_golden_session(const std::string& name) {
  const std::string dir = golden_dir(name);
  GoldenSession g;
  g.text = std::make_shared<TextModel>();
  g.text->path = dir + "/base";
  g.text->model = std::make_shared<Transformer>(load_transformer(dir + "/base", {}));
  AdapterLoadOptions o;
  o.lora_alpha = 32;
  o.compression_rate = 4;
  g.adapter = std::make_shared<LoadedAdapter>(load_adapter(dir + "/icae.safetensors", g.text->model, o));
  g.golden = load_safetensors(dir + "/golden.safetensors");
  return g;
}

}  // namespace icae::test
