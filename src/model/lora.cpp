#include "icae/model/lora.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <mutex>

#include "icae/model/tensor_names.h"
#include "icae/model/transformer.h"
#include "icae/util/error.h"

namespace icae {

namespace {
// The weight each projection adapts; names and shapes come from the tensor table.
constexpr TensorRole kProjWeights[kNumProj] = {TensorRole::AttnQ,   TensorRole::AttnK,  TensorRole::AttnV,
                                               TensorRole::AttnOutput, TensorRole::FfnGate, TensorRole::FfnUp,
                                               TensorRole::FfnDown};
TensorRole weight_role(Proj p) { return kProjWeights[static_cast<int>(p)]; }
}  // namespace

namespace {

// splitmix64's finaliser: a bijective 64-bit mix; consecutive counters give independent words.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

template <typename T>
void fill_dropout_mask(T* out, int64_t n, uint64_t seed, uint32_t keep_below, float scale) {
  const T on = static_cast<T>(scale), off = static_cast<T>(0.0f);
  // Two 32-bit uniforms per hash; blocks of 8192 elements (4096 hashes) per task.
  constexpr int64_t kBlock = 8192;
  at::parallel_for(0, (n + kBlock - 1) / kBlock, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t i0 = b * kBlock, i1 = std::min(n, i0 + kBlock);
      for (int64_t i = i0; i < i1; i += 2) {
        const uint64_t h = mix64(seed + 0x9e3779b97f4a7c15ULL * static_cast<uint64_t>(i / 2 + 1));
        out[i] = static_cast<uint32_t>(h) < keep_below ? on : off;
        if (i + 1 < i1) out[i + 1] = static_cast<uint32_t>(h >> 32) < keep_below ? on : off;
      }
    }
  });
}

}  // namespace

at::Tensor lora_dropout_mask(const at::Tensor& x, double p, at::Generator& gen) {
  ICAE_CHECK(p >= 0 && p < 1, ErrorKind::Usage, "dropout probability must be in [0, 1)");
  const float scale = static_cast<float>(1.0 / (1.0 - p));
  if (!x.device().is_cpu() || !gen.device().is_cpu()) {
    at::Tensor keep = at::empty(x.sizes(), x.options().dtype(at::kFloat)).bernoulli_(1.0 - p, gen);
    return (keep * scale).to(x.scalar_type());
  }
  uint64_t seed;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    seed = at::check_generator<at::CPUGeneratorImpl>(gen)->random64();
  }
  // Keep when a uniform 32-bit word is below (1 - p) 2^32.
  const double keep = std::ldexp(1.0 - p, 32);
  const uint32_t keep_below = keep >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<uint32_t>(keep);
  at::Tensor mask = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  const int64_t n = mask.numel();
  switch (mask.scalar_type()) {
    case at::kFloat: fill_dropout_mask(mask.data_ptr<float>(), n, seed, keep_below, scale); break;
    case at::kBFloat16: fill_dropout_mask(mask.data_ptr<c10::BFloat16>(), n, seed, keep_below, scale); break;
    case at::kHalf: fill_dropout_mask(mask.data_ptr<c10::Half>(), n, seed, keep_below, scale); break;
    default: fail(ErrorKind::Unsupported, std::string("dropout on ") + c10::toString(mask.scalar_type()));
  }
  return mask;
}

std::string proj_module_path(Proj p) {
  const std::string hf = role_info(weight_role(p)).hf;  // "self_attn.q_proj.weight"
  return hf.substr(0, hf.rfind('.'));
}

std::pair<int64_t, int64_t> proj_shape(const ModelConfig& c, Proj p) {
  const std::vector<int64_t> shape = tensor_shape(c, weight_role(p));
  return {shape[0], shape[1]};
}

