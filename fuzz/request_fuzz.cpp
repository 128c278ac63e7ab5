// Fuzzes the request bodies of `icae serve` (server/request.cpp): a selector byte chooses the route
// (compress, answer, reconstruct, generate, chat completions) and the limits, the rest is the
// body. Only HttpError with a 4xx status may escape (what the server turns into {"error": ...});
// anything else, a 5xx, or a parsed request outside its limits is a finding. Compiles request.cpp
// itself: it needs no libtorch.
#include <cstdint>
#include <string>

#include "request.h"

using namespace icae::server;

namespace {

void check_ids(const std::vector<int64_t>& ids, const RequestLimits& l, int64_t max_len) {
  if (ids.empty() || static_cast<int64_t>(ids.size()) > max_len) __builtin_trap();
  for (int64_t id : ids)
    if (id < 0 || id >= l.vocab) __builtin_trap();
}

void check_sampling(const SamplingFields& s, const RequestLimits& l) {
  if (s.max_tokens < 1 || s.max_tokens > l.max_new_tokens) __builtin_trap();
  if (!(s.temperature >= 0 && s.temperature <= 100) || !(s.top_p > 0 && s.top_p <= 1)) __builtin_trap();
  if (s.top_k < 0 || s.top_k > l.vocab) __builtin_trap();
  if (!(s.repetition_penalty >= 1e-3 && s.repetition_penalty <= 100)) __builtin_trap();
  if (s.no_repeat_ngram_size < 0 || s.no_repeat_ngram_size > 1024) __builtin_trap();
}

void check_decode(const DecodeBody& b, const RequestLimits& l) {
  check_sampling(b.sampling, l);
  if (b.kind != "reconstruct") {
    if (b.prompt.text) {
      if (b.prompt.text->empty() || !l.has_tokenizer) __builtin_trap();
    } else {
      check_ids(b.prompt.ids, l, l.max_prompt_tokens);
    }
  }
  if (b.kind != "generate" && !b.context.slots_id && !b.context.text) check_ids(b.context.ids, l, l.max_context_tokens);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t selector = data[0];
  RequestLimits l;
  l.vocab = (selector & 8) ? 512 : 49152;
  l.max_context_tokens = (selector & 16) ? 4 : 32768;
  l.max_prompt_tokens = (selector & 16) ? 3 : 8192;
  l.max_new_tokens = (selector & 16) ? 2 : 1024;
  l.default_new_tokens = 256;
  l.has_tokenizer = !(selector & 32);
  l.model_path = "fuzz.gguf";
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  try {
    const nlohmann::json j = parse_object(body);
    switch (selector % 5) {
      case 0: {
        const ContextField c = parse_compress_body(j, l);
        if (!c.text) check_ids(c.ids, l, l.max_context_tokens);
        break;
      }
      case 1: check_decode(parse_answer_body(j, l), l); break;
      case 2: check_decode(parse_reconstruct_body(j, l), l); break;
      case 3: check_decode(parse_generate_body(j, l), l); break;
      default: {
        const ChatBody c = parse_chat_body(j, l);
        check_sampling(c.sampling, l);
        if (c.messages.empty() || c.messages.back().role != "user" || !l.has_tokenizer) __builtin_trap();
        break;
      }
    }
  } catch (const HttpError& e) {
    if (e.status() < 400 || e.status() > 499) __builtin_trap();
  }
  return 0;
}
