#include "icae/tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "hash_tables.h"
#include "icae/tokenizer/json_util.h"
#include "icae/tokenizer/unicode.h"

namespace icae::tok {
namespace {

constexpr std::string_view kMetaspace = "\xE2\x96\x81";  // "▁"
constexpr size_t kMaxCachedWord = 256;                    // longer words are not cached
constexpr size_t kMaxCachedIds = size_t(1) << 23;          // cache reset beyond this many ids
// ... or this many words: a word whose characters are all unknown (no unk token, no byte
// fallback) caches 0 ids, so the id count alone let the cache grow with every distinct word.
constexpr size_t kMaxCachedWords = size_t(1) << 20;
constexpr size_t kMaxCachedBytes = size_t(1) << 26;  // ... or words of this many bytes in all

std::string json_token(const nlohmann::json& t, const std::string& where) {
  if (!t.is_string()) bad_json(where, "expected a string, found " + std::string(t.type_name()));
  return t.get<std::string>();
}

}  // namespace

BpeModel::~BpeModel() = default;

size_t BpeModel::merge_count() const { return merges_->size(); }

BpeModel::BpeModel(const nlohmann::json& model, bool byte_level, const std::string& where)
    : byte_level_(byte_level) {
  if (!model.is_object()) bad_json(where, "expected an object");
  const std::string type = json_string_or(model, "type", "BPE", where);
  if (type != "BPE")
    fail(ErrorKind::Unsupported, "tokenizer.json: " + where + ".type: model type '" + type +
                                     "' is not supported (only BPE)");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (!json_string_or(model, key, "", where).empty())
      fail(ErrorKind::Unsupported, "tokenizer.json: " + where + "." + key + " is not supported (must be empty or null)");
  }
  if (auto it = model.find("dropout"); it != model.end() && !it->is_null()) {
    if (!it->is_number() || it->get<double>() != 0.0)
      fail(ErrorKind::Unsupported, "tokenizer.json: " + where + ".dropout: BPE dropout is not supported");
  }
  byte_fallback_ = json_bool_or(model, "byte_fallback", false, where);
  fuse_unk_ = json_bool_or(model, "fuse_unk", false, where);
  ignore_merges_ = json_bool_or(model, "ignore_merges", false, where);

