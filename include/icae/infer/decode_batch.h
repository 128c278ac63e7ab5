// A running decode batch that rows join and leave between steps (continuous batching), for a
// server: a request that arrives while others decode does not wait for them to finish.
//
// Each row has its own KV cache (batch 1, its own length), so a row joins by prefilling its
// prefix alone into a fresh cache, and leaves by dropping that cache; nothing is padded or
// re-packed. A step decodes one token for every running row through Transformer::decode_rows
// (projections batched over the rows, attention per row). A row's tokens therefore equal
// Session::run({row}) alone, up to the float rounding of its prefill (see below).
//
// Compress once, ask many: every question about the same slots begins with the same positions
// (the template's head and the slots, up to the last slot), so their keys and values are kept
// (an LRU bounded in bytes, keyed by those positions' exact embeddings) and a row that begins
// with a kept prefix copies it and prefills only its prompt. A row with slots is always
// prefilled in these two parts, cached or not, so its tokens do not depend on what the cache
// holds.
//
// Used by one thread at a time, like the Session it decodes with.
#pragma once
#include <cstdint>
#include <string>
#include <memory>
#include <vector>

#include "icae/infer/session.h"
#include "icae/util/byte_lru.h"

namespace icae {

struct DecodeBatchOptions {
  // Bytes of kept slot-prefix keys and values (0: keep none; rows with slots are still
  // prefilled in two parts). SmolLM2-135M in float32: ~46 KB per position, 1.5 MB for 32 slots.
  int64_t prefix_cache_bytes = int64_t{256} << 20;
};

class DecodeBatch {
 public:
  explicit DecodeBatch(Session& session, const DecodeBatchOptions& options = {});
  ~DecodeBatch();
  DecodeBatch(const DecodeBatch&) = delete;
  DecodeBatch& operator=(const DecodeBatch&) = delete;

  // Prefills the row and picks its first token (streamed through on_token, which may end the row
  // by returning false). Returns the row's handle. Rows may have different sampling settings:
  // each has its own sampler, seeded as if it ran alone. Throws (and joins nothing) when the row
  // is bad; the running rows are untouched.
  uint64_t join(const DecodeRow& row, const SamplingOptions& sampling, TokenCallback on_token = {});
  // One token for every running row; rows that reach a stop id, their budget or a callback's
  // false leave the batch (see take_finished).
  void step();
  // Ends a running row now, with the given stop reason (e.g. the client went away).
  void end(uint64_t handle, const std::string& stop_reason);

  struct Finished {
    uint64_t handle = 0;
    Completion completion;
  };
  // The rows that ended since the last call (their caches already freed).
  std::vector<Finished> take_finished();

  size_t running() const { return rows_.size(); }
  std::vector<uint64_t> handles() const;  // of the running rows
  // Bytes of keys and values the running rows hold (positions in use).
  int64_t kv_bytes() const;
  // Rows whose slot prefix was found kept / had to be prefilled; bytes kept now.
  int64_t prefix_hits() const { return prefix_hits_; }
  int64_t prefix_misses() const { return prefix_misses_; }
  int64_t prefix_cache_bytes() const { return prefixes_.bytes(); }

 private:
  struct Row;
  void retire_done();

  // A kept slot prefix: its embeddings (compared exactly on a hit: the key is their hash) and each
  // layer's keys and values.
  struct Prefix {
    at::Tensor embeds;                     // [length, H], the base model's dtype
    std::vector<at::Tensor> keys, values;  // per layer [1, Hkv, length, D]
  };
  // Fills the first `length` positions of a fresh cache with the prefix `head` [length, H]:
  // copied from a kept one, or prefilled (and kept).
  void fill_prefix(const at::Tensor& head, KVCache& cache);

  Session& session_;
  DecodeBatchOptions options_;
  ByteLru<std::string, Prefix> prefixes_;  // keyed by Hash128 of the embeddings
  int64_t prefix_hits_ = 0, prefix_misses_ = 0;
  std::vector<int64_t> model_stops_;
  std::vector<std::unique_ptr<Row>> rows_;
  std::vector<Finished> finished_;
  uint64_t next_handle_ = 1;
};

}  // namespace icae
