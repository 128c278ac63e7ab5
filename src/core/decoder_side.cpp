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
  ICAE_CHECK(config_.slot_kind == SlotKind::Embedding, ErrorKind::Unsupported,
             "this adapter's slots are keys and values, which the decoder reads from its cache: they have no "
             "input embeddings");
  ICAE_CHECK(n == 0 || slot_kind_of(slots) == SlotKind::Embedding, ErrorKind::Mismatch,
             "this adapter reads embedding slots [n, hidden], but key/value slots were given");
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

DecoderInput stack_embeddings(const std::vector<at::Tensor>& rows, Padding padding) {
  ICAE_CHECK(!rows.empty(), ErrorKind::Usage, "no rows to stack");
  const int64_t b = static_cast<int64_t>(rows.size());
  DecoderInput out;
  for (const auto& r : rows) out.width = std::max(out.width, r.size(0));
  const int64_t w = out.width;
  bool padded = false;
  std::vector<at::Tensor> full;
  std::vector<int64_t> offset(b);
  for (int64_t i = 0; i < b; ++i) {
    at::Tensor e = rows[i].to(rows[0].scalar_type());
    const int64_t n = e.size(0), pad = w - n;
    offset[i] = padding == Padding::Left ? pad : 0;
    padded = padded || pad > 0;
    out.length.push_back(n);
    out.column.emplace_back(n);
    for (int64_t j = 0; j < n; ++j) out.column[i][j] = offset[i] + j;
    if (pad > 0) {
      at::Tensor zeros = at::zeros({pad, e.size(1)}, e.options());
      e = padding == Padding::Left ? at::cat({zeros, e}, 0) : at::cat({e, zeros}, 0);
    }
    full.push_back(e);
  }
  out.input.inputs_embeds = at::stack(full, 0);
  if (padding == Padding::Left && padded) {
    const at::Device dev = rows[0].device();
    std::vector<int64_t> mask(b * w, 1), pos(b * w, 0);
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < w; ++j) {
        mask[i * w + j] = j >= offset[i];
        pos[i * w + j] = std::max<int64_t>(0, j - offset[i]);
      }
    out.input.attention_mask = at::tensor(mask, at::kLong).view({b, w}).to(dev);
    out.input.position_ids = at::tensor(pos, at::kLong).view({b, w}).to(dev);
  }
  return out;
}

int64_t DecoderInput::cache_positions() const {
  return width + (input.kv_prefix.defined() ? input.kv_prefix.size(1) : 0);
}

