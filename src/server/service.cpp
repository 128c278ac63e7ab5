#include "service.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <tuple>

#include "icae/core/icae.h"
#include "icae/infer/fingerprint.h"
#include "icae/infer/text_model.h"
#include "icae/util/error.h"

namespace icae::server {

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

const Icae& icae_of(const LoadedModel& m) {
  ICAE_CHECK(m.text && m.text->model, ErrorKind::Usage, "icae serve: no model loaded");
  ICAE_CHECK(m.adapter && m.adapter->icae, ErrorKind::Usage, "icae serve: needs an ICAE adapter (--adapter)");
  return *m.adapter->icae;
}

SlotStoreOptions store_options(const ServerOptions& o) {
  SlotStoreOptions s;
  s.max_bytes = o.slot_cache_bytes;
  s.dir = o.slot_dir;
  return s;
}

}  // namespace

Service::Service(LoadedModel model, const ServerOptions& options)
    : model_(std::move(model)),
      options_(options),
      vocab_(icae_of(model_).base().config().vocab_size),
      store_(icae_of(model_), store_options(options)),
      worker_(Session(model_.text, model_.adapter), options.max_queue, options.max_batch) {
  base_fingerprint_ = icae_of(model_).base().fingerprint();
  adapter_fingerprint_ = adapter_fingerprint(icae_of(model_));
}

std::vector<int64_t> Service::tokenize(const std::string& text, const char* field, int64_t max_len) {
  if (!model_.text->tokenizer)
    http_fail(400, std::string("field '") + field + "': " + model_.text->path +
                       " has no tokenizer; send token ids instead (\"ids\" / \"prompt_ids\")");
  std::vector<int64_t> ids;
  // The tokenizer is only read, but it is the model's: keep every use of it on the worker.
  worker_.run([&](Session& s) { ids = s.tokenize(text); });
  if (ids.empty()) http_fail(400, std::string("field '") + field + "' is empty");
  if (static_cast<int64_t>(ids.size()) > max_len)
    http_fail(413, std::string("field '") + field + "' is " + std::to_string(ids.size()) + " tokens, the limit is " +
                       std::to_string(max_len));
  return ids;
}

Service::Compressed Service::compress_ids(const std::vector<int64_t>& ids) {
  Compressed c;
  c.slots_id = store_.key_for(ids);
  c.tokens = static_cast<int64_t>(ids.size());
  if (auto hit = store_.get(c.slots_id)) {
    c.slots = hit->slots;
    c.cached = true;
    return c;
  }
  const auto t0 = Clock::now();
  worker_.run([&](Session& s) { c.slots = s.compress(std::vector<std::vector<int64_t>>{ids}).front(); });
  c.compress_ms = ms_since(t0);
  // Two clients sending the same new context at once both compress it; the second put just
  // refreshes the entry. Rare, and cheaper than holding a lock across the model call.
  store_.put(c.slots_id, c.slots, c.tokens);
  metrics_.tokens("context", c.tokens);
  return c;
}

nlohmann::json Service::compress(const nlohmann::json& body) {
  const ContextField in = parse_compress_body(body, limits());
  const std::vector<int64_t> ids = in.text ? tokenize(*in.text, "text", options_.max_context_tokens) : in.ids;
  Compressed c = compress_ids(ids);
  const int64_t k = icae_of(model_).config().mem_size;
  return {{"slots_id", c.slots_id},
          {"tokens", c.tokens},
          {"slots", c.slots.size(0)},
          {"segments", c.slots.size(0) / k},
          {"cached", c.cached},
          {"timings", {{"compress_ms", c.compress_ms}}}};
}

RequestLimits Service::limits() const {
  RequestLimits l;
  l.vocab = vocab_;
  l.max_context_tokens = options_.max_context_tokens;
  l.max_prompt_tokens = options_.max_prompt_tokens;
  l.max_new_tokens = options_.max_new_tokens;
  l.default_new_tokens = options_.default_new_tokens;
  l.has_tokenizer = model_.text->tokenizer != nullptr;
  l.model_path = model_.text->path;
  return l;
}

