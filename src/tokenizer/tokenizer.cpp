#include "icae/tokenizer/tokenizer.h"

#include <fstream>
#include <sstream>

#include "icae/tokenizer/bpe_model.h"
#include "icae/tokenizer/detokenizer.h"
#include "icae/tokenizer/json_util.h"
#include "icae/tokenizer/normalizer.h"
#include "icae/tokenizer/pre_tokenizer.h"
#include "icae/tokenizer/unicode.h"
#include "icae/util/error.h"

namespace icae::tok {

Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer::Tokenizer(const nlohmann::json& j) {
  if (!j.is_object()) bad_json("top level", "expected an object, found " + std::string(j.type_name()));
  auto model = j.find("model");
  if (model == j.end() || model->is_null()) bad_json("top level", "missing \"model\"");
  static const nlohmann::json null_json;
  auto get = [&](const char* key) -> const nlohmann::json& {
    auto it = j.find(key);
    return it == j.end() ? null_json : *it;
  };
  for (const char* key : {"normalizer", "pre_tokenizer", "decoder", "post_processor"})
    check_json_depth(get(key), kMaxComponentDepth, key);
  normalizer_ = make_normalizer(get("normalizer"));
  pre_tokenizer_ = make_pre_tokenizer(get("pre_tokenizer"));
  byte_level_ = pre_tokenizer_ && pre_tokenizer_->byte_level();
  model_ = std::make_unique<BpeModel>(*model, byte_level_);
  detokenizer_ = make_detokenizer(get("decoder"));
  added_ = AddedTokens(get("added_tokens"));
  post_ = make_post_processing(get("post_processor"));

  vocab_size_ = model_->size();
  for (const auto& t : added_.tokens()) vocab_size_ = std::max(vocab_size_, size_t(t.id) + 1);
  // added_index_ has an entry per id: an added token far beyond the vocabulary (ids go up to
  // 2^28) would size it by that id.
  if (vocab_size_ > model_->size() + added_.tokens().size() + kMaxUnusedTokenIds)
    bad_json("added_tokens", "id " + std::to_string(vocab_size_ - 1) + " lies " +
                                 std::to_string(vocab_size_ - model_->size()) +
                                 " ids past the model's vocabulary, more than the added tokens plus the limit of " +
                                 std::to_string(kMaxUnusedTokenIds) + " unused ids");
  added_index_.assign(vocab_size_, -1);
  for (size_t i = 0; i < added_.tokens().size(); ++i) added_index_[added_.tokens()[i].id] = static_cast<int32_t>(i);
  for (TokenId id : post_.prefix)
    if (id < 0 || size_t(id) >= vocab_size_)
      bad_json("post_processor", "special token id " + std::to_string(id) + " is outside the vocabulary");
  for (TokenId id : post_.suffix)
    if (id < 0 || size_t(id) >= vocab_size_)
      bad_json("post_processor", "special token id " + std::to_string(id) + " is outside the vocabulary");

  auto first_special = [&](std::initializer_list<const char*> names) -> TokenId {
    for (const char* n : names)
      if (const AddedToken* t = added_.find(n); t && t->special) return t->id;
    return -1;
  };
  bos_id_ = !post_.prefix.empty() ? post_.prefix.back() : first_special({"<s>", "<|begin_of_text|>"});
  eos_id_ = !post_.suffix.empty() ? post_.suffix.front()
                                  : first_special({"</s>", "<|end_of_text|>", "<|endoftext|>"});
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::Io, path + ": cannot open tokenizer file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) fail(ErrorKind::Io, path + ": read error");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(ss.str());
  } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
    fail(ErrorKind::BadInput, path + ": tokenizer.json is not valid JSON: " + e.what());
  }
  try {
    return Tokenizer(j);
  } catch (const Error& e) {
    throw Error(e.kind(), path + ": " + e.what());
  }
}

TokenId Tokenizer::unk_id() const { return model_->unk_id(); }

void Tokenizer::set_bos_id(TokenId id) {
  ICAE_CHECK(id >= -1 && (id < 0 || size_t(id) < vocab_size_), ErrorKind::Usage,
             "set_bos_id: id " + std::to_string(id) + " is outside the vocabulary");
  bos_id_ = id;
}

