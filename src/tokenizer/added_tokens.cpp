#include "icae/tokenizer/added_tokens.h"

#include <algorithm>

#include "icae/tokenizer/json_util.h"
#include "icae/tokenizer/unicode.h"

namespace icae::tok {
namespace {

bool is_word_char(char32_t c) {
  if (c < 0x80) return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !is_unicode_whitespace(c);
}

// The character that ends at byte `end` (exclusive), or 0 at the start.
char32_t char_before(std::string_view s, size_t end, size_t* start_out = nullptr) {
  if (end == 0) return 0;
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  size_t p = b;
  char32_t c = 0;
  if (!next_utf8(s, p, c)) c = 0xFFFD;
  if (start_out) *start_out = b;
  return c;
}

char32_t char_at(std::string_view s, size_t pos, size_t* end_out = nullptr) {
  char32_t c = 0;
  size_t p = pos;
  if (!next_utf8(s, p, c)) {
    c = 0xFFFD;
    p = pos + 1;
  }
  if (end_out) *end_out = p;
  return c;
}

}  // namespace

AddedTokens::AddedTokens(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return;
  if (!j.is_array()) bad_json(where, "expected an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string w = where + "[" + std::to_string(i) + "]";
    AddedToken t;
    const long long id = json_int(j[i], "id", w);
    if (id < 0 || id >= (1LL << 28)) bad_json(w + ".id", "id out of range: " + std::to_string(id));
    t.id = static_cast<TokenId>(id);
    t.content = json_string(j[i], "content", w);
    if (t.content.empty()) bad_json(w + ".content", "an added token cannot be empty");
    if (find_invalid_utf8(t.content) != std::string::npos) bad_json(w + ".content", "not valid UTF-8");
    t.special = json_bool_or(j[i], "special", false, w);
    // Hugging Face's default: special tokens are not normalized, the others are.
    t.normalized = json_bool_or(j[i], "normalized", !t.special, w);
    t.lstrip = json_bool_or(j[i], "lstrip", false, w);
    t.rstrip = json_bool_or(j[i], "rstrip", false, w);
    t.single_word = json_bool_or(j[i], "single_word", false, w);
    tokens_.push_back(std::move(t));
  }
  for (uint32_t i = 0; i < tokens_.size(); ++i) {
    const AddedToken& t = tokens_[i];
    Index& ix = index_[t.normalized ? 1 : 0];
    ix.by_first_byte[static_cast<unsigned char>(t.content[0])].push_back(i);
    ix.any = true;
    ix.any_plain = ix.any_plain || !t.special;
  }
  for (Index& ix : index_)
    for (auto& v : ix.by_first_byte)
      std::stable_sort(v.begin(), v.end(),
                       [&](uint32_t a, uint32_t b) { return tokens_[a].content.size() > tokens_[b].content.size(); });
}

const AddedToken* AddedTokens::find(std::string_view content) const {
  for (const auto& t : tokens_)
    if (t.content == content) return &t;
  return nullptr;
}

void AddedTokens::split(std::string_view text, bool normalized, bool parse_special, std::vector<Segment>& out) const {
  const Index& ix = index_[normalized ? 1 : 0];
  if (!ix.any || (!parse_special && !ix.any_plain) || text.empty()) {
    if (!text.empty()) out.push_back({0, text.size(), -1});
    return;
  }
  size_t text_start = 0;  // start of the pending plain text
  size_t pos = 0;
  while (pos < text.size()) {
    const auto& cands = ix.by_first_byte[static_cast<unsigned char>(text[pos])];
    const AddedToken* hit = nullptr;
    for (uint32_t c : cands) {
      const AddedToken& t = tokens_[c];
      if (t.special && !parse_special) continue;
      if (text.compare(pos, t.content.size(), t.content) == 0) {
        hit = &t;
        break;
      }
    }
    if (!hit) {
      ++pos;
      continue;
    }
    size_t start = pos, end = pos + hit->content.size();
    if (hit->single_word) {
      const bool left_ok = start == 0 || !is_word_char(char_before(text, start));
      const bool right_ok = end == text.size() || !is_word_char(char_at(text, end));
      if (!left_ok || !right_ok) {
        pos = end;
        continue;
      }
    }
    if (hit->lstrip) {
      size_t b;
      while (start > text_start && is_unicode_whitespace(char_before(text, start, &b))) start = b;
    }
    if (hit->rstrip) {
      size_t e;
      while (end < text.size() && is_unicode_whitespace(char_at(text, end, &e))) end = e;
    }
    if (start > text_start) out.push_back({text_start, start, -1});
    out.push_back({start, end, hit->id});
    pos = text_start = end;
  }
  if (text_start < text.size()) out.push_back({text_start, text.size(), -1});
}

}  // namespace icae::tok
