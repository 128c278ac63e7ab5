#include "icae/eval/golden_check.h"

#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/core/adapter_file.h"
#include "icae/infer/generate.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

double max_relative_error(const at::Tensor& a, const at::Tensor& b) {
  at::Tensor x = a.detach().to(at::kCPU).to(at::kDouble), y = b.detach().to(at::kCPU).to(at::kDouble);
  ICAE_CHECK(x.sizes() == y.sizes(), ErrorKind::Mismatch, "shapes differ in comparison");
  const double denom = y.abs().max().item<double>();
  const double diff = (x - y).abs().max().item<double>();
  return denom > 0 ? diff / denom : diff;
}

namespace {

std::vector<int64_t> to_ids(const at::Tensor& t) {
  at::Tensor c = t.reshape({-1}).to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

}  // namespace

GoldenReport check_golden(const std::string& dir, const GoldenCheckOptions& options) {
  GoldenReport report;
  nlohmann::json meta;
  {
    std::ifstream in(dir + "/meta.json");
    ICAE_CHECK(in.good(), ErrorKind::Io, dir + "/meta.json: cannot open");
    try {
      meta = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::BadInput, dir + "/meta.json: invalid JSON: " + e.what());
    }
  }
  const bool exact = options.dtype == at::kFloat;
  // Tolerances of the golden README for float32; bf16/f16 only have to be close.
  // Gradients pass through twice as many bf16 roundings (forward and backward): 1e-1 there.
  const double tensor_tol = exact ? 1e-4 : 2e-2, loss_tol = exact ? 1e-5 : 2e-2, grad_tol = exact ? 1e-4 : 1e-1;
  // Decoding from bf16 slots compounds two models' rounding: 5e-2 there.
  const double decode_tol = exact ? 1e-4 : 5e-2;
  auto add = [&](const std::string& name, double err, double tol, const std::string& detail = "") {
    report.items.push_back({name, err, tol, err <= tol, detail});
  };

  ModelLoadOptions lopts{options.device, options.dtype};
  auto base = std::make_shared<Transformer>(load_transformer(dir + "/base", lopts));
  TensorMap golden = load_safetensors(dir + "/golden.safetensors");
  auto g = [&](const std::string& name) -> at::Tensor {
    auto it = golden.find(name);
    ICAE_CHECK(it != golden.end(), ErrorKind::BadInput, dir + "/golden.safetensors: no tensor '" + name + "'");
    return it->second;
  };
  // What depends on the slot kind (slots, decoding, losses, gradients) comes from the kind's file;
  // ids and the base model's logits from golden.safetensors.
  TensorMap golden_for_slots;
  auto w = [&](const std::string& name) -> at::Tensor {
    if (golden_for_slots.empty()) return g(name);
    auto it = golden_for_slots.find(name);
    ICAE_CHECK(it != golden_for_slots.end(), ErrorKind::BadInput, options.kv_golden + ": no tensor '" + name + "'");
    return it->second;
  };
  const std::string slots_name = options.slot_kind == SlotKind::KeyValue ? "kv_slots" : "memory_slots";

