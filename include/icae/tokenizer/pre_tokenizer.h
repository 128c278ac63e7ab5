// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): split the normalized text into pieces that
// the BPE model encodes one by one. Supported: Sequence, Split (String or Regex pattern, every
// behavior, invert), ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit.
//
// ByteLevel does not rewrite bytes into GPT-2's printable alphabet here: the BPE model of a
// byte-level tokenizer keeps its vocabulary in raw bytes instead (same result, less work), so
// ByteLevel must be the last step of the pre-tokenizer.
#pragma once
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace icae::tok {

// A text and the pieces it is split into, as [start, end) byte ranges, in order.
struct PreTokenized {
  std::string text;
  std::vector<std::pair<size_t, size_t>> spans;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits (and may rewrite) the pieces. at_start: p.text begins at the start of the input
  // (not after an added token); Metaspace's prepend_scheme "first" depends on it.
  virtual void pre_tokenize(PreTokenized& p, bool at_start) const = 0;
  // True when the last step is ByteLevel: the model then works on raw bytes.
  virtual bool byte_level() const { return false; }
};

// Builds the pre-tokenizer described by j (null -> nullptr).
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where = "pre_tokenizer");

// GPT-2's split pattern, used by ByteLevel with use_regex.
extern const char* const kGpt2SplitPattern;

}  // namespace icae::tok
