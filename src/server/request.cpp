#include "request.h"

#include <cmath>
#include <algorithm>
#include <cstring>

namespace icae::server {

namespace {

// The deepest [ / { nesting outside strings. nlohmann parses any depth, but printing a value (the
// error messages quote what was sent) recurses once per level: a body of 400 KB of '[' overflowed
// the stack.
size_t nesting_depth(const std::string& s) {
  size_t depth = 0, deepest = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (in_string) {
      if (c == '\\') ++i;
      else if (c == '"') in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return deepest;
}

}  // namespace

nlohmann::json parse_object(const std::string& body) {
  if (nesting_depth(body) > kMaxBodyDepth)
    http_fail(400, "the body nests arrays and objects more than " + std::to_string(kMaxBodyDepth) + " levels deep");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::exception& e) {
    // parse_error, and out_of_range for a number beyond double (1e400): both the client's.
    http_fail(400, std::string("malformed JSON body: ") + e.what());
  }
  if (!j.is_object()) http_fail(400, std::string("the body must be a JSON object, got ") + j.type_name());
  return j;
}

Fields::Fields(const nlohmann::json& object, std::initializer_list<const char*> allowed) : object_(object) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool known = false;
    for (const char* a : allowed) known = known || it.key() == a;
    if (!known) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      http_fail(400, "unknown field '" + it.key() + "' (this route takes: " + list + ")");
    }
  }
}

const nlohmann::json* Fields::get(const char* name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool Fields::has(const char* name) const { return get(name) != nullptr; }

std::optional<std::string> Fields::text(const char* name) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_string()) http_fail(400, std::string("field '") + name + "' must be a string, got " + v->type_name());
  return v->get<std::string>();
}

std::optional<std::vector<int64_t>> Fields::ids(const char* name, int64_t vocab, int64_t max_len) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_array()) http_fail(400, std::string("field '") + name + "' must be an array of token ids, got " + v->type_name());
  if (v->empty()) http_fail(400, std::string("field '") + name + "' is empty");
  if (static_cast<int64_t>(v->size()) > max_len)
    http_fail(413, std::string("field '") + name + "' has " + std::to_string(v->size()) + " tokens, the limit is " +
                       std::to_string(max_len));
  std::vector<int64_t> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& e = (*v)[i];
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= vocab)
      http_fail(400, std::string("field '") + name + "'[" + std::to_string(i) + "] = " + e.dump() +
                         " is not a token id of this model (an integer in [0, " + std::to_string(vocab) + "))");
    out.push_back(e.get<int64_t>());
  }
  return out;
}

std::optional<int64_t> Fields::integer(const char* name, int64_t lo, int64_t hi) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) http_fail(400, std::string("field '") + name + "' must be an integer, got " + v->dump());
  // Unsigned values above int64 would wrap: compare as unsigned first.
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  return x;
}

std::optional<double> Fields::number(const char* name, double lo, double hi) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_number()) http_fail(400, std::string("field '") + name + "' must be a number, got " + v->dump());
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  return x;
}

std::optional<bool> Fields::boolean(const char* name) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) http_fail(400, std::string("field '") + name + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

}  // namespace icae::server

