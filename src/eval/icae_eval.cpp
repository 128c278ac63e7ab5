#include "icae/eval/icae_eval.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "icae/core/prompt_layout.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/text_metrics.h"
#include "icae/infer/session.h"
#include "icae/util/error.h"

namespace icae::eval {

namespace {

int64_t eos_of(const Session& s) {
  if (s.model().tokenizer && s.model().tokenizer->eos_id() >= 0) return s.model().tokenizer->eos_id();
  return s.base().config().eos_token_id.value_or(-1);
}

// The generated ids without a trailing stop id.
Ids without_stop(const Completion& c) {
  Ids ids = c.ids;
  if (c.stop_reason == "stop_id" && !ids.empty()) ids.pop_back();
  return ids;
}

template <typename F>
void in_batches(size_t n, int64_t batch, F&& body) {
  const size_t step = static_cast<size_t>(std::max<int64_t>(1, batch));
  for (size_t begin = 0; begin < n; begin += step) body(begin, std::min(n, begin + step));
}

double mean_of(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}

}  // namespace

TeacherForced teacher_forced(const Session& session, const Ids& ids, const at::Tensor& slots, int64_t first_scored) {
  ICAE_CHECK(first_scored >= 1 && first_scored <= static_cast<int64_t>(ids.size()), ErrorKind::Internal,
             "teacher_forced: first scored position out of range");
  at::NoGradGuard no_grad;
  const DecoderInput in = session.has_adapter()
                              ? session.icae().decoder_input({ids}, {slots}, Padding::Right)
                              : stack_embeddings({session.base().embed(at::tensor(ids, at::kLong))}, Padding::Right);
  const int64_t t = static_cast<int64_t>(ids.size()), n = t - first_scored;
  TeacherForced r;
  r.scored = n;
  if (n == 0) return r;
  // Position i - 1 predicts ids[i]; those positions are tokens (never a key/value slot), in a row.
  const int64_t first = in.column[0][first_scored - 1];
  ICAE_CHECK(first >= 0 && in.column[0][t - 2] == first + n - 1, ErrorKind::Internal,
             "teacher_forced: a scored position follows a key/value slot");
  at::Tensor logits = session.base().forward(in.input).logits.squeeze(0).narrow(0, first, n).to(at::kFloat);
  at::Tensor target = at::tensor(Ids(ids.begin() + first_scored, ids.end()), at::kLong).to(logits.device());
  at::Tensor logp = at::log_softmax(logits, -1).gather(1, target.unsqueeze(1)).squeeze(1);
  r.nll = -logp.sum().item<double>();
  r.correct = logits.argmax(-1).eq(target).sum().item<int64_t>();
  return r;
}

AeReport eval_ae(Session& session, const std::vector<Ids>& contexts, const std::vector<std::string>& sources,
                 const AeEvalOptions& o) {
  ICAE_CHECK(contexts.size() == sources.size(), ErrorKind::Internal, "eval_ae: contexts and sources differ in count");
  const Icae& icae = session.icae();
  const int64_t eos = eos_of(session);
  AeReport report;
  bool stopped = false;
  in_batches(contexts.size(), o.batch, [&](size_t begin, size_t end) {
    if (stopped) return;
    std::vector<Ids> chunk(contexts.begin() + begin, contexts.begin() + end);
    std::vector<at::Tensor> slots = session.compress(chunk);
    std::vector<DecodeRow> rows;
    for (size_t i = 0; i < chunk.size(); ++i) {
      rows.push_back(session.reconstruct_row(slots[i]));
      rows.back().max_new_tokens = static_cast<int64_t>(chunk[i].size()) + o.extra_tokens;
    }
    std::vector<Completion> out = session.run(rows);
    for (size_t i = 0; i < chunk.size(); ++i) {
      AeSample s;
      s.source = sources[begin + i];
      s.tokens = static_cast<int64_t>(chunk[i].size());
      s.slots = slots[i].size(0);
      s.reconstruction = without_stop(out[i]);
      s.bleu = bleu4(s.reconstruction, chunk[i]);
      s.exact_prefix = exact_prefix(s.reconstruction, chunk[i]);
      Ids forced = ae_prefix(icae, s.slots);
      const int64_t first = static_cast<int64_t>(forced.size());
      forced.insert(forced.end(), chunk[i].begin(), chunk[i].end());
      if (eos >= 0) forced.push_back(eos);
      const TeacherForced tf = teacher_forced(session, forced, slots[i], first);
      s.token_accuracy = tf.scored ? static_cast<double>(tf.correct) / static_cast<double>(tf.scored) : 0;
      report.samples.push_back(std::move(s));
    }
    if (o.on_batch && !o.on_batch(end, contexts.size())) stopped = true;
  });
  std::vector<double> bleu, prefix, acc;
  std::vector<Ids> hyps, refs;
  for (const auto& s : report.samples) {
    bleu.push_back(s.bleu);
    prefix.push_back(static_cast<double>(s.exact_prefix));
    acc.push_back(s.token_accuracy);
    hyps.push_back(s.reconstruction);
  }
  report.mean_bleu = mean_of(bleu);
  report.mean_exact_prefix = mean_of(prefix);
  report.mean_token_accuracy = mean_of(acc);
  report.corpus_bleu = corpus_bleu4(hyps, std::vector<Ids>(contexts.begin(), contexts.begin() + hyps.size()));
  return report;
}

AeReport eval_ae(Session& session, const std::vector<EvalSample>& texts, const AeEvalOptions& o) {
  std::vector<Ids> contexts;
  std::vector<std::string> sources;
  for (const auto& x : texts) {
    contexts.push_back(session.tokenize(x.text));
    ICAE_CHECK(!contexts.back().empty(), ErrorKind::BadInput, x.source + ": no tokens");
    sources.push_back(x.source);
  }
  return eval_ae(session, contexts, sources, o);
}

LmReport eval_lm(Session& session, const std::vector<Ids>& texts, const std::vector<std::string>& sources,
                 const LmEvalOptions& o) {
  ICAE_CHECK(texts.size() == sources.size(), ErrorKind::Internal, "eval_lm: texts and sources differ in count");
  const Icae& icae = session.icae();
  const std::optional<int64_t> bos = session.model().tokenizer && session.model().tokenizer->bos_id() >= 0
                                         ? std::optional<int64_t>(session.model().tokenizer->bos_id())
                                         : session.base().config().bos_token_id;
  // Without a BOS the "nothing" condition cannot predict the first continuation token: then
  // no condition scores it, so all three score the same tokens.
  const int64_t skip = bos ? 0 : 1;
  struct Split {
    size_t index;
    Ids context, continuation;
  };
  std::vector<Split> splits;
  for (size_t i = 0; i < texts.size(); ++i) {
    const int64_t l = static_cast<int64_t>(texts[i].size());
    int64_t c = std::min(o.context_tokens, l - o.min_continuation);
    if (c < 1) c = l / 2;
    if (c < 1 || l - c < 1 + skip) continue;  // too short to split
    const int64_t n = std::min(o.continuation_tokens, l - c);
    splits.push_back({i, Ids(texts[i].begin(), texts[i].begin() + c), Ids(texts[i].begin() + c, texts[i].begin() + c + n)});
  }
  ICAE_CHECK(!splits.empty(), ErrorKind::BadInput, "eval lm: no sample is long enough to split into context and continuation");
  LmReport report;
  double total_slots = 0, total_full = 0, total_none = 0;
  in_batches(splits.size(), o.batch, [&](size_t begin, size_t end) {
    std::vector<Ids> contexts;
    for (size_t i = begin; i < end; ++i) contexts.push_back(splits[i].context);
    std::vector<at::Tensor> slots = session.compress(contexts);
    for (size_t i = begin; i < end; ++i) {
      const Split& sp = splits[i];
      LmSample s;
      s.source = sources[sp.index];
      s.context = static_cast<int64_t>(sp.context.size());
      // (i) [slots (, LM)] continuation
      Ids with_slots(slots[i - begin].size(0), icae.ids().mem_first);
      if (o.use_lm_token) with_slots.push_back(icae.ids().lm);
      int64_t first = static_cast<int64_t>(with_slots.size()) + skip;
      with_slots.insert(with_slots.end(), sp.continuation.begin(), sp.continuation.end());
      const TeacherForced a = teacher_forced(session, with_slots, slots[i - begin], first);
      // (ii) context continuation
      Ids full = sp.context;
      first = static_cast<int64_t>(full.size()) + skip;
      full.insert(full.end(), sp.continuation.begin(), sp.continuation.end());
      const TeacherForced b = teacher_forced(session, full, {}, first);
      // (iii) [BOS] continuation
      Ids none;
      if (bos) none.push_back(*bos);
      none.insert(none.end(), sp.continuation.begin(), sp.continuation.end());
      const TeacherForced c = teacher_forced(session, none, {}, 1);
      ICAE_CHECK(a.scored == b.scored && b.scored == c.scored, ErrorKind::Internal, "eval lm: conditions scored differently");
      s.scored = a.scored;
      s.nll_slots = a.nll;
      s.nll_full = b.nll;
      s.nll_none = c.nll;
      total_slots += a.nll;
      total_full += b.nll;
      total_none += c.nll;
      report.scored_tokens += s.scored;
      report.samples.push_back(s);
    }
  });
  const double n = static_cast<double>(report.scored_tokens);
  report.ppl_slots = std::exp(total_slots / n);
  report.ppl_full = std::exp(total_full / n);
  report.ppl_none = std::exp(total_none / n);
  return report;
}

FtReport eval_ft(Session& session, const std::vector<FtItem>& items, const FtEvalOptions& o) {
  FtReport report;
  in_batches(items.size(), o.batch, [&](size_t begin, size_t end) {
    std::vector<Ids> contexts;
    for (size_t i = begin; i < end; ++i) contexts.push_back(items[i].context);
    std::vector<at::Tensor> slots = session.compress(contexts);
    std::vector<DecodeRow> icae_rows, base_rows;
    for (size_t i = begin; i < end; ++i) {
      icae_rows.push_back(session.answer_row(slots[i - begin], items[i].prompt));
      icae_rows.back().max_new_tokens = o.max_new_tokens;
      if (o.with_base) {
        base_rows.push_back(session.generate_row(items[i].base_prompt));
        base_rows.back().max_new_tokens = o.max_new_tokens;
      }
    }
    std::vector<Completion> icae_out = session.run(icae_rows);
    std::vector<Completion> base_out = o.with_base ? session.run(base_rows) : std::vector<Completion>{};
    for (size_t i = begin; i < end; ++i) {
      const FtItem& it = items[i];
      FtSample s;
      s.source = it.source;
      s.icae_answer = without_stop(icae_out[i - begin]);
      s.rouge_ref = rouge_l(s.icae_answer, it.reference);
      s.f1_ref = token_f1(s.icae_answer, it.reference);
      if (o.with_base) {
        s.base_answer = without_stop(base_out[i - begin]);
        s.rouge_base = rouge_l(s.icae_answer, s.base_answer);
        s.f1_base = token_f1(s.icae_answer, s.base_answer);
        s.base_rouge_ref = rouge_l(s.base_answer, it.reference);
        s.base_f1_ref = token_f1(s.base_answer, it.reference);
      }
      report.samples.push_back(std::move(s));
    }
  });
  const double n = static_cast<double>(report.samples.size());
  for (const auto& s : report.samples) {
    report.rouge_ref += s.rouge_ref / n;
    report.f1_ref += s.f1_ref / n;
    report.rouge_base += s.rouge_base / n;
    report.f1_base += s.f1_base / n;
    report.base_rouge_ref += s.base_rouge_ref / n;
    report.base_f1_ref += s.base_f1_ref / n;
  }
  return report;
}

}  // namespace icae::eval
