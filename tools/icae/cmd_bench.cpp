// icae bench: the paper's latency and memory table (see eval/latency_bench.h) on a model file
// or on random weights of a known shape, with a trained adapter or a random one (timing does
// not depend on what the adapter learnt).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "command.h"
#include "common.h"
#include "icae/core/adapter_file.h"
#include "icae/eval/latency_bench.h"
#include "icae/eval/model_shapes.h"
#include "icae/infer/session.h"
#include "icae/infer/text_model.h"
#include "icae/io/model_loader.h"
#include "icae/util/device.h"

namespace {

using namespace icae;

struct BenchArgs : cli::ModelOptions {
  std::string shape;
  std::string slot_kind = "embedding";  // of the random adapter
  std::vector<int64_t> batches, contexts;
  int64_t gen = 128, mem_size = 128, lora_r = 128;
  bool json = false;
  uint64_t seed = 1234;
};

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

void run_bench(const BenchArgs& a) {
  ICAE_CHECK(a.model.empty() != a.shape.empty(), ErrorKind::Usage, "give --model PATH or --shape NAME|config.json");
  const ModelLoadOptions lo = cli::resolve(a.run);
  auto text = std::make_shared<TextModel>();
  if (!a.model.empty()) {
    // The benchmark feeds token ids, but an adapter's FT template (chatml, ...) is built from the
    // tokenizer: load it when the model has one (a .gguf always does).
    namespace fs = std::filesystem;
    if (fs::is_directory(a.model) && !fs::exists(fs::path(a.model) / "tokenizer.json")) {
      text->path = a.model;
      text->model = std::make_shared<Transformer>(load_transformer(a.model, lo));
    } else {
      TextModelOptions to;
      to.load = lo;
      text = std::make_shared<TextModel>(load_text_model(a.model, to));
    }
  } else {
    text->path = a.shape + " (random weights)";
    ModelConfig cfg = eval::shape_config(a.shape);
    text->model = std::make_shared<Transformer>(cfg, eval::random_weights(cfg, lo.device, lo.dtype, a.seed), lo);
  }
  auto adapter = std::make_shared<LoadedAdapter>();
  if (!a.adapter.empty()) {
    AdapterLoadOptions ao;
    if (a.lora_alpha > 0) ao.lora_alpha = a.lora_alpha;
    *adapter = load_adapter(a.adapter, text->model, ao);
  } else {
    IcaeConfig ic;
    ic.mem_size = a.mem_size;
    ic.lora.r = a.lora_r;
    ic.slot_kind = parse_slot_kind(a.slot_kind);
    adapter->icae = std::make_unique<Icae>(text->model, ic, a.seed);
  }
  Session session(text, adapter);

  eval::LatencyOptions o;
  o.gen = a.gen;
  o.seed = a.seed;
  if (!a.batches.empty() || !a.contexts.empty()) {
    o.cases.clear();
    for (int64_t b : a.batches.empty() ? std::vector<int64_t>{1} : a.batches)
      for (int64_t c : a.contexts.empty() ? std::vector<int64_t>{512} : a.contexts) o.cases.push_back({b, c});
  }
  const Icae& icae = session.icae();
  std::vector<eval::LatencyRow> rows =
      eval::run_latency_bench(session, o, [](const std::string& s) { std::fprintf(stderr, "bench: %s\n", s.c_str()); });

  const std::string dtype = resolve_auto_dtype(a.run.dtype, lo.device);
  const int threads = at::get_num_threads();
  if (a.json) {
    nlohmann::json j = {{"model", text->path}, {"adapter", a.adapter.empty() ? "random" : a.adapter},
                        {"mem_size", icae.config().mem_size}, {"compression_rate", icae.config().compression_rate},
                        {"slot_kind", slot_kind_name(icae.config().slot_kind)},
                        {"device", a.run.device}, {"dtype", dtype}, {"threads", threads},
                        {"cpu", cpu_model()}, {"date", now_utc()}, {"gen", a.gen}, {"rows", nlohmann::json::array()}};
    for (const auto& r : rows)
      j["rows"].push_back({{"batch", r.batch}, {"context", r.context}, {"slots", r.slots}, {"gen", r.gen},
                           {"compress_ms", r.compress_ms}, {"decode_slots_ms", r.decode_slots_ms},
                           {"decode_full_ms", r.decode_full_ms}, {"total_slots_ms", r.total_slots_ms()},
                           {"speedup_total", r.speedup()}, {"speedup_decode", r.decode_speedup()},
                           {"kv_bytes_slots", r.kv_bytes_slots}, {"kv_bytes_full", r.kv_bytes_full},
                           {"peak_bytes_slots", r.peak_bytes_slots}, {"peak_bytes_full", r.peak_bytes_full},
                           {"peak_kind", r.peak_kind}});
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::printf("%s, %s, %s, %d threads, k = %lld %s slots, %lld generated tokens; %s; %s\n", text->path.c_str(),
              a.run.device.c_str(), dtype.c_str(), threads, static_cast<long long>(icae.config().mem_size),
              slot_kind_name(icae.config().slot_kind),
              static_cast<long long>(a.gen), cpu_model().c_str(), now_utc().c_str());
  std::printf("%-10s %6s %11s %11s %11s %11s %8s %8s %9s %9s %10s %10s\n", "batch x L", "slots", "compress", "dec slots",
              "total ICAE", "dec full", "speedup", "dec only", "KV slots", "KV full", "peak slots", "peak full");
  const double mib = 1024.0 * 1024.0;
  for (const auto& r : rows) {
    const std::string shape = std::to_string(r.batch) + "x" + std::to_string(r.context);
    std::printf("%-10s %6lld %9.0fms %9.0fms %9.0fms %9.0fms %7.2fx %7.2fx %7.1fMB %7.1fMB %8.0fMB %8.0fMB\n",
                shape.c_str(), static_cast<long long>(r.slots), r.compress_ms, r.decode_slots_ms, r.total_slots_ms(),
                r.decode_full_ms, r.speedup(), r.decode_speedup(), r.kv_bytes_slots / mib, r.kv_bytes_full / mib, r.peak_bytes_slots / mib,
                r.peak_bytes_full / mib);
  }
  std::printf("(speedup: full-context decode / (compression + slot decode); dec only: full-context decode / slot decode,\n"
              " the gain when the slots are cached; decode times include the prefix's prefill; peak: %s)\n",
              rows.empty() ? "" : rows.front().peak_kind == "cuda" ? "CUDA allocator peak" : "process peak RSS, weights included");
}

void setup(CLI::App& root) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* c = root.add_subcommand(
      "bench", "The ICAE latency and memory table: compression, decoding from slots vs the full context, speed-up,\n"
               "KV-cache bytes and peak memory, for each batch x context length (default 1x512, 8x512, 8x2048, 32x512).");
  cli::ModelOptionsUse use;
  use.model_required = false;
  use.adapter = cli::AdapterUse::Optional;
  use.adapter_note = "without one, a random one with --mem-size and --lora-r";
  use.lora_alpha = true;
  use.run = false;  // declared below, after the random adapter's options
  auto* model = cli::add_model_options(c, *a, use);
  auto* shape = c->add_option("--shape", a->shape, "Or random weights of a built-in shape (llama2-7b, mistral-7b, smollm2-135m,\n"
                                                   "tinyllama-1.1b) or of a config.json");
  model->excludes(shape);
  c->add_option("--batch", a->batches, "Batch sizes, e.g. 1,8,32")->delimiter(',');
  c->add_option("--context", a->contexts, "Context lengths in tokens, e.g. 512,2048")->delimiter(',');
  c->add_option("--gen", a->gen, "Tokens generated per row")->capture_default_str();
  c->add_option("--mem-size,-k", a->mem_size, "Random adapter: slots per segment")->capture_default_str();
  c->add_option("--lora-r", a->lora_r, "Random adapter: LoRA rank")->capture_default_str();
  c->add_option("--slot-kind", a->slot_kind, "Random adapter: embedding or kv slots (an adapter file says its own)")
      ->check(CLI::IsMember({"embedding", "kv"}))
      ->capture_default_str();
  c->add_option("--seed", a->seed, "Seed of the random weights and token ids")->capture_default_str();
  c->add_flag("--json", a->json, "One JSON document on stdout instead of the table");
  cli::add_run_options(c, a->run);
  c->callback([a] { run_bench(*a); });
}

}  // namespace

ICAE_COMMAND(setup);
