#include "worker.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>
#include <ATen/core/grad_mode.h>

#include "request.h"

namespace icae::server {

namespace {

bool same_sampling(const SamplingOptions& a, const SamplingOptions& b) {
  return a.temperature == b.temperature && a.top_k == b.top_k && a.top_p == b.top_p && a.seed == b.seed;
}

}  // namespace

Worker::Worker(Session session, int64_t max_queue, int max_batch)
    : session_(std::move(session)), max_queue_(max_queue), max_batch_(static_cast<size_t>(std::max(1, max_batch))) {
  thread_ = std::thread([this] { loop(); });
}

Worker::~Worker() { stop(); }

double Worker::submit(Job& j) {
  j.queued = std::chrono::steady_clock::now();
  std::future<void> done = j.done.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_) http_fail(503, "the server is shutting down");
    if (static_cast<int64_t>(queue_.size()) >= max_queue_)
      http_fail(503, "the server is busy: " + std::to_string(queue_.size()) + " requests are waiting for the model (limit " +
                         std::to_string(max_queue_) + "); retry later");
    queue_.push_back(&j);
  }
  wake_.notify_one();
  done.get();  // rethrows the job's exception
  return j.waited_ms;
}

double Worker::run(const std::function<void(Session&)>& fn) {
  Job j;
  j.fn = fn;
  return submit(j);
}

double Worker::decode(DecodeJob& job) {
  Job j;
  j.decode = &job;
  return submit(j);
}

int64_t Worker::queue_depth() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return static_cast<int64_t>(queue_.size());
}

int64_t Worker::batches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batches_;
}

int64_t Worker::batched_rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return batched_rows_;
}

void Worker::run_batch(const std::vector<Job*>& batch) {
  // A row that cannot be built (a prompt over the limit, say) fails alone; the rest run.
  std::vector<Job*> ok;
  std::vector<DecodeRow> rows;
  for (Job* j : batch) {
    try {
      rows.push_back(j->decode->make_row(session_));
      ok.push_back(j);
    } catch (...) {
      j->done.set_exception(std::current_exception());
    }
  }
  if (ok.empty()) return;
  try {
    session_.options().sampling = ok.front()->decode->sampling;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<Completion> out = session_.run(rows, [&](size_t i, int64_t id) {
      const auto& cb = ok[i]->decode->on_token;
      return cb ? cb(id) : true;
    });
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++batches_;
      batched_rows_ += static_cast<int64_t>(ok.size());
    }
    for (size_t i = 0; i < ok.size(); ++i) {
      ok[i]->decode->result = std::move(out[i]);
      ok[i]->decode->decode_ms = ms;
      ok[i]->decode->batch_rows = static_cast<int64_t>(ok.size());
      ok[i]->done.set_value();
    }
  } catch (...) {
    for (Job* j : ok) j->done.set_exception(std::current_exception());
  }
}

void Worker::loop() {
  // Per-thread state libtorch does not carry over from the main thread: the intra-op thread
  // count asked for (at::set_num_threads) and grad mode (inference needs no autograd graph).
  at::init_num_threads();
  at::NoGradGuard no_grad;
  for (;;) {
    std::vector<Job*> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, and nothing left to do
      batch.push_back(queue_.front());
      queue_.pop_front();
      if (batch.front()->decode) {
        const SamplingOptions& s = batch.front()->decode->sampling;
        for (auto it = queue_.begin(); it != queue_.end() && batch.size() < max_batch_;) {
          if ((*it)->decode && same_sampling((*it)->decode->sampling, s)) {
            batch.push_back(*it);
            it = queue_.erase(it);
          } else {
            ++it;
          }
        }
      }
    }
    const auto now = std::chrono::steady_clock::now();
    for (Job* j : batch) j->waited_ms = std::chrono::duration<double, std::milli>(now - j->queued).count();
    if (batch.front()->decode) {
      run_batch(batch);
      continue;
    }
    Job* j = batch.front();
    try {
      j->fn(session_);
      j->done.set_value();
    } catch (...) {
      j->done.set_exception(std::current_exception());
    }
  }
}

void Worker::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace icae::server
