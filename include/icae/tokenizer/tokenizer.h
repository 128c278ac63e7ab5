// A Hugging Face tokenizer.json tokenizer (BPE models: SentencePiece-style with byte fallback, and
// byte-level like GPT-2 / Llama 3 / Qwen 2), exact against the reference implementation.
//
//   auto tok = icae::tok::Tokenizer::from_file("tokenizer.json");
//   std::vector<icae::tok::TokenId> ids = tok.encode("Hello world", {/*add_special=*/true});
//   std::string text = tok.decode(ids, {/*skip_special=*/true});
//
// Pipeline (as in Hugging Face tokenizers): split the text at added tokens -> normalizer ->
// pre-tokenizer -> BPE per piece -> post-processor (BOS/EOS, only with add_special).
// A Tokenizer is immutable after construction (except set_bos_id/set_eos_id) and encode/decode
// are safe to call from several threads.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "icae/tokenizer/added_tokens.h"
#include "icae/tokenizer/post_processor.h"
#include "icae/util/error.h"

namespace icae::tok {

using TokenId = int32_t;

class BpeModel;
class Normalizer;
class PreTokenizer;
class Detokenizer;

enum class InvalidUtf8 {
  Error,   // throw icae::Error(BadInput) naming the byte offset (the default)
  Replace  // replace each invalid sequence with U+FFFD first, as Python's errors="replace"
};

struct EncodeOptions {
  bool add_special = false;    // add the post-processor's tokens (e.g. BOS for Llama 2 / Mistral)
  bool parse_special = false;  // recognise special added tokens ("<s>", "<|im_start|>") written in the
                               // text; non-special added tokens are always recognised
  InvalidUtf8 invalid_utf8 = InvalidUtf8::Error;
};

struct DecodeOptions {
  bool skip_special = false;  // leave out special added tokens
};

class Tokenizer {
 public:
  // From a parsed tokenizer.json (e.g. built from GGUF metadata). Throws icae::Error: BadInput for
  // malformed content, Unsupported for valid features not implemented (naming the field).
  explicit Tokenizer(const nlohmann::json& tokenizer_json);
  // Reads and parses a tokenizer.json file; errors start with the path.
  static Tokenizer from_file(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  std::vector<TokenId> encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Appends to ids instead of returning a new vector.
  void encode_into(std::string_view text, std::vector<TokenId>& ids, const EncodeOptions& options = {}) const;
  // Throws BadInput for an id outside the vocabulary.
  std::string decode(const std::vector<TokenId>& ids, const DecodeOptions& options = {}) const;
  std::string decode(const TokenId* ids, size_t count, const DecodeOptions& options = {}) const;

  // The id of a token as spelled in tokenizer.json (added tokens included), or -1.
  TokenId token_to_id(std::string_view token) const;
  // The token as spelled in tokenizer.json; throws BadInput for an unused or out-of-range id.
  const std::string& id_to_token(TokenId id) const;
  // One more than the largest id (model vocabulary and added tokens).
  size_t vocab_size() const { return vocab_size_; }
  bool is_special(TokenId id) const;

  // BOS/EOS: from the post-processor's template when it has them (prefix / suffix), else the first
  // special token named <s>, <|begin_of_text|> / </s>, <|end_of_text|>, <|endoftext|>; -1 if none.
  // Callers that know better (tokenizer_config.json, GGUF metadata) can set them.
  TokenId bos_id() const { return bos_id_; }
  TokenId eos_id() const { return eos_id_; }
  TokenId unk_id() const;
  void set_bos_id(TokenId id);
  void set_eos_id(TokenId id);

  const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }
  const PostProcessing& post_processing() const { return post_; }
  const BpeModel& model() const { return *model_; }
  // True for GPT-2-style tokenizers (ByteLevel pre-tokenizer).
  bool byte_level() const { return byte_level_; }

 private:
  void encode_text(std::string_view text, bool at_start, bool parse_special, std::vector<TokenId>& ids) const;

  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<BpeModel> model_;
  std::unique_ptr<Detokenizer> detokenizer_;
  AddedTokens added_;
  PostProcessing post_;
  std::vector<int32_t> added_index_;  // id -> index in added_tokens(), or -1
  size_t vocab_size_ = 0;
  bool byte_level_ = false;
  TokenId bos_id_ = -1, eos_id_ = -1;
};

}  // namespace icae::tok
