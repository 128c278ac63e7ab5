// Decoders of tokenizer.json ("decoder"): turn token strings back into text.
// Supported: Sequence, ByteLevel, ByteFallback, Metaspace, Fuse, Strip, Replace.
// Like Hugging Face tokenizers, byte sequences that are not valid UTF-8 come out as U+FFFD
// (ByteLevel: one per maximal invalid subpart; ByteFallback: one per byte).
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace icae::tok {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Rewrites the list of token strings (may merge them).
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Builds the decoder described by j (null -> nullptr: tokens are then joined with spaces).
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& j, const std::string& where = "decoder");

}  // namespace icae::tok
