// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): vocabulary, ranked merges,
// byte fallback, unknown token, ignore_merges; merges given as "a b" strings or [a, b] pairs.
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace icae::tok {

using TokenId = int32_t;

namespace detail {
template <class V>
class StringTable;
class PairTable;
}  // namespace detail

class BpeModel {
 public:
  // byte_level: the input comes from a ByteLevel pre-tokenizer, so the vocabulary (written in
  // GPT-2's byte alphabet) is matched against raw bytes.
  BpeModel(const nlohmann::json& model, bool byte_level, const std::string& where = "model");
  ~BpeModel();
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one pre-tokenized piece. Thread-safe (results are cached per word).
  void encode_word(std::string_view word, std::vector<TokenId>& out) const;

  // The id of a token as spelled in the file, or -1.
  TokenId token_to_id(std::string_view token) const;
  // The token as spelled in the file; empty for ids the vocabulary does not use.
  const std::string& id_to_token(TokenId id) const;
  // One more than the largest id in the vocabulary.
  size_t size() const { return tokens_.size(); }
  TokenId unk_id() const { return unk_id_; }
  bool byte_fallback() const { return byte_fallback_; }
  size_t merge_count() const;
  // Words in the encoding cache now (it restarts past 2^20 words, 2^26 bytes of words or 2^23 ids).
  size_t cached_words() const;

 private:
  void merge_word(std::string_view word, std::vector<TokenId>& out) const;
  void encode_cached(std::string_view word, std::vector<TokenId>& out) const;

  std::vector<std::string> tokens_;                       // id -> token (file spelling)
  std::unique_ptr<detail::StringTable<TokenId>> vocab_;   // file spelling -> id
  std::unique_ptr<detail::StringTable<TokenId>> model_vocab_;  // raw bytes -> id (byte-level only)
  std::unique_ptr<detail::PairTable> merges_;
  bool byte_level_ = false;
  bool byte_fallback_ = false;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  bool split_at_metaspace_ = false;  // safe to encode "▁word" chunks separately (see .cpp)
  TokenId unk_id_ = -1;
  TokenId byte_ids_[256];      // byte-level: the id of each single byte
  TokenId fallback_ids_[256];  // byte_fallback: the id of <0xNN>

  struct CacheEntry {
    uint32_t offset = 0, length = 0;
  };
  mutable std::mutex cache_mutex_;
  mutable std::unique_ptr<detail::StringTable<CacheEntry>> cache_;
  mutable std::vector<TokenId> cache_ids_;
};

}  // namespace icae::tok