void Service::resolve_context(const ContextField& in, DecodeRequest& r) {
  if (in.slots_id) {
    r.slots_id = *in.slots_id;
    auto hit = store_.get(r.slots_id);
    if (!hit)
      http_fail(404, "unknown slots_id '" + r.slots_id +
                         "': compress the context first (POST /v1/compress); ids live in memory unless the server "
                         "runs with --slot-dir, and may have been evicted");
    r.slots = hit->slots;
    r.cached = true;
    return;
  }
  const std::vector<int64_t> ids = in.text ? tokenize(*in.text, "text", options_.max_context_tokens) : in.ids;
  Compressed c = compress_ids(ids);
  r.slots_id = c.slots_id;
  r.slots = c.slots;
  r.cached = c.cached;
  r.compress_ms = c.compress_ms;
}

DecodeRequest Service::decode_request(const DecodeBody& b) {
  DecodeRequest r;
  r.kind = b.kind;
  r.max_tokens = b.sampling.max_tokens;
  r.sampling.temperature = b.sampling.temperature;
  r.sampling.top_p = b.sampling.top_p;
  r.sampling.top_k = b.sampling.top_k;
  r.sampling.seed = b.sampling.seed;
  r.sampling.repetition_penalty = b.sampling.repetition_penalty;
  r.sampling.no_repeat_ngram = b.sampling.no_repeat_ngram_size;
  r.stream = b.sampling.stream;
  r.prompt_text = b.prompt.text;
  r.prompt_ids = b.prompt.ids;
  if (b.kind != "generate") resolve_context(b.context, r);
  return r;
}

DecodeRequest Service::parse_answer(const nlohmann::json& body) { return decode_request(parse_answer_body(body, limits())); }

DecodeRequest Service::parse_reconstruct(const nlohmann::json& body) {
  return decode_request(parse_reconstruct_body(body, limits()));
}

DecodeRequest Service::parse_generate(const nlohmann::json& body) {
  return decode_request(parse_generate_body(body, limits()));
}

nlohmann::json Service::run(DecodeRequest& r, const OnPiece& on_piece) {
  int64_t prompt_tokens = 0;
  DecodeJob job;
  job.sampling = r.sampling;
  job.make_row = [&](Session& s) {
    DecodeRow row;
    if (r.kind == "answer") {
      row = r.prompt_text ? s.answer_row(r.slots, *r.prompt_text) : s.answer_row(r.slots, r.prompt_ids);
    } else if (r.kind == "reconstruct") {
      row = s.reconstruct_row(r.slots);
    } else {
      row = s.generate_row(r.prompt_text ? s.tokenize(*r.prompt_text) : r.prompt_ids);
    }
    prompt_tokens = static_cast<int64_t>(row.prefix.size());
    if (prompt_tokens > options_.max_prompt_tokens + (r.slots.defined() ? r.slots.size(0) : 0))
      http_fail(413, "the prompt is " + std::to_string(prompt_tokens) + " tokens, the limit is " +
                         std::to_string(options_.max_prompt_tokens));
    row.max_new_tokens = r.max_tokens;
    return row;
  };
  // Text pieces for a stream: the printer is only used from the worker, in on_token.
  std::unique_ptr<StreamPrinter> printer;
  if (on_piece && model_.text->tokenizer) printer = std::make_unique<StreamPrinter>(*model_.text->tokenizer);
  const std::vector<int64_t>& stops = model_.text->stop_ids;
  // The per-request time limit counts from here (queue and decode): a request that would hold
  // the worker longer ends with what it has, its last token delivered.
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options_.request_timeout_s));
  bool timed_out = false;
  job.on_token = [&](int64_t id) {
    bool keep = true;
    if (on_piece) {
      std::string piece;
      const bool is_stop = std::find(stops.begin(), stops.end(), id) != stops.end();
      if (printer && !is_stop) piece = printer->push(id);
      keep = on_piece(id, piece);
    }
    if (keep && Clock::now() > deadline) {
      timed_out = true;
      keep = false;
    }
    return keep;
  };
  job.cancelled = r.client_gone;
  r.queue_ms = worker_.decode(job);
  Completion& done = job.result;
  if (timed_out) done.stop_reason = "timeout";
  // Nobody reads this answer; the status is for the metrics and the log.
  if (done.stop_reason == "cancelled") http_fail(499, "the client closed the connection");
  metrics_.tokens("prompt", prompt_tokens);
  metrics_.tokens("generated", static_cast<int64_t>(done.ids.size()));
  metrics_.decode_seconds(job.decode_ms / 1000.0);
  const double per_s = job.decode_ms > 0 ? 1000.0 * static_cast<double>(done.ids.size()) / job.decode_ms : 0.0;
  nlohmann::json out = {{"text", done.text},
                        {"ids", done.ids},
                        {"tokens", done.ids.size()},
                        {"stop_reason", done.stop_reason},
                        {"prompt_tokens", prompt_tokens},
                        {"timings",
                         {{"queue_ms", r.queue_ms},
                          {"compress_ms", r.compress_ms},
                          {"decode_ms", job.decode_ms},
                          {"tokens_per_s", per_s},
                          {"batch_rows", job.batch_rows}}}};
  if (!r.slots_id.empty()) {
    out["slots_id"] = r.slots_id;
    out["cached"] = r.cached;
  }
  return out;
}