  AdapterLoadOptions aopts;
  try {
    aopts.lora_alpha = meta.at("lora_alpha").get<double>();
    aopts.compression_rate = meta.at("mean_compression_rate").get<double>();
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, dir + "/meta.json: " + e.what());
  }
  LoadedAdapter loaded = load_adapter(dir + "/icae.safetensors", base, aopts);
  const bool kv = options.slot_kind == SlotKind::KeyValue;
  if (kv) {
    // The same trained tensors, read as a key/value-slot ICAE.
    ICAE_CHECK(!options.kv_golden.empty(), ErrorKind::Usage, "checking key/value slots needs their reference file");
    IcaeConfig c = loaded.icae->config();
    c.slot_kind = SlotKind::KeyValue;
    Icae& e = *loaded.icae;
    loaded.icae = std::make_unique<Icae>(base, c, e.lora(), e.memory_embed(), e.projector());
    golden_for_slots = load_safetensors(options.kv_golden);
  }
  Icae& icae = *loaded.icae;
  // The settings the file implies must be the ones meta.json states.
  {
    const int64_t k = meta.at("mem_size").get<int64_t>();
    const auto targets = meta.at("lora_target_modules").get<std::vector<std::string>>();
    auto sorted = [](std::vector<std::string> v) { std::sort(v.begin(), v.end()); return v; };
    const SpecialIds& s = icae.ids();
    const bool settings_ok = icae.config().mem_size == k && icae.config().lora.r == meta.at("lora_r").get<int64_t>() &&
                             sorted(icae.config().lora.target_modules) == sorted(targets) &&
                             s.pad == meta.at("pad_id").get<int64_t>() &&
                             s.mem_first == meta.at("mem_token_ids")[0].get<int64_t>() &&
                             s.mem_last == meta.at("mem_token_ids")[1].get<int64_t>() &&
                             s.ae == meta.at("ae_token_id").get<int64_t>() &&
                             s.lm == meta.at("lm_token_id").get<int64_t>() && s.ft == meta.at("ft_token_id").get<int64_t>();
    add("settings (k, r, targets, special ids)", settings_ok ? 0 : 1, 0,
        "k=" + std::to_string(icae.config().mem_size) + " r=" + std::to_string(icae.config().lora.r) +
            " alpha=" + std::to_string(icae.config().lora.alpha));
    const SegmentPlan plan = plan_segments(g("context_ids").numel(), k, icae.config().compression_rate);
    const bool plan_ok = plan.num_segments == meta.value("num_segments", plan.num_segments) &&
                         plan.segment_length == meta.value("segment_length", plan.segment_length);
    add("segments", plan_ok ? 0 : 1, 0,
        std::to_string(plan.num_segments) + " x " + std::to_string(plan.segment_length) + " tokens");
  }

  at::Tensor slots;
  {
    at::NoGradGuard no_grad;
    // 1. the base model alone
    at::Tensor ids = g("base_input_ids").to(at::kLong);
    ForwardInput in;
    in.input_ids = ids;
    at::Tensor logits = base->forward(in).logits.squeeze(0);
    add("base_logits", max_relative_error(logits, g("base_logits")), tensor_tol);
    // 2. compression, multi-span and single-span
    slots = icae.compress(to_ids(g("context_ids")));
    add(slots_name, max_relative_error(slots, w(slots_name)), tensor_tol);
    add(slots_name + "1", max_relative_error(icae.compress(to_ids(g("context1_ids"))), w(slots_name + "1")), tensor_tol);
    // 3. reconstruction: [slots, AE] then greedy steps with the KV cache
    std::vector<int64_t> prefix(slots.size(0), icae.ids().mem_first);
    prefix.push_back(icae.ids().ae);
    GenerateOptions gopts;
    gopts.max_new_tokens = w("ae_greedy_ids").numel();
    gopts.keep_logits = true;
    GenerateResult r = generate(*base, icae.decoder_input({prefix}, {slots}, Padding::Right).input, gopts);
    const std::vector<int64_t> want = to_ids(w("ae_greedy_ids"));
    if (exact) {
      add("ae_step_logits", max_relative_error(at::stack(r.logits, 0), w("ae_step_logits")), tensor_tol);
    } else {
      // In bf16 a near-tie can flip one greedy id and everything after it differs; compare the
      // step logits teacher-forced on the reference ids instead.
      std::vector<int64_t> forced = prefix;
      forced.insert(forced.end(), want.begin(), want.end() - 1);
      const DecoderInput fin = icae.decoder_input({forced}, {slots}, Padding::Right);
      // The positions that predict the reference ids: the AE token's and the forced ids' (never a slot).
      const int64_t first = fin.column[0][prefix.size() - 1];
      at::Tensor l = base->forward(fin.input).logits.squeeze(0).narrow(0, first, want.size());
      add("ae_step_logits (teacher-forced)", max_relative_error(l, w("ae_step_logits")), decode_tol);
    }
    int64_t mismatches = 0;
    for (size_t i = 0; i < want.size(); ++i) mismatches += (i >= r.ids.size() || r.ids[i] != want[i]);
    add("ae_greedy_ids", static_cast<double>(mismatches), exact ? 0 : static_cast<double>(want.size()),
        std::to_string(mismatches) + " of " + std::to_string(want.size()) + " differ");
  }

  // 4. the three objectives: loss and gradients, slots recomputed with gradients on
  icae.set_trainable(true);
  const std::vector<int64_t> context = to_ids(g("context_ids"));
  for (const std::string obj : {"ae", "lm", "ft"}) {
    for (auto& p : icae.trainable_parameters()) p.mutable_grad() = at::Tensor();
    at::Tensor s = icae.compress(context);
    at::Tensor loss = icae.decoder_loss(to_ids(g(obj + "_prompt_answer_ids")), to_ids(g(obj + "_labels")), s);
    loss.backward();
    add(obj + "_loss", max_relative_error(loss.reshape({1}), w(obj + "_loss")), loss_tol,
        "loss " + std::to_string(loss.item<double>()));
    add(obj + "_grad_memory_token_embed",
        max_relative_error(icae.memory_embed().grad(), w(obj + "_grad_memory_token_embed")), grad_tol);
    add(obj + "_grad_layer0_q_lora_A",
        max_relative_error(icae.lora().pair(0, Proj::Q).A.grad(), w(obj + "_grad_layer0_q_lora_A")), grad_tol);
  }
  icae.set_trainable(false);
  return report;
}

}  // namespace icae
