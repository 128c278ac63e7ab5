// tokenizer.json from GGUF metadata: small synthetic vocabularies (byte-level and SentencePiece
// style), errors, and the real SmolLM2 file against ids produced by transformers 5.17.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "gguf_test_writer.h"
#include "icae/formats/gguf.h"
#include "icae/formats/gguf_tokenizer.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

using namespace icae::gguf;
using icae::gguf::testing::Writer;
using icae::tok::TokenId;

namespace {

// GPT-2's printable alphabet: byte b -> the code point standing for it in byte-level vocabularies.
std::string byte_char(int b) {
  static std::vector<int> map = [] {
    std::vector<int> m(256, -1);
    int next = 256;
    for (int i = 0; i < 256; ++i) {
      bool printable = (i >= 33 && i <= 126) || (i >= 161 && i <= 172) || (i >= 174);
      m[i] = printable ? i : next++;
    }
    return m;
  }();
  int cp = map[b];
  std::string s;
  if (cp < 0x80) s += static_cast<char>(cp);
  else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// A byte-level vocabulary: <|endoftext|>, the 256 bytes, then "Ġa" "ab" "Ġab", and a user token.
Writer gpt2_writer(const std::string& pre) {
  Writer w;
  std::vector<std::string> tokens = {"<|endoftext|>"};
  for (int b = 0; b < 256; ++b) tokens.push_back(byte_char(b));
  std::string sp = byte_char(' ');
  tokens.push_back(sp + "a");
  tokens.push_back("ab");
  tokens.push_back(sp + "ab");
  tokens.push_back("<tool>");
  std::vector<int32_t> types(tokens.size(), 1);
  types[0] = 3;
  types.back() = 4;
  w.kv_str("tokenizer.ggml.model", "gpt2");
  if (!pre.empty()) w.kv_str("tokenizer.ggml.pre", pre);
  w.kv_strs("tokenizer.ggml.tokens", tokens);
  w.kv_i32s("tokenizer.ggml.token_type", types);
  w.kv_strs("tokenizer.ggml.merges", {sp + " a", "a b", sp + "a b"});
  w.kv_u32("tokenizer.ggml.eos_token_id", 0);
  return w;
}

icae::tok::Tokenizer tokenizer_of(Writer& w) {
  GgufFile f = GgufFile::from_memory(w.build(), "tok.gguf");
  return icae::tok::Tokenizer(tokenizer_json_from_gguf(f));
}

std::string smollm2_path() {
  if (const char* p = std::getenv("ICAE_SMOLLM2_GGUF")) return p;
  return std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace

TEST(GgufTokenizer, ByteLevelVocabulary) {
  Writer w = gpt2_writer("smollm");
  GgufFile f = GgufFile::from_memory(w.build(), "tok.gguf");
  nlohmann::json j = tokenizer_json_from_gguf(f);
  EXPECT_EQ(j["pre_tokenizer"]["type"], "Sequence");
  EXPECT_EQ(j["pre_tokenizer"]["pretokenizers"][0]["type"], "Digits");
  EXPECT_EQ(j["decoder"]["type"], "ByteLevel");
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["content"], "<|endoftext|>");
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  EXPECT_EQ(j["added_tokens"][1]["special"], false);

  icae::tok::Tokenizer tok(j);
  const TokenId sp_ab = 259, ab = 258;
  // "ab ab" -> "ab", "Ġab"; digits go one by one.
  EXPECT_EQ(tok.encode("ab ab"), (std::vector<TokenId>{ab, sp_ab}));
  EXPECT_EQ(tok.encode("12"), (std::vector<TokenId>{1 + '1', 1 + '2'}));
  icae::tok::EncodeOptions special;
  special.parse_special = true;
  EXPECT_EQ(tok.encode("a<|endoftext|><tool>", special), (std::vector<TokenId>{1 + 'a', 0, 260}));
  EXPECT_EQ(tok.decode({ab, sp_ab, 1 + '!'}), "ab ab!");
  EXPECT_EQ(tok.vocab_size(), 261u);
}

TEST(GgufTokenizer, PreTokenizerNames) {
  for (std::string pre : {"", "default", "gpt2", "llama-bpe", "qwen2", "starcoder"}) {
    Writer w = gpt2_writer(pre);
    EXPECT_NO_THROW(tokenizer_of(w)) << pre;
  }
  Writer w = gpt2_writer("no-such-pre");
  try {
    tokenizer_of(w);
    FAIL();
  } catch (const icae::Error& e) {
    EXPECT_EQ(e.kind(), icae::ErrorKind::Unsupported);
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos);
  }
}

TEST(GgufTokenizer, SentencePieceVocabularyWithScores) {
  Writer w;
  const std::string u = "\xe2\x96\x81";  // ▁
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", u, "a", "b", u + "a", "ab", u + "ab"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
  }
  std::vector<float> scores(tokens.size(), 0.f);
  scores[6] = -3.f;  // ▁a
  scores[7] = -1.f;  // ab (merged first)
  scores[8] = -2.f;  // ▁ab
  std::vector<int32_t> types(tokens.size(), 1);
  types[0] = 2;
  types[1] = types[2] = 3;
  for (size_t i = 9; i < types.size(); ++i) types[i] = 6;
  w.kv_str("tokenizer.ggml.model", "llama");
  w.kv_strs("tokenizer.ggml.tokens", tokens);
  w.kv_f32s("tokenizer.ggml.scores", scores);
  w.kv_i32s("tokenizer.ggml.token_type", types);
  w.kv_u32("tokenizer.ggml.bos_token_id", 1);
  w.kv_u32("tokenizer.ggml.eos_token_id", 2);
  GgufFile f = GgufFile::from_memory(w.build(), "spm.gguf");
  nlohmann::json j = tokenizer_json_from_gguf(f);
  // Merges ranked by the merged token's score: ab (-1), ▁ab (-2: ▁+ab, ▁a+b), ▁a (-3).
  ASSERT_EQ(j["model"]["merges"].size(), 4u);
  EXPECT_EQ(j["model"]["merges"][0], nlohmann::json::array({"a", "b"}));
  EXPECT_EQ(j["model"]["merges"][3], nlohmann::json::array({u, "a"}));
  icae::tok::Tokenizer tok(j);
  icae::tok::EncodeOptions with_bos;
  with_bos.add_special = true;
  EXPECT_EQ(tok.encode("ab", with_bos), (std::vector<TokenId>{1, 8}));
  EXPECT_EQ(tok.encode("ab a"), (std::vector<TokenId>{8, 6}));
  // Byte fallback for characters outside the vocabulary: "é" = C3 A9.
  EXPECT_EQ(tok.encode("\xc3\xa9"), (std::vector<TokenId>{3, 9 + 0xC3, 9 + 0xA9}));
  EXPECT_EQ(tok.decode({8, 6}), "ab a");
}

