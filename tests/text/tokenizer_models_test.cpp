// Exact ids for the shipped tokenizers beyond llama.cpp's vectors (expected values from Hugging
// Face tokenizers 0.23.3), and configurations the shipped files do not cover (SmolLM2's Digits +
// ByteLevel pre-tokenizer, legacy Metaspace), built by editing a shipped tokenizer.json.
#include <gtest/gtest.h>

#include <fstream>

#include "icae/tokenizer/bpe_model.h"
#include "icae/tokenizer/chat_template.h"
#include "icae/tokenizer/normalizer.h"
#include "tokenizer_test_util.h"

namespace icae::tok {
namespace {

using Ids = std::vector<TokenId>;

nlohmann::json load_json(const std::string& name) {
  std::ifstream in(testing::tokenizer_dir() + "/" + name + "/tokenizer.json");
  return nlohmann::json::parse(in);
}

TEST(Mistral, SentencesGiveReferenceIds) {
  const Tokenizer& t = testing::shipped("mistral");
  const std::vector<std::pair<std::string, Ids>> cases = {
      {"Hello world", {22557, 1526}},
      {" Hello  world!", {28705, 22557, 28705, 1526, 28808}},
      {"The In-context Autoencoder compresses a long context into memory slots.",
       {415, 560, 28733, 2714, 12191, 20787, 25595, 274, 264, 1043, 2758, 778, 4733, 19708, 28723}},
      {"Z\xC3\xBCrich, 2024: 3.14 \xE2\x82\xAC \xE2\x80\x94 na\xC3\xAFve caf\xC3\xA9",
       {1054, 2355, 539, 28725, 28705, 28750, 28734, 28750, 28781, 28747, 28705, 28770, 28723, 28740, 28781, 17416, 1040,
        1879, 28920, 333, 28345}},
      {"\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C", {28705, 29383, 29530, 28924, 30050, 29822}},
      {"[INST] What is 2+2? [/INST]",
       {733, 16289, 28793, 1824, 349, 28705, 28750, 28806, 28750, 28804, 733, 28748, 16289, 28793}},
      {"line1\nline2\n\ttab", {1407, 28740, 13, 1081, 28750, 13, 12, 4252}},
      {"\xF0\x9F\xA6\x99 llamas", {28705, 243, 162, 169, 156, 17620, 293}},  // byte fallback
      {"", {}},
  };
  for (const auto& [text, ids] : cases) {
    EXPECT_EQ(t.encode(text), ids) << text;
    EXPECT_EQ(t.decode(ids), text) << text;
    Ids with_bos = ids;
    with_bos.insert(with_bos.begin(), 1);
    EXPECT_EQ(t.encode(text, {/*add_special=*/true}), with_bos) << text;
    EXPECT_EQ(t.decode(with_bos, {/*skip_special=*/true}), text) << text;
  }
  EXPECT_EQ(t.bos_id(), 1);
  EXPECT_EQ(t.eos_id(), 2);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.vocab_size(), 32000u);
  EXPECT_EQ(t.token_to_id("\xE2\x96\x81Hello"), 22557);
  EXPECT_EQ(t.id_to_token(22557), "\xE2\x96\x81Hello");
  EXPECT_TRUE(t.is_special(2));
  EXPECT_FALSE(t.is_special(22557));
}

TEST(Mistral, SpecialTokensInTextOnlyWhenAsked) {
  const Tokenizer& t = testing::shipped("mistral");
  const std::string chat = "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]";
  EncodeOptions parse;
  parse.parse_special = true;
  const Ids expected = {1, 733, 16289, 28793, 15359, 733, 28748, 16289, 28793, 16230,
                        2, 733, 16289, 28793, 2463,  28706, 733, 28748, 16289, 28793};
  EXPECT_EQ(t.encode(chat, parse), expected);
  const Ids plain = t.encode(chat);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 1), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 2), 0);
  EXPECT_EQ(t.decode(plain), chat);
  // Text after a special token gets its own "▁" (legacy Prepend), which decodes to a space.
  EXPECT_EQ(t.decode(expected), "<s> [INST] Hi [/INST]Hello</s> [INST] Bye [/INST]");
  EXPECT_EQ(t.decode(expected, {/*skip_special=*/true}), "[INST] Hi [/INST]Hello [INST] Bye [/INST]");
}

TEST(ChatTemplateIds, ChatMLAndLlama3) {
  EncodeOptions parse;
  parse.parse_special = true;
  const std::string chatml = render_chat(ChatFormat::ChatML, {{"system", "You are helpful."}, {"user", "Hi!"}});
  EXPECT_EQ(testing::shipped("qwen3").encode(chatml, parse),
            (Ids{151644, 8948, 198, 2610, 525, 10950, 13, 151645, 198, 151644, 872, 198, 13048, 0, 151645, 198, 151644,
                 77091, 198}));
  const std::string llama3 = render_chat(ChatFormat::Llama3, {{"user", "Hi!"}});
  EXPECT_EQ(testing::shipped("llama3").encode(llama3, parse),
            (Ids{128000, 128006, 882, 128007, 271, 13347, 0, 128009, 128006, 78191, 128007, 271}));
}

