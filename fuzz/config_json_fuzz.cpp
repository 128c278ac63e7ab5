// Fuzzes config.json -> ModelConfig (the parser from_file uses, after JSON parsing).
#include <cstdint>
#include <nlohmann/json.hpp>

#include "icae/model/config.h"
#include "icae/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(data, data + size);
  } catch (const nlohmann::json::exception&) {
    return 0;  // from_file turns this into icae::Error(BadInput); not the parser under test
  }
  try {
    const icae::ModelConfig c = icae::ModelConfig::from_json(j);
    // What `icae params` and the adapter fingerprint do with a config that parsed.
    volatile int64_t sink = c.parameter_count();
    (void)sink;
    (void)icae::ModelConfig::from_json(c.to_json());
  } catch (const icae::Error&) {
  }
  return 0;
}