namespace icae::server {

namespace {

// repetition_penalty and no_repeat_ngram_size (see SamplingOptions), in every decoding request.
void parse_repetition(const Fields& f, SamplingFields& s) {
  s.repetition_penalty = f.number("repetition_penalty", 1e-3, 100.0).value_or(1.0);
  s.no_repeat_ngram_size = f.integer("no_repeat_ngram_size", 0, 1024).value_or(0);
}

SamplingFields parse_sampling(const Fields& f, const RequestLimits& l) {
  SamplingFields s;
  s.max_tokens = f.integer("max_tokens", 1, l.max_new_tokens).value_or(std::min(l.default_new_tokens, l.max_new_tokens));
  s.temperature = f.number("temperature", 0.0, 100.0).value_or(0.0);
  s.top_p = f.number("top_p", 1e-9, 1.0).value_or(1.0);
  s.top_k = f.integer("top_k", 0, l.vocab).value_or(0);
  s.seed = static_cast<uint64_t>(f.integer("seed", 0, INT64_MAX).value_or(0));
  parse_repetition(f, s);
  s.stream = f.boolean("stream").value_or(false);
  return s;
}

PromptField parse_prompt(const Fields& f, const RequestLimits& l) {
  if (f.has("prompt") == f.has("prompt_ids")) http_fail(400, "give the prompt as exactly one of \"prompt\" or \"prompt_ids\"");
  PromptField p;
  if (f.has("prompt")) {
    p.text = *f.text("prompt");
    if (p.text->empty()) http_fail(400, "field 'prompt' is empty");
    if (!l.has_tokenizer)
      http_fail(400, "field 'prompt': " + l.model_path + " has no tokenizer; send \"prompt_ids\" instead");
  } else {
    p.ids = *f.ids("prompt_ids", l.vocab, l.max_prompt_tokens);
  }
  return p;
}

// {"slots_id"} | {"text"} | {"ids"}: exactly one. Text is tokenized by the caller.
ContextField parse_context(const Fields& f, const RequestLimits& l) {
  const int given = f.has("slots_id") + f.has("text") + f.has("ids");
  if (given != 1) http_fail(400, "give the context as exactly one of \"slots_id\", \"text\" or \"ids\"");
  ContextField c;
  if (f.has("slots_id")) c.slots_id = *f.text("slots_id");
  else if (f.has("ids")) c.ids = *f.ids("ids", l.vocab, l.max_context_tokens);
  else c.text = *f.text("text");
  return c;
}

}  // namespace

ContextField parse_compress_body(const nlohmann::json& body, const RequestLimits& l) {
  Fields f(body, {"text", "ids"});
  const bool has_text = f.has("text"), has_ids = f.has("ids");
  if (has_text == has_ids) http_fail(400, "give the context as exactly one of \"text\" or \"ids\"");
  ContextField c;
  if (has_ids) c.ids = *f.ids("ids", l.vocab, l.max_context_tokens);
  else c.text = *f.text("text");
  return c;
}

DecodeBody parse_answer_body(const nlohmann::json& body, const RequestLimits& l) {
  Fields f(body, {"slots_id", "text", "ids", "prompt", "prompt_ids", "max_tokens", "temperature", "top_p", "top_k",
                  "seed", "repetition_penalty", "no_repeat_ngram_size", "stream"});
  DecodeBody b;
  b.kind = "answer";
  b.sampling = parse_sampling(f, l);  // type errors first: nothing is compressed for a request that fails
  b.prompt = parse_prompt(f, l);
  b.context = parse_context(f, l);
  return b;
}

DecodeBody parse_reconstruct_body(const nlohmann::json& body, const RequestLimits& l) {
  Fields f(body, {"slots_id", "text", "ids", "max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty", "no_repeat_ngram_size", "stream"});
  DecodeBody b;
  b.kind = "reconstruct";
  b.sampling = parse_sampling(f, l);
  b.context = parse_context(f, l);
  return b;
}

DecodeBody parse_generate_body(const nlohmann::json& body, const RequestLimits& l) {
  Fields f(body, {"prompt", "prompt_ids", "max_tokens", "temperature", "top_p", "top_k", "seed", "repetition_penalty", "no_repeat_ngram_size", "stream"});
  DecodeBody b;
  b.kind = "generate";
  b.sampling = parse_sampling(f, l);
  b.prompt = parse_prompt(f, l);
  return b;
}

ChatBody parse_chat_body(const nlohmann::json& body, const RequestLimits& l) {
  // OpenAI's fields that change nothing here are accepted and ignored; the rest are refused.
  Fields f(body, {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "repetition_penalty", "no_repeat_ngram_size", "stream",
                  "n", "user", "stream_options"});
  ChatBody c;
  if (f.has("max_completion_tokens") && f.has("max_tokens"))
    http_fail(400, "give one of \"max_tokens\" or \"max_completion_tokens\"");
  c.sampling.max_tokens = f.integer(f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens", 1,
                                    l.max_new_tokens)
                              .value_or(std::min(l.default_new_tokens, l.max_new_tokens));
  c.sampling.temperature = f.number("temperature", 0.0, 100.0).value_or(0.0);
  c.sampling.top_p = f.number("top_p", 1e-9, 1.0).value_or(1.0);
  c.sampling.seed = static_cast<uint64_t>(f.integer("seed", 0, INT64_MAX).value_or(0));
  parse_repetition(f, c.sampling);
  c.sampling.stream = f.boolean("stream").value_or(false);
  if (f.integer("n", 1, 1).value_or(1) != 1) http_fail(400, "field 'n': only 1 choice is supported");
  c.model_name = f.text("model").value_or("icae");
  const nlohmann::json& messages = body.contains("messages") ? body.at("messages") : nlohmann::json();
  if (!messages.is_array() || messages.empty()) http_fail(400, "field 'messages' must be a non-empty array of messages");
  int slots_at = -1;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string where = "messages[" + std::to_string(i) + "]";
    if (!messages[i].is_object()) http_fail(400, "field '" + where + "' must be an object");
    Fields m(messages[i], {"role", "content", "slots_id", "name"});
    const auto role = m.text("role");
    if (!role || (*role != "system" && *role != "user" && *role != "assistant"))
      http_fail(400, "field '" + where + ".role' must be \"system\", \"user\" or \"assistant\"");
    if (m.has("slots_id")) {
      if (slots_at >= 0) http_fail(400, "field '" + where + ".slots_id': only one message may carry slots");
      slots_at = static_cast<int>(i);
      c.slots_id = *m.text("slots_id");
      continue;  // its slots stand in for its content
    }
    const auto content = m.text("content");
    if (!content) http_fail(400, "field '" + where + ".content' must be a string");
    c.messages.push_back({*role, *content});
  }
  if (c.messages.empty() || c.messages.back().role != "user" || slots_at == static_cast<int>(messages.size()) - 1)
    http_fail(400, "the last message must be the user's question (with \"content\", after any message with \"slots_id\")");
  if (!l.has_tokenizer) http_fail(400, "chat needs a tokenizer; " + l.model_path + " has none");
  return c;
}

}  // namespace icae::server
