// Malformed or unsupported tokenizer.json files give a clear error that names what is wrong.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <utility>

#include "icae/tokenizer/bpe_model.h"
#include "icae/tokenizer/tokenizer.h"

namespace icae::tok {
namespace {

// A tiny valid byte-level BPE tokenizer.json, to break one field at a time.
nlohmann::json tiny() {
  return nlohmann::json::parse(R"({
    "version": "1.0", "added_tokens": [{"id": 5, "content": "<eos>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4, "<eos>": 5},
              "merges": ["a b", "Ġ ab"]}})");
}

void expect_error(const nlohmann::json& j, ErrorKind kind, const std::vector<std::string>& words) {
  try {
    Tokenizer t(j);
    FAIL() << "expected an error mentioning " << words[0];
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), kind) << e.what();
    for (const auto& w : words) EXPECT_NE(std::string(e.what()).find(w), std::string::npos) << e.what();
  }
}

TEST(TokenizerErrors, TinyTokenizerWorks) {
  const Tokenizer t(tiny());
  EXPECT_EQ(t.encode("ab ab"), (std::vector<TokenId>{2, 4}));
  EXPECT_EQ(t.decode({2, 4}), "ab ab");
  EXPECT_EQ(t.eos_id(), -1);  // "<eos>" is not one of the known names
}

// Id-indexed tables are sized by the largest id: one token with id 2^28 - 1 asked for 2^28 empty
// strings (8 GB) in the model, or 2^28 entries of the added-token index.
TEST(TokenizerErrors, IdsFarBeyondTheTokenCountAreRefused) {
  auto j = tiny();
  j["model"]["vocab"]["far"] = (1 << 28) - 1;
  expect_error(j, ErrorKind::BadInput, {"model.vocab", "largest id 268435455", "limit of 65536"});
  j = tiny();
  j["model"]["vocab"]["far"] = 6 + 65536;  // 65536 ids without a token: still accepted
  EXPECT_NO_THROW(Tokenizer{j});
  j = tiny();
  j["added_tokens"].push_back({{"id", (1 << 28) - 1}, {"content", "<far>"}, {"special", true}});
  expect_error(j, ErrorKind::BadInput, {"added_tokens", "id 268435455", "limit of 65536"});
}

// Sequences are built recursively: 100,000 nested normalizers overflowed the stack.
TEST(TokenizerErrors, DeeplyNestedComponentsAreRefused) {
  const std::pair<const char*, const char*> kinds[] = {{"normalizer", "normalizers"},
                                                       {"pre_tokenizer", "pretokenizers"},
                                                       {"decoder", "decoders"},
                                                       {"post_processor", "processors"}};
  for (const auto& [key, list] : kinds) {
    nlohmann::json inner = {{"type", "Sequence"}, {list, nlohmann::json::array()}};
    for (int i = 0; i < 100000; ++i) {
      nlohmann::json outer = {{"type", "Sequence"}, {list, nlohmann::json::array()}};
      outer[list].push_back(std::move(inner));
      inner = std::move(outer);
    }
    auto j = tiny();
    j[key] = std::move(inner);
    expect_error(j, ErrorKind::BadInput, {key, "nested more than 64 levels deep"});
  }
  auto j = tiny();  // a real nesting depth
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Sequence"}, {"normalizers", nlohmann::json::array()}}}}};
  EXPECT_NO_THROW(Tokenizer{j});
}

// The per-word cache restarted after 2^23 cached ids only; words of unknown characters (no unk
// token, no byte fallback) cache no ids, so every distinct one stayed: a server kept them all.
TEST(TokenizerErrors, TheWordCacheIsBoundedAlsoForWordsWithoutIds) {
  const BpeModel m(nlohmann::json::parse(R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})"), false);
  std::vector<TokenId> ids;
  std::string w(5, 'b');
  for (size_t n = 0; n < (size_t(1) << 20) + 1000; ++n) {
    size_t x = n;
    for (char& c : w) c = static_cast<char>('b' + x % 25), x /= 25;
    m.encode_word(w, ids);
  }
  EXPECT_TRUE(ids.empty());
  EXPECT_LE(m.cached_words(), size_t(1) << 20);
  EXPECT_GT(m.cached_words(), 0u);
  // Long words (256 bytes, the longest cached): 270,000 of them are 69 MB, past the 2^26 bytes.
  const BpeModel m2(nlohmann::json::parse(R"({"type": "BPE", "vocab": {"a": 0}, "merges": []})"), false);
  std::string longw(256, 'b');
  for (size_t n = 0; n < 270000; ++n) {
    size_t x = n;
    for (size_t i = 0; i < 5; ++i) longw[i] = static_cast<char>('b' + x % 25), x /= 25;
    m2.encode_word(longw, ids);
  }
  EXPECT_LT(m2.cached_words(), 270000u);
}