// Merges derived from scores grow with the cube of the token length: "a", "aa", ..., a^700 (245 KB
// of tokens) gave 700^3 / 3 = 114 MB of merge strings before the limit (and 30 GB at 10 MB).
TEST(GgufTokenizer, MergesDerivedFromScoresAreBounded) {
  Writer w;
  std::vector<std::string> tokens;
  for (int k = 1; k <= 700; ++k) tokens.push_back(std::string(static_cast<size_t>(k), 'a'));
  w.kv_str("tokenizer.ggml.model", "llama");
  w.kv_strs("tokenizer.ggml.tokens", tokens);
  w.kv_f32s("tokenizer.ggml.scores", std::vector<float>(tokens.size(), 0.f));
  w.kv_u32("tokenizer.ggml.bos_token_id", 0);  // otherwise valid: only the merges are wrong
  GgufFile f = GgufFile::from_memory(w.build(), "cube.gguf");
  try {
    tokenizer_json_from_gguf(f);
    FAIL() << "no error";
  } catch (const icae::Error& e) {
    EXPECT_EQ(e.kind(), icae::ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("cube.gguf: the merges derived from tokenizer.ggml.scores exceed the limit "
                                         "of 4194304 merges or 67108864 bytes"),
              std::string::npos)
        << e.what();
  }
}

