// The paper's latency and memory table (ICAE Table: 8x512, 8x2048, 32x512, 128 generated
// tokens), on any model: for each batch x context length, the time to compress the contexts,
// the time to decode N tokens reading the slots ([slots, FT] prefix) and reading the full
// context instead, the total speed-up, and the KV-cache bytes and peak memory of each.
// Decoding includes the prefix's prefill (what a user waits for after the slots exist); the
// compression is reported apart because it is cacheable.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace icae {
class Session;
}

namespace icae::eval {

struct LatencyCase {
  int64_t batch = 1, context = 512;
};

struct LatencyOptions {
  std::vector<LatencyCase> cases = {{1, 512}, {8, 512}, {8, 2048}, {32, 512}};
  int64_t gen = 128;          // tokens generated per row (no stop ids)
  int64_t prompt_tokens = 8;  // a short random prompt after [slots, FT] / after the context
  uint64_t seed = 1234;
};

struct LatencyRow {
  int64_t batch = 0, context = 0, slots = 0, gen = 0;
  double compress_ms = 0, decode_slots_ms = 0, decode_full_ms = 0;
  int64_t kv_bytes_slots = 0, kv_bytes_full = 0;
  int64_t peak_bytes_slots = -1, peak_bytes_full = -1;  // device peak (CUDA) or peak RSS (CPU); -1: unknown
  std::string peak_kind;                                 // "cuda" | "rss"
  double total_slots_ms() const { return compress_ms + decode_slots_ms; }
  double speedup() const { return total_slots_ms() > 0 ? decode_full_ms / total_slots_ms() : 0; }
  double decode_speedup() const { return decode_slots_ms > 0 ? decode_full_ms / decode_slots_ms : 0; }
};

// Runs every case on random token ids; the session's stop ids are switched off for it.
// `progress` (may be empty) hears one line per phase.
std::vector<LatencyRow> run_latency_bench(Session& session, const LatencyOptions& options,
                                          const std::function<void(const std::string&)>& progress = {});

}  // namespace icae::eval
