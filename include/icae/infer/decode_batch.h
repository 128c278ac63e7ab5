// A running decode batch that rows join and leave between steps (continuous batching), for a
// server: a request that arrives while others decode does not wait for them to finish.
//
// Each row has its own KV cache (batch 1, its own length), so a row joins by prefilling its
// prefix alone into a fresh cache, and leaves by dropping that cache; nothing is padded or
// re-packed. A step decodes one token for every running row through Transformer::decode_rows
// (projections batched over the rows, attention per row). A row's tokens therefore equal
// Session::run({row}) alone: bitwise on the quantised CPU path, up to float rounding otherwise.
//
// Used by one thread at a time, like the Session it decodes with.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "icae/infer/session.h"

namespace icae {

class DecodeBatch {
 public:
  explicit DecodeBatch(Session& session);
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

 private:
  struct Row;
  // Picks row r's next token from its logits [V] and retires the row when it is done.
  bool advance(Row& r, const at::Tensor& logits);
  void retire_done();

  Session& session_;
  std::vector<int64_t> model_stops_;
  std::vector<std::unique_ptr<Row>> rows_;
  std::vector<Finished> finished_;
  uint64_t next_handle_ = 1;
};

}  // namespace icae
