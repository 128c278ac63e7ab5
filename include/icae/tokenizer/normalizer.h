// Normalizers of tokenizer.json ("normalizer"): rewrite the text before it is split.
// Supported: Sequence, Prepend, Replace (String or Regex pattern), Strip, NFC.
// NFC is a pass-through: correct for text that is already in NFC (almost all text, and all ASCII);
// decomposed input (e.g. "e" + U+0301) is not composed, unlike Hugging Face tokenizers.
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

}  // namespace icae::tok
