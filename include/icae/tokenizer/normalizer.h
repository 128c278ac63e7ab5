// Normalizers of tokenizer.json ("normalizer"): rewrite the text before it is split.
// Supported: Sequence, Prepend, Replace (String or Regex pattern), Strip, and with ICU (found by
// CMake, the normal case) NFC, NFD, NFKC, NFKD. A build without ICU accepts only NFC and passes the
// text through unchanged: exact for text already in NFC (almost all text, all ASCII), but
// decomposed input (e.g. "e" + U+0301) is then not composed as Hugging Face tokenizers would.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace icae::tok {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void normalize(std::string& text) const = 0;
};

// Builds the normalizer described by j (null -> nullptr). `where` names j's place in the file.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where = "normalizer");

// True when this build normalizes with ICU (false: NFC is a pass-through).
bool unicode_normalization_available();

}  // namespace icae::tok
