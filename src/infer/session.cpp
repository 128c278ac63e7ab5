#include "icae/infer/session.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "icae/model/kv_cache.h"
#include "icae/util/error.h"

namespace icae {

Session::Session(std::shared_ptr<const TextModel> model, std::shared_ptr<const LoadedAdapter> adapter,
                 SessionOptions options)
    : model_(std::move(model)), adapter_(std::move(adapter)), options_(std::move(options)) {
  ICAE_CHECK(model_ && model_->model, ErrorKind::Usage, "a session needs a loaded base model");
  ICAE_CHECK(!adapter_ || adapter_->icae, ErrorKind::Usage, "a session's adapter must be loaded");
  ICAE_CHECK(!adapter_ || &adapter_->icae->base() == model_->model.get(), ErrorKind::Usage,
             "the adapter was loaded onto another base model object than the session's");
}

Session::~Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;

const Icae& Session::icae() const {
  ICAE_CHECK(adapter_ != nullptr, ErrorKind::Usage, "this session has no ICAE adapter (load one to use slots)");
  return *adapter_->icae;
}

const LoadedAdapter& Session::adapter() const {
  icae();
  return *adapter_;
}

std::vector<int64_t> Session::tokenize(const std::string& text) const {
  ICAE_CHECK(model_->tokenizer != nullptr, ErrorKind::Usage, model_->path + ": the model has no tokenizer; pass token ids");
  return encode_plain(*model_->tokenizer, text);
}

std::string Session::detokenize(const std::vector<int64_t>& ids) const {
  if (!model_->tokenizer) return "";
  std::vector<tok::TokenId> t(ids.begin(), ids.end());
  tok::DecodeOptions o;
  o.skip_special = true;
  return model_->tokenizer->decode(t, o);
}

std::vector<at::Tensor> Session::compress(const std::vector<std::vector<int64_t>>& contexts) const {
  ICAE_CHECK(!contexts.empty(), ErrorKind::Usage, "compress: no contexts given");
  for (size_t i = 0; i < contexts.size(); ++i)
    ICAE_CHECK(!contexts[i].empty(), ErrorKind::BadInput, "compress: context " + std::to_string(i) + " is empty");
  at::NoGradGuard no_grad;
  return icae().compress_batch(contexts);
}

std::vector<at::Tensor> Session::compress_texts(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int64_t>> ids;
  for (const auto& t : texts) ids.push_back(tokenize(t));
  return compress(ids);
}

at::Tensor Session::compress(const std::string& text) const { return compress_texts({text}).front(); }

std::vector<Slots> Session::compress_slots(const std::vector<std::vector<int64_t>>& contexts) const {
  std::vector<at::Tensor> t = compress(contexts);
  std::vector<Slots> out;
  for (size_t i = 0; i < t.size(); ++i) out.push_back(make_slots(icae(), t[i], static_cast<int64_t>(contexts[i].size())));
  return out;
}

std::vector<Slots> Session::compress_slots(const std::vector<std::string>& texts) const {
  std::vector<std::vector<int64_t>> ids;
  for (const auto& t : texts) ids.push_back(tokenize(t));
  return compress_slots(ids);
}

Slots Session::compress_slots(const std::string& text) const { return compress_slots(std::vector<std::string>{text}).front(); }

at::Tensor Session::fit(const Slots& slots) const {
  check_slots_fit(slots, icae(), "slots");
  return slots.tensor.to(base().device(), base().dtype());
}

FtTemplate Session::ft_template() const {
  const std::string name = !options_.ft_template.empty() ? options_.ft_template
                           : adapter_                    ? adapter_->info.chat_template
                                                         : "none";
  if (model_->tokenizer) return make_ft_template(name, *model_->tokenizer, options_.system);
  // Models without a tokenizer (the tiny test models) speak ids only: "none" is [BOS].
  ICAE_CHECK(name == "none", ErrorKind::Usage,
             "FT template '" + name + "' needs the model's tokenizer; " + model_->path + " has none");
  FtTemplate t;
  if (base().config().bos_token_id) t.before.push_back(*base().config().bos_token_id);
  return t;
}

DecodeRow Session::reconstruct_row(const at::Tensor& slots) const {
  ICAE_CHECK(slots.defined() && slots.numel() > 0, ErrorKind::Usage, "reconstruct needs memory slots");
  slot_kind_of(slots);
  return {ae_prefix(icae(), slots.size(0)), slots, {}, {}};
}

DecodeRow Session::answer_row(const at::Tensor& slots, const std::vector<int64_t>& prompt) const {
  ICAE_CHECK(slots.defined() && slots.numel() > 0, ErrorKind::Usage, "answer needs memory slots");
  slot_kind_of(slots);
  return {ft_prefix(icae(), ft_template(), slots.size(0), prompt), slots, {}, {}};
}

DecodeRow Session::answer_row(const at::Tensor& slots, const std::string& prompt) const {
  return answer_row(slots, tokenize(prompt));
}

DecodeRow Session::generate_row(const std::vector<int64_t>& prompt) const {
  ICAE_CHECK(!prompt.empty(), ErrorKind::Usage, "generate needs at least one prompt token");
  return {prompt, {}, {}, {}};
}

namespace {
Completion single(std::vector<Completion> v) { return std::move(v.front()); }
RowTokenCallback for_row(const TokenCallback& cb) {
  if (!cb) return {};
  return [cb](size_t, int64_t id) { return cb(id); };
}
}  // namespace

Completion Session::reconstruct(const at::Tensor& slots, const TokenCallback& cb) {
  return single(run({reconstruct_row(slots)}, for_row(cb)));
}
Completion Session::answer(const at::Tensor& slots, const std::string& prompt, const TokenCallback& cb) {
  return single(run({answer_row(slots, prompt)}, for_row(cb)));
}
Completion Session::answer(const at::Tensor& slots, const std::vector<int64_t>& prompt, const TokenCallback& cb) {
  return single(run({answer_row(slots, prompt)}, for_row(cb)));
}
Completion Session::generate(const std::vector<int64_t>& prompt, const TokenCallback& cb) {
  return single(run({generate_row(prompt)}, for_row(cb)));
}
Completion Session::generate(const std::string& prompt, const TokenCallback& cb) {
  return generate(tokenize(prompt), cb);
}

DecoderInput Session::decoder_input(const std::vector<DecodeRow>& rows) const {
  for (const auto& row : rows) {
    ICAE_CHECK(!row.prefix.empty(), ErrorKind::Usage, "a decode row needs a non-empty prefix");
    ICAE_CHECK(adapter_ || !row.slots.defined() || row.slots.size(0) == 0, ErrorKind::Usage,
               "a row with slots needs a session with an ICAE adapter");
  }
  if (adapter_) {
    std::vector<std::vector<int64_t>> ids;
    std::vector<at::Tensor> slots;
    for (const auto& row : rows) {
      ids.push_back(row.prefix);
      slots.push_back(row.slots);
    }
    return adapter_->icae->decoder_input(ids, slots, Padding::Left);
  }
  std::vector<at::Tensor> embeds;
  for (const auto& row : rows) embeds.push_back(base().embed(at::tensor(row.prefix, at::kLong)));
  return stack_embeddings(embeds, Padding::Left);
}

KVCache& Session::cache_for(int64_t batch, int64_t length) {
  // Reused while it fits: a server answering many prompts of similar size allocates once.
  if (!cache_ || cache_->batch() != batch || cache_->capacity() < length) {
    cache_.reset();  // free the old buffers before the new ones are allocated
    KVCacheOptions o;
    o.batch = batch;
    o.max_length = length;
    o.device = base().device();
    o.dtype = base().dtype();
    cache_ = std::make_unique<KVCache>(base().config(), o);
  }
  cache_->reset();
  return *cache_;
}

namespace {
int64_t kv_bytes(const ModelConfig& c, int64_t batch, int64_t positions, at::ScalarType t) {
  return 2 * c.num_hidden_layers * batch * c.num_key_value_heads * positions * c.head_dim *
         static_cast<int64_t>(c10::elementSize(t));
}
}  // namespace

int64_t Session::kv_cache_bytes() const {
  return cache_ ? kv_bytes(base().config(), cache_->batch(), cache_->length(), base().dtype()) : 0;
}

int64_t Session::kv_cache_capacity_bytes() const {
  return cache_ ? kv_bytes(base().config(), cache_->batch(), cache_->capacity(), base().dtype()) : 0;
}

void Session::release_cache() { cache_.reset(); }

std::vector<Completion> Session::run(const std::vector<DecodeRow>& rows, const RowTokenCallback& on_token) {
  ICAE_CHECK(!rows.empty(), ErrorKind::Usage, "run: no rows to decode");
  at::NoGradGuard no_grad;
  const int64_t b = static_cast<int64_t>(rows.size());
  std::vector<int64_t> model_stops = options_.use_model_stop_ids ? model_->stop_ids : std::vector<int64_t>{};
  model_stops.insert(model_stops.end(), options_.stop_ids.begin(), options_.stop_ids.end());

  // One row decoder each (sampler, budget, stops, streaming), each seeded as if decoded alone.
  std::vector<RowDecoder> decoders;
  int64_t max_budget = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    RowDecoderOptions o;
    o.sampling = options_.sampling;
    o.max_new_tokens = rows[i].max_new_tokens.value_or(options_.max_new_tokens);
    o.stop_ids = rows[i].stop_ids.value_or(model_stops);
    if (on_token) o.on_token = [&on_token, i](int64_t id) { return on_token(i, id); };
    decoders.emplace_back(std::move(o));
    max_budget = std::max(max_budget, rows[i].max_new_tokens.value_or(options_.max_new_tokens));
  }
  auto finish = [&] {
    std::vector<Completion> out;
    for (size_t i = 0; i < rows.size(); ++i) {
      out.push_back(decoders[i].take());
      out.back().prefix_tokens = static_cast<int64_t>(rows[i].prefix.size());
      out.back().text = detokenize(out.back().ids);
    }
    return out;
  };
  if (max_budget == 0) return finish();

