// Fuzzes encode/decode with the real shipped vocabularies (../shared/testdata/tokenizers), whose
// regex pre-tokenizers, normalizers and byte fallback the tiny seeds of tokenizer_json lack.
// Input: one byte choosing the tokenizer, then the text; the text's bytes, read as 32-bit ids,
// are also decoded (out-of-range ids included).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

namespace {

std::vector<std::unique_ptr<icae::tok::Tokenizer>>& tokenizers() {
  static std::vector<std::unique_ptr<icae::tok::Tokenizer>> all = [] {
    const char* env = std::getenv("ICAE_SHARED");
    const std::string shared = env && *env ? env : ICAE_SHARED_DIR;
    std::vector<std::unique_ptr<icae::tok::Tokenizer>> v;
    for (const char* name : {"gpt2", "llama2", "llama3", "mistral", "qwen3"}) {
      const std::string path = shared + "/testdata/tokenizers/" + name + "/tokenizer.json";
      v.push_back(std::make_unique<icae::tok::Tokenizer>(icae::tok::Tokenizer::from_file(path)));
    }
    return v;
  }();
  return all;
}

}  // namespace

// Loading five real vocabularies takes seconds under ASan: done before the first input, so that
// libFuzzer's per-input timeout does not count it.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const icae::tok::Tokenizer& tok = *tokenizers()[data[0] % tokenizers().size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  for (const bool special : {false, true}) {
    icae::tok::EncodeOptions e;
    e.add_special = special;
    e.parse_special = special;
    e.invalid_utf8 = special ? icae::tok::InvalidUtf8::Replace : icae::tok::InvalidUtf8::Error;
    try {
      const auto ids = tok.encode(text, e);
      for (auto id : ids)
        if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();
      const std::string back = tok.decode(ids);
      // Valid UTF-8 without added-token text round-trips exactly for these vocabularies: checked
      // by the RoundTrip tests on random text; here only that decoding what we encoded works.
      (void)back;
    } catch (const icae::Error&) {
    }
  }
  std::vector<icae::tok::TokenId> ids;
  for (size_t i = 0; i + 4 <= text.size(); i += 4) {
    int32_t id;
    std::memcpy(&id, text.data() + i, 4);
    ids.push_back(id % 200000);
  }
  try {
    (void)tok.decode(ids, {true});
  } catch (const icae::Error&) {
  }
  return 0;
}
