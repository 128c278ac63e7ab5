// FT templates around [slots, FT, prompt] built from real tokenizers.
#include <gtest/gtest.h>

#include "icae/core/objectives.h"
#include "icae/tokenizer/tokenizer.h"
#include "test_paths.h"

using namespace icae;

namespace {

tok::Tokenizer load_tokenizer(const std::string& name) {
  return tok::Tokenizer::from_file(test::shared_dir() + "/testdata/tokenizers/" + name + "/tokenizer.json");
}

std::string decode(const tok::Tokenizer& t, const std::vector<int64_t>& ids) {
  std::vector<tok::TokenId> v(ids.begin(), ids.end());
  return t.decode(v);
}

TEST(FtTemplate, MistralIsTheReleasedIcaeLayout) {
  tok::Tokenizer t = load_tokenizer("mistral");
  FtTemplate m = make_ft_template("mistral", t);
  // The released ICAE v2 code hard-codes these ids for Mistral-7B-Instruct.
  EXPECT_EQ(m.before, (std::vector<int64_t>{1, 733, 16289, 28793}));
  EXPECT_EQ(m.after, (std::vector<int64_t>{733, 28748, 16289, 28793}));
}

TEST(FtTemplate, ChatFamiliesWrapTheUserTurn) {
  tok::Tokenizer qwen = load_tokenizer("qwen3");
  FtTemplate c = make_ft_template("chatml", qwen);
  EXPECT_EQ(decode(qwen, c.before), "<|im_start|>user\n");
  EXPECT_EQ(decode(qwen, c.after), "<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(c.before.front(), qwen.token_to_id("<|im_start|>"));

  tok::Tokenizer llama3 = load_tokenizer("llama3");
  FtTemplate l3 = make_ft_template("llama3", llama3);
  EXPECT_EQ(l3.before.front(), llama3.token_to_id("<|begin_of_text|>"));
  EXPECT_EQ(decode(llama3, l3.after), "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");

  tok::Tokenizer llama2 = load_tokenizer("llama2");
  FtTemplate l2 = make_ft_template("llama2", llama2);
  EXPECT_EQ(l2.before.front(), 1);  // <s>
  EXPECT_EQ(decode(llama2, l2.after), "[/INST]");

  FtTemplate none = make_ft_template("none", llama2);
  EXPECT_EQ(none.before, (std::vector<int64_t>{1}));
  EXPECT_TRUE(none.after.empty());
  EXPECT_THROW(make_ft_template("alpaca", llama2), Error);
}

}  // namespace
