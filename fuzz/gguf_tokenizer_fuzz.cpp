// Fuzzes GGUF tokenizer metadata -> tokenizer.json -> Tokenizer, then a short encode/decode.
#include <cstdint>
#include <vector>

#include "icae/formats/gguf.h"
#include "icae/formats/gguf_tokenizer.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace icae;
  try {
    const gguf::GgufFile file = gguf::GgufFile::from_memory(std::vector<uint8_t>(data, data + size), "fuzz.gguf");
    const nlohmann::json j = gguf::tokenizer_json_from_gguf(file);
    const tok::Tokenizer tok(j);
    // export-tokenizer writes what loaded with strict UTF-8: a token that is not UTF-8 must have
    // failed above as icae::Error, not escape from here as nlohmann's type_error.
    (void)j.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    const auto ids = tok.encode("Hello world, 123 <s> caf\xc3\xa9!\n", {true, true});
    (void)tok.decode(ids);
  } catch (const Error&) {
  }
  return 0;
}
