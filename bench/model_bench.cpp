// Throughput of the paths that matter for ICAE, on a real checkpoint or a randomly initialised
// model of a known shape:
//   (1) prefill of a prompt at batch 1 (KV cache, logits of the last position only),
//   (2) decoding one token per step with the KV cache at depth 0 and at --depth,
//   (3) ICAE compression of a context into memory slots (encoder with LoRA, no grad),
//   (4) one ICAE autoencoding training step (compress + decoder loss + backward + AdamW).
// Each number is the median of --repeat runs after --warmup runs; on CUDA the device is
// synchronised before every clock read. A big shape can be shrunk with --layers N (N >= 2): the
// same benchmarks then also run on a 1-layer copy (same embeddings), which splits every time into
// a fixed part and a per-layer part, and the full-depth time is extrapolated from the two.
// Run `model_bench --help` for the options; docs/benchmarks.md has the standard runs.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/DeviceAccelerator.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common.h"  // tools/icae: --device, --dtype, --threads as the icae commands declare them
#include "icae/core/icae.h"
#include "icae/core/objectives.h"
#include "icae/eval/model_shapes.h"
#include "icae/infer/generate.h"
#include "icae/io/model_loader.h"
#include "icae/model/kv_cache.h"
#include "icae/model/tensor_names.h"
#include "icae/model/transformer.h"
#include "icae/train/step.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

using namespace icae;
using eval::random_weights;
using eval::shape_config;
using eval::shape_names;
using Clock = std::chrono::steady_clock;

