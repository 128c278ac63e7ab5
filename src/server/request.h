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

// The body as a JSON object (400 for malformed JSON or anything else).
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

}  // namespace icae::server
