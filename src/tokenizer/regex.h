// Internal: a compiled PCRE2 pattern (UTF + UCP, JIT) for Split pre-tokenizers and Replace rules.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace icae::tok::detail {

class Regex {
 public:
  // Compiles a pattern written for Hugging Face tokenizers (Oniguruma syntax, as far as these
  // files use it). `where` names the pattern's place in tokenizer.json for error messages.
  Regex(std::string_view pattern, const std::string& where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends [start, end) of each non-overlapping match in s, left to right (s must be valid UTF-8).
  // Empty matches are skipped.
  void find_all(std::string_view s, std::vector<std::pair<size_t, size_t>>& out) const;

  // A pattern that matches `literal` exactly.
  static std::string escape(std::string_view literal);

 private:
  void* code_ = nullptr;  // pcre2_code_8*
};

}  // namespace icae::tok::detail
