// GGUF tokenizer metadata -> tokenizer.json. The pipeline pieces (pre-tokenizer, decoder,
// normalizer) are those of the Hugging Face tokenizer.json the GGUF was converted from, chosen by
// tokenizer.ggml.model and tokenizer.ggml.pre, since GGUF stores only their names.
#include "icae/formats/gguf_tokenizer.h"

#include <algorithm>
#include <string>
#include <unordered_map>
#include <vector>

#include "icae/tokenizer/unicode.h"
#include "icae/util/error.h"

namespace icae::gguf {
namespace {

using nlohmann::json;

// llama.cpp's token types (llama_token_type).
enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

const char* const kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* const kQwen2Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

json byte_level(bool add_prefix_space, bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", add_prefix_space}, {"trim_offsets", trim_offsets},
          {"use_regex", use_regex}};
}

json split_regex(const char* pattern) {
  return {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
}

struct PreTokenizerChoice {
  json pre_tokenizer;
  bool ignore_merges = false;
};

// The pre-tokenizer of a byte-level vocabulary, by llama.cpp's pre-tokenizer name.
PreTokenizerChoice gpt2_pre_tokenizer(const std::string& pre, const std::string& path) {
  if (pre.empty() || pre == "default" || pre == "gpt2" || pre == "gpt-2")
    return {byte_level(false, true, true)};
  // SmolLM2, StarCoder: every digit is its own piece, then GPT-2's regex.
  if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "command-r")
    return {{{"type", "Sequence"},
             {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}},
                                            byte_level(false, true, true)})}}};
  if (pre == "llama-bpe" || pre == "llama3")
    return {{{"type", "Sequence"},
             {"pretokenizers", json::array({split_regex(kLlama3Pattern), byte_level(false, true, false)})}},
            true};
  if (pre == "qwen2")
    return {{{"type", "Sequence"},
             {"pretokenizers", json::array({split_regex(kQwen2Pattern), byte_level(false, false, false)})}}};
  fail(ErrorKind::Unsupported,
       path + ": tokenizer.ggml.pre '" + pre + "' is not supported (known: default, gpt2, smollm, starcoder, "
       "refact, command-r, llama-bpe, qwen2)");
}

// Offsets of the code points of a UTF-8 string (invalid bytes count as one each), plus its size.
std::vector<size_t> code_point_starts(const std::string& s) {
  std::vector<size_t> starts;
  for (size_t i = 0; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) starts.push_back(i);
  starts.push_back(s.size());
  return starts;
}

// Merges of a SentencePiece vocabulary that has only scores, derived as transformers does for
// GGUF files: every split of a token into two tokens of the vocabulary, ranked by the merged
// token's score (ties: by the pieces' scores, then file order).
// A token of n code points can give n - 1 merges of n bytes each: tokens "a", "aa", ..., a^K
// (K^2 / 2 bytes in the file) gave K^3 / 3 bytes of merges (30 GB for a 10 MB file). The merges
// are counted, and refused past these limits (real vocabularies give under 1M merges, ~10 MB).
constexpr size_t kMaxDerivedMerges = size_t(1) << 22;
constexpr size_t kMaxDerivedMergeBytes = size_t(1) << 26;