TEST(GgufTokenizer, MetadataErrors) {
  {
    Writer w = gpt2_writer("smollm");
    w.kv_u32("tokenizer.ggml.bos_token_id", 999);
    EXPECT_THROW(tokenizer_of(w), icae::Error);
  }
  {
    Writer w;
    w.kv_str("tokenizer.ggml.model", "bert");
    w.kv_strs("tokenizer.ggml.tokens", {"a"});
    try {
      tokenizer_of(w);
      FAIL();
    } catch (const icae::Error& e) {
      EXPECT_NE(std::string(e.what()).find("'bert'"), std::string::npos);
    }
  }
  {
    Writer w;
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", {"a", "b"});
    w.kv_i32s("tokenizer.ggml.token_type", {1});
    w.kv_strs("tokenizer.ggml.merges", {});
    EXPECT_THROW(tokenizer_of(w), icae::Error);
  }
  {
    Writer w;
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", {"a", "a"});
    w.kv_strs("tokenizer.ggml.merges", {});
    EXPECT_THROW(tokenizer_of(w), icae::Error);
  }
}

// Found by the gguf_tokenizer fuzz target: a token that is not UTF-8 loaded, and export-tokenizer
// then failed inside the JSON library ("[json.exception.type_error.316] invalid UTF-8 byte", exit 1).
// The crashing input is kept in fuzz/corpus/gguf_tokenizer/invalid_utf8_token.
TEST(GgufTokenizer, TokensAndMergesMustBeUtf8) {
  for (const bool in_merges : {false, true}) {
    Writer w;
    w.kv_str("tokenizer.ggml.model", "gpt2");
    w.kv_strs("tokenizer.ggml.tokens", {"a", in_merges ? "b" : "x\x96", "ab"});
    w.kv_strs("tokenizer.ggml.merges", {in_merges ? "a \xc3" : "a b"});
    try {
      tokenizer_of(w);
      FAIL() << "accepted invalid UTF-8";
    } catch (const icae::Error& e) {
      EXPECT_EQ(e.kind(), icae::ErrorKind::BadInput);
      const std::string expected = in_merges ? "tok.gguf: tokenizer.ggml.merges[0] is not valid UTF-8 (byte offset 2)"
                                             : "tok.gguf: tokenizer.ggml.tokens[1] is not valid UTF-8 (byte offset 1)";
      EXPECT_EQ(std::string(e.what()), expected);
    }
  }
}

// Expected ids from transformers 5.17 (AutoTokenizer on the same GGUF) for texts where its GGUF
// converter and SmolLM2's own pipeline agree (see docs/models.md for where they differ).
TEST(GgufTokenizer, SmolLM2MatchesTransformers) {
  std::string path = smollm2_path();
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path << " (run scripts/fetch-model)";
  GgufFile f = GgufFile::open(path);
  icae::tok::Tokenizer tok(tokenizer_json_from_gguf(f));
  EXPECT_EQ(tok.vocab_size(), 49152u);
  EXPECT_EQ(tok.encode("Hello world 12345"), (std::vector<TokenId>{19556, 905, 216, 33, 34, 35, 36, 37}));
  EXPECT_EQ(tok.encode("x=1234567;"), (std::vector<TokenId>{104, 45, 33, 34, 35, 36, 37, 38, 39, 43}));
  EXPECT_EQ(tok.encode("na\xc3\xafve caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x8e\x89"),
            (std::vector<TokenId>{3546, 46494, 37366, 17097, 241, 115, 40993, 179, 120, 248, 15107, 232, 227}));
  icae::tok::EncodeOptions special;
  special.parse_special = true;
  auto chat = tok.encode("<|im_start|>user\nhi<|im_end|>", special);
  EXPECT_EQ(chat, (std::vector<TokenId>{1, 4093, 198, 6004, 2}));
  EXPECT_EQ(tok.decode(chat), "<|im_start|>user\nhi<|im_end|>");
  EXPECT_EQ(tok.encode("hi", {/*add_special=*/true}), (std::vector<TokenId>{6004}));  // no BOS
}
