// The cross-entropy of the language-model head over the whole vocabulary, in chunks of rows:
// never the [N, V] logits of a batch at once (SmolLM2: 1,024 labelled positions x 49,152 = 200 MB
// in float32, plus as much again for log_softmax and its backward).
#pragma once
#include <ATen/ATen.h>

namespace icae {

struct LmHeadLossOptions {
  // Rows per chunk: about this many logits (float32) at a time. 0: the default, 8M (32 MB).
  int64_t chunk_elements = 0;
};

// ce[r] = logsumexp(logits[r]) - logits[r, targets[r]] with logits = hidden @ weight^T computed in
// hidden's dtype (as the model's lm_head rounds them) and taken to float32: what
// cross_entropy(lm_head(hidden).float(), targets, reduction none) gives, up to float rounding.
// hidden [N, H], weight [V, H] (frozen: no gradient flows to it), targets [N] (long, in [0, V)).
// Returns ce [N] float32. With gradients on and hidden requiring them, the gradient with respect
// to hidden is formed chunk by chunk during this call (softmax - one-hot, times weight) and only
// scaled by the incoming per-row gradient in backward: no logits are kept or recomputed.
at::Tensor lm_head_cross_entropy(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                                 const LmHeadLossOptions& options = {});

}  // namespace icae
