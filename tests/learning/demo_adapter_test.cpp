// The bundled demo adapters (models/demo) against their model card: greedy reconstruction of the
// bundled held-out passages (plain, and with the demo's n-gram ban) must stay at the card's held-out figures (models/demo/card.json)
// within a small margin, so that a regression anywhere in the stack — tokenizer, GGUF loading,
// the transformer, LoRA, the projector, compression, decoding — shows up as a failure here.
// Label "learning" (needs the fetched SmolLM2; skips without it), 1-4 minutes on 2 threads.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/api.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/icae_eval.h"

namespace fs = std::filesystem;
using namespace icae;

namespace {
const std::string kRoot = ICAE_SOURCE_DIR;
const std::string kModel = kRoot + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
const std::string kDemo = kRoot + "/models/demo";

// models/demo/card.json, whole.
nlohmann::json read_card() {
  std::ifstream f(kDemo + "/card.json");
  if (!f.good()) ADD_FAILURE() << kDemo << "/card.json is missing: the bundled adapters ship with it";
  return f.good() ? nlohmann::json::parse(f) : nlohmann::json::object();
}
}  // namespace

TEST(DemoAdapter, ReconstructsTheHeldOutSampleAsTheModelCardSays) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no " << kModel << " (run scripts/fetch-model)";
  const nlohmann::json all = read_card();
  ASSERT_TRUE(all.contains("heldout_ae"));
  const nlohmann::json card = all.at("heldout_ae");
  const int64_t n = card.at("samples");
  OpenOptions o;
  o.dtype = card.at("dtype");
  Session s = open_session(kModel, kDemo + "/adapter.safetensors", o);
  std::vector<eval::Ids> contexts;
  std::vector<std::string> sources;
  for (const auto& x : eval::read_eval_data({kDemo + "/heldout.jsonl"}, eval::EvalDataKind::Text)) {
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
  // What scripts/demo shows: the same passages decoded with no n-gram twice.
  if (!card.contains("no_repeat_ngram")) return;
  const nlohmann::json ban = card.at("no_repeat_ngram");
  s.options().sampling.no_repeat_ngram = ban.at("n");
  const eval::AeReport b = eval::eval_ae(s, contexts, sources);
  EXPECT_GE(b.mean_bleu, static_cast<double>(ban.at("bleu4")) - 0.05);
  std::printf("  with no %lld-gram twice: BLEU-4 %.4f (card %.4f)\n", static_cast<long long>(ban.at("n")), b.mean_bleu,
              static_cast<double>(ban.at("bleu4")));
}

// The fine-tuned adapter (models/demo/adapter-ft.safetensors) against the card: its answers from
// the slots alone, compared by ROUGE-L with SmolLM2's answers given the full passage (the
// distilled references of heldout-ft.jsonl), on the first held-out prompts.
TEST(DemoAdapter, AnswersTheHeldOutPromptsAsTheModelCardSays) {
  if (!fs::exists(kModel)) GTEST_SKIP() << "no " << kModel << " (run scripts/fetch-model)";
  const nlohmann::json all = read_card();
  if (!all.contains("heldout_ft")) GTEST_SKIP() << "the card has no fine-tuned adapter";
  const nlohmann::json card = all.at("heldout_ft");
  const int64_t n = card.at("samples");
  OpenOptions o;
  o.dtype = card.at("dtype");
  Session s = open_session(kModel, kDemo + "/adapter-ft.safetensors", o);
  std::vector<eval::FtItem> items;
  for (const auto& x : eval::read_eval_data({kDemo + "/heldout-ft.jsonl"}, eval::EvalDataKind::Pwc)) {
    if (static_cast<int64_t>(items.size()) == n) break;
    eval::FtItem it;
    it.source = x.source;
    it.context = s.tokenize(x.input);
    it.prompt = s.tokenize(x.prompt);
    it.reference = s.tokenize(x.answer);
    items.push_back(std::move(it));
  }
  ASSERT_EQ(static_cast<int64_t>(items.size()), n);
  eval::FtEvalOptions fo;
  fo.max_new_tokens = 64;  // as the card's `icae eval ft -n 64` (the references were cut at 64 tokens)
  fo.with_base = false;
  const eval::FtReport r = eval::eval_ft(s, items, fo);
  // Greedy answers may take another path on another thread count or CPU: a margin as above.
  EXPECT_GE(r.rouge_ref, static_cast<double>(card.at("rouge_l_vs_reference")) - 0.05);
  std::printf("held-out answers over %lld prompts: ROUGE-L vs full-context answers %.4f (card %.4f)\n",
              static_cast<long long>(n), r.rouge_ref, static_cast<double>(card.at("rouge_l_vs_reference")));
}
