// The decoder side (adapter off): embeddings of decoder sequences with slots, and the loss.
#include <ATen/ATen.h>

#include "icae/core/icae.h"
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
  return e.index_put({index}, slots.to(e.scalar_type()));
}

at::Tensor Icae::decoder_loss(const std::vector<int64_t>& ids, const std::vector<int64_t>& labels,
                              const at::Tensor& slots) const {
  return decoder_loss_batch({ids}, {labels}, {slots});
}

at::Tensor Icae::decoder_loss_batch(const std::vector<std::vector<int64_t>>& ids,
                                    const std::vector<std::vector<int64_t>>& labels,
                                    const std::vector<at::Tensor>& slots) const {
  ICAE_CHECK(ids.size() == labels.size() && ids.size() == slots.size() && !ids.empty(), ErrorKind::Usage,
             "decoder_loss_batch: ids, labels and slots must have the same, non-zero count");
  int64_t width = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    ICAE_CHECK(ids[i].size() == labels[i].size(), ErrorKind::BadInput,
               "decoder sequence and labels differ in length (" + std::to_string(ids[i].size()) + " vs " +
                   std::to_string(labels[i].size()) + ")");
    width = std::max<int64_t>(width, static_cast<int64_t>(ids[i].size()));
  }
  // Right padding (zero embeddings, label -100): with causal attention nothing real sees it.
  std::vector<at::Tensor> rows;
  std::vector<int64_t> flat_labels(ids.size() * width, -100);
  for (size_t i = 0; i < ids.size(); ++i) {
    at::Tensor e = decoder_embeddings(ids[i], slots[i]);
    const int64_t pad = width - e.size(0);
    if (pad > 0) e = at::cat({e, at::zeros({pad, e.size(1)}, e.options())}, 0);
    rows.push_back(e);
    std::copy(labels[i].begin(), labels[i].end(), flat_labels.begin() + i * width);
  }
  ForwardInput in;
  in.inputs_embeds = at::stack(rows, 0);
  at::Tensor logits = base_->forward(in).logits;  // [B, T, V] over the base vocab only
  const int64_t v = logits.size(-1);
  at::Tensor lab = at::tensor(flat_labels, at::kLong).view({static_cast<int64_t>(ids.size()), width}).to(logits.device());
  at::Tensor shifted_logits = logits.narrow(1, 0, width - 1).reshape({-1, v}).to(at::kFloat);
  at::Tensor shifted_labels = lab.narrow(1, 1, width - 1).reshape({-1});
  for (int64_t l : flat_labels)
    ICAE_CHECK(l == -100 || (l >= 0 && l < v), ErrorKind::BadInput,
               "label " + std::to_string(l) + " is outside the base vocab [0, " + std::to_string(v) + ")");
  return at::cross_entropy_loss(shifted_logits, shifted_labels, {}, at::Reduction::Mean, -100);
}

}  // namespace icae