TEST(ByteLevel, SpecialIdsAndAddedTokens) {
  const Tokenizer& q = testing::shipped("qwen3");
  EXPECT_TRUE(q.byte_level());
  EXPECT_EQ(q.token_to_id("<|im_start|>"), 151644);
  EXPECT_EQ(q.id_to_token(151644), "<|im_start|>");
  EXPECT_EQ(q.eos_id(), 151643);  // <|endoftext|>
  EXPECT_EQ(q.bos_id(), -1);
  // Non-special added tokens (<think>) are always matched; special ones only when asked.
  EXPECT_EQ(q.encode("<think>").size(), 1u);
  EXPECT_GT(q.encode("<|im_end|>").size(), 1u);
  EXPECT_EQ(q.encode("<|im_end|>", {false, true}), Ids{151645});
  const Tokenizer& g = testing::shipped("gpt2");
  EXPECT_EQ(g.encode("<|endoftext|>", {false, true}), Ids{50256});
  EXPECT_EQ(g.decode({50256, 15496}, {true}), "Hello");
  EXPECT_EQ(g.decode({50256, 15496}), "<|endoftext|>Hello");
  EXPECT_THROW(g.decode({50257}), Error);
  EXPECT_THROW(g.decode({-1}), Error);
  // Llama 3's post-processor is plain ByteLevel: add_special adds nothing.
  const Tokenizer& l = testing::shipped("llama3");
  EXPECT_EQ(l.encode("Hello", {true}), l.encode("Hello"));
  EXPECT_EQ(l.bos_id(), 128000);
}

// SmolLM2's tokenizer.json: GPT-2-style vocabulary, pre-tokenizer Sequence[Digits(individual),
// ByteLevel(use_regex)]. Here with GPT-2's vocabulary; ids from Hugging Face on the same file.
TEST(Configurations, DigitsThenByteLevelLikeSmolLM2) {
  nlohmann::json j = load_json("gpt2");
  j["pre_tokenizer"] = nlohmann::json::parse(R"({"type": "Sequence", "pretokenizers": [
      {"type": "Digits", "individual_digits": true},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]})");
  const Tokenizer t(j);
  EXPECT_EQ(t.encode("In 2024, 12345 people paid $3.50 each."),
            (Ids{818, 220, 17, 15, 17, 19, 11, 220, 16, 17, 18, 19, 20, 661, 3432, 720, 18, 13, 20, 15, 1123, 13}));
  EXPECT_EQ(t.encode("x1y22z333 \xD9\xA1\xD9\xA2\xD9\xA3"),
            (Ids{87, 16, 88, 17, 17, 89, 18, 18, 18, 220, 149, 94, 149, 95, 149, 96}));
}

// Legacy Llama files: no normalizer, Metaspace pre-tokenizer and decoder.
TEST(Configurations, MetaspacePrependFirst) {
  nlohmann::json j = load_json("llama2");
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}};
  const Tokenizer t(j);
  EXPECT_EQ(t.encode("Hello world"), (Ids{15043, 3186}));
  EXPECT_EQ(t.encode(" Hello  world"), (Ids{15043, 29871, 3186}));
  EXPECT_EQ(t.encode("<s>Hi there</s> again", {false, true}), (Ids{1, 18567, 727, 2, 1449}));
  EXPECT_EQ(t.decode({15043, 29871, 3186}), "Hello  world");
  EXPECT_EQ(t.decode({1, 18567, 727, 2, 1449}, {true}), "Hi there again");
}

TEST(Configurations, AddedTokenFlags) {
  nlohmann::json j = load_json("gpt2");
  j["added_tokens"].push_back({{"id", 50257}, {"content", "<mem>"}, {"special", true}, {"normalized", false},
                               {"lstrip", true}, {"rstrip", true}, {"single_word", false}});
  j["added_tokens"].push_back({{"id", 50258}, {"content", "cat"}, {"special", false}, {"normalized", false},
                               {"lstrip", false}, {"rstrip", false}, {"single_word", true}});
  const Tokenizer t(j);
  EXPECT_EQ(t.vocab_size(), 50259u);
  EncodeOptions parse;
  parse.parse_special = true;
  // lstrip/rstrip: the spaces around <mem> belong to it.
  EXPECT_EQ(t.encode("a  <mem>  b", parse), (Ids{64, 50257, 65}));
  // single_word: "cat" alone is the added token, inside "cats" or "bobcat" it is not.
  EXPECT_EQ(t.encode("cat"), Ids{50258});
  EXPECT_EQ(t.encode("a cat."), (Ids{64, 220, 50258, 13}));
  const Ids glued = t.encode("cats bobcat");
  EXPECT_EQ(std::count(glued.begin(), glued.end(), 50258), 0);
}

TEST(Configurations, NfcComposesWhenIcuIsAvailable) {
  if (!unicode_normalization_available()) GTEST_SKIP() << "built without ICU: NFC is a pass-through";
  const Tokenizer& q = testing::shipped("qwen3");
  EXPECT_EQ(q.encode("cafe\xCC\x81"), q.encode("caf\xC3\xA9"));  // e + combining acute == é
}

}  // namespace
}  // namespace icae::tok