json merges_from_scores(const std::vector<std::string>& tokens, const std::vector<double>& scores,
                        const std::string& path) {
  std::unordered_map<std::string, double> score_of;
  for (size_t i = 0; i < tokens.size(); ++i) score_of[tokens[i]] = scores[i];
  struct Merge {
    const std::string* whole;
    size_t at;
    double score, left_score, right_score;
  };
  std::vector<Merge> merges;
  std::unordered_map<std::string, bool> seen;
  size_t merge_bytes = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (!seen.emplace(t, true).second) continue;  // a dict in transformers: first position wins
    std::vector<Merge> local;
    auto starts = code_point_starts(t);
    for (size_t k = 1; k + 1 < starts.size(); ++k) {
      auto l = score_of.find(t.substr(0, starts[k]));
      auto r = score_of.find(t.substr(starts[k]));
      if (l != score_of.end() && r != score_of.end())
        local.push_back({&t, starts[k], score_of[t], l->second, r->second});
    }
    merge_bytes += local.size() * t.size();
    if (merges.size() + local.size() > kMaxDerivedMerges || merge_bytes > kMaxDerivedMergeBytes)
      fail(ErrorKind::BadInput, path + ": the merges derived from tokenizer.ggml.scores exceed the limit of " +
                                    std::to_string(kMaxDerivedMerges) + " merges or " +
                                    std::to_string(kMaxDerivedMergeBytes) + " bytes (at token " + std::to_string(i) +
                                    ")");
    std::stable_sort(local.begin(), local.end(), [](const Merge& a, const Merge& b) {
      return a.left_score != b.left_score ? a.left_score > b.left_score : a.right_score > b.right_score;
    });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) { return a.score > b.score; });
  json out = json::array();
  for (const Merge& m : merges) out.push_back(json::array({m.whole->substr(0, m.at), m.whole->substr(m.at)}));
  return out;
}

json added_token(int64_t id, const std::string& content, bool special) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", false}, {"special", special}};
}