DecodeRequest Service::parse_chat(const nlohmann::json& body) {
  ChatBody c = parse_chat_body(body, limits());
  DecodeRequest r;
  r.max_tokens = c.sampling.max_tokens;
  r.sampling.temperature = c.sampling.temperature;
  r.sampling.top_p = c.sampling.top_p;
  r.sampling.seed = c.sampling.seed;
  r.sampling.repetition_penalty = c.sampling.repetition_penalty;
  r.sampling.no_repeat_ngram = c.sampling.no_repeat_ngram_size;
  r.stream = c.sampling.stream;
  r.model_name = c.model_name;
  const std::vector<tok::ChatMessage>& chat = c.messages;
  if (c.slots_id) {
    r.slots_id = *c.slots_id;
    // ICAE's own template around [slots, FT, question]: the question is the last user message.
    auto hit = store_.get(r.slots_id);
    if (!hit) http_fail(404, "unknown slots_id '" + r.slots_id + "': compress the context first (POST /v1/compress)");
    r.slots = hit->slots;
    r.cached = true;
    r.kind = "answer";
    r.prompt_text = chat.back().content;
  } else {
    // No slots: the base model with its own chat template over the whole conversation.
    r.kind = "generate";
    worker_.run([&](Session& s) { r.prompt_ids = encode_chat(s.model(), chat); });
    if (static_cast<int64_t>(r.prompt_ids.size()) > options_.max_prompt_tokens)
      http_fail(413, "the conversation is " + std::to_string(r.prompt_ids.size()) + " tokens, the limit is " +
                         std::to_string(options_.max_prompt_tokens));
  }
  return r;
}

nlohmann::json Service::chat_response(const DecodeRequest& r, const nlohmann::json& result) const {
  const std::string reason = result.at("stop_reason") == "max_new_tokens" ? "length" : "stop";
  const int64_t completion = result.at("tokens").get<int64_t>();
  const int64_t prompt = result.value("prompt_tokens", int64_t{0});
  return {{"id", chat_id()},
          {"object", "chat.completion"},
          {"created", static_cast<int64_t>(std::time(nullptr))},
          {"model", r.model_name},
          {"choices", nlohmann::json::array({nlohmann::json{{"index", 0},
                                                            {"message", {{"role", "assistant"}, {"content", result.at("text")}}},
                                                            {"finish_reason", reason}}})},
          {"usage", {{"prompt_tokens", prompt}, {"completion_tokens", completion}, {"total_tokens", prompt + completion}}}};
}

nlohmann::json Service::health() const {
  const Icae& icae = icae_of(model_);
  return {{"status", "ok"},
          {"model", model_.text->path},
          {"tokenizer", model_.text->tokenizer != nullptr},
          {"base_fingerprint", base_fingerprint_},
          {"adapter_fingerprint", adapter_fingerprint_},
          {"mem_size", icae.config().mem_size},
          {"compression_rate", icae.config().compression_rate}};
}

std::string Service::metrics_text(int64_t in_flight) const {
  Metrics::Gauges g;
  g.slots = store_.stats();
  g.queue_depth = worker_.queue_depth();
  g.in_flight = in_flight;
  g.decode_rows = worker_.decode_rows();
  g.decode_steps = worker_.steps();
  g.row_steps = worker_.row_steps();
  std::tie(g.prefix_hits, g.prefix_misses) = worker_.prefix_hits_misses();
  g.cancelled = worker_.cancelled();
  return metrics_.prometheus(g);
}

}  // namespace icae::server
