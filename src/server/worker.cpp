#include "worker.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <map>
#include <memory>
#include <vector>

#include "icae/infer/decode_batch.h"
#include "request.h"

namespace icae::server {

namespace {

using Clock = std::chrono::steady_clock;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

bool is_cancelled(const DecodeJob& d) { return d.cancelled && d.cancelled(); }

}  // namespace

Worker::Worker(Session session, int64_t max_queue, int max_batch)
    : session_(std::move(session)), max_queue_(max_queue), max_batch_(static_cast<size_t>(std::max(1, max_batch))) {
  thread_ = std::thread([this] { loop(); });
}

Worker::~Worker() { stop(); }

double Worker::submit(Job& j) {
  j.queued = Clock::now();
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

int64_t Worker::decode_rows() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return decode_rows_;
}

int64_t Worker::steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return steps_;
}

int64_t Worker::row_steps() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return row_steps_;
}

std::pair<int64_t, int64_t> Worker::prefix_hits_misses() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return {prefix_hits_, prefix_misses_};
}

int64_t Worker::cancelled() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return cancelled_;
}

void Worker::loop() {
  // Per-thread state libtorch does not carry over from the main thread: the intra-op thread
  // count asked for (at::set_num_threads) and grad mode (inference needs no autograd graph).
  at::init_num_threads();
  at::NoGradGuard no_grad;
  auto batch = std::make_unique<DecodeBatch>(session_);
  int64_t earlier_hits = 0, earlier_misses = 0;  // of batches replaced after a failed step
  struct Running {
    Job* job;
    Clock::time_point joined;
    int64_t widest;
  };
  std::map<uint64_t, Running> running;  // by DecodeBatch handle
  for (;;) {
    Job* task = nullptr;  // one other job, run between two steps
    std::vector<Job*> joining, dropped;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running.empty(); });
      if (queue_.empty() && running.empty()) return;  // stopping, and nothing left to do
      // Queued decodes whose client went away never start; decodes fill the batch's free rows in
      // arrival order; the first other job runs now (it may pass decodes waiting for a row).
      const size_t room = max_batch_ - std::min(max_batch_, running.size());
      for (auto it = queue_.begin(); it != queue_.end();) {
        Job* j = *it;
        if (j->decode && is_cancelled(*j->decode)) {
          dropped.push_back(j);
        } else if (j->decode && joining.size() < room) {
          joining.push_back(j);
        } else if (!j->decode && !task) {
          task = j;
        } else {
          ++it;
          continue;
        }
        it = queue_.erase(it);
      }
      cancelled_ += static_cast<int64_t>(dropped.size());
      decode_rows_ = static_cast<int64_t>(running.size() + joining.size());
    }
    for (Job* j : dropped)
      j->done.set_exception(std::make_exception_ptr(HttpError(499, "the client closed the connection")));
    const auto now = Clock::now();
    if (task) {
      task->waited_ms = ms_between(task->queued, now);
      try {
        task->fn(session_);
        task->done.set_value();
      } catch (...) {
        task->done.set_exception(std::current_exception());
      }
    }
    for (Job* j : joining) {
      j->waited_ms = ms_between(j->queued, now);
      try {
        // A row that cannot be built or prefilled (a prompt over the limit, say) fails alone.
        const DecodeRow row = j->decode->make_row(session_);
        const uint64_t h = batch->join(row, j->decode->sampling, j->decode->on_token);
        running[h] = {j, now, 0};
      } catch (...) {
        j->done.set_exception(std::current_exception());
      }
    }
    int64_t gone = 0;
    for (const auto& [h, r] : running)
      if (is_cancelled(*r.job->decode)) {
        batch->end(h, "cancelled");
        ++gone;
      }
    const int64_t width = static_cast<int64_t>(batch->running());
    for (auto& [h, r] : running) r.widest = std::max(r.widest, std::max<int64_t>(width, 1));
    try {
      batch->step();
    } catch (...) {
      // A failed step leaves the batch in no known state: its rows fail, the next start afresh.
      for (auto& [h, r] : running) r.job->done.set_exception(std::current_exception());
      running.clear();
      earlier_hits += batch->prefix_hits();
      earlier_misses += batch->prefix_misses();
      batch = std::make_unique<DecodeBatch>(session_);
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (width > 0) ++steps_;
      row_steps_ += width;
      cancelled_ += gone;
      prefix_hits_ = earlier_hits + batch->prefix_hits();
      prefix_misses_ = earlier_misses + batch->prefix_misses();
    }
    const auto after = Clock::now();
    for (DecodeBatch::Finished& f : batch->take_finished()) {
      auto it = running.find(f.handle);
      if (it == running.end()) continue;
      DecodeJob& d = *it->second.job->decode;
      d.result = std::move(f.completion);
      d.decode_ms = ms_between(it->second.joined, after);
      d.batch_rows = it->second.widest;
      Job* j = it->second.job;
      running.erase(it);
      j->done.set_value();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    decode_rows_ = static_cast<int64_t>(running.size());
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
