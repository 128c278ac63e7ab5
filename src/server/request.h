// Request bodies of `icae serve`: JSON parsed and checked field by field, so a bad request gets a
// 4xx naming the field and what was wrong with it, never a crash or a silent default.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "icae/tokenizer/chat_template.h"

namespace icae::server {

// An HTTP status with the message for {"error": ...}.
class HttpError : public std::runtime_error {
 public:
  HttpError(int status, const std::string& message) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

[[noreturn]] inline void http_fail(int status, const std::string& message) { throw HttpError(status, message); }

// The body as a JSON object (400 for malformed JSON, nesting deeper than kMaxBodyDepth, or
// anything but an object).
constexpr size_t kMaxBodyDepth = 64;
nlohmann::json parse_object(const std::string& body);

// Typed access to a request object's fields. Unknown field names are refused (400 naming them):
// a misspelt "max_token" would otherwise be ignored and surprise. A field given as null counts as
// absent, as OpenAI-style clients send them.
class Fields {
 public:
  Fields(const nlohmann::json& object, std::initializer_list<const char*> allowed);

  bool has(const char* name) const;
  std::optional<std::string> text(const char* name) const;
  // A list of token ids, each in [0, vocab), at most max_len of them, at least one.
  std::optional<std::vector<int64_t>> ids(const char* name, int64_t vocab, int64_t max_len) const;
  std::optional<int64_t> integer(const char* name, int64_t lo, int64_t hi) const;
  std::optional<double> number(const char* name, double lo, double hi) const;
  std::optional<bool> boolean(const char* name) const;

 private:
  const nlohmann::json* get(const char* name) const;
  const nlohmann::json& object_;
};

// ---- The routes' bodies, parsed and checked without the model (fuzz/request_fuzz.cpp runs these
// on arbitrary bytes). What needs the model (tokenizing, compressing, looking up slots) is then
// Service's; the checks here come in the order the routes have always made them.

// What the checks need to know of the server and its model.
struct RequestLimits {
  int64_t vocab = 0;  // token ids are in [0, vocab)
  int64_t max_context_tokens = 32768, max_prompt_tokens = 8192, max_new_tokens = 1024, default_new_tokens = 256;
  bool has_tokenizer = true;
  std::string model_path;  // names the model in "has no tokenizer" messages
};

// A context: exactly one of slots_id, text, ids (compress: text or ids).
struct ContextField {
  std::optional<std::string> slots_id, text;
  std::vector<int64_t> ids;  // checked token ids when neither slots_id nor text
};

struct SamplingFields {
  int64_t max_tokens = 0;
  double temperature = 0, top_p = 1;
  int64_t top_k = 0;
  uint64_t seed = 0;
  double repetition_penalty = 1;  // as vLLM and transformers name them
  int64_t no_repeat_ngram_size = 0;
  bool stream = false;
};

// Exactly one of "prompt" (text, non-empty, needs a tokenizer) and "prompt_ids".
struct PromptField {
  std::optional<std::string> text;
  std::vector<int64_t> ids;
};

struct DecodeBody {
  std::string kind;      // answer | reconstruct | generate
  ContextField context;  // answer, reconstruct
  PromptField prompt;    // answer, generate
  SamplingFields sampling;
};

struct ChatBody {
  std::string model_name = "icae";
  SamplingFields sampling;  // top_k unused (0)
  std::vector<tok::ChatMessage> messages;  // those with content, in order
  std::optional<std::string> slots_id;     // the message that carries slots instead of content
};

// Each throws HttpError (400, 404, 413) naming the field; nothing else escapes.
ContextField parse_compress_body(const nlohmann::json& body, const RequestLimits& limits);
DecodeBody parse_answer_body(const nlohmann::json& body, const RequestLimits& limits);
DecodeBody parse_reconstruct_body(const nlohmann::json& body, const RequestLimits& limits);
DecodeBody parse_generate_body(const nlohmann::json& body, const RequestLimits& limits);
ChatBody parse_chat_body(const nlohmann::json& body, const RequestLimits& limits);

}  // namespace icae::server
