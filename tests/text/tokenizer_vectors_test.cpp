// llama.cpp's tokenizer test vectors (testdata/tokenizers/vectors/*.inp|.out), run against the
// matching tokenizer.json: every input must give exactly the expected ids (no BOS), and decode back.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "icae/tokenizer/unicode.h"
#include "tokenizer_test_util.h"

namespace icae::tok {
namespace {

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Vector {
  std::string input;
  std::vector<TokenId> expected;
};

std::vector<Vector> load_vectors(const std::string& name) {
  const std::string base = testing::tokenizer_dir() + "/vectors/ggml-vocab-" + name + ".gguf";
  const std::string inp = read_all(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<Vector> out;
  for (size_t pos = 0, next; (next = inp.find(sep, pos)) != std::string::npos; pos = next + sep.size())
    out.push_back({inp.substr(pos, next - pos), {}});
  std::istringstream lines(read_all(base + ".out"));
  std::string line;
  size_t i = 0;
  while (std::getline(lines, line)) {
    if (i >= out.size()) break;
    std::istringstream ids(line);
    TokenId id;
    while (ids >> id) out[i].expected.push_back(id);
    ++i;
  }
  EXPECT_EQ(i, out.size()) << name << ": .inp and .out disagree on the number of cases";
  return out;
}

struct Case {
  const char* vectors;
  const char* tokenizer;
};

class VectorTest : public ::testing::TestWithParam<Case> {};

TEST_P(VectorTest, EncodesExactlyAndRoundTrips) {
  const Case c = GetParam();
  const Tokenizer& tok = testing::shipped(c.tokenizer);
  const auto vectors = load_vectors(c.vectors);
  ASSERT_GT(vectors.size(), 30u);
  for (size_t i = 0; i < vectors.size(); ++i) {
    const auto& v = vectors[i];
    EXPECT_EQ(tok.encode(v.input), v.expected) << c.vectors << " case " << i << ": \"" << v.input << "\"";
    EXPECT_EQ(tok.decode(v.expected), v.input) << c.vectors << " case " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(LlamaCpp, VectorTest,
                         ::testing::Values(Case{"llama-spm", "llama2"}, Case{"llama-bpe", "llama3"},
                                           Case{"qwen2", "qwen3"}, Case{"gpt-2", "gpt2"}),
                         [](const auto& info) {
                           std::string n = info.param.tokenizer;
                           return n;
                         });

}  // namespace
}  // namespace icae::tok
