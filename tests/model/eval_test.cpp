// Evaluation: the data readers (and their errors), and eval ae / lm / ft on a golden tiny model
// checked against the same quantities computed another way (generate(), decoder_loss, the
// metrics directly), plus cases whose outcome is known by construction.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "icae/core/objectives.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/icae_eval.h"
#include "icae/eval/text_metrics.h"
#include "icae/infer/session.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"
#include "golden_fixture.h"
#include "test_paths.h"

using namespace icae;
namespace fs = std::filesystem;

namespace {

std::vector<int64_t> to_ids(const at::Tensor& t) {
  at::Tensor c = t.reshape({-1}).to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

TEST(EvalData, ReadsFilesFoldersAndJsonlAndNamesBadLines) {
  // A fresh folder per run. (Not fs::remove_all: in this process it resolves to the copy of
  // std::filesystem inside libtorch.so, which crashes on an existing tree.)
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("icae_eval_data_" + std::to_string(::getpid()) + "_" +
                        std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
  write(dir / "one.txt", "first sample");
  write(dir / "folder" / "b.txt", "second");
  write(dir / "folder" / "sub" / "a.txt", "third");
  write(dir / "lines.jsonl", "{\"text\": \"fourth\"}\n\n{\"text\": \"fifth\"}\n");
  auto s = eval::read_eval_data({(dir / "one.txt").string(), (dir / "folder").string(), (dir / "lines.jsonl").string()},
                                eval::EvalDataKind::Text);
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].text, "first sample");
  EXPECT_EQ(s[1].text, "second");  // folder/b.txt sorts before folder/sub/a.txt
  EXPECT_EQ(s[2].text, "third");
  EXPECT_EQ(s[4].text, "fifth");
  EXPECT_EQ(s[4].source, (dir / "lines.jsonl").string() + ":3");

  write(dir / "bad.jsonl", "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
  try {
    eval::read_eval_data({(dir / "bad.jsonl").string()}, eval::EvalDataKind::Text);
    FAIL() << "a line without text was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::BadInput);
    EXPECT_NE(std::string(e.what()).find("bad.jsonl:2"), std::string::npos) << e.what();
  }
  write(dir / "broken.jsonl", "{\"input\": \"a\", \"prompt\": \"b\", \"answer\": \"c\"}\n{not json\n");
  try {
    eval::read_eval_data({(dir / "broken.jsonl").string()}, eval::EvalDataKind::Pwc);
    FAIL() << "broken JSON was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("broken.jsonl:2"), std::string::npos) << e.what();
  }
  // The PwC dev set of the project reads whole.
  auto pwc = eval::read_eval_data({test::shared_dir() + "/testdata/pwc/dev_v2.jsonl"}, eval::EvalDataKind::Pwc);
  EXPECT_GT(pwc.size(), 0u);
  EXPECT_FALSE(pwc[0].prompt.empty());
  EXPECT_THROW(eval::read_eval_data({(dir / "one.txt").string()}, eval::EvalDataKind::Pwc), Error);
}

// The golden tiny llama as the session takes it (golden_fixture.h).
test::GoldenSession load_tiny() { return test::load_golden_session("tiny-llama"); }

TEST(EvalIcae, AeMatchesDirectReconstructionAndTeacherForcing) {
  test::GoldenSession t = load_tiny();
  SessionOptions so;
  Session s(t.text, t.adapter, so);
  const auto c75 = to_ids(t.golden.at("context_ids")), c20 = to_ids(t.golden.at("context1_ids"));
  eval::AeEvalOptions o;
  o.batch = 2;
  o.extra_tokens = 3;
  eval::AeReport r = eval::eval_ae(s, {c75, c20}, {"a", "b"}, o);
  ASSERT_EQ(r.samples.size(), 2u);
  const Icae& icae = s.icae();
  double mean_bleu = 0;
  for (size_t i = 0; i < 2; ++i) {
    const auto& ctx = i == 0 ? c75 : c20;
    at::NoGradGuard no_grad;
    at::Tensor slots = icae.compress(ctx);
    GenerateOptions g;
    g.max_new_tokens = static_cast<int64_t>(ctx.size()) + 3;
    const auto recon = generate(icae.base(), icae.decoder_embeddings(ae_prefix(icae, slots.size(0)), slots), g).ids;
    EXPECT_EQ(r.samples[i].reconstruction, recon);
    EXPECT_DOUBLE_EQ(r.samples[i].bleu, eval::bleu4(recon, ctx));
    EXPECT_EQ(r.samples[i].exact_prefix, eval::exact_prefix(recon, ctx));
    mean_bleu += r.samples[i].bleu / 2;
    // Teacher-forced accuracy from the AE training sample: argmax at each labelled position.
    TrainingSample ae = make_ae_sample(icae, ctx, 2);
    ForwardInput in;
    in.inputs_embeds = icae.decoder_embeddings(ae.ids, slots).unsqueeze(0);
    at::Tensor pred = icae.base().forward(in).logits.squeeze(0).argmax(-1);
    int64_t hit = 0, n = 0;
    for (size_t p = 1; p < ae.ids.size(); ++p)
      if (ae.labels[p] != -100) {
        ++n;
        hit += pred[static_cast<int64_t>(p) - 1].item<int64_t>() == ae.labels[p];
      }
    EXPECT_DOUBLE_EQ(r.samples[i].token_accuracy, static_cast<double>(hit) / static_cast<double>(n));
  }
  EXPECT_NEAR(r.mean_bleu, mean_bleu, 1e-12);
}

TEST(EvalIcae, LmPerplexitiesEqualExpOfTheDecoderLoss) {
  test::GoldenSession t = load_tiny();
  Session s(t.text, t.adapter);
  const auto text = to_ids(t.golden.at("context_ids"));  // 75 tokens: 40 context + 20 scored
  eval::LmEvalOptions o;
  o.context_tokens = 40;
  o.continuation_tokens = 20;
  eval::LmReport r = eval::eval_lm(s, {text}, {"x"}, o);
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_EQ(r.scored_tokens, 20);
  const std::vector<int64_t> ctx(text.begin(), text.begin() + 40), cont(text.begin() + 40, text.begin() + 60);
  const Icae& icae = s.icae();
  at::NoGradGuard no_grad;
  // (i) slots: the LM objective's own sequence, every continuation token labelled.
  LmOptions lo;
  lo.leave_tokens_for_lm = 0;
  lo.min_tokens_for_lm = 1;
  TrainingSample lm = *make_lm_sample(icae, ctx, cont, lo);
  const double slots_ppl = std::exp(icae.decoder_loss(lm.ids, lm.labels, icae.compress(ctx)).item<double>());
  // (ii) full context, (iii) [BOS] only.
  std::vector<int64_t> full = ctx, full_labels(ctx.size(), -100), none = {1}, none_labels = {-100};
  full.insert(full.end(), cont.begin(), cont.end());
  full_labels.insert(full_labels.end(), cont.begin(), cont.end());
  none.insert(none.end(), cont.begin(), cont.end());
  none_labels.insert(none_labels.end(), cont.begin(), cont.end());
  const double full_ppl = std::exp(icae.decoder_loss(full, full_labels, {}).item<double>());
  const double none_ppl = std::exp(icae.decoder_loss(none, none_labels, {}).item<double>());
  EXPECT_NEAR(r.ppl_slots / slots_ppl, 1.0, 1e-5);
  EXPECT_NEAR(r.ppl_full / full_ppl, 1.0, 1e-5);
  EXPECT_NEAR(r.ppl_none / none_ppl, 1.0, 1e-5);
  // Reading the context itself helps a model that copies; at least it must differ from nothing.
  EXPECT_NE(r.ppl_full, r.ppl_none);
}

TEST(EvalIcae, FtScoresAKnownAnswerAsPerfectAndTheBaseAnswerAsComputed) {
  test::GoldenSession t = load_tiny();
  SessionOptions so;
  so.max_new_tokens = 12;
  Session s(t.text, t.adapter, so);
  const auto ctx = to_ids(t.golden.at("context1_ids"));
  const std::vector<int64_t> prompt = {17, 18, 19};
  at::Tensor slots = s.compress({ctx}).front();
  // The reference is the adapter's own answer: ROUGE-L and F1 against it must be exactly 1.
  const auto own = s.answer(slots, prompt).ids;
  eval::FtItem item;
  item.source = "known";
  item.context = ctx;
  item.prompt = prompt;
  item.reference = own;
  item.base_prompt = ctx;
  item.base_prompt.insert(item.base_prompt.end(), prompt.begin(), prompt.end());
  eval::FtEvalOptions o;
  o.max_new_tokens = 12;
  eval::FtReport r = eval::eval_ft(s, {item}, o);
  ASSERT_EQ(r.samples.size(), 1u);
  EXPECT_DOUBLE_EQ(r.samples[0].rouge_ref, 1.0);
  EXPECT_DOUBLE_EQ(r.samples[0].f1_ref, 1.0);
  GenerateOptions g;
  g.max_new_tokens = 12;
  const auto base_answer = generate_from_ids(s.base(), item.base_prompt, g).ids;
  EXPECT_EQ(r.samples[0].base_answer, base_answer);
  EXPECT_DOUBLE_EQ(r.samples[0].base_rouge_ref, eval::rouge_l(base_answer, own));
  EXPECT_DOUBLE_EQ(r.samples[0].rouge_base, eval::rouge_l(own, base_answer));
  EXPECT_DOUBLE_EQ(r.f1_base, eval::token_f1(own, base_answer));
}

}  // namespace
