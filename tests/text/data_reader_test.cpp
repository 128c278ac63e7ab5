// The training and evaluation data readers read from a stream (src/train/data.cpp and
// src/eval/eval_data.cpp are torch-free and compiled into this binary too: they run under the
// sanitizers, as in fuzz/data_fuzz.cpp). TrainData.* and Eval* (tests/model) cover the files.
#include <gtest/gtest.h>

#include <sstream>

#include "icae/eval/eval_data.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/train/data.h"
#include "icae/util/error.h"
#include "test_paths.h"

namespace icae {
namespace {

const tok::Tokenizer& gpt2() {
  static const tok::Tokenizer t = tok::Tokenizer::from_file(test::shared_dir() + "/testdata/tokenizers/gpt2/tokenizer.json");
  return t;
}

TEST(DataReader, StreamsReadAsFilesDo) {
  train::DataOptions o;
  o.kind = train::DataKind::Pwc;
  o.max_context = 64;
  train::BadDataLog log(false, 0);
  std::istringstream pwc(
      "{\"input\": \"A context.\", \"prompt\": \"Q?\", \"answer\": \"A.\"}\n\n{\"input\": \"x\", \"prompt\": 1}\n[1]\n");
  const auto ex = train::read_examples(pwc, "d.jsonl", gpt2(), o, log);
  ASSERT_EQ(ex.size(), 1u);
  EXPECT_EQ(ex[0].source, "d.jsonl:1");
  EXPECT_EQ(log.count(), 2);
  EXPECT_EQ(log.messages().size(), 0u);  // max_messages 0: counted, not printed

  o.kind = train::DataKind::Text;
  o.split_blocks = true;
  o.min_context = 1;
  std::istringstream text("one two\nthree\n\n\nfour\n");
  const auto blocks = train::read_examples(text, "d.txt", gpt2(), o, log);
  ASSERT_EQ(blocks.size(), 2u);
  EXPECT_EQ(blocks[1].source, "d.txt:5");

  train::BadDataLog strict(true);
  std::istringstream bad("{\"text\": 3}\n");
  try {
    train::read_examples(bad, "d.jsonl", gpt2(), o, strict);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "d.jsonl:1: field \"text\" is not a string (--strict-data)");
  }

  std::istringstream eval("{\"text\": \"hello\"}\n{\"text\": \"\"}\n");
  try {
    eval::read_eval_stream(eval, "e.jsonl", eval::EvalDataKind::Text);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "e.jsonl:2: empty \"text\"");
  }
  std::istringstream plain("just text");
  EXPECT_EQ(eval::read_eval_stream(plain, "e.txt", eval::EvalDataKind::Text).at(0).text, "just text");
}

}  // namespace
}  // namespace icae