LoraAdapter::LoraAdapter(const ModelConfig& model, LoraConfig config, at::Device device,
                         at::ScalarType dtype)
    : config_(std::move(config)) {
  ICAE_CHECK(config_.r > 0, ErrorKind::BadInput, "LoRA rank r must be positive");
  ICAE_CHECK(config_.dropout >= 0 && config_.dropout < 1, ErrorKind::BadInput,
             "LoRA dropout must be in [0, 1)");
  ICAE_CHECK(!config_.target_modules.empty(), ErrorKind::BadInput, "LoRA needs at least one target module");
  for (const auto& t : config_.target_modules) targeted_[static_cast<int>(parse_proj(t))] = true;
  auto opts = at::TensorOptions().device(device).dtype(dtype);
  layers_.resize(model.num_hidden_layers);
  for (auto& layer : layers_) {
    for (int p = 0; p < kNumProj; ++p) {
      if (!targeted_[p]) continue;
      auto [out, in] = proj_shape(model, static_cast<Proj>(p));
      layer[p].A = at::zeros({config_.r, in}, opts);
      layer[p].B = at::zeros({out, config_.r}, opts);
    }
  }
}

void LoraAdapter::init_for_training(uint64_t seed) {
  // Kaiming-uniform with a = sqrt(5) on [r, in] gives bound = 1 / sqrt(in) (what
  // nn.Linear.reset_parameters, and so peft, uses for A). Drawn on the CPU with a seeded
  // generator so every device gets the same adapter.
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& layer : layers_) {
    for (auto& pair : layer) {
      if (!pair.defined()) continue;
      const double bound = 1.0 / std::sqrt(static_cast<double>(pair.A.size(1)));
      at::Tensor a = at::empty(pair.A.sizes(), at::kFloat);
      a.uniform_(-bound, bound, gen);
      pair.A.copy_(a);
      pair.B.zero_();
    }
  }
}

void LoraAdapter::merge(const Transformer& base) {
  ICAE_CHECK(num_layers() == base.config().num_hidden_layers, ErrorKind::Mismatch,
             "cannot merge a LoRA adapter of " + std::to_string(num_layers()) + " layers into a model of " +
                 std::to_string(base.config().num_hidden_layers));
  at::NoGradGuard no_grad;
  merged_.clear();
  const double s = scale();
  for (int64_t l = 0; l < num_layers(); ++l) {
    // W + s * B A in float32, then back to the model's dtype.
    auto folded = [&](Proj p) {
      at::Tensor w = base.weight(hf_name(weight_role(p), l));
      if (!targets(p)) return w;
      const LoraPair& pair = layers_[l][static_cast<int>(p)];
      return (w.to(at::kFloat) + s * at::matmul(pair.B.to(at::kFloat), pair.A.to(at::kFloat))).to(w.scalar_type());
    };
    MergedLayer m;
    if (targets(Proj::Q) || targets(Proj::K) || targets(Proj::V))
      m.qkv = at::cat({folded(Proj::Q), folded(Proj::K), folded(Proj::V)}, 0);
    if (targets(Proj::O)) m.o = folded(Proj::O);
    if (targets(Proj::Gate) || targets(Proj::Up)) m.gate_up = at::cat({folded(Proj::Gate), folded(Proj::Up)}, 0);
    if (targets(Proj::Down)) m.down = folded(Proj::Down);
    merged_.push_back(std::move(m));
  }
}

std::vector<at::Tensor> LoraAdapter::parameters() const {
  std::vector<at::Tensor> out;
  for (const auto& layer : layers_)
    for (const auto& pair : layer)
      if (pair.defined()) {
        out.push_back(pair.A);
        out.push_back(pair.B);
      }
  return out;
}

void LoraAdapter::set_requires_grad(bool on) {
  for (auto& t : parameters()) t.requires_grad_(on);
}

int64_t LoraAdapter::parameter_count() const {
  int64_t n = 0;
  for (const auto& t : parameters()) n += t.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> LoraAdapter::named_tensors(const std::string& prefix) const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t l = 0; l < layers_.size(); ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const auto& pair = layers_[l][p];
      if (!pair.defined()) continue;
      // peft puts "base_model.model." before the module's own path.
      const std::string base = prefix + "base_model.model." + hf_module(weight_role(static_cast<Proj>(p)), l);
      out.emplace_back(base + ".lora_A.default.weight", pair.A);
      out.emplace_back(base + ".lora_B.default.weight", pair.B);
    }
  return out;
}

int64_t lora_parameter_count(const ModelConfig& model, const LoraConfig& lora) {
  int64_t per_layer = 0;
  for (const auto& t : lora.target_modules) {
    auto [out, in] = proj_shape(model, parse_proj(t));
    per_layer += lora.r * (in + out);
  }
  return per_layer * model.num_hidden_layers;
}

}  // namespace icae
