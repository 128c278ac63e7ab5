// The one thread that touches the model. A Session is not thread-safe (its KV cache, sampler
// state), and on a few cores two model calls side by side would only slow each other, so HTTP
// threads queue jobs here and wait for them. The queue is bounded: a full queue is refused (503)
// at once instead of letting latency grow without limit.
//
// Decodes are batched: when the worker takes a decode, it also takes the decodes queued behind it
// with the same sampling settings (up to max_batch) and runs them as one Session::run, each row
// with its own prefix, budget and stops. Decoding is memory-bound on a CPU, so B rows cost far
// less than B single runs. Requests join between batches, not between steps (that would be
// continuous batching, not built yet).
#pragma once
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "icae/infer/session.h"

namespace icae::server {

// One decode to run, possibly beside others.
struct DecodeJob {
  std::function<DecodeRow(Session&)> make_row;  // on the worker (it may tokenize); may throw
  SamplingOptions sampling;                     // rows batch together only when these agree
  std::function<bool(int64_t id)> on_token;     // streaming, on the worker thread; may be empty
  // Filled by the worker:
  Completion result;
  double decode_ms = 0;
  int64_t batch_rows = 0;  // rows of the batch it ran in
};

class Worker {
 public:
  Worker(Session session, int64_t max_queue, int max_batch);
  ~Worker();  // stop()

  // Runs job(session) on the worker thread and returns once it ran; an exception it threw is
  // rethrown here. HttpError 503 when the queue is full or the worker is stopping. Returns the
  // time the job waited in the queue, in milliseconds.
  double run(const std::function<void(Session&)>& job);
  // The same for a decode, which may share a batch with other decodes.
  double decode(DecodeJob& job);

  int64_t queue_depth() const;  // jobs waiting (not counting the running ones)
  int64_t batches() const;      // decode batches run so far
  int64_t batched_rows() const; // rows in them
  // Runs what is queued, then ends the thread. Idempotent.
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
  void run_batch(const std::vector<Job*>& batch);

  Session session_;
  const int64_t max_queue_;
  const size_t max_batch_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  int64_t batches_ = 0, batched_rows_ = 0;
  std::thread thread_;
};

}  // namespace icae::server
