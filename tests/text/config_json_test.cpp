// config.json -> ModelConfig on hostile values (src/model/config.cpp is torch-free and compiled into
// this test binary too, so these run under the sanitizers). Each case here once escaped as a
// nlohmann exception or undefined behaviour; found on the config_json fuzz target (fuzz/).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "icae/model/config.h"
#include "icae/util/error.h"

namespace icae {
namespace {

nlohmann::json small() {
  return nlohmann::json::parse(R"({"model_type": "mistral", "vocab_size": 8, "hidden_size": 8,
      "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2})");
}

void expect_bad(const nlohmann::json& j, const std::string& needle) {
  try {
    ModelConfig::from_json(j);
    FAIL() << "accepted " << j.dump();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ConfigJson, SmallConfigParses) {
  const ModelConfig c = ModelConfig::from_json(small());
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_GT(c.parameter_count(), 0);
}

// Was: nlohmann::type_error escaping from_json (the CLI said "[json.exception.type_error.302] …", exit 1).
TEST(ConfigJson, SlidingWindowOfTheWrongType) {
  auto j = small();
  j["sliding_window"] = "x";
  expect_bad(j, "config.json: field 'sliding_window' has the wrong type");
}

// Was: undefined behaviour (a float cast to int64 inside nlohmann) for 1e300.
TEST(ConfigJson, FloatsWhereIntegersBelong) {
  auto j = small();
  j["max_position_embeddings"] = 1e300;
  expect_bad(j, "config.json: field 'max_position_embeddings' is not an integer");
  j["max_position_embeddings"] = 4096.5;
  expect_bad(j, "field 'max_position_embeddings' is not an integer");
  j["max_position_embeddings"] = 4096.0;  // a whole number written as a float is fine
  EXPECT_EQ(ModelConfig::from_json(j).max_position_embeddings, 4096);
}

// Was: signed overflow in parameter_count() (vocab_size x hidden_size), and nothing stopped a
// loader from trying to allocate such a model.
TEST(ConfigJson, HugeSizesAreRefused) {
  auto j = small();
  j["vocab_size"] = int64_t(1) << 62;
  j["hidden_size"] = int64_t(1) << 62;
  expect_bad(j, "config: vocab_size = 4611686018427387904 exceeds the limit of 16777216");
  j = small();
  j["num_hidden_layers"] = 1 << 20;
  expect_bad(j, "num_hidden_layers = 1048576 exceeds the limit");
  j = small();
  j["head_dim"] = 1 << 18;
  j["num_attention_heads"] = 1 << 10;
  j["num_key_value_heads"] = 1;
  expect_bad(j, "num_attention_heads * head_dim");
  j = small();
  j["max_position_embeddings"] = 0;
  expect_bad(j, "max_position_embeddings must be positive");
}

}  // namespace
}  // namespace icae
