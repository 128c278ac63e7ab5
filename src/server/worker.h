// The one thread that touches the model. A Session is not thread-safe (its KV cache, sampler
// state), and on a few cores two model calls side by side would only slow each other, so HTTP
// threads queue jobs here and wait for them. The queue is bounded: a full queue is refused (503)
// at once instead of letting latency grow without limit.
//
// Decodes are continuously batched (decode_batch.h): between two decode steps the worker admits
// queued decodes into the running batch (each prefilled alone into its own KV cache, up to
// max_batch rows), runs at most one other job (compress, tokenize), then steps every running row
// by one token; a row leaves the batch at its own stop id, budget or callback, and its request
// is answered at once. A request that arrives while others decode starts at the next step.
//
// A decode may carry a `cancelled` check (the client went away): a queued one is dropped (499)
// and a running one ends (stop_reason "cancelled") at the next step.
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "icae/infer/session.h"

namespace icae::server {

// One decode to run, beside whatever else is decoding.
struct DecodeJob {
  std::function<DecodeRow(Session&)> make_row;  // on the worker (it may tokenize); may throw
  SamplingOptions sampling;                     // this row's own; rows of any settings share a batch
  std::function<bool(int64_t id)> on_token;     // streaming, on the worker thread; may be empty
  std::function<bool()> cancelled;              // polled on the worker between steps; may be empty
  // Filled by the worker:
  Completion result;
  double decode_ms = 0;    // from joining the batch (prefill included) to leaving it
  int64_t batch_rows = 0;  // the most rows the batch held while this one decoded (itself included)
};

class Worker {
 public:
  Worker(Session session, int64_t max_queue, int max_batch);
  ~Worker();  // stop()

  // Runs job(session) on the worker thread and returns once it ran; an exception it threw is
  // rethrown here. HttpError 503 when the queue is full or the worker is stopping. Returns the
  // time the job waited in the queue, in milliseconds.
  double run(const std::function<void(Session&)>& job);
  // The same for a decode, which joins the running batch. HttpError 499 when it was cancelled
  // before it started.
  double decode(DecodeJob& job);

  int64_t queue_depth() const;   // jobs waiting (not counting the running ones)
  int64_t decode_rows() const;   // rows in the running batch
  int64_t steps() const;         // decode steps run so far
  int64_t row_steps() const;     // tokens those steps decoded (rows per step, summed)
  int64_t cancelled() const;     // decodes ended or dropped because their client went away
  // Decodes whose slot prefix (template head + slots) was kept from an earlier question / was
  // prefilled (see DecodeBatch).
  std::pair<int64_t, int64_t> prefix_hits_misses() const;
  // Runs what is queued and decoding, then ends the thread. Idempotent.
  void stop();

 private:
  struct Job {
    std::function<void(Session&)> fn;  // or:
    DecodeJob* decode = nullptr;
    std::promise<void> done;
    std::chrono::steady_clock::time_point queued;
    double waited_ms = 0;
  };
  double submit(Job& j);
  void loop();

  Session session_;
  const int64_t max_queue_;
  const size_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  int64_t decode_rows_ = 0, steps_ = 0, row_steps_ = 0, cancelled_ = 0, prefix_hits_ = 0, prefix_misses_ = 0;
  std::thread thread_;
};

}  // namespace icae::server
