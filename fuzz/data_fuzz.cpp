// Fuzzes the training and evaluation data readers (train/data.cpp read_examples, eval/eval_data.cpp
// read_eval_stream) on a file image in memory, tokenized with the real GPT-2 vocabulary from
// ../shared (loaded once). Input: a byte choosing reader, format and options, a byte for the
// context limits, then the file's bytes. Compiles the two readers itself: they need no libtorch.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>

#include "icae/eval/eval_data.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/train/data.h"
#include "icae/util/error.h"

namespace {

const icae::tok::Tokenizer& tokenizer() {
  static const auto tok = [] {
    const char* env = std::getenv("ICAE_SHARED");
    const std::string shared = env && *env ? env : ICAE_SHARED_DIR;
    return std::make_unique<icae::tok::Tokenizer>(
        icae::tok::Tokenizer::from_file(shared + "/testdata/tokenizers/gpt2/tokenizer.json"));
  }();
  return *tok;
}

}  // namespace

// Loading the vocabulary takes a while under ASan: before the first input, outside its timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizer();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0], limits = data[1];
  const std::string bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  static const char* kNames[] = {"fuzz.txt", "fuzz.jsonl", "fuzz.json", "fuzz"};
  const std::string name = kNames[mode & 3];
  const bool pwc = mode & 4;
  std::istringstream in(bytes);
  if (mode & 8) {
    // Evaluation: a bad record is an error.
    try {
      const auto samples = icae::eval::read_eval_stream(in, name, pwc ? icae::eval::EvalDataKind::Pwc
                                                                       : icae::eval::EvalDataKind::Text);
      for (const auto& s : samples)
        if (s.source.empty() || (!pwc && s.text.empty()) || (pwc && s.input.empty())) __builtin_trap();
    } catch (const icae::Error&) {
    }
    return 0;
  }
  icae::train::DataOptions o;
  o.kind = pwc ? icae::train::DataKind::Pwc : icae::train::DataKind::Text;
  o.split_blocks = mode & 16;
  o.max_context = 1 + (limits & 31);
  o.min_context = limits >> 5;
  // Strict: the first bad record throws; otherwise counted, and with max_messages 0 nothing printed.
  icae::train::BadDataLog log(mode & 32, 0);
  try {
    const auto examples = icae::train::read_examples(in, name, tokenizer(), o, log);
    for (const auto& e : examples) {
      if (e.context.empty() || static_cast<int64_t>(e.context.size()) > o.max_context) __builtin_trap();
      if (!pwc && static_cast<int64_t>(e.context.size()) < o.min_context) __builtin_trap();
      if (pwc && e.answer.empty()) __builtin_trap();
      for (const auto* ids : {&e.context, &e.prompt, &e.answer})
        for (int64_t id : *ids)
          if (id < 0 || static_cast<size_t>(id) >= tokenizer().vocab_size()) __builtin_trap();
    }
  } catch (const icae::Error&) {
  }
  return 0;
}