  // Left padding: every row's last prefix token sits in the same column, so one step decodes
  // all rows. Pads are masked out and positions are each row's own, so a row sees exactly what
  // it would see alone (key/value slots: decoder_input places them at their positions).
  const DecoderInput prefill = decoder_input(rows);
  const std::vector<int64_t>& lengths = prefill.length;
  const at::Device dev = base().device();
  const bool padded = prefill.input.attention_mask.defined();
  KVCache& cache = cache_for(b, prefill.cache_positions() + max_budget);
  ForwardOptions fopt;
  fopt.cache = &cache;
  fopt.last_position_only = true;
  at::Tensor mask = prefill.input.attention_mask;
  at::Tensor logits = base().forward(prefill.input, fopt).logits.view({b, -1});  // [B, V]

  for (int64_t step = 0;; ++step) {
    bool any_left = false;
    for (int64_t i = 0; i < b; ++i)
      if (!decoders[i].done()) any_left = !decoders[i].accept(logits[i]) || any_left;
    if (!any_left) break;
    // Finished rows keep stepping on their last id; rows never attend to each other, so what
    // they compute does not matter and the batch keeps its shape.
    std::vector<int64_t> next(b);
    for (int64_t i = 0; i < b; ++i) next[i] = std::max<int64_t>(0, decoders[i].last());
    ForwardInput step_in;
    step_in.input_ids = at::tensor(next, at::kLong).view({b, 1});
    if (padded) {
      mask = at::cat({mask, at::ones({b, 1}, mask.options())}, 1);
      step_in.attention_mask = mask;
      std::vector<int64_t> pos(b);
      for (int64_t i = 0; i < b; ++i) pos[i] = lengths[i] + step;
      step_in.position_ids = at::tensor(pos, at::kLong).view({b, 1}).to(dev);
    }
    logits = base().forward(step_in, fopt).logits.view({b, -1});
  }
  return finish();
}

}  // namespace icae
