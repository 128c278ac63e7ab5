#include "icae/train/step.h"

#include <ATen/ATen.h>

#include <chrono>
#include <cmath>

#include "icae/train/distributed.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

namespace icae::train {

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::LM: return "lm";
    case Objective::FT: return "ft";
    default: return "ae";
  }
}

namespace {

int64_t labelled(const Sample& s) {
  int64_t n = 0;
  for (size_t t = 1; t < s.seq.labels.size(); ++t) n += s.seq.labels[t] != -100;
  return n;
}

// Forward of one micro-batch; adds per-objective loss sums (detached) to `stats`; returns the
// sum of its token losses (differentiable when grad mode is on).
at::Tensor micro_batch_loss(const Icae& icae, const MicroBatch& mb, double rate, bool training, at::Generator* gen,
                            bool checkpointing, StepStats& stats, double (&sum_by)[3]) {
  std::vector<std::vector<int64_t>> contexts, ids, labels;
  for (const auto& s : mb) {
    contexts.push_back(s.seq.context);
    ids.push_back(s.seq.ids);
    labels.push_back(s.seq.labels);
    stats.context_tokens += static_cast<int64_t>(s.seq.context.size());
  }
  CompressOptions co;
  co.training = training;
  co.generator = gen;
  co.rate = rate;
  co.activation_checkpointing = checkpointing;
  const std::vector<at::Tensor> slots = icae.compress_batch(contexts, co);
  RowLosses rl = icae.decoder_row_losses(ids, labels, slots, checkpointing);
  at::Tensor sums = rl.sums.detach().to(at::kCPU).to(at::kDouble).contiguous();
  const double* p = sums.data_ptr<double>();
  for (size_t i = 0; i < mb.size(); ++i) {
    const int k = static_cast<int>(mb[i].kind);
    sum_by[k] += p[i];
    stats.tokens_by[k] += rl.counts[i];
  }
  return rl.sums.sum();
}

void finish(StepStats& s, const double (&sum_by)[3]) {
  const int64_t total = s.tokens_by[0] + s.tokens_by[1] + s.tokens_by[2];
  s.loss = total ? (sum_by[0] + sum_by[1] + sum_by[2]) / static_cast<double>(total) : 0.0;
  for (int k = 0; k < 3; ++k) s.loss_by[k] = s.tokens_by[k] ? sum_by[k] / static_cast<double>(s.tokens_by[k]) : 0.0;
}

}  // namespace

StepStats train_step(Icae& icae, AdamW& optimizer, const std::vector<MicroBatch>& micro_batches,
                     const StepConfig& config) {
  ICAE_CHECK(!micro_batches.empty(), ErrorKind::Usage, "train_step needs at least one micro-batch");
  const auto t0 = std::chrono::steady_clock::now();
  // The update's token count first: each micro-batch's loss is divided by it, so the gradients
  // add up to those of one batch holding every sample.
  int64_t total = 0;
  for (const auto& mb : micro_batches)
    for (const auto& s : mb) total += labelled(s);
  // Data-parallel: the token count of the whole update (all ranks), so that after summing the
  // ranks' gradients the update equals one rank holding every sample.
  if (config.comm) total = static_cast<int64_t>(config.comm->all_reduce_sum({static_cast<double>(total)})[0]);
  ICAE_CHECK(total > 0, ErrorKind::BadInput, "no labelled token in this update");
  StepStats stats;
  double sum_by[3] = {0, 0, 0};
  optimizer.zero_grad();
  for (const auto& mb : micro_batches) {
    at::Tensor loss = micro_batch_loss(icae, mb, config.rate, true, config.generator, config.activation_checkpointing, stats, sum_by) /
                      static_cast<double>(total);
    loss.backward();
  }
  std::vector<at::Tensor> params;
  for (const auto& p : optimizer.params()) params.push_back(p.param);
  if (config.comm) {
    std::vector<at::Tensor> grads;
    for (auto& p : params) {
      if (!p.grad().defined()) p.mutable_grad() = at::zeros_like(p);
      grads.push_back(p.grad());
    }
    config.comm->all_reduce_tensors(grads);
    // The update's statistics over all ranks, so that every rank logs (and decides) the same.
    auto v = config.comm->all_reduce_sum({sum_by[0], sum_by[1], sum_by[2], static_cast<double>(stats.tokens_by[0]),
                                          static_cast<double>(stats.tokens_by[1]), static_cast<double>(stats.tokens_by[2]),
                                          static_cast<double>(stats.context_tokens)});
    for (int k = 0; k < 3; ++k) {
      sum_by[k] = v[k];
      stats.tokens_by[k] = static_cast<int64_t>(v[3 + k]);
    }
    stats.context_tokens = static_cast<int64_t>(v[6]);
  }
  finish(stats, sum_by);
  stats.grad_norm = clip_grad_norm(params, config.clip);
  stats.finite = std::isfinite(stats.loss) && std::isfinite(stats.grad_norm);
  if (stats.finite && config.update) optimizer.step(config.lr_factor);
  synchronize(icae.base().device());
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

StepStats eval_losses(const Icae& icae, const std::vector<MicroBatch>& micro_batches, double rate) {
  at::NoGradGuard no_grad;
  const auto t0 = std::chrono::steady_clock::now();
  StepStats stats;
  double sum_by[3] = {0, 0, 0};
  for (const auto& mb : micro_batches)
    if (!mb.empty()) micro_batch_loss(icae, mb, rate, false, nullptr, false, stats, sum_by);
  finish(stats, sum_by);
  stats.finite = std::isfinite(stats.loss);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace icae::train