DecoderInput Icae::decoder_input(const std::vector<std::vector<int64_t>>& ids, const std::vector<at::Tensor>& slots,
                                 Padding padding) const {
  ICAE_CHECK(ids.size() == slots.size() && !ids.empty(), ErrorKind::Usage,
             "decoder_input: ids and slots must have the same, non-zero count");
  const int64_t b = static_cast<int64_t>(ids.size());
  if (config_.slot_kind == SlotKind::Embedding) {
    // Every position runs through the model, slots as input embeddings: a plain stack of rows.
    std::vector<at::Tensor> rows;
    for (int64_t i = 0; i < b; ++i) {
      ICAE_CHECK(!ids[i].empty(), ErrorKind::Usage, "a decoder sequence is empty");
      rows.push_back(decoder_embeddings(ids[i], slots[i]));
    }
    return stack_embeddings(rows, padding);
  }
  // Key/value slots: only the other positions run through the model.
  DecoderInput out;
  std::vector<std::vector<int64_t>> run(b), slot_at(b);  // token positions, slot positions
  for (int64_t i = 0; i < b; ++i) {
    ICAE_CHECK(!ids[i].empty(), ErrorKind::Usage, "a decoder sequence is empty");
    out.length.push_back(static_cast<int64_t>(ids[i].size()));
    for (size_t t = 0; t < ids[i].size(); ++t)
      (ids[i][t] == ids_.mem_first ? slot_at[i] : run[i]).push_back(static_cast<int64_t>(t));
    const int64_t have = slots[i].defined() && slots[i].numel() > 0 ? slots[i].size(0) : 0;
    ICAE_CHECK(have == 0 || slot_kind_of(slots[i]) == SlotKind::KeyValue, ErrorKind::Mismatch,
               "this adapter reads key/value slots, but embedding slots [n, hidden] were given");
    ICAE_CHECK(static_cast<int64_t>(slot_at[i].size()) == have, ErrorKind::BadInput,
               "decoder sequence has " + std::to_string(slot_at[i].size()) + " slot placeholders (id " +
                   std::to_string(ids_.mem_first) + ") but " + std::to_string(have) + " memory slots were given");
    ICAE_CHECK(!run[i].empty(), ErrorKind::BadInput, "a decoder sequence needs a token besides its slots");
    // Generation continues from the last position's output, which a key/value slot does not have.
    ICAE_CHECK(padding == Padding::Right || ids[i].back() != ids_.mem_first, ErrorKind::BadInput,
               "a decoder prefix to generate from must end with a token, not a key/value slot");
    out.width = std::max<int64_t>(out.width, static_cast<int64_t>(run[i].size()));
  }
  const int64_t w = out.width;
  bool padded = false;
  std::vector<int64_t> offset(b);  // where row i's first run position sits
  out.column.resize(b);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = static_cast<int64_t>(run[i].size());
    offset[i] = padding == Padding::Left ? w - n : 0;
    padded = padded || n != w;
    out.column[i].assign(ids[i].size(), -1);
    for (int64_t j = 0; j < n; ++j) out.column[i][run[i][j]] = offset[i] + j;
  }
  // Embeddings of the token positions, padded as asked.
  std::vector<at::Tensor> rows;
  for (int64_t i = 0; i < b; ++i) {
    std::vector<int64_t> picked;
    for (int64_t t : run[i]) picked.push_back(ids[i][t]);
    rows.push_back(embed_mixed(at::tensor(picked, at::kLong)));
  }
  out.input.inputs_embeds = stack_embeddings(rows, padding).input.inputs_embeds;
  const at::Device dev = base_->device();
  // Key/value slots: [B, P, layers, 2, Hkv, D] at their placeholders' positions; every run
  // position at its own position in the sequence.
  int64_t p = 0;
  for (int64_t i = 0; i < b; ++i) p = std::max<int64_t>(p, static_cast<int64_t>(slot_at[i].size()));
  const ModelConfig& mc = base_->config();
  std::vector<at::Tensor> prefix;
  std::vector<int64_t> slot_pos(b * p, 0), pos(b * w, 0), valid(b * (p + w), 0);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t n = static_cast<int64_t>(slot_at[i].size());
    at::Tensor s = n > 0 ? slots[i].to(dev, base_->dtype())
                         : at::zeros({0, mc.num_hidden_layers, 2, mc.num_key_value_heads, mc.head_dim},
                                     at::TensorOptions().device(dev).dtype(base_->dtype()));
    if (n < p) {
      std::vector<int64_t> shape = s.sizes().vec();
      shape[0] = p - n;
      s = at::cat({s, at::zeros(shape, s.options())}, 0);
    }
    prefix.push_back(s);
    for (int64_t j = 0; j < n; ++j) {
      slot_pos[i * p + j] = slot_at[i][j];
      valid[i * (p + w) + j] = 1;
    }
    for (size_t j = 0; j < run[i].size(); ++j) {
      pos[i * w + offset[i] + static_cast<int64_t>(j)] = run[i][j];
      valid[i * (p + w) + p + offset[i] + static_cast<int64_t>(j)] = 1;
    }
    padded = padded || n != p;
  }
  out.input.kv_prefix = at::stack(prefix, 0);
  out.input.kv_prefix_positions = at::tensor(slot_pos, at::kLong).view({b, p}).to(dev);
  out.input.position_ids = at::tensor(pos, at::kLong).view({b, w}).to(dev);
  if (padded) out.input.attention_mask = at::tensor(valid, at::kLong).view({b, p + w}).to(dev);
  return out;
}

RowLosses Icae::decoder_row_losses(const std::vector<std::vector<int64_t>>& ids,
                                   const std::vector<std::vector<int64_t>>& labels,
                                   const std::vector<at::Tensor>& slots, bool activation_checkpointing) const {
  ICAE_CHECK(ids.size() == labels.size() && ids.size() == slots.size() && !ids.empty(), ErrorKind::Usage,
             "decoder_loss_batch: ids, labels and slots must have the same, non-zero count");
  const int64_t v = base_->config().vocab_size;
  for (size_t i = 0; i < ids.size(); ++i) {
    ICAE_CHECK(ids[i].size() == labels[i].size(), ErrorKind::BadInput,
               "decoder sequence and labels differ in length (" + std::to_string(ids[i].size()) + " vs " +
                   std::to_string(labels[i].size()) + ")");
    for (int64_t l : labels[i])
      ICAE_CHECK(l == -100 || (l >= 0 && l < v), ErrorKind::BadInput,
                 "label " + std::to_string(l) + " is outside the base vocab [0, " + std::to_string(v) + ")");
  }
  const DecoderInput d = decoder_input(ids, slots, Padding::Right);
  RowLosses out;
  std::vector<int64_t> positions, targets, row_of;  // position t predicts labels[t + 1]
  for (size_t i = 0; i < ids.size(); ++i) {
    int64_t count = 0;
    for (size_t t = 0; t + 1 < labels[i].size(); ++t)
      if (labels[i][t + 1] != -100) {
        const int64_t col = d.column[i][t];
        ICAE_CHECK(col >= 0, ErrorKind::BadInput,
                   "label at position " + std::to_string(t + 1) + " follows a key/value slot, which has no output");
        positions.push_back(static_cast<int64_t>(i) * d.width + col);
        targets.push_back(labels[i][t + 1]);
        row_of.push_back(static_cast<int64_t>(i));
        ++count;
      }
    out.counts.push_back(count);
  }
  ForwardOptions fo;
  fo.compute_logits = false;
  fo.activation_checkpointing = activation_checkpointing;
  at::Tensor hidden = base_->forward(d.input, fo).hidden;  // [B, T, H]
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
