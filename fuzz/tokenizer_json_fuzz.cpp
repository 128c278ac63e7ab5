// Fuzzes tokenizer.json loading, encoding and decoding. Input: a tokenizer.json, a NUL byte,
// then a text; the text is encoded (both with and without special-token parsing) and its bytes,
// read as 16-bit ids, are decoded, out-of-range ids included.
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const char* begin = reinterpret_cast<const char*>(data);
  const char* nul = static_cast<const char*>(std::memchr(begin, 0, size));
  const char* json_end = nul ? nul : begin + size;
  const std::string_view text = nul ? std::string_view(nul + 1, begin + size - nul - 1) : std::string_view();
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(begin, json_end);
  } catch (const nlohmann::json::exception&) {
    return 0;  // from_file reports this as BadInput; the JSON library is not under test
  }
  try {
    const icae::tok::Tokenizer tok(j);
    for (const bool special : {false, true}) {
      icae::tok::EncodeOptions e;
      e.add_special = special;
      e.parse_special = special;
      e.invalid_utf8 = special ? icae::tok::InvalidUtf8::Replace : icae::tok::InvalidUtf8::Error;
      try {
        const auto ids = tok.encode(text, e);
        for (auto id : ids)
          if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();  // encode made an id that is not there
        (void)tok.decode(ids, {special});
      } catch (const icae::Error&) {
      }
    }
    std::vector<icae::tok::TokenId> ids;
    for (size_t i = 0; i + 1 < text.size(); i += 2)
      ids.push_back(static_cast<int16_t>(uint16_t(uint8_t(text[i])) | uint16_t(uint8_t(text[i + 1])) << 8));
    try {
      (void)tok.decode(ids);
    } catch (const icae::Error&) {
    }
    for (auto id : ids) {
      try {
        (void)tok.id_to_token(id);
      } catch (const icae::Error&) {
      }
    }
  } catch (const icae::Error&) {
  }
  return 0;
}
