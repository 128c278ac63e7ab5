// Round-trip property: decode(encode(x)) == x for random valid UTF-8 x, for every shipped
// tokenizer; plus the invalid-UTF-8 policy (error by default, U+FFFD on request).
#include <gtest/gtest.h>

#include <random>

#include "icae/tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace icae::tok {
namespace {

// Random text from scripts that are stable under NFC (no combining marks), so that the Qwen
// tokenizer's NFC normalizer leaves it unchanged; with whitespace of all kinds, digits, emoji and
// strings that look like special tokens or byte-level markers. "▁" (U+2581) only where it is not
// the tokenizer's space marker: SentencePiece-style tokenizers decode it as a space (so does
// Hugging Face), so it cannot round-trip there.
std::string random_text(std::mt19937& rng, bool allow_metaspace) {
  static const std::pair<char32_t, char32_t> ranges[] = {
      // (U+2000 and U+2001 are left out: NFC maps them to U+2002 and U+2003.)
      {0x20, 0x7E},     {0x20, 0x7E},   {0x20, 0x7E},    {0x30, 0x39},   {0x09, 0x0D},   {0xA0, 0xFF},
      {0x100, 0x17F},   {0x391, 0x3C9}, {0x400, 0x4FF},  {0x5D0, 0x5EA}, {0x660, 0x669}, {0x3041, 0x3096},
      {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F64F}, {0x2002, 0x200A}, {0x120, 0x120}, {0x2581, 0x2581},
  };
  static const char* const snippets[] = {"<s>", "</s>", "<|endoftext|>", "<|im_start|>", " ", "  ", "\n\n", "'s",
                                         "'LL", "<0x0A>", "\xC2\x85", "\xE3\x80\x80", "\r\n", "\t"};
  std::uniform_int_distribution<int> len(0, 60), kind(0, 9);
  std::string s;
  const int n = len(rng);
  for (int i = 0; i < n; ++i) {
    if (kind(rng) == 0) {
      s += snippets[std::uniform_int_distribution<size_t>(0, std::size(snippets) - 1)(rng)];
      continue;
    }
    const auto& r = ranges[std::uniform_int_distribution<size_t>(0, std::size(ranges) - (allow_metaspace ? 1 : 2))(rng)];
    append_utf8(s, std::uniform_int_distribution<char32_t>(r.first, r.second)(rng));
  }
  return s;
}

class RoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(RoundTrip, RandomUnicode) {
  const Tokenizer& t = testing::shipped(GetParam());
  std::mt19937 rng(1234);
  for (int i = 0; i < 1500; ++i) {
    const std::string s = random_text(rng, t.byte_level());
    const auto ids = t.encode(s);
    ASSERT_EQ(t.decode(ids), s) << GetParam() << " case " << i;
    // With BOS/EOS added and skipped on decoding, the same text.
    ASSERT_EQ(t.decode(t.encode(s, {true}), {true}), s) << GetParam() << " case " << i;
  }
}

TEST_P(RoundTrip, InvalidUtf8IsAnErrorOrReplaced) {
  const Tokenizer& t = testing::shipped(GetParam());
  const std::string bad = "ok \xFF\xC3 end \xE2\x82";
  try {
    t.encode(bad);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("byte offset 3"), std::string::npos) << e.what();
  }
  EncodeOptions replace;
  replace.invalid_utf8 = InvalidUtf8::Replace;
  EXPECT_EQ(t.decode(t.encode(bad, replace)), "ok \xEF\xBF\xBD\xEF\xBF\xBD end \xEF\xBF\xBD");
}

INSTANTIATE_TEST_SUITE_P(Shipped, RoundTrip, ::testing::Values("llama2", "mistral", "llama3", "qwen3", "gpt2"),
                         [](const auto& info) { return std::string(info.param); });

TEST(Unicode, ValidationAndRepair) {
  EXPECT_EQ(find_invalid_utf8("plain ascii text, long enough for the fast path"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("caf\xC3\xA9 \xF0\x9F\xA6\x99"), std::string::npos);
  EXPECT_EQ(find_invalid_utf8("ab\xC0\xAF"), 2u);          // overlong
  EXPECT_EQ(find_invalid_utf8("ab\xED\xA0\x80"), 2u);      // surrogate
  EXPECT_EQ(find_invalid_utf8("abcdefghij\xF4\x90\x80\x80"), 10u);  // above U+10FFFF
  EXPECT_EQ(sanitize_utf8("a\xF0\x9F\xA6z"), "a\xEF\xBF\xBDz");     // truncated: one U+FFFD
  EXPECT_EQ(sanitize_utf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(byte_level_encode(" \n"), "\xC4\xA0\xC4\x8A");  // "ĠĊ"
  std::string raw;
  EXPECT_TRUE(byte_level_decode("\xC4\xA0\xC4\x8A", raw));
  EXPECT_EQ(raw, " \n");
  for (int b = 0; b < 256; ++b) EXPECT_EQ(unicode_to_byte(byte_to_unicode()[b]), b);
}

}  // namespace
}  // namespace icae::tok