namespace {

// ---------------------------------------------------------------- options and shapes

struct Options {
  cli::ModelOptions m;  // --model and the run options, as the icae commands declare them
  std::string shape;
  int64_t layers = 0;  // 0: the shape's own depth
  int repeat = 3;
  int warmup = 1;
  int64_t prompt_len = 512;
  int64_t gen = 128;
  int64_t depth = 512;
  int64_t context_len = 512;
  int64_t mem_size = 128;
  double rate = 4.0;
  int64_t lora_r = 128;
  std::string only = "prefill,decode,compress,train";
  std::string json_path;
  uint64_t seed = 1234;
};


// The first `layers` layers of a weight map (tensors shared, not copied).
TensorMap first_layers(const TensorMap& all, int64_t layers) {
  TensorMap out;
  const std::string prefix(kHfLayerPrefix);
  for (const auto& [name, t] : all) {
    if (name.compare(0, prefix.size(), prefix) == 0) {
      const int64_t l = std::stoll(name.substr(prefix.size()));
      if (l >= layers) continue;
    }
    out[name] = t;
  }
  return out;
}

// ---------------------------------------------------------------- timing

void sync(at::Device device) {
  if (device.is_cuda()) at::accelerator::synchronizeDevice(device.has_index() ? device.index() : 0);
}

void reset_peak(at::Device device) {
  if (device.is_cuda()) at::accelerator::resetPeakStats(device.has_index() ? device.index() : 0);
}

// Peak bytes allocated on the device since reset_peak (CUDA only; -1 elsewhere).
int64_t peak_bytes(at::Device device) {
  if (!device.is_cuda()) return -1;
  auto stats = at::accelerator::getDeviceStats(device.has_index() ? device.index() : 0);
  return stats.allocated_bytes[0].peak;  // index 0: StatType::AGGREGATE
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Result {
  std::string key;     // prefill, decode_d0, decode_d512, compress, train
  std::string label;   // what was measured, for the table
  std::string unit;    // "ms" (per run) or "ms/token"
  double tokens = 0;   // tokens per timed unit, for tok/s
  std::vector<double> samples_ms;
  int64_t peak_bytes = -1;
  double ms() const { return median(samples_ms); }
  double min_ms() const { return *std::min_element(samples_ms.begin(), samples_ms.end()); }
  double tok_per_s() const { return tokens > 0 ? tokens * 1000.0 / ms() : 0.0; }
};

// Runs `body` warmup + repeat times; body returns its own elapsed milliseconds (so it may
// exclude set-up such as resetting a cache) and must synchronise before reading clocks.
Result measure(const Options& o, at::Device device, Result r, const std::function<double()>& body) {
  for (int i = 0; i < o.warmup; ++i) body();
  reset_peak(device);
  for (int i = 0; i < o.repeat; ++i) r.samples_ms.push_back(body());
  r.peak_bytes = peak_bytes(device);
  return r;
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

bool wanted(const Options& o, const std::string& what) {
  std::stringstream ss(o.only);
  std::string item;
  while (std::getline(ss, item, ','))
    if (item == what) return true;
  return false;
}

// ---------------------------------------------------------------- the benchmarks

std::vector<Result> run_all(std::shared_ptr<const Transformer> model, const Options& o, const std::string& tag) {
  const at::Device device = model->device();
  const ModelConfig& cfg = model->config();
  std::mt19937_64 rng(o.seed);
  std::vector<Result> out;
  auto log = [&](const Result& r) {
    std::fprintf(stderr, "  [%s] %-34s %10.2f %s (median of %zu)\n", tag.c_str(), r.label.c_str(), r.ms(),
                 r.unit.c_str(), r.samples_ms.size());
  };

  if (wanted(o, "prefill")) {
    at::NoGradGuard no_grad;
    KVCacheOptions co;
    co.max_length = o.prompt_len;
    co.device = device;
    co.dtype = model->dtype();
    KVCache cache(cfg, co);
    ForwardInput in;
    in.input_ids = at::tensor(random_ids(o.prompt_len, cfg.vocab_size, rng), at::kLong).view({1, o.prompt_len});
    ForwardOptions fo;
    fo.cache = &cache;
    fo.last_position_only = true;
    Result r{"prefill", "prefill " + std::to_string(o.prompt_len) + " tokens, batch 1", "ms",
             static_cast<double>(o.prompt_len)};
    r = measure(o, device, r, [&] {
      cache.reset();
      sync(device);
      auto t0 = Clock::now();
      at::Tensor logits = model->forward(in, fo).logits;
      sync(device);
      return ms_since(t0);
    });
    log(r);
    out.push_back(r);
  }

  if (wanted(o, "decode")) {
    at::NoGradGuard no_grad;
    std::vector<int64_t> depths = {0};
    if (o.depth > 0) depths.push_back(o.depth);
    for (int64_t depth : depths) {
      KVCacheOptions co;
      co.max_length = depth + o.gen + 1;
      co.device = device;
      co.dtype = model->dtype();
      KVCache cache(cfg, co);
      ForwardOptions fo;
      fo.cache = &cache;
      fo.last_position_only = true;
      if (depth > 0) {  // fill the cache once; every run truncates back to it
        ForwardInput pre;
        pre.input_ids = at::tensor(random_ids(depth, cfg.vocab_size, rng), at::kLong).view({1, depth});
        model->forward(pre, fo);
      }
      const int64_t first = random_ids(1, cfg.vocab_size, rng)[0];
      Result r{"decode_d" + std::to_string(depth),
               "decode " + std::to_string(o.gen) + " tokens at depth " + std::to_string(depth), "ms/token", 1.0};
      r = measure(o, device, r, [&] {
        cache.truncate(depth);
        int64_t id = first;
        sync(device);
        auto t0 = Clock::now();
        // One forward per token, greedy choice read back to the host as generation does.
        for (int64_t s = 0; s < o.gen; ++s) {
          ForwardInput step;
          step.input_ids = at::full({1, 1}, id, at::kLong);
          at::Tensor logits = model->forward(step, fo).logits;
          id = greedy_pick(logits.view({-1}));
        }
        sync(device);
        return ms_since(t0) / static_cast<double>(o.gen);
      });
      log(r);
      out.push_back(r);
    }
  }

  if (wanted(o, "compress") || wanted(o, "train")) {
    IcaeConfig ic;
    ic.mem_size = o.mem_size;
    ic.compression_rate = o.rate;
    ic.lora.r = o.lora_r;
    Icae icae(model, ic, o.seed);
    {  // peft starts B at zero; give it values so nothing is timed on zeros
      at::NoGradGuard no_grad;
      for (int64_t l = 0; l < icae.lora().num_layers(); ++l)
        for (int p = 0; p < kNumProj; ++p) {
          LoraPair& pair = icae.lora().pair(l, static_cast<Proj>(p));
          if (pair.defined()) pair.B.normal_(0.0, 1e-3);
        }
    }
    const std::vector<int64_t> context = random_ids(o.context_len, cfg.vocab_size, rng);
    const int64_t slots = slot_count(ic, o.context_len);
    const std::string shape = std::to_string(o.context_len) + " tokens -> " + std::to_string(slots) + " slots";

    if (wanted(o, "compress")) {
      at::NoGradGuard no_grad;
      icae.set_trainable(false);
      Result r{"compress", "ICAE compress " + shape, "ms", static_cast<double>(o.context_len)};
      r = measure(o, device, r, [&] {
        sync(device);
        auto t0 = Clock::now();
        at::Tensor s = icae.compress(context);
        sync(device);
        return ms_since(t0);
      });
      log(r);
      out.push_back(r);
    }

    if (wanted(o, "train")) {
      icae.set_trainable(true);
      std::vector<train::OptimizedTensor> params;
      for (auto& [name, t] : icae.named_trainable()) params.push_back({name, t, 1e-4, 0.0});
      train::AdamW opt(params, {});
      const int64_t eos = cfg.eos_token_id.value_or(0) < cfg.vocab_size ? cfg.eos_token_id.value_or(0) : 0;
      train::Sample sample;
      sample.seq = make_ae_sample(icae, context, eos);
      Result r{"train", "ICAE AE train step " + std::to_string(o.context_len) + " tokens", "ms",
               static_cast<double>(o.context_len)};
      r = measure(o, device, r, [&] {
        sync(device);
        auto t0 = Clock::now();
        train::train_step(icae, opt, {{sample}}, {});  // the trainer's own update
        sync(device);
        return ms_since(t0);
      });
      log(r);
      out.push_back(r);
    }
  }
  return out;
}

// ---------------------------------------------------------------- reporting

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      auto pos = line.find(':');
      return pos == std::string::npos ? line : line.substr(pos + 2);
    }
  return "unknown";
}

// Peak resident memory of this process (VmHWM), in MiB.
double peak_rss_mib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

std::string now_utc() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&t));
  return buf;
}

