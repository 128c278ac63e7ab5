// The In-context Autoencoder: one frozen base model, a LoRA adapter (switched on for encoding)
// and k + 3 learnable embeddings (memory tokens, then AE, LM, FT). Token id layout as in the
// original code, so released checkpoints load unchanged:
//   V = base vocab size, pad = V, memory tokens V+1 .. V+k, AE = V+1+k, LM = AE+1, FT = AE+2;
//   row i of memory_token_embed serves id V+1+i.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "icae/core/projector.h"
#include "icae/core/slot_kind.h"
#include "icae/model/lora.h"
#include "icae/model/transformer.h"

namespace icae {

struct SpecialIds {
  int64_t vocab = 0;       // V: ids below are the base model's own
  int64_t pad = 0;         // V
  int64_t mem_first = 0;   // V + 1: also the decoder's slot placeholder
  int64_t mem_last = 0;    // V + k
  int64_t ae = 0, lm = 0, ft = 0;
  static SpecialIds make(int64_t vocab_size, int64_t mem_size);
  bool is_special(int64_t id) const { return id >= vocab; }
};

struct IcaeConfig {
  int64_t mem_size = 128;          // k: memory slots per segment
  double compression_rate = 4.0;   // mean tokens per slot; segments of at most k * rate tokens
  LoraConfig lora;
  ProjectorKind projector = ProjectorKind::None;  // slots -> decoder inputs (see projector.h)
  SlotKind slot_kind = SlotKind::Embedding;        // what a slot is (slot_kind.h); kv: no projector
  // The encoder's position ids of the k memory tokens of a segment of s tokens: after it
  // (s .. s+k-1, the original's), or spread evenly over it (token j at ceil((j+1) s / k) - 1, the
  // end of the span it stands for: EPL, "Extending Position Ids", arXiv 2409.14364; opt-in).
  bool spread_memory_positions = false;
};

struct CompressOptions {
  bool training = false;              // LoRA dropout on
  at::Generator* generator = nullptr; // dropout's random stream (nullptr: the global one)
  double rate = 0;                    // tokens per slot for this call; 0: the config's rate
  bool activation_checkpointing = false;
};

// Which end of a batch's shorter rows takes the padding: the right for losses (the rows start
// together), the left for generation (the rows' last prefix tokens share a column).
enum class Padding { Right, Left };

// A batch of decoder sequences (ids with slot placeholders) as one forward's input. Embedding
// slots take their placeholders' places among the input embeddings; key/value slots become the
// forward's kv_prefix at their placeholders' positions, and only the other ids run through the
// model. column[i][t] is where position t of row i sits in the forward's [B, width] output (-1:
// a key/value slot, which has no output). length[i] is row i's number of positions (slots
// included): where its next token goes.
struct DecoderInput {
  ForwardInput input;
  std::vector<std::vector<int64_t>> column;
  std::vector<int64_t> length;
  int64_t width = 0;
  int64_t cache_positions() const;  // positions a KV cache holds after this prefill (slots + width)
};

// Rows of input embeddings [T_i, H] as one batch: right padding with zeros (nothing real sees a
// pad under causal attention), or left padding with the pads masked and positions counted from
// each row's first real token.
DecoderInput stack_embeddings(const std::vector<at::Tensor>& rows, Padding padding);

// Per-row sums of the decoder's token losses (for AE / LM / FT losses of one mixed batch).
struct RowLosses {
  at::Tensor sums;              // [B] float32, differentiable
  std::vector<int64_t> counts;  // labelled tokens per row
  int64_t total() const;
  at::Tensor mean() const;      // sums.sum() / total(): the batch's token-level mean
};

// How a context of L tokens is cut: n = ceil(L / (k r)) segments of s = ceil(L / n) tokens
// (the last one shorter when L is not a multiple of n).
struct SegmentPlan {
  int64_t num_segments = 0;
  int64_t segment_length = 0;
  std::vector<std::pair<int64_t, int64_t>> ranges;  // [begin, end) per segment
};
SegmentPlan plan_segments(int64_t context_length, int64_t mem_size, double compression_rate);

class Icae {
 public:
  // A new ICAE: memory embeddings drawn like the base embeddings' scale (normal, std of the
  // base embedding), LoRA A Kaiming-uniform, B zero. Seeded, so reproducible.
  Icae(std::shared_ptr<const Transformer> base, IcaeConfig config, uint64_t seed = 0);
  // An ICAE with given tensors (from a checkpoint): shapes are checked against the base.
  Icae(std::shared_ptr<const Transformer> base, IcaeConfig config, LoraAdapter lora, at::Tensor memory_embed,
       SlotProjector projector = {});

