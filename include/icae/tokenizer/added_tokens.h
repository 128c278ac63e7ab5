// Added tokens of tokenizer.json ("added_tokens"): strings matched in the text before the model
// sees it and never split. Tokens with "normalized": false are matched in the raw text, the others
// in the normalized text; "lstrip"/"rstrip" absorb neighbouring whitespace; "single_word" matches
// only where the token is not glued to word characters (letters, digits, '_'; any non-ASCII
// character that is not whitespace counts as a letter).
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace icae::tok {

using TokenId = int32_t;

struct AddedToken {
  TokenId id = -1;
  std::string content;
  bool special = false;
  bool normalized = false;
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class AddedTokens {
 public:
  AddedTokens() = default;
  explicit AddedTokens(const nlohmann::json& added_tokens, const std::string& where = "added_tokens");

  // A piece of text: a matched added token (id >= 0) or plain text [start, end) (id == -1).
  struct Segment {
    size_t start, end;
    TokenId id;
  };
  // Splits text at the added tokens of one set (normalized == the token's "normalized" flag).
  // Special tokens take part only when parse_special. Appends the segments, in order.
  void split(std::string_view text, bool normalized, bool parse_special, std::vector<Segment>& out) const;

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  const AddedToken* find(std::string_view content) const;

 private:
  struct Index {
    std::vector<std::vector<uint32_t>> by_first_byte = std::vector<std::vector<uint32_t>>(256);  // longest first
    bool any = false;
    bool any_plain = false;  // has a non-special token
  };
  std::vector<AddedToken> tokens_;
  Index index_[2];  // [normalized]
};

}  // namespace icae::tok
