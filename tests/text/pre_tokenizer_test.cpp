// Pre-tokenizers and normalizers on their own: Split behaviors, regex classes, Metaspace, Digits.
#include <gtest/gtest.h>

#include "icae/tokenizer/normalizer.h"
#include "icae/tokenizer/pre_tokenizer.h"

namespace icae::tok {
namespace {

std::vector<std::string> pieces(const nlohmann::json& j, const std::string& text, bool at_start = true) {
  auto p = make_pre_tokenizer(j);
  PreTokenized pt{text, {{0, text.size()}}};
  p->pre_tokenize(pt, at_start);
  std::vector<std::string> out;
  for (auto [b, e] : pt.spans) out.push_back(pt.text.substr(b, e - b));
  return out;
}

nlohmann::json split(const std::string& behavior, bool invert = false) {
  return {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"behavior", behavior}, {"invert", invert}};
}

using V = std::vector<std::string>;

TEST(Split, Behaviors) {
  const std::string s = "a-b--c-";
  EXPECT_EQ(pieces(split("Removed"), s), (V{"a", "b", "c"}));
  EXPECT_EQ(pieces(split("Isolated"), s), (V{"a", "-", "b", "-", "-", "c", "-"}));
  EXPECT_EQ(pieces(split("MergedWithPrevious"), s), (V{"a-", "b-", "-", "c-"}));
  EXPECT_EQ(pieces(split("MergedWithNext"), s), (V{"a", "-b", "-", "-c", "-"}));
  EXPECT_EQ(pieces(split("Contiguous"), s), (V{"a", "-", "b", "--", "c", "-"}));
  EXPECT_EQ(pieces(split("Removed", true), s), (V{"-", "-", "-", "-"}));  // each match is a piece
}

TEST(Split, Llama3PatternUnicodeClasses) {
  const nlohmann::json j = {
      {"type", "Split"},
      {"pattern",
       {{"Regex",
         R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)"}}},
      {"behavior", "Isolated"}};
  EXPECT_EQ(pieces(j, "I'LL pay 12345 \xC3\xA9t\xC3\xA9s!!\n\n  ok"),
            (V{"I", "'LL", " pay", " ", "123", "45", " \xC3\xA9t\xC3\xA9s", "!!\n\n", " ", " ok"}));
  // U+0085 and U+3000 are whitespace (as in Oniguruma), Devanagari letters are letters.
  EXPECT_EQ(pieces(j, "a\xC2\x85\xC2\x85" "b"), (V{"a", "\xC2\x85", "\xC2\x85" "b"}));
  EXPECT_EQ(pieces(j, "\xE0\xA4\xA8\xE0\xA4\xAE"), (V{"\xE0\xA4\xA8\xE0\xA4\xAE"}));
}

TEST(PreTokenizers, ByteLevelDigitsMetaspace) {
  EXPECT_EQ(pieces({{"type", "ByteLevel"}, {"add_prefix_space", true}}, "Hello world  x"),
            (V{" Hello", " world", " ", " x"}));
  EXPECT_EQ(pieces({{"type", "Digits"}, {"individual_digits", true}}, "a12b3"), (V{"a", "1", "2", "b", "3"}));
  EXPECT_EQ(pieces({{"type", "Digits"}, {"individual_digits", false}}, "a12b3"), (V{"a", "12", "b", "3"}));
  const nlohmann::json meta = {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}};
  EXPECT_EQ(pieces(meta, "Hey  you"), (V{"\xE2\x96\x81Hey", "\xE2\x96\x81", "\xE2\x96\x81you"}));
  EXPECT_EQ(pieces(meta, "Hey", /*at_start=*/false), (V{"Hey"}));
  EXPECT_EQ(pieces({{"type", "WhitespaceSplit"}}, " a  b\tc "), (V{"a", "b", "c"}));
  EXPECT_EQ(pieces({{"type", "Whitespace"}}, "Hi, you!"), (V{"Hi", ",", "you", "!"}));
}

TEST(Normalizers, PrependReplaceStrip) {
  auto n = make_normalizer(nlohmann::json::parse(R"({"type": "Sequence", "normalizers": [
      {"type": "Strip", "strip_left": false, "strip_right": true},
      {"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"},
      {"type": "Replace", "pattern": {"Regex": "\\d+"}, "content": "#"}]})"));
  std::string s = " a b12 \n";
  n->normalize(s);
  EXPECT_EQ(s, "\xE2\x96\x81\xE2\x96\x81" "a\xE2\x96\x81" "b#");
  std::string empty;
  n->normalize(empty);
  EXPECT_EQ(empty, "");  // Prepend leaves empty text empty
}

}  // namespace
}  // namespace icae::tok
