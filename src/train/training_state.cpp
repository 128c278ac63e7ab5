#include "icae/train/training_state.h"

#include <ATen/ATen.h>

#include "icae/formats/safetensors.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae::train {

namespace {
constexpr const char* kStateKey = "icae_training_state";
constexpr const char* kParamPrefix = "param.";
constexpr const char* kRngKey = "rng.dropout";
}  // namespace

nlohmann::json TrainingProgress::to_json() const {
  return {{"version", 1},           {"step", step},           {"examples_drawn", examples_drawn},
          {"context_tokens", context_tokens}, {"elapsed_s", elapsed_s}, {"bad_records", bad_records}};
}

TrainingProgress TrainingProgress::from_json(const nlohmann::json& j) {
  TrainingProgress p;
  p.step = j.at("step").get<int64_t>();
  p.examples_drawn = j.at("examples_drawn").get<int64_t>();
  p.context_tokens = j.value("context_tokens", int64_t{0});
  p.elapsed_s = j.value("elapsed_s", 0.0);
  p.bad_records = j.value("bad_records", int64_t{0});
  return p;
}

void save_training_state(const std::string& path, const Icae& icae, const AdamW& optimizer,
                         const at::Generator& gen, const TrainingProgress& progress) {
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& [name, t] : icae.named_trainable()) tensors.emplace_back(kParamPrefix + name, t.detach());
  for (auto& nt : optimizer.state()) tensors.push_back(nt);
  tensors.emplace_back(kRngKey, gen.get_state());
  save_safetensors(path, tensors, {{kStateKey, progress.to_json().dump()}});
}

TrainingProgress load_training_state(const std::string& path, Icae& icae, AdamW& optimizer, at::Generator& gen) {
  formats::SafetensorsFile file(path);
  auto meta = file.metadata().find(kStateKey);
  ICAE_CHECK(meta != file.metadata().end(), ErrorKind::BadInput, path + ": not an icae training checkpoint");
  TrainingProgress p;
  try {
    p = TrainingProgress::from_json(nlohmann::json::parse(meta->second));
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, path + ": malformed training state: " + e.what());
  }
  TensorMap t = load_safetensors(path);
  at::NoGradGuard no_grad;
  for (auto& [name, param] : icae.named_trainable()) {
    auto it = t.find(kParamPrefix + name);
    ICAE_CHECK(it != t.end(), ErrorKind::Mismatch, path + ": no tensor '" + name + "' (another run's checkpoint?)");
    ICAE_CHECK(it->second.sizes() == param.sizes(), ErrorKind::Mismatch,
               path + ": tensor '" + name + "' has another shape than this run's");
    param.copy_(it->second);
  }
  try {
    optimizer.load_state(t);
  } catch (const Error& e) {
    fail(e.kind(), path + ": " + e.what());
  }
  auto rng = t.find(kRngKey);
  ICAE_CHECK(rng != t.end(), ErrorKind::BadInput, path + ": no dropout generator state");
  gen.set_state(rng->second.to(at::kByte));
  return p;
}

}  // namespace icae::train