void Tokenizer::set_eos_id(TokenId id) {
  ICAE_CHECK(id >= -1 && (id < 0 || size_t(id) < vocab_size_), ErrorKind::Usage,
             "set_eos_id: id " + std::to_string(id) + " is outside the vocabulary");
  eos_id_ = id;
}

bool Tokenizer::is_special(TokenId id) const {
  if (id < 0 || size_t(id) >= vocab_size_) return false;
  const int32_t i = added_index_[id];
  return i >= 0 && added_.tokens()[i].special;
}

TokenId Tokenizer::token_to_id(std::string_view token) const {
  if (const AddedToken* t = added_.find(token)) return t->id;
  return model_->token_to_id(token);
}

const std::string& Tokenizer::id_to_token(TokenId id) const {
  if (id < 0 || size_t(id) >= vocab_size_)
    fail(ErrorKind::BadInput,
         "token id " + std::to_string(id) + " is outside the vocabulary (size " + std::to_string(vocab_size_) + ")");
  if (added_index_[id] >= 0) return added_.tokens()[added_index_[id]].content;
  const std::string& t = model_->id_to_token(id);
  if (t.empty()) fail(ErrorKind::BadInput, "token id " + std::to_string(id) + " is not used by the vocabulary");
  return t;
}

std::vector<TokenId> Tokenizer::encode(std::string_view text, const EncodeOptions& options) const {
  std::vector<TokenId> ids;
  ids.reserve(text.size() / 3 + 4);
  encode_into(text, ids, options);
  return ids;
}

void Tokenizer::encode_into(std::string_view text, std::vector<TokenId>& ids, const EncodeOptions& options) const {
  std::string repaired;
  if (const size_t bad = find_invalid_utf8(text); bad != std::string_view::npos) {
    if (options.invalid_utf8 == InvalidUtf8::Error)
      fail(ErrorKind::BadInput, "tokenizer: input text is not valid UTF-8 (byte offset " + std::to_string(bad) + ")");
    repaired = sanitize_utf8(text);
    text = repaired;
  }
  if (options.add_special) ids.insert(ids.end(), post_.prefix.begin(), post_.prefix.end());
  std::vector<AddedTokens::Segment> segments;
  added_.split(text, /*normalized=*/false, options.parse_special, segments);
  for (const auto& s : segments) {
    if (s.id >= 0) ids.push_back(s.id);
    else encode_text(text.substr(s.start, s.end - s.start), s.start == 0, options.parse_special, ids);
  }
  if (options.add_special) ids.insert(ids.end(), post_.suffix.begin(), post_.suffix.end());
}

// One stretch of text between added tokens of the raw text: normalize, split at the normalized
// added tokens, pre-tokenize, BPE.
void Tokenizer::encode_text(std::string_view text, bool at_start, bool parse_special, std::vector<TokenId>& ids) const {
  std::string normalized;
  if (normalizer_) {
    normalized.assign(text.data(), text.size());
    normalizer_->normalize(normalized);
    text = normalized;
  }
  std::vector<AddedTokens::Segment> segments;
  added_.split(text, /*normalized=*/true, parse_special, segments);
  PreTokenized p;
  for (const auto& s : segments) {
    if (s.id >= 0) {
      ids.push_back(s.id);
      continue;
    }
    p.text.assign(text.data() + s.start, s.end - s.start);
    p.spans.assign(1, {0, p.text.size()});
    if (pre_tokenizer_) pre_tokenizer_->pre_tokenize(p, at_start && s.start == 0);
    const std::string_view all(p.text);
    for (auto [b, e] : p.spans) model_->encode_word(all.substr(b, e - b), ids);
  }
}

std::string Tokenizer::decode(const std::vector<TokenId>& ids, const DecodeOptions& options) const {
  return decode(ids.data(), ids.size(), options);
}

std::string Tokenizer::decode(const TokenId* ids, size_t count, const DecodeOptions& options) const {
  std::vector<std::string> tokens;
  tokens.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    if (options.skip_special && is_special(ids[i])) continue;
    tokens.push_back(id_to_token(ids[i]));
  }
  if (detokenizer_) detokenizer_->decode_chain(tokens);
  else if (tokens.size() > 1) {  // no decoder: Hugging Face joins the tokens with spaces
    std::string joined = tokens[0];
    for (size_t i = 1; i < tokens.size(); ++i) joined += " " + tokens[i];
    return joined;
  }
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

}  // namespace icae::tok
