// icae distill: instruction data for `icae finetune` by context distillation — the base model
// answers prompts about passages it reads in full; see include/icae/train/distill.h.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/api.h"
#include "icae/io/data_files.h"
#include "icae/train/data.h"
#include "icae/train/distill.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct DistillArgs : cli::ModelOptions {
  std::string out, passages_out, prompts_file;
  std::vector<std::string> data;
  int64_t passages = 200, max_context = 128, min_context = 64, batch = 8, max_new_tokens = 96;
  uint64_t seed = 0;
  bool split_blocks = false, passages_only = false;
};

std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream in(path);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  std::vector<std::string> prompts;
  std::string line;
  while (std::getline(in, line))
    if (!line.empty() && line[0] != '#') prompts.push_back(line);
  ICAE_CHECK(!prompts.empty(), ErrorKind::BadInput, path + ": no prompts (one per line; '#' starts a comment)");
  return prompts;
}

// Passages: contexts of the training reader (documents cut at --max-context tokens), drawn from a
// seeded shuffled stream so that a small count still spans the sources, turned back into text.
std::vector<std::string> draw_passages(const DistillArgs& a, const Session& s) {
  const TextModel& m = s.model();
  train::DataOptions d;
  d.max_context = a.max_context;
  d.min_context = a.min_context;
  d.split_blocks = a.split_blocks;
  train::StreamOptions so;
  so.seed = a.seed;
  auto log = std::make_shared<train::BadDataLog>();
  // Count what the data holds first so that a small corpus is not drawn twice.
  int64_t available = 0;
  const auto files = icae::list_data_files(a.data);
  for (const auto& f : files) available += static_cast<int64_t>(train::read_examples(f, *m.tokenizer, d, *log).size());
  ICAE_CHECK(available > 0, ErrorKind::BadInput, "no passage of at least " + std::to_string(a.min_context) +
                                                     " tokens in the data");
  const int64_t n = a.passages > 0 ? std::min(a.passages, available) : available;
  train::ExampleStream stream(files, m.tokenizer, d, so, log);
  std::vector<std::string> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(s.detokenize(stream.next().context));
  return out;
}

void run_distill(const DistillArgs& a) {
  ICAE_CHECK(a.passages_only || !a.out.empty(), ErrorKind::Usage, "give the output file: --out FILE.jsonl");
  ICAE_CHECK(!a.passages_only || !a.passages_out.empty(), ErrorKind::Usage, "--passages-only needs --passages-out FILE");
  train::DistillOptions o;
  if (!a.prompts_file.empty()) o.prompts = read_prompts(a.prompts_file);
  o.batch = a.batch;
  o.max_new_tokens = a.max_new_tokens;
  cli::resolve(a.run);
  Session s = open_session(a.model, "", cli::open_options(a));
  const std::vector<std::string> passages = draw_passages(a, s);
  if (!a.passages_out.empty()) {
    std::ofstream p(a.passages_out, std::ios::trunc);
    ICAE_CHECK(p.good(), ErrorKind::Io, a.passages_out + ": cannot open for writing");
    for (const auto& text : passages) p << nlohmann::json({{"text", text}}).dump() << "\n";
    ICAE_CHECK(p.good(), ErrorKind::Io, a.passages_out + ": write failed");
  }
  if (a.passages_only) {
    std::fprintf(stderr, "icae distill: wrote %zu passages to %s\n", passages.size(), a.passages_out.c_str());
    return;
  }
  // Written next to the target and renamed at the end: an interrupted run leaves no half file.
  const std::string tmp = a.out + ".partial";
  std::ofstream out(tmp, std::ios::trunc);
  ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": cannot open for writing");
  const size_t prompts = o.prompts.empty() ? train::default_distill_prompts().size() : o.prompts.size();
  std::fprintf(stderr, "icae distill: %zu passages x %zu prompts, answers of at most %lld tokens\n", passages.size(),
               prompts, static_cast<long long>(o.max_new_tokens));
  const auto r = train::distill(s, passages, o, out, [](const train::DistillProgress& p) {
    std::fprintf(stderr, "\r  %lld/%lld answers (%lld kept), %.0f s, %.1f tok/s   ", static_cast<long long>(p.done),
                 static_cast<long long>(p.total), static_cast<long long>(p.written), p.seconds, p.tokens_per_s);
  });
  out.close();
  ICAE_CHECK(!out.fail(), ErrorKind::Io, tmp + ": write failed");
  ICAE_CHECK(std::rename(tmp.c_str(), a.out.c_str()) == 0, ErrorKind::Io, "cannot rename " + tmp + " to " + a.out);
  std::fprintf(stderr, "\nicae distill: wrote %lld records to %s (%lld empty answers dropped), %.0f s\n",
               static_cast<long long>(r.written), a.out.c_str(), static_cast<long long>(r.dropped), r.seconds);
}

void setup_distill(CLI::App& root) {
  auto a = std::make_shared<DistillArgs>();
  CLI::App* c = root.add_subcommand(
      "distill",
      "Make fine-tuning data by context distillation: the base model answers prompts about passages it\n"
      "reads in full; `icae finetune` then teaches ICAE to give those answers from the slots alone.\n"
      "Writes PwC-format JSONL ({\"input\", \"prompt\", \"answer\"} per line).\n"
      "Example: icae distill --model SmolLM2.gguf --data data/corpus/train --out data/ft/train.jsonl --passages 200");
  cli::ModelOptionsUse use;
  use.tokenizer = true;
  cli::add_model_options(c, *a, use);
  c->add_option("--data", a->data, "Text: .txt files, folders of them, JSONL with \"text\"")->required();
  c->add_option("--out", a->out, "Output JSONL (written atomically)");
  c->add_flag("--passages-only", a->passages_only, "Only draw the passages and write --passages-out (no answers)");
  c->add_option("--passages-out", a->passages_out, "Also write the passages as JSONL {\"text\"} (for `icae eval ae`)");
  c->add_option("--prompts", a->prompts_file, "File with one prompt per line (default: a built-in set of four)");
  c->add_option("--passages", a->passages, "Passages to draw (0: all)")->check(cli::at_least(0))->capture_default_str();
  c->add_option("--max-context", a->max_context, "Tokens per passage at most (documents are cut)")
      ->check(cli::at_least(1))
      ->capture_default_str();
  c->add_option("--min-context", a->min_context, "Shorter passages are skipped")->check(cli::at_least(1))->capture_default_str();
  c->add_flag("--split-blocks", a->split_blocks, "In .txt files, one document per blank-line-separated block");
  c->add_option("--seed", a->seed, "Seed of the passage draw")->capture_default_str();
  c->add_option("--batch", a->batch, "Answers decoded together")->check(cli::at_least(1))->capture_default_str();
  c->add_option("--max-new-tokens,-n", a->max_new_tokens, "Tokens per answer at most")
      ->check(cli::at_least(1))
      ->capture_default_str();
  c->callback([a] { run_distill(*a); });
}

}  // namespace

ICAE_COMMAND(setup_distill);
