// The bundled demo adapter (models/demo) against its model card: greedy reconstruction of the
// bundled held-out passages must stay at the card's held-out figures (models/demo/card.json)
// within a small margin, so that a regression anywhere in the stack — tokenizer, GGUF loading,
// the transformer, LoRA, the projector, compression, decoding — shows up as a failure here.
// Label "learning" (needs the fetched SmolLM2; skips without it), ~1 minute on 2 threads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/api.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/icae_eval.h"

namespace fs = std::filesystem;
using namespace icae;

TEST(DemoAdapter, ReconstructsTheHeldOutSampleAsTheModelCardSays) {
  const std::string root = ICAE_SOURCE_DIR;
  const std::string model = root + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(model)) GTEST_SKIP() << "no " << model << " (run scripts/fetch-model)";
  const std::string demo = root + "/models/demo";
  std::ifstream card_file(demo + "/card.json");
  ASSERT_TRUE(card_file.good()) << demo << "/card.json is missing: the bundled adapter ships with it";
  const nlohmann::json card = nlohmann::json::parse(card_file).at("heldout_ae");
  const int64_t n = card.at("samples");
  OpenOptions o;
  o.dtype = card.at("dtype");
  Session s = open_session(model, demo + "/adapter.safetensors", o);
  std::vector<eval::Ids> contexts;
  std::vector<std::string> sources;
  for (const auto& x : eval::read_eval_data({demo + "/heldout.jsonl"}, eval::EvalDataKind::Text)) {
    if (static_cast<int64_t>(contexts.size()) == n) break;
    contexts.push_back(s.tokenize(x.text));
    sources.push_back(x.source);
  }
  ASSERT_EQ(static_cast<int64_t>(contexts.size()), n);
  const eval::AeReport r = eval::eval_ae(s, contexts, sources);
  // Margins: greedy decoding may take another path on another thread count or CPU (one changed
  // token changes the rest of a row), teacher-forced accuracy barely moves.
  EXPECT_GE(r.mean_bleu, static_cast<double>(card.at("bleu4")) - 0.05);
  EXPECT_GE(r.mean_token_accuracy, static_cast<double>(card.at("token_accuracy")) - 0.02);
  std::printf("held-out reconstruction over %lld passages: BLEU-4 %.4f (card %.4f), token accuracy %.4f (card %.4f)\n",
              static_cast<long long>(n), r.mean_bleu, static_cast<double>(card.at("bleu4")), r.mean_token_accuracy,
              static_cast<double>(card.at("token_accuracy")));
}
