// The encoder: multi-span compression of contexts into memory slots (adapter on).
#include <ATen/ATen.h>

#include "icae/core/icae.h"
#include "icae/util/error.h"

namespace icae {

at::Tensor Icae::compress(const std::vector<int64_t>& context, bool training) const {
  return compress_batch({context}, training).front();
}

std::vector<at::Tensor> Icae::compress_batch(const std::vector<std::vector<int64_t>>& contexts,
                                             bool training) const {
  CompressOptions o;
  o.training = training;
  return compress_batch(contexts, o);
}

std::vector<at::Tensor> Icae::compress_batch(const std::vector<std::vector<int64_t>>& contexts,
                                             const CompressOptions& options) const {
  const double rate = options.rate > 0 ? options.rate : config_.compression_rate;
  const int64_t k = config_.mem_size;
  // Every segment of every context becomes one row: [segment tokens, mem_1 .. mem_k, pad ...].
  // Right padding needs no attention mask: with causal attention no real position sees a pad.
  struct Row {
    size_t context;
    int64_t begin, length;
  };
  std::vector<Row> rows;
  std::vector<int64_t> segments_per_context;
  for (size_t c = 0; c < contexts.size(); ++c) {
    for (int64_t id : contexts[c])
      ICAE_CHECK(id >= 0 && id < ids_.vocab, ErrorKind::BadInput,
                 "context token id " + std::to_string(id) + " is not in the base vocab [0, " +
                     std::to_string(ids_.vocab) + ")");
    const SegmentPlan plan = plan_segments(static_cast<int64_t>(contexts[c].size()), k, rate);
    for (const auto& [b, e] : plan.ranges) rows.push_back({c, b, e - b});
    segments_per_context.push_back(plan.num_segments);
  }
  int64_t width = 0;
  for (const auto& r : rows) width = std::max(width, r.length + k);
  std::vector<int64_t> flat(rows.size() * width, ids_.pad);
  for (size_t i = 0; i < rows.size(); ++i) {
    const auto& r = rows[i];
    int64_t* row = flat.data() + i * width;
    std::copy(contexts[r.context].begin() + r.begin, contexts[r.context].begin() + r.begin + r.length, row);
    for (int64_t j = 0; j < k; ++j) row[r.length + j] = ids_.mem_first + j;
  }
  at::Tensor ids = at::tensor(flat, at::kLong).view({static_cast<int64_t>(rows.size()), width});
  // Each row's k memory positions in the flattened [rows, width] batch, in order.
  std::vector<int64_t> gather;
  for (size_t r = 0; r < rows.size(); ++r)
    for (int64_t j = 0; j < k; ++j) gather.push_back(static_cast<int64_t>(r) * width + rows[r].length + j);
  ForwardInput in;
  in.inputs_embeds = embed_mixed(ids);
  if (config_.spread_memory_positions) {
    // Text at 0..s-1; memory token j at the end of the j-th of k equal spans of the segment.
    std::vector<int64_t> pos(rows.size() * width);
    for (size_t i = 0; i < rows.size(); ++i) {
      const int64_t s = rows[i].length;
      int64_t* row = pos.data() + i * width;
      for (int64_t t = 0; t < width; ++t) row[t] = t;  // text (and pads, which nothing real sees)
      for (int64_t j = 0; j < k; ++j) row[s + j] = std::max<int64_t>(0, ((j + 1) * s + k - 1) / k - 1);
    }
    in.position_ids = at::tensor(pos, at::kLong).view({static_cast<int64_t>(rows.size()), width});
  }
  ForwardOptions opt;
  opt.lora = &lora_;
  opt.training = options.training;
  opt.generator = options.generator;
  opt.activation_checkpointing = options.activation_checkpointing;
  opt.compute_logits = false;
  at::Tensor slots;
  if (config_.slot_kind == SlotKind::KeyValue) {
    // Every layer's keys and values at the memory positions: [rows k, layers, 2, Hkv, D].
    KvCapture capture;
    capture.index = at::tensor(gather, at::kLong);
    opt.kv_capture = &capture;
    base_->forward(in, opt);
    slots = at::stack(capture.layers, 1);
  } else {
    at::Tensor hidden = base_->forward(in, opt).hidden;  // [rows, width, H]
    slots = hidden.reshape({-1, hidden.size(-1)})
                .index_select(0, at::tensor(gather, at::kLong).to(hidden.device()));  // [rows k, H]
    slots = projector_.apply(slots);
  }
  // The segments of each context, concatenated.
  std::vector<at::Tensor> out;
  int64_t row = 0;
  for (size_t c = 0; c < contexts.size(); ++c) {
    out.push_back(slots.narrow(0, row * k, segments_per_context[c] * k));
    row += segments_per_context[c];
  }
  return out;
}

}  // namespace icae