TEST(TokenizerErrors, ModelProblems) {
  auto j = tiny();
  j["model"]["type"] = "Unigram";
  expect_error(j, ErrorKind::Unsupported, {"model.type", "Unigram"});
  j = tiny();
  j["model"].erase("merges");
  expect_error(j, ErrorKind::BadInput, {"model", "merges"});
  j = tiny();
  j["model"]["merges"] = {"a c"};
  expect_error(j, ErrorKind::BadInput, {"model.merges[0]", "\"c\"", "not in the vocabulary"});
  j = tiny();
  j["model"]["merges"] = {"b a"};
  expect_error(j, ErrorKind::BadInput, {"model.merges[0]", "\"ba\""});
  j = tiny();
  j["model"]["merges"] = {"ab"};
  expect_error(j, ErrorKind::BadInput, {"model.merges[0]", "two tokens"});
  j = tiny();
  j["model"]["vocab"] = nlohmann::json::array();
  expect_error(j, ErrorKind::BadInput, {"vocab"});
  j = tiny();
  j["model"]["vocab"]["x"] = "seven";
  expect_error(j, ErrorKind::BadInput, {"model.vocab[\"x\"]", "integer"});
  j = tiny();
  j["model"]["unk_token"] = "<unk>";
  expect_error(j, ErrorKind::BadInput, {"unk_token", "<unk>"});
  j = tiny();
  j.erase("model");
  expect_error(j, ErrorKind::BadInput, {"model"});
  expect_error(nlohmann::json::array(), ErrorKind::BadInput, {"top level"});
}

TEST(TokenizerErrors, ComponentProblems) {
  auto j = tiny();
  j["pre_tokenizer"] = {{"type", "BertPreTokenizer"}};
  expect_error(j, ErrorKind::Unsupported, {"pre_tokenizer", "BertPreTokenizer"});
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  expect_error(j, ErrorKind::BadInput, {"pre_tokenizer.pattern", "(unclosed"});
  j = tiny();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"String", " "}}}, {"behavior", "Sideways"}};
  expect_error(j, ErrorKind::BadInput, {"behavior", "Sideways"});
  j = tiny();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "Lowercase"}}}}};
  expect_error(j, ErrorKind::Unsupported, {"normalizer.normalizers[0]", "Lowercase"});
  j = tiny();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error(j, ErrorKind::Unsupported, {"decoder", "WordPiece"});
  j = tiny();
  j["post_processor"] = {{"type", "TemplateProcessing"}, {"single", {{{"SpecialToken", {{"id", "<bos>"}}}}, {{"Sequence", {{"id", "A"}}}}}},
                         {"special_tokens", nlohmann::json::object()}};
  expect_error(j, ErrorKind::BadInput, {"post_processor", "<bos>"});
  j = tiny();
  j["added_tokens"][0].erase("id");
  expect_error(j, ErrorKind::BadInput, {"added_tokens[0]", "id"});
}

TEST(TokenizerErrors, FilesNameThePath) {
  const std::string path = ::testing::TempDir() + "icae_bad_tokenizer.json";
  {
    std::ofstream out(path);
    out << "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, ";  // truncated
  }
  try {
    Tokenizer::from_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not valid JSON"), std::string::npos) << e.what();
  }
  {
    std::ofstream out(path);
    out << "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}";
  }
  try {
    Tokenizer::from_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find(path + ": tokenizer.json: model.type"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
  try {
    Tokenizer::from_file(path + ".missing");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Io);
  }
}

// Was: nlohmann's out_of_range (406) escaping from_file for a number beyond double: only
// parse_error was caught (the CLI printed "[json.exception.out_of_range.406] …", exit 1). The
// request fuzz target found the same in the server's body parser; this one by looking for its kin.
TEST(TokenizerErrors, NumbersBeyondDoubleAreBadInput) {
  const std::string path = ::testing::TempDir() + "icae_huge_number_tokenizer.json";
  {
    std::ofstream out(path);
    out << "{\"model\": {\"type\": \"BPE\", \"dropout\": 1e400, \"vocab\": {\"a\": 0}, \"merges\": []}}";
  }
  try {
    Tokenizer::from_file(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find(path + ": tokenizer.json is not valid JSON: [json.exception.out_of_range.406]"),
              std::string::npos)
        << e.what();
  }
  std::remove(path.c_str());
}

}  // namespace
}  // namespace icae::tok
