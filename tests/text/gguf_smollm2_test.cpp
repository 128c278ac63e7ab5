// The real SmolLM2-135M-Instruct GGUF (scripts/fetch-model), when present: metadata as expected
// and every tensor dequantises to finite values. Skipped when the file has not been fetched.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>

#include "icae/formats/gguf.h"
#include "icae/formats/gguf_dequant.h"

using namespace icae::gguf;

namespace {
std::string smollm2_path() {
  if (const char* p = std::getenv("ICAE_SMOLLM2_GGUF")) return p;
  return std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
}
}  // namespace

TEST(GgufSmolLM2, MetadataAndEveryTensorDequantises) {
  std::string path = smollm2_path();
  if (!std::ifstream(path).good()) GTEST_SKIP() << "no " << path << " (run scripts/fetch-model)";
  GgufFile f = GgufFile::open(path);
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("llama.block_count"), 30);
  EXPECT_EQ(f.get_int("llama.embedding_length"), 576);
  EXPECT_EQ(f.get_int("llama.attention.head_count"), 9);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 3);
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "gpt2");
  EXPECT_EQ(f.get_strings("tokenizer.ggml.tokens").size(), 49152u);
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);  // tied embeddings

  std::map<std::string, int> types;
  for (const TensorInfo& t : f.tensors()) {
    ++types[to_string(t.type)];
    ASSERT_TRUE(can_dequantize(t.type)) << t.name << " " << to_string(t.type);
    std::vector<float> v = dequantize(t);
    double sum_sq = 0;
    for (float x : v) {
      ASSERT_TRUE(std::isfinite(x)) << t.name;
      sum_sq += double(x) * x;
    }
    EXPECT_GT(sum_sq, 0.0) << t.name;
  }
  std::string summary;
  for (const auto& [name, n] : types) summary += name + ":" + std::to_string(n) + " ";
  std::cout << "[ INFO     ] " << f.tensors().size() << " tensors, types " << summary << "\n";
  EXPECT_EQ(f.tensors().size(), 1u + 30u * 9u + 1u);
}
