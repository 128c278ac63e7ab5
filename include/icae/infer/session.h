// An inference session: the per-run state of using a (base model, ICAE adapter) pair, apart from
// their weights — in the spirit of llama.cpp's llama_context. The weights (TextModel, adapter)
// are shared, read-only, by any number of sessions (an HTTP server holds one model and one
// session per connection); a session owns its sampler settings, stop ids and a KV cache that
// is reused from one call to the next.
//
// What it does:
//   compress(contexts)       -> memory slots, several contexts in one batched encoder pass
//   reconstruct(slots)       -> [slots, AE] decoded: the context back
//   answer(slots, prompt)    -> the adapter's FT template around [slots, FT, prompt], decoded
//   generate(prompt)         -> the base model alone, no slots
//   run(rows)                -> any mix of the above decoded together as one batch (left padding,
//                               attention mask, position ids), each row with its own length and
//                               stops; row for row equal to decoding it alone
// (For rows that join and leave a batch while it runs — a server's — see decode_batch.h.)
// Every call streams through an optional callback and samples greedily unless told otherwise;
// sampled runs seed every row's sampler from SamplingOptions::seed, so a call is reproducible.
// A session is used by one thread at a time; the weights it shares are only read.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "icae/core/adapter_file.h"
#include "icae/core/prompt_layout.h"
#include "icae/infer/generate.h"
#include "icae/infer/row_decoder.h"
#include "icae/infer/slot_file.h"
#include "icae/infer/text_model.h"

namespace icae {

class KVCache;

struct SessionOptions {
  SamplingOptions sampling;          // temperature 0: greedy
  int64_t max_new_tokens = 256;      // per row, unless the row says otherwise
  std::vector<int64_t> stop_ids;     // added to the model's own (EOS, end of turn)
  bool use_model_stop_ids = true;
  std::string ft_template;           // "": the adapter's (AdapterInfo::chat_template)
  std::string system;                // system text for templates that take one (chatml)
};

// One row to decode: a decoder prefix (ids; each placeholder SpecialIds::mem_first takes the
// next slot in order) with its slots, and per-row limits.
struct DecodeRow {
  std::vector<int64_t> prefix;
  at::Tensor slots;                           // [n, H] or undefined (no placeholders)
  std::optional<int64_t> max_new_tokens;      // default SessionOptions::max_new_tokens
  std::optional<std::vector<int64_t>> stop_ids;  // replaces the session's stop ids for this row
};

using RowTokenCallback = std::function<bool(size_t row, int64_t id)>;

class Session {
 public:
  // adapter may be null: then only generate() and run() on rows without slots work.
  Session(std::shared_ptr<const TextModel> model, std::shared_ptr<const LoadedAdapter> adapter,
          SessionOptions options = {});
  ~Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;

  const TextModel& model() const { return *model_; }
  const Transformer& base() const { return *model_->model; }
  bool has_adapter() const { return adapter_ != nullptr; }
  const Icae& icae() const;                  // throws Usage without an adapter
  const LoadedAdapter& adapter() const;
  SessionOptions& options() { return options_; }
  const SessionOptions& options() const { return options_; }

  // --- text <-> ids (need the model's tokenizer)
  std::vector<int64_t> tokenize(const std::string& text) const;
  std::string detokenize(const std::vector<int64_t>& ids) const;

  // --- the encoder
  std::vector<at::Tensor> compress(const std::vector<std::vector<int64_t>>& contexts) const;
  std::vector<at::Tensor> compress_texts(const std::vector<std::string>& texts) const;
  at::Tensor compress(const std::string& text) const;

  // --- the same as Slots (icae/infer/slot_file.h): slots that know their kind, k, the tokens
  // they stand for and the fingerprints of this base model and adapter — what to keep, save or
  // hand on. Ops given Slots check that they fit this adapter first (Mismatch, naming the misfit).
  std::vector<Slots> compress_slots(const std::vector<std::string>& texts) const;
  Slots compress_slots(const std::string& text) const;
  std::vector<Slots> compress_slots(const std::vector<std::vector<int64_t>>& contexts) const;
  // The tensor of slots checked against this adapter, on its device and in its dtype.
  at::Tensor fit(const Slots& slots) const;
  DecodeRow reconstruct_row(const Slots& slots) const { return reconstruct_row(fit(slots)); }
  DecodeRow answer_row(const Slots& slots, const std::string& prompt) const { return answer_row(fit(slots), prompt); }
  Completion reconstruct(const Slots& slots, const TokenCallback& on_token = {}) {
    return reconstruct(fit(slots), on_token);
  }
  Completion answer(const Slots& slots, const std::string& prompt, const TokenCallback& on_token = {}) {
    return answer(fit(slots), prompt, on_token);
  }

  // --- decoder prefixes (what the ops below decode)
  DecodeRow reconstruct_row(const at::Tensor& slots) const;
  DecodeRow answer_row(const at::Tensor& slots, const std::vector<int64_t>& prompt) const;
  DecodeRow answer_row(const at::Tensor& slots, const std::string& prompt) const;
  DecodeRow generate_row(const std::vector<int64_t>& prompt) const;
  // The FT template this session answers with (options' name, else the adapter's).
  FtTemplate ft_template() const;

  // --- the decoder
  Completion reconstruct(const at::Tensor& slots, const TokenCallback& on_token = {});
  Completion answer(const at::Tensor& slots, const std::string& prompt, const TokenCallback& on_token = {});
  Completion answer(const at::Tensor& slots, const std::vector<int64_t>& prompt, const TokenCallback& on_token = {});
  Completion generate(const std::vector<int64_t>& prompt, const TokenCallback& on_token = {});
  Completion generate(const std::string& prompt, const TokenCallback& on_token = {});
  // Decodes the rows together, one batch. Row i of the result equals run({rows[i]}) (up to
  // float rounding: greedy ids are the same unless two logits tie within it).
  std::vector<Completion> run(const std::vector<DecodeRow>& rows, const RowTokenCallback& on_token = {});

  // Bytes of keys and values the last decode stored (positions in use, all rows and layers),
  // and the bytes the cache has allocated (it is kept for the next call while it fits).
  int64_t kv_cache_bytes() const;
  int64_t kv_cache_capacity_bytes() const;
  void release_cache();

  // The rows' prefixes as one left-padded prefill (either kind of slots; Icae::decoder_input).
  DecoderInput decoder_input(const std::vector<DecodeRow>& rows) const;

 private:
  KVCache& cache_for(int64_t batch, int64_t length);

  std::shared_ptr<const TextModel> model_;
  std::shared_ptr<const LoadedAdapter> adapter_;
  SessionOptions options_;
  std::unique_ptr<KVCache> cache_;
};

}  // namespace icae