struct Extrapolated {
  double fixed_ms = 0, per_layer_ms = 0, full_ms = 0;
};

// time(L) = fixed + L * per_layer, fitted through the 1-layer and the N-layer runs.
Extrapolated extrapolate(const Result& at_n, const Result& at_1, int64_t n, int64_t full_layers) {
  Extrapolated e;
  e.per_layer_ms = (at_n.ms() - at_1.ms()) / static_cast<double>(n - 1);
  e.fixed_ms = at_1.ms() - e.per_layer_ms;
  e.full_ms = e.fixed_ms + e.per_layer_ms * static_cast<double>(full_layers);
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{
      "model_bench: throughput of prefill, KV-cache decoding, ICAE compression and one ICAE "
      "autoencoding training step, on a checkpoint (--model) or a random model of a known shape "
      "(--shape). Medians of --repeat runs; CUDA is synchronised before every clock read."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // a later --x N wins
  cli::ModelOptionsUse use;
  use.model_required = false;  // or --shape
  use.model_help = "Hugging Face folder (config.json + safetensors) or .gguf file to load";
  auto* model_opt = cli::add_model_options(&app, o.m, use);
  std::string shapes;
  for (const auto& n : shape_names()) shapes += (shapes.empty() ? "" : ", ") + n;
  auto* shape_opt = app.add_option("--shape", o.shape,
                                   "random model of a built-in shape (" + shapes +
                                       ") or a config.json path for any other size: weights normal(0, 0.02), norms 1");
  model_opt->excludes(shape_opt);
  app.add_option("--layers", o.layers,
                 "with --shape: keep only N layers (N >= 2 to also report per-layer and extrapolated "
                 "full-depth times, fitted through an extra 1-layer run)")
      ->check(CLI::PositiveNumber);
  app.add_option("--repeat", o.repeat, "timed runs per benchmark (the median is reported)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--warmup", o.warmup, "untimed runs before the timed ones")->capture_default_str()->check(
      CLI::NonNegativeNumber);
  app.add_option("--prompt-len", o.prompt_len, "prefill prompt length (tokens)")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--gen", o.gen, "tokens decoded per decode run")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--depth", o.depth, "KV-cache depth of the second decode run (0: only depth 0)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--context-len", o.context_len, "context tokens compressed / autoencoded")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--mem-size", o.mem_size, "ICAE memory slots per segment (k)")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--rate", o.rate, "ICAE compression rate (tokens per slot)")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--lora-r", o.lora_r, "LoRA rank on q_proj and v_proj (alpha 32)")->capture_default_str()->check(
      CLI::PositiveNumber);
  app.add_option("--only", o.only, "comma-separated subset of prefill,decode,compress,train")->capture_default_str();
  app.add_option("--json", o.json_path, "also write the results as JSON to this file");
  app.add_option("--seed", o.seed, "seed of the random weights and token ids")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    ICAE_CHECK(!o.m.model.empty() || !o.shape.empty(), ErrorKind::Usage, "give --model PATH or --shape NAME");
    ICAE_CHECK(o.layers == 0 || !o.shape.empty(), ErrorKind::Usage,
               "--layers applies to --shape only (a loaded model keeps its layers)");
    {
      std::stringstream ss(o.only);
      std::string item;
      while (std::getline(ss, item, ','))
        ICAE_CHECK(item == "prefill" || item == "decode" || item == "compress" || item == "train", ErrorKind::Usage,
                   "--only: unknown benchmark '" + item + "' (prefill, decode, compress, train)");
    }
    const ModelLoadOptions lo = cli::resolve(o.m.run);  // --threads, device, dtype, --dense-decode
    const std::string dtype = resolve_auto_dtype(o.m.run.dtype, lo.device);  // the report names the real one

    std::shared_ptr<const Transformer> model, one_layer;
    int64_t full_layers = 0;
    const auto t_load = Clock::now();
    if (!o.m.model.empty()) {
      model = std::make_shared<Transformer>(load_transformer(o.m.model, lo));
      full_layers = model->config().num_hidden_layers;
    } else {
      ModelConfig cfg = shape_config(o.shape);
      full_layers = cfg.num_hidden_layers;
      ICAE_CHECK(o.layers <= full_layers, ErrorKind::Usage,
                 "--layers " + std::to_string(o.layers) + " is more than " + o.shape + "'s " +
                     std::to_string(full_layers));
      if (o.layers > 0) cfg.num_hidden_layers = o.layers;
      TensorMap w = random_weights(cfg, lo.device, lo.dtype, o.seed);
      if (cfg.num_hidden_layers < full_layers && cfg.num_hidden_layers >= 2) {
        ModelConfig c1 = cfg;
        c1.num_hidden_layers = 1;
        one_layer = std::make_shared<Transformer>(c1, first_layers(w, 1), lo);
      }
      model = std::make_shared<Transformer>(cfg, std::move(w), lo);
    }
    const double load_s = ms_since(t_load) / 1000.0;
    const ModelConfig& cfg = model->config();
    const int64_t layers = cfg.num_hidden_layers;
    const std::string what = o.m.model.empty() ? o.shape + " (random weights)" : o.m.model;

    std::printf("model_bench  %s\n", now_utc().c_str());
    std::printf("machine      %s, %u hardware threads, libtorch %s, intra-op threads %d\n", cpu_model().c_str(),
                std::thread::hardware_concurrency(), TORCH_VERSION, at::get_num_threads());
    std::printf("model        %s: %lld of %lld layers, hidden %lld, inter %lld, heads %lld/%lld kv, vocab %lld%s\n",
                what.c_str(), (long long)layers, (long long)full_layers, (long long)cfg.hidden_size,
                (long long)cfg.intermediate_size, (long long)cfg.num_attention_heads,
                (long long)cfg.num_key_value_heads, (long long)cfg.vocab_size,
                cfg.tie_word_embeddings ? ", tied embeddings" : "");
    auto env = [](const char* name) {
      const char* v = std::getenv(name);
      return std::string(v ? v : "(unset)");
    };
    std::printf("env          OMP_WAIT_POLICY=%s ATEN_CPU_CAPABILITY=%s\n", env("OMP_WAIT_POLICY").c_str(),
                env("ATEN_CPU_CAPABILITY").c_str());
    std::printf("run          device %s, dtype %s, repeat %d (median), warmup %d, load %.1f s\n",
                lo.device.str().c_str(), dtype.c_str(), o.repeat, o.warmup, load_s);
    std::printf("icae         mem_size %lld, rate %g, LoRA r %lld on q,v\n", (long long)o.mem_size, o.rate,
                (long long)o.lora_r);
    std::fflush(stdout);

    std::vector<Result> results = run_all(model, o, std::to_string(layers) + "L");
    std::vector<Result> results_1;
    if (one_layer) results_1 = run_all(one_layer, o, "1L");

    // The table.
    const bool extra = !results_1.empty();
    const std::string full_col = std::to_string(full_layers) + "L ms";
    std::printf("\n%-40s %10s %10s %10s %9s", "benchmark", "median", "min", "tok/s", "peak MiB");
    if (extra) std::printf(" | %9s %9s | %10s %9s", "fixed ms", "layer ms", full_col.c_str(), "tok/s");
    std::printf("\n");
    nlohmann::json jres = nlohmann::json::array();
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      const std::string label = r.label + (r.unit == "ms/token" ? " [ms/tok]" : " [ms]");
      std::string peak = r.peak_bytes >= 0 ? std::to_string(r.peak_bytes >> 20) : "-";
      std::printf("%-40s %10.2f %10.2f %10.1f %9s", label.c_str(), r.ms(), r.min_ms(), r.tok_per_s(), peak.c_str());
      nlohmann::json j = {{"key", r.key},         {"label", r.label},     {"unit", r.unit},
                          {"median_ms", r.ms()}, {"min_ms", r.min_ms()}, {"samples_ms", r.samples_ms},
                          {"tokens_per_s", r.tok_per_s()}, {"layers", layers}};
      if (r.peak_bytes >= 0) j["peak_device_bytes"] = r.peak_bytes;
      if (extra) {
        const Extrapolated e = extrapolate(r, results_1[i], layers, full_layers);
        const double tps = r.tokens > 0 ? r.tokens * 1000.0 / e.full_ms : 0.0;
        std::printf(" | %9.2f %9.2f | %10.2f %9.1f", e.fixed_ms, e.per_layer_ms, e.full_ms, tps);
        j["one_layer_median_ms"] = results_1[i].ms();
        j["fixed_ms"] = e.fixed_ms;
        j["per_layer_ms"] = e.per_layer_ms;
        j["extrapolated"] = {{"layers", full_layers}, {"ms", e.full_ms}, {"tokens_per_s", tps}};
      }
      std::printf("\n");
      jres.push_back(j);
    }
    if (extra)
      std::printf("columns right of '|' are EXTRAPOLATED, not measured at %lld layers: time(L) = fixed + L * "
                  "per_layer,\nfitted through a 1-layer and a %lld-layer run (same embeddings and LM head)\n",
                  (long long)full_layers, (long long)layers);
    std::printf("peak host RSS %.0f MiB\n", peak_rss_mib());

    if (!o.json_path.empty()) {
      nlohmann::json j = {
          {"date", now_utc()},
          {"machine", {{"cpu", cpu_model()}, {"hardware_threads", std::thread::hardware_concurrency()}}},
          {"libtorch", TORCH_VERSION},
          {"intra_op_threads", at::get_num_threads()},
          {"omp_wait_policy", std::getenv("OMP_WAIT_POLICY") ? std::getenv("OMP_WAIT_POLICY") : ""},
          {"model", what},
          {"layers", layers},
          {"full_layers", full_layers},
          {"config", cfg.to_json()},
          {"device", lo.device.str()},
          {"dtype", dtype},
          {"repeat", o.repeat},
          {"warmup", o.warmup},
          {"prompt_len", o.prompt_len},
          {"gen", o.gen},
          {"depth", o.depth},
          {"context_len", o.context_len},
          {"mem_size", o.mem_size},
          {"rate", o.rate},
          {"lora_r", o.lora_r},
          {"peak_host_rss_mib", peak_rss_mib()},
          {"results", jres}};
      std::ofstream f(o.json_path);
      ICAE_CHECK(f.good(), ErrorKind::Io, o.json_path + ": cannot write");
      f << j.dump(2) << "\n";
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "model_bench: %s\n", e.what());
    return e.exit_code();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "model_bench: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
