// The Icae object: construction, special ids, embeddings of mixed (base + memory) ids.
#include "icae/core/icae.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <sstream>

#include "icae/util/error.h"

namespace icae {

SpecialIds SpecialIds::make(int64_t vocab_size, int64_t mem_size) {
  SpecialIds s;
  s.vocab = vocab_size;
  s.pad = vocab_size;
  s.mem_first = vocab_size + 1;
  s.mem_last = vocab_size + mem_size;
  s.ae = vocab_size + 1 + mem_size;
  s.lm = s.ae + 1;
  s.ft = s.ae + 2;
  return s;
}

SegmentPlan plan_segments(int64_t length, int64_t mem_size, double rate) {
  ICAE_CHECK(length > 0, ErrorKind::BadInput, "cannot compress an empty context");
  ICAE_CHECK(mem_size > 0 && rate > 0, ErrorKind::BadInput, "mem_size and compression rate must be positive");
  SegmentPlan p;
  const double per_segment = static_cast<double>(mem_size) * rate;
  p.num_segments = static_cast<int64_t>(std::ceil(static_cast<double>(length) / per_segment));
  p.segment_length = (length + p.num_segments - 1) / p.num_segments;
  for (int64_t i = 0; i < p.num_segments; ++i) {
    const int64_t begin = i * p.segment_length, end = std::min(length, begin + p.segment_length);
    if (begin < end) p.ranges.emplace_back(begin, end);
  }
  p.num_segments = static_cast<int64_t>(p.ranges.size());
  return p;
}

namespace {
// A projector maps embeddings: key/value slots have none.
void check_slot_projector(const IcaeConfig& c) {
  ICAE_CHECK(c.slot_kind == SlotKind::Embedding || c.projector == ProjectorKind::None, ErrorKind::BadInput,
             "key/value slots take no slot projector (it maps embeddings); use --projector none");
}
}  // namespace

Icae::Icae(std::shared_ptr<const Transformer> base, IcaeConfig config, uint64_t seed)
    : base_(std::move(base)), config_(std::move(config)) {
  ICAE_CHECK(base_ != nullptr, ErrorKind::Internal, "Icae needs a base model");
  ICAE_CHECK(config_.mem_size > 0, ErrorKind::BadInput, "mem_size must be positive");
  check_slot_projector(config_);
  const ModelConfig& mc = base_->config();
  ids_ = SpecialIds::make(mc.vocab_size, config_.mem_size);
  // Trainable tensors are kept in float32 when the model runs in bf16/f16: the optimizer
  // updates master copies; they are cast per forward.
  const at::ScalarType train_type = at::kFloat;
  lora_ = LoraAdapter(mc, config_.lora, base_->device(), train_type);
  lora_.init_for_training(seed);
  // The original used nn.Embedding's N(0, 1). We draw at the scale of the base embeddings
  // instead, so new rows look like ordinary tokens to the frozen model from the first step.
  at::NoGradGuard no_grad;
  const double std = base_->embedding_weight().to(at::kFloat).std().item<double>();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed + 1);
  at::Tensor m = at::empty({config_.mem_size + 3, mc.hidden_size}, at::kFloat);
  m.normal_(0.0, std, gen);
  memory_embed_ = m.to(base_->device(), train_type);
  projector_ = SlotProjector(config_.projector, mc.hidden_size, 1.0, base_->device(), seed);
}

Icae::Icae(std::shared_ptr<const Transformer> base, IcaeConfig config, LoraAdapter lora, at::Tensor memory_embed,
           SlotProjector projector)
    : base_(std::move(base)), config_(std::move(config)), lora_(std::move(lora)), projector_(std::move(projector)) {
  ICAE_CHECK(projector_.kind() == config_.projector, ErrorKind::Internal, "projector kind differs from the config");
  ICAE_CHECK(base_ != nullptr, ErrorKind::Internal, "Icae needs a base model");
  check_slot_projector(config_);
  const ModelConfig& mc = base_->config();
  ids_ = SpecialIds::make(mc.vocab_size, config_.mem_size);
  ICAE_CHECK(memory_embed.dim() == 2 && memory_embed.size(0) == config_.mem_size + 3 &&
                 memory_embed.size(1) == mc.hidden_size,
             ErrorKind::Mismatch,
             "memory_token_embed must be [mem_size + 3, hidden] = [" + std::to_string(config_.mem_size + 3) + ", " +
                 std::to_string(mc.hidden_size) + "], got [" + std::to_string(memory_embed.size(0)) + ", " +
                 std::to_string(memory_embed.dim() > 1 ? memory_embed.size(1) : 0) + "]");
  ICAE_CHECK(lora_.num_layers() == mc.num_hidden_layers, ErrorKind::Mismatch,
             "the adapter has " + std::to_string(lora_.num_layers()) + " layers, the base model " +
                 std::to_string(mc.num_hidden_layers));
  for (int64_t l = 0; l < lora_.num_layers(); ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const LoraPair& pair = lora_.pair(l, static_cast<Proj>(p));
      if (!pair.defined()) continue;
      auto [out, in] = proj_shape(mc, static_cast<Proj>(p));
      ICAE_CHECK(pair.A.size(1) == in && pair.B.size(0) == out, ErrorKind::Mismatch,
                 std::string("LoRA for ") + proj_name(static_cast<Proj>(p)) + " of layer " + std::to_string(l) +
                     " does not fit the base model: A [" + std::to_string(pair.A.size(0)) + ", " +
                     std::to_string(pair.A.size(1)) + "], B [" + std::to_string(pair.B.size(0)) + ", " +
                     std::to_string(pair.B.size(1)) + "], projection [" + std::to_string(out) + ", " +
                     std::to_string(in) + "]");
    }
  memory_embed_ = memory_embed.to(base_->device());
}

