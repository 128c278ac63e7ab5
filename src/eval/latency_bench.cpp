#include "icae/eval/latency_bench.h"

#include <ATen/ATen.h>
#include <ATen/DeviceAccelerator.h>

#include <chrono>
#include <fstream>
#include <random>

#include "icae/infer/session.h"
#include "icae/util/error.h"

namespace icae::eval {

namespace {

using Clock = std::chrono::steady_clock;

void sync(at::Device d) {
  if (d.is_cuda()) at::accelerator::synchronizeDevice(d.has_index() ? d.index() : 0);
}

// Peak memory of one phase. CUDA: the allocator's peak since the reset. CPU: the process's
// peak resident set (VmHWM), which Linux resets when "5" is written to /proc/self/clear_refs;
// it includes the weights, the same in both phases.
void reset_peak(at::Device d) {
  if (d.is_cuda()) {
    at::accelerator::resetPeakStats(d.has_index() ? d.index() : 0);
    return;
  }
  std::ofstream("/proc/self/clear_refs") << "5";
}

int64_t peak_bytes(at::Device d) {
  if (d.is_cuda()) return at::accelerator::getDeviceStats(d.has_index() ? d.index() : 0).allocated_bytes[0].peak;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return -1;
}

double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

std::vector<int64_t> random_ids(int64_t n, int64_t vocab, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> dist(0, vocab - 1);
  std::vector<int64_t> ids(n);
  for (auto& id : ids) id = dist(rng);
  return ids;
}

}  // namespace

std::vector<LatencyRow> run_latency_bench(Session& session, const LatencyOptions& o,
                                          const std::function<void(const std::string&)>& progress) {
  ICAE_CHECK(o.gen > 0, ErrorKind::Usage, "bench: --gen must be positive");
  const at::Device dev = session.base().device();
  const int64_t vocab = session.base().config().vocab_size;
  // Exactly gen tokens per row: no stop ids.
  SessionOptions saved = session.options();
  session.options().use_model_stop_ids = false;
  session.options().stop_ids.clear();
  session.options().max_new_tokens = o.gen;
  session.options().sampling = SamplingOptions{};
  std::mt19937_64 rng(o.seed);
  std::vector<LatencyRow> out;
  auto say = [&](const std::string& s) {
    if (progress) progress(s);
  };
  {
    // Warm-up: first calls pay for oneDNN kernel selection and allocations.
    at::Tensor slots = session.compress({random_ids(64, vocab, rng)}).front();
    DecodeRow row = session.answer_row(slots, random_ids(o.prompt_tokens, vocab, rng));
    row.max_new_tokens = 4;
    session.run({row});
  }
  for (const LatencyCase& c : o.cases) {
    ICAE_CHECK(c.batch > 0 && c.context > 0, ErrorKind::Usage, "bench: batch and context must be positive");
    LatencyRow r;
    r.batch = c.batch;
    r.context = c.context;
    r.gen = o.gen;
    r.peak_kind = dev.is_cuda() ? "cuda" : "rss";
    std::vector<std::vector<int64_t>> contexts, prompts;
    for (int64_t b = 0; b < c.batch; ++b) {
      contexts.push_back(random_ids(c.context, vocab, rng));
      prompts.push_back(random_ids(o.prompt_tokens, vocab, rng));
    }
    const std::string tag = std::to_string(c.batch) + "x" + std::to_string(c.context);

    // 1. compression (all rows' segments in one encoder batch)
    say(tag + ": compress");
    session.release_cache();
    reset_peak(dev);
    sync(dev);
    auto t0 = Clock::now();
    std::vector<at::Tensor> slots = session.compress(contexts);
    sync(dev);
    r.compress_ms = ms_since(t0);
    r.slots = slots.front().size(0);

    // One decoding phase, timed; each allocates its own cache, as a fresh request would.
    auto timed_decode = [&](std::vector<DecodeRow>& phase, auto& ms, auto& kv_bytes, auto& peak) {
      session.release_cache();
      reset_peak(dev);
      sync(dev);
      const auto start = Clock::now();
      session.run(phase);
      sync(dev);
      ms = ms_since(start);
      kv_bytes = session.kv_cache_bytes();
      peak = peak_bytes(dev);
    };

    // 2. decoding from the slots: [template, slots, FT, prompt] then gen tokens
    say(tag + ": decode with slots");
    std::vector<DecodeRow> rows;
    for (int64_t b = 0; b < c.batch; ++b) rows.push_back(session.answer_row(slots[b], prompts[b]));
    timed_decode(rows, r.decode_slots_ms, r.kv_bytes_slots, r.peak_bytes_slots);
    slots.clear();
    rows.clear();

    // 3. decoding from the full context: [context, prompt] then gen tokens
    say(tag + ": decode with the full context");
    for (int64_t b = 0; b < c.batch; ++b) {
      std::vector<int64_t> ids = contexts[b];
      ids.insert(ids.end(), prompts[b].begin(), prompts[b].end());
      rows.push_back(session.generate_row(ids));
    }
    timed_decode(rows, r.decode_full_ms, r.kv_bytes_full, r.peak_bytes_full);
    out.push_back(r);
  }
  session.options() = saved;
  return out;
}

}  // namespace icae::eval
