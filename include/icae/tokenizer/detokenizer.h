// Detokenizers: the "decoder" of tokenizer.json, which turns token strings back into text.
// Supported: Sequence, ByteLevel, ByteFallback, Metaspace, Fuse, Strip, Replace.
// Like Hugging Face tokenizers, byte sequences that are not valid UTF-8 come out as U+FFFD
// (ByteLevel: one per maximal invalid subpart; ByteFallback: one per byte).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace icae::tok {

class Detokenizer {
 public:
  virtual ~Detokenizer() = default;
  // Rewrites the list of token strings (may merge them).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Builds the decoder described by j (null -> nullptr: tokens are then joined with spaces).
std::unique_ptr<Detokenizer> make_detokenizer(const nlohmann::json& j, const std::string& where = "decoder");

}  // namespace icae::tok
