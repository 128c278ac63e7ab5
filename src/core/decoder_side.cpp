// The decoder side (adapter off): embeddings of decoder sequences with slots, and the loss.
#include <ATen/ATen.h>

#include "icae/core/icae.h"
#include "icae/core/lm_head_loss.h"
#include "icae/util/error.h"

namespace icae {

at::Tensor Icae::decoder_embeddings(const std::vector<int64_t>& ids, const at::Tensor& slots) const {
  std::vector<int64_t> positions;
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] == ids_.mem_first) positions.push_back(static_cast<int64_t>(i));
  const int64_t n = slots.defined() ? slots.size(0) : 0;
  ICAE_CHECK(static_cast<int64_t>(positions.size()) == n, ErrorKind::BadInput,
             "decoder sequence has " + std::to_string(positions.size()) + " slot placeholders (id " +
                 std::to_string(ids_.mem_first) + ") but " + std::to_string(n) + " memory slots were given");
  at::Tensor e = embed_mixed(at::tensor(ids, at::kLong));  // [T, H]
  if (n == 0) return e;
  at::Tensor index = at::tensor(positions, at::kLong).to(e.device());
  // Slots may come from a file (CPU) while the model runs on a GPU.
  return e.index_put({index}, slots.to(e.device(), e.scalar_type()));
}

at::Tensor Icae::decoder_loss(const std::vector<int64_t>& ids, const std::vector<int64_t>& labels,
                              const at::Tensor& slots) const {
  return decoder_loss_batch({ids}, {labels}, {slots});
}

at::Tensor Icae::decoder_loss_batch(const std::vector<std::vector<int64_t>>& ids,
                                    const std::vector<std::vector<int64_t>>& labels,
                                    const std::vector<at::Tensor>& slots) const {
  return decoder_row_losses(ids, labels, slots).mean();
}

int64_t RowLosses::total() const {
  int64_t n = 0;
  for (int64_t c : counts) n += c;
  return n;
}

at::Tensor RowLosses::mean() const {
  ICAE_CHECK(total() > 0, ErrorKind::BadInput, "no labelled token in the batch: the loss is undefined");
  return sums.sum() / static_cast<double>(total());
}

RowLosses Icae::decoder_row_losses(const std::vector<std::vector<int64_t>>& ids,
                                   const std::vector<std::vector<int64_t>>& labels,
                                   const std::vector<at::Tensor>& slots, bool activation_checkpointing) const {
  ICAE_CHECK(ids.size() == labels.size() && ids.size() == slots.size() && !ids.empty(), ErrorKind::Usage,
             "decoder_loss_batch: ids, labels and slots must have the same, non-zero count");
  const int64_t v = base_->config().vocab_size;
  int64_t width = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    ICAE_CHECK(ids[i].size() == labels[i].size(), ErrorKind::BadInput,
               "decoder sequence and labels differ in length (" + std::to_string(ids[i].size()) + " vs " +
                   std::to_string(labels[i].size()) + ")");
    for (int64_t l : labels[i])
      ICAE_CHECK(l == -100 || (l >= 0 && l < v), ErrorKind::BadInput,
                 "label " + std::to_string(l) + " is outside the base vocab [0, " + std::to_string(v) + ")");
    width = std::max<int64_t>(width, static_cast<int64_t>(ids[i].size()));
  }
  // Right padding (zero embeddings): with causal attention nothing real sees it.
  RowLosses out;
  std::vector<at::Tensor> rows;
  std::vector<int64_t> positions, targets, row_of;  // position t predicts labels[t + 1]
  for (size_t i = 0; i < ids.size(); ++i) {
    at::Tensor e = decoder_embeddings(ids[i], slots[i]);
    const int64_t pad = width - e.size(0);
    if (pad > 0) e = at::cat({e, at::zeros({pad, e.size(1)}, e.options())}, 0);
    rows.push_back(e);
    int64_t count = 0;
    for (size_t t = 0; t + 1 < labels[i].size(); ++t)
      if (labels[i][t + 1] != -100) {
        positions.push_back(static_cast<int64_t>(i) * width + static_cast<int64_t>(t));
        targets.push_back(labels[i][t + 1]);
        row_of.push_back(static_cast<int64_t>(i));
        ++count;
      }
    out.counts.push_back(count);
  }
  ForwardInput in;
  in.inputs_embeds = at::stack(rows, 0);
  ForwardOptions fo;
  fo.compute_logits = false;
  fo.activation_checkpointing = activation_checkpointing;
  at::Tensor hidden = base_->forward(in, fo).hidden;  // [B, T, H]
  const at::Device dev = hidden.device();
  out.sums = at::zeros({static_cast<int64_t>(ids.size())}, hidden.options().dtype(at::kFloat));
  if (positions.empty()) return out;
  at::Tensor picked = hidden.reshape({-1, hidden.size(-1)}).index_select(0, at::tensor(positions, at::kLong).to(dev));
  // Over the base vocab, a chunk of rows at a time (lm_head_loss.h): no [N, V] logits in memory.
  at::Tensor ce = lm_head_cross_entropy(picked, base_->lm_head_weight(), at::tensor(targets, at::kLong));
  out.sums = out.sums.index_add(0, at::tensor(row_of, at::kLong).to(dev), ce);
  return out;
}

}  // namespace icae