  // --- vocabulary
  auto vit = model.find("vocab");
  if (vit == model.end() || !vit->is_object()) bad_json(where, "missing object \"vocab\" (token -> id)");
  const auto& vocab = *vit;
  if (vocab.empty()) bad_json(where + ".vocab", "the vocabulary is empty");
  vocab_ = std::make_unique<detail::StringTable<TokenId>>(vocab.size());
  TokenId max_id = -1;
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<long long>() < 0 || it.value().get<long long>() >= (1LL << 28))
      bad_json(where + ".vocab[\"" + it.key() + "\"]", "expected a non-negative integer id");
    max_id = std::max(max_id, static_cast<TokenId>(it.value().get<long long>()));
  }
  if (size_t(max_id) + 1 > vocab.size() + kMaxUnusedTokenIds)
    bad_json(where + ".vocab", "the largest id " + std::to_string(max_id) + " leaves " +
                                   std::to_string(size_t(max_id) + 1 - vocab.size()) +
                                   " ids without a token, more than the limit of " + std::to_string(kMaxUnusedTokenIds));
  tokens_.assign(size_t(max_id) + 1, std::string());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const TokenId id = static_cast<TokenId>(it.value().get<long long>());
    if (!tokens_[id].empty())
      bad_json(where + ".vocab", "id " + std::to_string(id) + " is used by both \"" + tokens_[id] + "\" and \"" +
                                     it.key() + "\"");
    tokens_[id] = it.key();
    vocab_->insert(it.key(), id);
  }
  if (byte_level_) {
    model_vocab_ = std::make_unique<detail::StringTable<TokenId>>(vocab.size());
    std::string raw;
    for (size_t id = 0; id < tokens_.size(); ++id) {
      raw.clear();
      if (!tokens_[id].empty() && byte_level_decode(tokens_[id], raw)) model_vocab_->insert(raw, TokenId(id));
    }
  }
  for (int b = 0; b < 256; ++b) {
    byte_ids_[b] = -1;
    if (byte_level_) {
      const char c = static_cast<char>(b);
      if (const TokenId* id = model_vocab_->find(std::string_view(&c, 1))) byte_ids_[b] = *id;
    }
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    const TokenId* id = vocab_->find(name);
    fallback_ids_[b] = id ? *id : -1;
  }
  const std::string unk = json_string_or(model, "unk_token", "", where);
  if (!unk.empty()) {
    const TokenId* id = vocab_->find(unk);
    if (!id) bad_json(where + ".unk_token", "\"" + unk + "\" is not in the vocabulary");
    unk_id_ = *id;
  }

  // --- merges, ranked by position
  auto mit = model.find("merges");
  if (mit == model.end() || mit->is_null()) bad_json(where, "missing array \"merges\"");
  if (!mit->is_array()) bad_json(where + ".merges", "expected an array, found " + std::string(mit->type_name()));
  merges_ = std::make_unique<detail::PairTable>(mit->size());
  std::string joined;
  for (size_t i = 0; i < mit->size(); ++i) {
    const auto& m = (*mit)[i];
    const std::string w = where + ".merges[" + std::to_string(i) + "]";
    std::string a, b;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= s.size() || s.find(' ', sp + 1) != std::string::npos)
        bad_json(w, "expected \"left right\" (two tokens separated by one space), found \"" + s + "\"");
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2) {
      a = json_token(m[0], w + "[0]");
      b = json_token(m[1], w + "[1]");
    } else {
      bad_json(w, "expected \"left right\" or [\"left\", \"right\"]");
    }
    const TokenId* ia = vocab_->find(a);
    const TokenId* ib = vocab_->find(b);
    if (!ia || !ib) bad_json(w, "token \"" + (ia ? b : a) + "\" is not in the vocabulary");
    joined = a;
    joined += b;
    const TokenId* ij = vocab_->find(joined);
    if (!ij) bad_json(w, "the merged token \"" + joined + "\" is not in the vocabulary");
    merges_->insert(*ia, *ib, {static_cast<uint32_t>(i), *ij});
  }

  // SentencePiece-style text is one long piece ("▁the▁cat..."). When no token has a "▁" after a
  // character other than "▁", no merge can join across the start of a "▁" run, so "▁*[^▁]*" chunks
  // can be encoded (and cached) one at a time with the same result.
  if (!byte_level_ && vocab_->find(kMetaspace)) {
    split_at_metaspace_ = true;
    for (const auto& t : tokens_) {
      for (size_t p = t.find(kMetaspace, 1); p != std::string::npos; p = t.find(kMetaspace, p + 1)) {
        if (p < kMetaspace.size() || t.compare(p - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0) {
          split_at_metaspace_ = false;
          break;
        }
      }
      if (!split_at_metaspace_) break;
    }
  }
  cache_ = std::make_unique<detail::StringTable<CacheEntry>>(1 << 14);
}

size_t BpeModel::cached_words() const {
  std::lock_guard<std::mutex> lock(cache_mutex_);
  return cache_->size();
}

TokenId BpeModel::token_to_id(std::string_view token) const {
  const TokenId* id = vocab_->find(token);
  return id ? *id : -1;
}

const std::string& BpeModel::id_to_token(TokenId id) const {
  static const std::string empty;
  if (id < 0 || size_t(id) >= tokens_.size()) return empty;
  return tokens_[id];
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    const TokenId* id = byte_level_ ? model_vocab_->find(word) : vocab_->find(word);
    if (id) {
      out.push_back(*id);
      return;
    }
  }
  if (!split_at_metaspace_) {
    encode_cached(word, out);
    return;
  }
  size_t start = 0;
  size_t pos = word.find(kMetaspace);
  while (pos != std::string_view::npos) {
    // A chunk boundary sits before a "▁" that follows something else.
    if (pos > start && (pos - start < kMetaspace.size() ||
                        word.compare(pos - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0)) {
      encode_cached(word.substr(start, pos - start), out);
      start = pos;
    }
    pos = word.find(kMetaspace, pos + kMetaspace.size());
  }
  encode_cached(word.substr(start), out);
}

