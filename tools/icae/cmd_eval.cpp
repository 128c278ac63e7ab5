// icae eval ae|lm|ft: measure an ICAE adapter on held-out data (see eval/icae_eval.h).
// A table on stdout for people, or with --json one JSON document; ft also writes JSONL.
#include <ATen/ATen.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "icae/api.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/icae_eval.h"
#include "icae/train/distill.h"
#include "icae/util/device.h"

namespace {

using namespace icae;

struct EvalArgs : cli::ModelOptions {
  std::string out, tmpl;
  std::vector<std::string> data;
  bool json = false, no_base = false;
  int64_t max_samples = 0, batch = 8, context_tokens = 512, continuation_tokens = 128, max_new_tokens = 128;
  SamplingOptions sampling;  // greedy unless told otherwise
};

// How the answers were decoded, for the JSON reports: numbers are only comparable under one setting.
nlohmann::json decoding(const SamplingOptions& s) {
  return {{"temperature", s.temperature}, {"top_k", s.top_k}, {"top_p", s.top_p}, {"seed", s.seed},
          {"repetition_penalty", s.repetition_penalty}, {"no_repeat_ngram", s.no_repeat_ngram}};
}

// What every JSON report starts with: the task, what was measured and in which arithmetic (--dtype
// auto resolved, so scripts can record the dtype without restating the rule that picks it).
nlohmann::json report_head(const EvalArgs& a, const char* task) {
  const ModelLoadOptions m = cli::resolve(a.run);
  return {{"task", task}, {"model", a.model}, {"adapter", a.adapter}, {"device", a.run.device},
          {"dtype", resolve_auto_dtype(a.run.dtype, m.device)}};
}

Session open(const EvalArgs& a) {
  OpenOptions o = cli::open_options(a);
  o.session.ft_template = a.tmpl;
  o.session.sampling = a.sampling;
  cli::resolve(a.run);  // --threads, and the same device errors as elsewhere
  return open_session(a.model, a.adapter, o);
}

// The end of a long source name ("...dir/file.jsonl:12"): that is the part that tells samples apart.
std::string shown(const std::string& source) {
  return source.size() <= 40 ? source : "..." + source.substr(source.size() - 37);
}

std::vector<eval::EvalSample> samples(const EvalArgs& a, eval::EvalDataKind kind) {
  auto s = eval::read_eval_data(a.data, kind);
  if (a.max_samples > 0 && static_cast<int64_t>(s.size()) > a.max_samples) s.resize(a.max_samples);
  return s;
}

void run_ae(const EvalArgs& a) {
  const auto data = samples(a, eval::EvalDataKind::Text);  // bad data fails before the model loads
  Session s = open(a);
  eval::AeEvalOptions o;
  o.batch = a.batch;
  eval::AeReport r = eval::eval_ae(s, data, o);
  if (a.json) {
    nlohmann::json j = report_head(a, "ae");
    j["decoding"] = decoding(a.sampling);
    j["samples"] = nlohmann::json::array();
    for (const auto& x : r.samples)
      j["samples"].push_back({{"source", x.source}, {"tokens", x.tokens}, {"slots", x.slots}, {"bleu4", x.bleu},
                              {"exact_prefix", x.exact_prefix}, {"token_accuracy", x.token_accuracy},
                              {"reconstruction", s.detokenize(x.reconstruction)}});
    j["mean"] = {{"bleu4", r.mean_bleu}, {"corpus_bleu4", r.corpus_bleu}, {"exact_prefix", r.mean_exact_prefix},
                 {"token_accuracy", r.mean_token_accuracy}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%-40s %7s %6s %7s %8s %9s\n", "sample", "tokens", "slots", "BLEU-4", "prefix", "tok.acc");
  for (const auto& x : r.samples)
    std::printf("%-40.40s %7lld %6lld %7.4f %8lld %9.4f\n", shown(x.source).c_str(), static_cast<long long>(x.tokens),
              static_cast<long long>(x.slots), x.bleu, static_cast<long long>(x.exact_prefix), x.token_accuracy);
  std::printf("%-40s %7s %6s %7.4f %8.1f %9.4f\n", "mean", "", "", r.mean_bleu, r.mean_exact_prefix, r.mean_token_accuracy);
  std::printf("corpus BLEU-4: %.4f over %zu samples\n", r.corpus_bleu, r.samples.size());
}

void run_lm(const EvalArgs& a) {
  const auto data = samples(a, eval::EvalDataKind::Text);
  Session s = open(a);
  std::vector<eval::Ids> texts;
  std::vector<std::string> sources;
  for (const auto& x : data) {
    texts.push_back(s.tokenize(x.text));
    sources.push_back(x.source);
  }
  eval::LmEvalOptions o;
  o.context_tokens = a.context_tokens;
  o.continuation_tokens = a.continuation_tokens;
  o.batch = a.batch;
  eval::LmReport r = eval::eval_lm(s, texts, sources, o);
  auto ppl = [](double nll, int64_t n) { return n ? std::exp(nll / static_cast<double>(n)) : 0.0; };
  if (a.json) {
    nlohmann::json j = report_head(a, "lm");
    j["samples"] = nlohmann::json::array();
    for (const auto& x : r.samples)
      j["samples"].push_back({{"source", x.source}, {"context_tokens", x.context}, {"scored_tokens", x.scored},
                              {"ppl_slots", ppl(x.nll_slots, x.scored)}, {"ppl_full_context", ppl(x.nll_full, x.scored)},
                              {"ppl_no_context", ppl(x.nll_none, x.scored)}});
    j["total"] = {{"scored_tokens", r.scored_tokens}, {"ppl_slots", r.ppl_slots}, {"ppl_full_context", r.ppl_full},
                  {"ppl_no_context", r.ppl_none}};
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%-40s %8s %7s %10s %10s %10s\n", "sample", "context", "scored", "ppl slots", "ppl full", "ppl none");
  for (const auto& x : r.samples)
    std::printf("%-40.40s %8lld %7lld %10.3f %10.3f %10.3f\n", shown(x.source).c_str(), static_cast<long long>(x.context),
              static_cast<long long>(x.scored), ppl(x.nll_slots, x.scored), ppl(x.nll_full, x.scored),
              ppl(x.nll_none, x.scored));
  std::printf("%-40s %8s %7lld %10.3f %10.3f %10.3f\n", "all (token-weighted)", "", static_cast<long long>(r.scored_tokens),
            r.ppl_slots, r.ppl_full, r.ppl_none);
}

void run_ft(const EvalArgs& a) {
  const auto data = samples(a, eval::EvalDataKind::Pwc);
  Session s = open(a);
  std::vector<eval::FtItem> items;
  for (const auto& x : data) {
    eval::FtItem it;
    it.source = x.source;
    it.context = s.tokenize(x.input);
    it.prompt = s.tokenize(x.prompt);
    it.reference = s.tokenize(x.answer);
    // The base model reads the whole context: the prompt `icae distill` answered.
    it.base_prompt = train::full_context_prompt(s.model(), x.input, x.prompt);
    items.push_back(std::move(it));
  }
  eval::FtEvalOptions o;
  o.max_new_tokens = a.max_new_tokens;
  o.with_base = !a.no_base;
  o.batch = a.batch;
  eval::FtReport r = eval::eval_ft(s, items, o);
  nlohmann::json doc = report_head(a, "ft");
  doc["decoding"] = decoding(a.sampling);
  doc["samples"] = nlohmann::json::array();
  std::ofstream jsonl;
  if (!a.out.empty()) {
    jsonl.open(a.out, std::ios::trunc);
    ICAE_CHECK(jsonl.good(), ErrorKind::Io, a.out + ": cannot open for writing");
  }
  for (size_t i = 0; i < r.samples.size(); ++i) {
    const auto& x = r.samples[i];
    nlohmann::json line = {{"source", x.source},
                           {"prompt", s.detokenize(items[i].prompt)},
                           {"reference", s.detokenize(items[i].reference)},
                           {"icae_answer", s.detokenize(x.icae_answer)},
                           {"rouge_l_vs_reference", x.rouge_ref},
                           {"token_f1_vs_reference", x.f1_ref}};
    if (o.with_base) {
      line["base_answer"] = s.detokenize(x.base_answer);
      line["rouge_l_vs_base"] = x.rouge_base;
      line["token_f1_vs_base"] = x.f1_base;
      line["base_rouge_l_vs_reference"] = x.base_rouge_ref;
      line["base_token_f1_vs_reference"] = x.base_f1_ref;
    }
    if (jsonl.is_open()) jsonl << line.dump() << "\n";
    doc["samples"].push_back(std::move(line));
  }
  doc["mean"] = {{"rouge_l_vs_reference", r.rouge_ref}, {"token_f1_vs_reference", r.f1_ref}};
  if (o.with_base) {
    doc["mean"]["rouge_l_vs_base"] = r.rouge_base;
    doc["mean"]["token_f1_vs_base"] = r.f1_base;
    doc["mean"]["base_rouge_l_vs_reference"] = r.base_rouge_ref;
    doc["mean"]["base_token_f1_vs_reference"] = r.base_f1_ref;
  }
  if (a.json) {
    std::cout << doc.dump(2) << "\n";
    return;
  }
  std::printf("%-40s %9s %9s %9s %9s %9s %9s\n", "sample", "R-L ref", "F1 ref", "R-L base", "F1 base", "base R-L", "base F1");
  for (const auto& x : r.samples)
    std::printf("%-40.40s %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f\n", shown(x.source).c_str(), x.rouge_ref, x.f1_ref, x.rouge_base,
              x.f1_base, x.base_rouge_ref, x.base_f1_ref);
  std::printf("%-40s %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f\n", "mean", r.rouge_ref, r.f1_ref, r.rouge_base, r.f1_base,
            r.base_rouge_ref, r.base_f1_ref);
  std::printf("(R-L/F1 ref: ICAE answer vs reference; base: ICAE vs the base model reading the full context;\n"
            " base R-L/F1: the base model's answer vs reference)\n");
}

void setup(CLI::App& root) {
  CLI::App* eval = root.add_subcommand("eval", "Evaluate an ICAE adapter: ae (reconstruction), lm (perplexity), ft (answers).");
  eval->require_subcommand(1);
  struct Sub {
    const char* name;
    const char* help;
    void (*run)(const EvalArgs&);
  };
  for (const Sub& sub : {Sub{"ae", "Reconstruction from the slots (greedy unless told otherwise): BLEU-4, exact-match prefix, teacher-forced token accuracy.", run_ae},
                         Sub{"lm", "Perplexity of continuations given the slots of the preceding text, the text itself, or nothing.", run_lm},
                         Sub{"ft", "PwC answers from the slots vs the reference and the base model with the full context (ROUGE-L, token F1).", run_ft}}) {
    auto a = std::make_shared<EvalArgs>();
    CLI::App* c = eval->add_subcommand(sub.name, sub.help);
    cli::ModelOptionsUse use;
    use.adapter = cli::AdapterUse::Required;
    use.tokenizer = use.lora_alpha = true;
    cli::add_model_options(c, *a, use);
    c->add_option("--data", a->data, "Text files, folders of them, or JSONL (text, or PwC input/prompt/answer)")->required();
    c->add_option("--max-samples", a->max_samples, "Use at most this many samples (0: all)")->capture_default_str();
    c->add_option("--batch", a->batch, "Contexts compressed and decoded together")->capture_default_str();
    c->add_flag("--json", a->json, "One JSON document on stdout instead of the table");
    if (std::string(sub.name) == "lm") {
      c->add_option("--context-tokens", a->context_tokens, "Tokens of preceding text (compressed or read)")->capture_default_str();
      c->add_option("--continuation-tokens", a->continuation_tokens, "Tokens scored after them")->capture_default_str();
    }
    if (std::string(sub.name) == "ft") {
      c->add_option("--out,-o", a->out, "JSONL file with one line per sample (answers and scores)");
      c->add_option("--template", a->tmpl, "FT template (default: the adapter's)");
      c->add_option("--max-new-tokens,-n", a->max_new_tokens, "Answer length at most")->capture_default_str();
      c->add_flag("--no-base", a->no_base, "Skip the base model's full-context answers");
    }
    if (std::string(sub.name) != "lm") cli::add_sampling_options(c, a->sampling);
    auto run = sub.run;
    c->callback([a, run] { run(*a); });
  }
}

}  // namespace

ICAE_COMMAND(setup);