std::vector<std::pair<std::string, at::Tensor>> Icae::named_trainable() const {
  auto out = lora_.named_tensors("icae.");
  out.emplace_back("memory_token_embed.weight", memory_embed_);
  for (auto& nt : projector_.named_tensors()) out.push_back(nt);
  return out;
}

std::vector<at::Tensor> Icae::trainable_parameters() const {
  std::vector<at::Tensor> out;
  for (auto& [name, t] : named_trainable()) out.push_back(t);
  return out;
}

void Icae::set_trainable(bool on) {
  lora_.set_requires_grad(on);
  memory_embed_.requires_grad_(on);
  for (auto& t : projector_.parameters()) t.requires_grad_(on);
}

double Icae::calibrate_projector(const std::vector<std::vector<int64_t>>& contexts) {
  if (!projector_.active() || contexts.empty()) return 1.0;
  at::NoGradGuard no_grad;
  projector_.set_scale(1.0);
  const SlotProjector saved = projector_;
  projector_ = SlotProjector();  // raw slots
  std::vector<at::Tensor> raw;
  try {
    raw = compress_batch(contexts, false);
  } catch (...) {
    projector_ = saved;
    throw;
  }
  projector_ = saved;
  const double slot_norm = at::cat(raw, 0).to(at::kFloat).norm(2, {-1}).mean().item<double>();
  const double embed_norm = base_->embedding_weight().to(at::kFloat).norm(2, {-1}).mean().item<double>();
  const double s = slot_norm > 0 ? embed_norm / slot_norm : 1.0;
  projector_.set_scale(s);
  return s;
}

at::Tensor Icae::embed_mixed(const at::Tensor& ids_in) const {
  const at::Tensor ids = ids_in.to(base_->device()).to(at::kLong);
  const int64_t v = ids_.vocab;
  ICAE_CHECK(ids.numel() == 0 || (ids.min().item<int64_t>() >= 0 && ids.max().item<int64_t>() <= ids_.ft),
             ErrorKind::BadInput, "token id out of range [0, " + std::to_string(ids_.ft) + "]");
  at::Tensor is_base = (ids < v).unsqueeze(-1);
  at::Tensor is_special = (ids > v).unsqueeze(-1);
  at::Tensor base = base_->embed(at::where(ids < v, ids, at::zeros_like(ids)));
  at::Tensor special =
      at::embedding(memory_embed_, at::where(ids > v, ids - (v + 1), at::zeros_like(ids))).to(base.scalar_type());
  // pad (= V) embeds as zeros; it only ever sits where nothing real attends to it.
  return at::where(is_base, base, at::where(is_special, special, at::zeros_like(base)));
}

std::string ParameterReport::to_string() const {
  std::ostringstream o;
  char pct[32];
  std::snprintf(pct, sizeof pct, "%.3f%%", 100.0 * share());
  o << "base model parameters: " << base << "\n"
    << "LoRA parameters:       " << lora << "\n"
    << "memory embeddings:     " << memory << "\n"
    << "trainable total:       " << trainable() << " (" << pct << " of the base model)";
  return o.str();
}

ParameterReport parameter_report(const ModelConfig& base, const IcaeConfig& icae) {
  ParameterReport r;
  r.base = base.parameter_count();
  r.lora = lora_parameter_count(base, icae.lora);
  r.memory = (icae.mem_size + 3) * base.hidden_size;
  return r;
}

}  // namespace icae
