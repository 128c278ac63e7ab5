// icae demo: what ICAE does, shown on a trained adapter in under a minute — passages compressed
// 4x into memory slots, each original beside its reconstruction from the slots (BLEU-4),
// questions answered from the slots alone beside the base model's answers with the full
// passage, and what reading slots instead of the passage saves (prefill tokens, KV cache, time).
// scripts/demo runs it on the bundled adapters (models/demo: the pretrained one reconstructs, the
// fine-tuned one answers, as in the paper); --file runs it on any text.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/api.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/text_metrics.h"
#include "icae/train/distill.h"
#include "icae/util/error.h"

namespace {

using namespace icae;
using Ids = std::vector<int64_t>;
using Clock = std::chrono::steady_clock;

struct DemoArgs : cli::ModelOptions {
  std::string qa_adapter, file;
  std::vector<std::string> passages_data, questions;
  int64_t passages = 3, max_new_tokens = 64;
  SamplingOptions sampling;  // for the reconstructions and both kinds of answer alike
};

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string kib(int64_t bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.0f KiB", static_cast<double>(bytes) / 1024.0);
  return b;
}

Ids without_stop(const Completion& c) {
  Ids ids = c.ids;
  if (c.stop_reason == "stop_id" && !ids.empty()) ids.pop_back();
  return ids;
}

// Decodes one row and reports what it cost: seconds, generated tokens, KV-cache bytes.
struct Timed {
  Completion c;
  double seconds = 0;
  int64_t kv_bytes = 0;
};
Timed timed_run(Session& s, DecodeRow row) {
  Timed t;
  const auto t0 = Clock::now();
  t.c = s.run({std::move(row)})[0];
  t.seconds = seconds_since(t0);
  t.kv_bytes = s.kv_cache_bytes();
  return t;
}

void print_wrapped(const char* label, const std::string& text) {
  std::string flat = text;
  for (char& ch : flat)
    if (ch == '\n') ch = ' ';
  std::printf("  %-15s %s\n", label, flat.c_str());
}

// s reconstructs (and gives the base model's full-context answers); qa answers from its own slots
// of the passage (a fine-tuned adapter: each adapter reads only the slots its own encoder made).
void show_passage(Session& s, Session& qa, const std::string& text, const std::vector<std::string>& questions,
                  int64_t n, const DemoArgs& a) {
  const Ids ids = s.tokenize(text);
  ICAE_CHECK(!ids.empty(), ErrorKind::BadInput, "the passage has no tokens");
  const auto t0 = Clock::now();
  const at::Tensor slots = s.compress(std::vector<Ids>{ids})[0];
  const double compress_s = seconds_since(t0);
  // On disk (float32 slot files): an embedding slot is one hidden vector, a key/value slot a key
  // and a value per layer: as large as one token's share of the KV cache.
  const int64_t slot_bytes = slots[0].numel() * 4;
  std::printf("\n-- passage %lld: %zu tokens -> %lld %s slots (%.1fx, %s each on disk), compressed in %.2f s\n",
              static_cast<long long>(n), ids.size(), static_cast<long long>(slots.size(0)),
              slot_kind_name(slot_kind_of(slots)), static_cast<double>(ids.size()) / static_cast<double>(slots.size(0)),
              kib(slot_bytes).c_str(), compress_s);
  DecodeRow rec = s.reconstruct_row(slots);
  rec.max_new_tokens = static_cast<int64_t>(ids.size()) + 8;
  const Timed r = timed_run(s, rec);
  const Ids back = without_stop(r.c);
  print_wrapped("original:", text);
  print_wrapped("from slots:", s.detokenize(back));
  std::printf("  %-15s BLEU-4 %.3f, first %lld tokens exact\n", "", eval::bleu4(back, ids),
              static_cast<long long>(eval::exact_prefix(back, ids)));
  const at::Tensor qa_slots = &qa == &s ? slots : qa.compress(std::vector<Ids>{ids})[0];
  for (const auto& q : questions) {
    DecodeRow from_slots = qa.answer_row(qa_slots, q);
    from_slots.max_new_tokens = a.max_new_tokens;
    DecodeRow full = s.generate_row(train::full_context_prompt(s.model(), text, q));
    full.max_new_tokens = a.max_new_tokens;
    const int64_t slot_prefix = static_cast<int64_t>(from_slots.prefix.size());
    // Key/value slots need no forward pass over their positions: the prefill runs over the rest.
    const int64_t slot_prefill =
        slot_prefix - (slot_kind_of(qa_slots) == SlotKind::KeyValue ? qa_slots.size(0) : 0);
    const int64_t full_prefix = static_cast<int64_t>(full.prefix.size());
    const Timed x = timed_run(qa, from_slots);
    const Timed y = timed_run(s, full);
    std::printf("  Q: %s\n", q.c_str());
    print_wrapped("ICAE (slots):", s.detokenize(without_stop(x.c)));
    print_wrapped("SmolLM2 (full):", s.detokenize(without_stop(y.c)));
    // Per generated token as well as in total: the two answers need not be equally long.
    const auto per_token = [](const Timed& t) { return 1000.0 * t.seconds / std::max<size_t>(1, t.c.ids.size()); };
    std::printf("  %-15s reads %lld vs %lld prompt positions (prefill over %lld vs %lld); KV cache %s vs %s; "
                "%zu tokens in %.2f s (%.0f ms/token) vs %zu in %.2f s (%.0f ms/token)\n",
                "", static_cast<long long>(slot_prefix), static_cast<long long>(full_prefix),
                static_cast<long long>(slot_prefill), static_cast<long long>(full_prefix), kib(x.kv_bytes).c_str(),
                kib(y.kv_bytes).c_str(), x.c.ids.size(), x.seconds, per_token(x), y.c.ids.size(), y.seconds,
                per_token(y));
  }
}

void run_demo(const DemoArgs& a) {
  ICAE_CHECK(!a.file.empty() || !a.passages_data.empty(), ErrorKind::Usage,
             "give passages: --passages-data FILE.jsonl (held-out text) or --file TEXT");
  std::vector<std::string> texts;
  if (!a.file.empty()) {
    texts.push_back(cli::read_text_file(a.file));
  } else {
    for (const auto& x : eval::read_eval_data(a.passages_data, eval::EvalDataKind::Text)) {
      if (static_cast<int64_t>(texts.size()) >= a.passages) break;
      texts.push_back(x.text);
    }
  }
  OpenOptions o = cli::open_options(a);
  o.session.sampling = a.sampling;
  cli::resolve(a.run);
  const auto t0 = Clock::now();
  Session s = open_session(a.model, a.adapter, o);
  const Icae& icae = s.icae();
  std::printf("ICAE: %s + %s (k = %lld slots per %lld-token segment), loaded in %.1f s\n", a.model.c_str(),
              a.adapter.c_str(), static_cast<long long>(icae.config().mem_size),
              static_cast<long long>(icae.config().mem_size * icae.config().compression_rate), seconds_since(t0));
  if (!s.adapter().info.notes.empty()) std::printf("adapter notes: %s\n", s.adapter().info.notes.c_str());
  const SamplingOptions& d = a.sampling;
  std::printf("decoding: %s", d.temperature > 0 ? "sampled" : "greedy");
  if (d.no_repeat_ngram > 0) std::printf(", no %lld-gram twice", static_cast<long long>(d.no_repeat_ngram));
  if (d.repetition_penalty != 1.0) std::printf(", repetition penalty %.2f", d.repetition_penalty);
  std::printf(" (the same for the slots and the full passage)\n");
  // The answering adapter, when it is another one (the base model is loaded again: ~1 s for SmolLM2).
  std::unique_ptr<Session> qa;
  if (!a.qa_adapter.empty() && a.qa_adapter != a.adapter) {
    qa = std::make_unique<Session>(open_session(a.model, a.qa_adapter, o));
    std::printf("answers: %s\n", a.qa_adapter.c_str());
  }
  const std::vector<std::string> questions =
      a.questions.empty() ? std::vector<std::string>{"Summarize the passage in one sentence.",
                                                     "List the people and places mentioned in the passage."}
                          : a.questions;
  for (size_t i = 0; i < texts.size(); ++i) show_passage(s, qa ? *qa : s, texts[i], questions, static_cast<int64_t>(i) + 1, a);
}

void setup_demo(CLI::App& root) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* c = root.add_subcommand(
      "demo",
      "Show a trained ICAE at work: passages compressed into memory slots, reconstructed from them,\n"
      "and questions answered from the slots beside the base model's answers with the full text.\n"
      "Example: icae demo --model SmolLM2.gguf --adapter models/demo/adapter.safetensors --file my.txt");
  cli::ModelOptionsUse use;
  use.adapter = cli::AdapterUse::Required;
  use.adapter_note = "reconstructs, and answers unless --qa-adapter";
  cli::add_model_options(c, *a, use);
  c->add_option("--qa-adapter", a->qa_adapter,
                "A fine-tuned adapter of the same base to answer the questions with (its own slots of each passage)");
  c->add_option("--passages-data", a->passages_data, "Held-out passages: JSONL with \"text\", or text files");
  c->add_option("--passages", a->passages, "How many of them to show")->check(cli::at_least(1))->capture_default_str();
  c->add_option("--file", a->file, "Your own text instead (long texts are compressed segment by segment)");
  c->add_option("--question,-q", a->questions, "A question to ask about each passage (repeatable; default: two)");
  c->add_option("--max-new-tokens,-n", a->max_new_tokens, "Tokens per answer at most")
      ->check(cli::at_least(1))
      ->capture_default_str();
  cli::add_sampling_options(c, a->sampling);
  c->callback([a] { run_demo(*a); });
}

}  // namespace

ICAE_COMMAND(setup_demo);