json template_post_processor(const std::vector<std::string>& tokens, int64_t bos, int64_t eos) {
  json single = json::array(), pair = json::array(), specials = json::object();
  auto special = [&](int64_t id, int type_id) {
    specials[tokens[id]] = {{"id", tokens[id]}, {"ids", {id}}, {"tokens", {tokens[id]}}};
    return json{{"SpecialToken", {{"id", tokens[id]}, {"type_id", type_id}}}};
  };
  auto seq = [](const char* id, int type_id) { return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
  if (bos >= 0) single.push_back(special(bos, 0)), pair.push_back(special(bos, 0));
  single.push_back(seq("A", 0)), pair.push_back(seq("A", 0));
  if (eos >= 0) single.push_back(special(eos, 0)), pair.push_back(special(eos, 0));
  if (bos >= 0) pair.push_back(special(bos, 1));
  pair.push_back(seq("B", 1));
  if (eos >= 0) pair.push_back(special(eos, 1));
  return {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

// GGUF strings are meant to be UTF-8 (llama.cpp writes them from Python str), and a tokenizer.json
// must be: a token that is not would load, then fail when written out (export-tokenizer) with a
// JSON library error instead of one naming the token.
void check_utf8(const std::vector<std::string>& items, const std::string& path, const char* key) {
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t bad = tok::find_invalid_utf8(items[i]);
    if (bad != std::string::npos)
      fail(ErrorKind::BadInput, path + ": " + key + "[" + std::to_string(i) + "] is not valid UTF-8 (byte offset " +
                                    std::to_string(bad) + ")");
  }
}

}  // namespace

json tokenizer_json_from_gguf(const GgufFile& f) {
  const std::string& path = f.path();
  const std::string model = f.get_string("tokenizer.ggml.model");
  if (model != "gpt2" && model != "llama")
    fail(ErrorKind::Unsupported, path + ": tokenizer.ggml.model '" + model + "' is not supported (gpt2, llama)");
  const bool spm = model == "llama";

  std::vector<std::string> tokens = f.get_strings("tokenizer.ggml.tokens");
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) fail(ErrorKind::BadInput, path + ": tokenizer.ggml.tokens is empty");
  check_utf8(tokens, path, "tokenizer.ggml.tokens");
  std::vector<int64_t> types(tokens.size(), kNormal);
  if (f.has("tokenizer.ggml.token_type")) {
    types = f.get_ints("tokenizer.ggml.token_type");
    if (types.size() != tokens.size())
      fail(ErrorKind::BadInput, path + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                                    " entries for " + std::to_string(n) + " tokens");
  }
  auto token_id = [&](const char* key, int64_t fallback) -> int64_t {
    int64_t id = f.get_int(key, fallback);
    if (id != -1 && (id < 0 || id >= n))
      fail(ErrorKind::BadInput, path + ": " + key + " = " + std::to_string(id) + " is not a token id (0.." +
                                    std::to_string(n - 1) + ")");
    return id;
  };
  const int64_t bos = token_id("tokenizer.ggml.bos_token_id", -1);
  const int64_t eos = token_id("tokenizer.ggml.eos_token_id", -1);
  const int64_t unk = token_id("tokenizer.ggml.unknown_token_id", spm ? 0 : -1);
  const bool add_bos = f.get_bool("tokenizer.ggml.add_bos_token", spm);
  const bool add_eos = f.get_bool("tokenizer.ggml.add_eos_token", false);

  json vocab = json::object();
  json added = json::array();
  for (int64_t i = 0; i < n; ++i) {
    if (vocab.contains(tokens[i]))
      fail(ErrorKind::BadInput, path + ": token '" + tokens[i] + "' appears twice (ids " +
                                    std::to_string(vocab[tokens[i]].get<int64_t>()) + " and " + std::to_string(i) + ")");
    vocab[tokens[i]] = i;
    if (types[i] == kControl || types[i] == kUnknown) added.push_back(added_token(i, tokens[i], true));
    else if (types[i] == kUserDefined) added.push_back(added_token(i, tokens[i], false));
  }

  json merges;
  if (f.has("tokenizer.ggml.merges")) {
    std::vector<std::string> m = f.get_strings("tokenizer.ggml.merges");
    check_utf8(m, path, "tokenizer.ggml.merges");
    merges = std::move(m);
  } else if (spm && f.has("tokenizer.ggml.scores")) {
    std::vector<double> scores = f.get_floats("tokenizer.ggml.scores");
    if (scores.size() != tokens.size())
      fail(ErrorKind::BadInput, path + ": tokenizer.ggml.scores has " + std::to_string(scores.size()) +
                                    " entries for " + std::to_string(n) + " tokens");
    merges = merges_from_scores(tokens, scores, path);
  } else {
    fail(ErrorKind::BadInput, path + ": no tokenizer.ggml.merges" + (spm ? " nor tokenizer.ggml.scores" : ""));
  }

  json j;
  j["version"] = "1.0";
  j["truncation"] = nullptr;
  j["padding"] = nullptr;
  j["added_tokens"] = added;
  json bpe = {{"type", "BPE"},         {"dropout", nullptr},   {"continuing_subword_prefix", nullptr},
              {"end_of_word_suffix", nullptr}, {"vocab", std::move(vocab)}, {"merges", std::move(merges)}};
  if (spm) {
    const bool add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix", true);
    json norm = json::array();
    if (add_space_prefix) norm.push_back({{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}});
    norm.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}});
    j["normalizer"] = {{"type", "Sequence"}, {"normalizers", norm}};
    j["pre_tokenizer"] = nullptr;
    json dec = json::array({{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
                            {{"type", "ByteFallback"}}, {{"type", "Fuse"}}});
    if (add_space_prefix) dec.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    j["decoder"] = {{"type", "Sequence"}, {"decoders", dec}};
    bpe["unk_token"] = unk >= 0 ? json(tokens[unk]) : json(nullptr);
    bpe["fuse_unk"] = true;
    bpe["byte_fallback"] = true;
    bpe["ignore_merges"] = false;
  } else {
    PreTokenizerChoice pre = gpt2_pre_tokenizer(f.get_string("tokenizer.ggml.pre", "default"), path);
    j["normalizer"] = nullptr;
    j["pre_tokenizer"] = pre.pre_tokenizer;
    j["decoder"] = byte_level(true, true, true);
    // Every byte has a token in a byte-level vocabulary: no unknown token, no byte fallback.
    bpe["unk_token"] = nullptr;
    bpe["fuse_unk"] = false;
    bpe["byte_fallback"] = false;
    bpe["ignore_merges"] = pre.ignore_merges;
  }
  if (add_bos || add_eos) {
    if ((add_bos && bos < 0) || (add_eos && eos < 0))
      fail(ErrorKind::BadInput, path + ": add_bos_token/add_eos_token set without a bos/eos token id");
    j["post_processor"] = template_post_processor(tokens, add_bos ? bos : -1, add_eos ? eos : -1);
  } else {
    j["post_processor"] = spm ? json(nullptr) : byte_level(true, false, true);
  }
  j["model"] = std::move(bpe);
  return j;
}

}  // namespace icae::gguf
