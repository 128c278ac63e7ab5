// The post-processor of tokenizer.json ("post_processor"), for a single sequence: the ids put
// before and after the encoded text when special tokens are added (BOS/EOS).
// Supported: TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel (adds nothing),
// Sequence.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace icae::tok {

using TokenId = int32_t;

struct PostProcessing {
  std::vector<TokenId> prefix;  // e.g. {bos}
  std::vector<TokenId> suffix;  // e.g. {eos}
};

PostProcessing make_post_processing(const nlohmann::json& j, const std::string& where = "post_processor");

}  // namespace icae::tok