void BpeModel::encode_cached(std::string_view word, std::vector<TokenId>& out) const {
  if (word.size() > kMaxCachedWord) {
    merge_word(word, out);
    return;
  }
  const uint64_t h = detail::hash_bytes(word);
  {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (const CacheEntry* e = cache_->find_hashed(word, h)) {
      out.insert(out.end(), cache_ids_.begin() + e->offset, cache_ids_.begin() + e->offset + e->length);
      return;
    }
  }
  const size_t first = out.size();
  merge_word(word, out);
  std::lock_guard<std::mutex> lock(cache_mutex_);
  if (cache_ids_.size() > kMaxCachedIds || cache_->size() >= kMaxCachedWords ||
      cache_->arena_bytes() > kMaxCachedBytes) {
    cache_->clear();
    cache_ids_.clear();
  }
  CacheEntry e{static_cast<uint32_t>(cache_ids_.size()), static_cast<uint32_t>(out.size() - first)};
  cache_ids_.insert(cache_ids_.end(), out.begin() + first, out.end());
  cache_->insert_hashed(word, h, e);
}

// Hugging Face's BPE word algorithm: start from characters (bytes for byte-level), map unknown
// ones to <0xNN> (byte_fallback) or the unknown token (fused if fuse_unk), then repeatedly apply
// the lowest-ranked merge, leftmost first, until none applies.
void BpeModel::merge_word(std::string_view word, std::vector<TokenId>& out) const {
  struct Symbol {
    TokenId id;
    int32_t prev, next;
  };
  thread_local std::vector<Symbol> sym;
  sym.clear();
  bool last_unk = false;
  auto push = [&](TokenId id) {
    const int32_t n = static_cast<int32_t>(sym.size());
    sym.push_back({id, n - 1, n + 1});
  };
  auto unknown = [&](std::string_view bytes) {
    if (byte_fallback_) {
      bool all = true;
      for (unsigned char b : bytes) all = all && fallback_ids_[b] >= 0;
      if (all) {
        for (unsigned char b : bytes) push(fallback_ids_[b]);
        last_unk = false;
        return;
      }
    }
    if (unk_id_ < 0) return;  // no unknown token: the character is dropped (as Hugging Face does)
    if (!(fuse_unk_ && last_unk)) push(unk_id_);
    last_unk = true;
  };
  if (byte_level_) {
    for (size_t i = 0; i < word.size(); ++i) {
      const TokenId id = byte_ids_[static_cast<unsigned char>(word[i])];
      if (id >= 0) {
        push(id);
        last_unk = false;
      } else {
        unknown(word.substr(i, 1));
      }
    }
  } else {
    size_t pos = 0;
    while (pos < word.size()) {
      const size_t len = std::min(utf8_len(static_cast<unsigned char>(word[pos])), word.size() - pos);
      const std::string_view ch = word.substr(pos, len);
      pos += len;
      if (const TokenId* id = vocab_->find(ch)) {
        push(*id);
        last_unk = false;
      } else {
        unknown(ch);
      }
    }
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  // Candidate merges keyed by (rank << 32 | position): lowest rank first, then leftmost.
  thread_local std::vector<uint64_t> heap_storage;
  heap_storage.clear();
  std::priority_queue<uint64_t, std::vector<uint64_t>, std::greater<uint64_t>> heap(std::greater<uint64_t>(),
                                                                                     std::move(heap_storage));
  auto consider = [&](int32_t left) {
    const int32_t right = sym[left].next;
    if (right < 0) return;
    if (const auto* m = merges_->find(sym[left].id, sym[right].id)) heap.push((uint64_t(m->rank) << 32) | uint32_t(left));
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(sym.size()); ++i) consider(i);
  while (!heap.empty()) {
    const uint64_t top = heap.top();
    heap.pop();
    const uint32_t rank = static_cast<uint32_t>(top >> 32);
    const int32_t left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    if (sym[left].id < 0) continue;  // merged into its left neighbour meanwhile
    const int32_t right = sym[left].next;
    if (right < 0) continue;
    const auto* m = merges_->find(sym[left].id, sym[right].id);
    if (!m || m->rank != rank) continue;  // the pair changed since it was queued
    sym[left].id = m->id;
    sym[left].next = sym[right].next;
    if (sym[right].next >= 0) sym[sym[right].next].prev = left;
    sym[right].id = -1;
    if (sym[left].prev >= 0) consider(sym[left].prev);
    consider(left);
  }
  for (int32_t i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

}  // namespace icae::tok