  const Transformer& base() const { return *base_; }
  std::shared_ptr<const Transformer> base_ptr() const { return base_; }
  const IcaeConfig& config() const { return config_; }
  const SpecialIds& ids() const { return ids_; }
  LoraAdapter& lora() { return lora_; }
  const LoraAdapter& lora() const { return lora_; }
  at::Tensor& memory_embed() { return memory_embed_; }            // [k + 3, H]
  const at::Tensor& memory_embed() const { return memory_embed_; }
  SlotProjector& projector() { return projector_; }
  const SlotProjector& projector() const { return projector_; }
  // Sets the linear projector's initial scale s = mean |base embedding row| / mean |raw slot| on
  // these contexts (no-op without a projector). Returns s.
  double calibrate_projector(const std::vector<std::vector<int64_t>>& contexts);

  // Trainable tensors (LoRA, then memory embeddings, then the projector's) under their file names.
  std::vector<at::Tensor> trainable_parameters() const;
  std::vector<std::pair<std::string, at::Tensor>> named_trainable() const;
  void set_trainable(bool on);
  void set_lora_dropout(double p) {
    config_.lora.dropout = p;
    lora_.set_dropout(p);
  }

  // --- Encoder (adapter on) ---
  // Memory slots of one context (token ids of the base vocab), segments in order: [n k, H]
  // (embedding slots) or [n k, layers, 2, kv_heads, head_dim] (key/value slots; slot_kind.h).
  at::Tensor compress(const std::vector<int64_t>& context, bool training = false) const;
  // Several contexts at once: all their segments run as one right-padded batch. Equal to
  // compressing each alone (up to float rounding).
  std::vector<at::Tensor> compress_batch(const std::vector<std::vector<int64_t>>& contexts,
                                         bool training = false) const;
  std::vector<at::Tensor> compress_batch(const std::vector<std::vector<int64_t>>& contexts,
                                         const CompressOptions& options) const;

  // --- Decoder (adapter off) ---
  // Embeddings [T, H] for a decoder id sequence: base ids embed normally, each placeholder
  // (V+1) takes the next slot in order, AE/LM/FT take their rows; pad (V) embeds as zeros.
  at::Tensor decoder_embeddings(const std::vector<int64_t>& ids, const at::Tensor& slots) const;
  // Mean cross-entropy of logits[:-1] (base vocab) against labels[1:], ignoring -100.
  at::Tensor decoder_loss(const std::vector<int64_t>& ids, const std::vector<int64_t>& labels,
                          const at::Tensor& slots) const;
  // Batched form of decoder_loss: rows padded on the right, the mean over all labelled tokens.
  at::Tensor decoder_loss_batch(const std::vector<std::vector<int64_t>>& ids,
                                const std::vector<std::vector<int64_t>>& labels,
                                const std::vector<at::Tensor>& slots) const;
  // The same batch, per-row loss sums: logits only at labelled positions (the LM head is the
  // largest matmul of a small model; slot and prompt positions need none).
  RowLosses decoder_row_losses(const std::vector<std::vector<int64_t>>& ids,
                               const std::vector<std::vector<int64_t>>& labels,
                               const std::vector<at::Tensor>& slots, bool activation_checkpointing = false) const;

  // Any batch of decoder sequences with either kind of slots, as one forward's input (see
  // DecoderInput). slots[i] may be undefined or empty for rows without placeholders.
  DecoderInput decoder_input(const std::vector<std::vector<int64_t>>& ids, const std::vector<at::Tensor>& slots,
                             Padding padding) const;

  // Embeddings of ids that may include memory/special ids (encoder input).
  at::Tensor embed_mixed(const at::Tensor& ids) const;

 private:
  std::shared_ptr<const Transformer> base_;
  IcaeConfig config_;
  SpecialIds ids_;
  LoraAdapter lora_;
  at::Tensor memory_embed_;
  SlotProjector projector_;
};

// Parameter report: trainable tensors of an ICAE on a base config, and their share of it.
struct ParameterReport {
  int64_t base = 0, lora = 0, memory = 0;
  int64_t trainable() const { return lora + memory; }
  double share() const { return base ? static_cast<double>(trainable()) / static_cast<double>(base) : 0.0; }
  std::string to_string() const;
};
ParameterReport parameter_report(const ModelConfig& base, const IcaeConfig& icae);

}  // namespace icae
