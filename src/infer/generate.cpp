#include "icae/infer/generate.h"

#include <ATen/ATen.h>

#include "icae/model/kv_cache.h"
#include "icae/model/transformer.h"
#include "icae/util/error.h"

namespace icae {

GenerateResult generate(const Transformer& model, const at::Tensor& prefix_embeds, const GenerateOptions& options) {
  ICAE_CHECK(prefix_embeds.dim() == 2 && prefix_embeds.size(0) > 0, ErrorKind::Usage,
             "generate needs a non-empty prefix [T, H]");
  ForwardInput in;
  in.inputs_embeds = prefix_embeds.unsqueeze(0);
  return generate(model, in, options);
}

GenerateResult generate(const Transformer& model, const ForwardInput& in, const GenerateOptions& options) {
  ICAE_CHECK(in.inputs_embeds.defined() && in.inputs_embeds.size(0) == 1, ErrorKind::Usage,
             "generate needs a one-row prefix of embeddings");
  RowDecoder row(options);
  if (row.done()) return row.take();  // max_new_tokens 0: no prefill either
  at::NoGradGuard no_grad;
  KVCacheOptions copts;
  copts.batch = 1;
  copts.max_length = in.inputs_embeds.size(1) + (in.kv_prefix.defined() ? in.kv_prefix.size(1) : 0) +
                     options.max_new_tokens;
  copts.device = model.device();
  copts.dtype = model.dtype();
  KVCache cache(model.config(), copts);
  ForwardOptions fopt;
  fopt.cache = &cache;
  fopt.last_position_only = true;
  at::Tensor logits = model.forward(in, fopt).logits.view({-1});
  while (!row.accept(logits)) {
    ForwardInput next;
    next.input_ids = at::full({1, 1}, row.last(), at::kLong);
    logits = model.forward(next, fopt).logits.view({-1});
  }
  return row.take();
}

GenerateResult generate_from_ids(const Transformer& model, const std::vector<int64_t>& prompt_ids,
                                 const GenerateOptions& options) {
  ICAE_CHECK(!prompt_ids.empty(), ErrorKind::Usage, "generate needs at least one prompt token");
  at::NoGradGuard no_grad;
  return generate(model, model.embed(at::tensor(prompt_ids, at::kLong)), options);
}

}  // namespace icae
