#include "icae/model/decode_pool.h"

#include <ATen/Parallel.h>
#include <immintrin.h>
#include <pthread.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace icae {

namespace {

using Clock = std::chrono::steady_clock;

// The loop in flight is published in one 64-bit word: its generation (high half) and the next
// chunk to claim (low half). A worker claims a chunk by compare-and-swap on that word, so a claim
// succeeds only for the loop in flight; the caller waits for the loop's claimed chunks to be done,
// never for a worker to show up. A worker the OS has descheduled (a busy machine) therefore
// delays nothing: the caller and the other workers take its chunks.
class DecodePool {
 public:
  explicit DecodePool(int threads) : threads_(threads) {
    for (int i = 1; i < threads; ++i) workers_.emplace_back([this] { work(); });
  }
  ~DecodePool() {
    stop_ = true;
    {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int threads() const { return threads_; }

  void run(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
    uint64_t gen = ((state_.load() >> 32) + 1) & kClosed;  // 32 bits; 0 is "none yet"
    if (gen == 0) gen = 1;
    // Close the word to claims before the loop's fields change (a late worker's claim fails).
    state_.store(gen << 32 | kClosed);
    fn_.store(&fn, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    // One chunk per thread: every claim is a compare-and-swap on a line the other cores read, and
    // 4 chunks per thread (8 claims a loop, ~150 loops a token) decoded SmolLM2 7-10% slower on 2
    // threads than 1 per thread (2026-12-02); a late worker's chunk is still taken by the caller.
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>((n + grain - 1) / grain, threads_));
    chunks_.store(chunks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    error_ = nullptr;
    state_.store(gen << 32);  // open: seq_cst, ordered before the read of sleepers_ (see wait_for)
    if (sleepers_.load() > 0) {
      std::lock_guard<std::mutex> lock(sleep_mutex_);
      wake_.notify_all();
    }
    while (claim_and_run(gen)) {
    }
    for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins) pause_or_yield(spins);
    if (error_) std::rethrow_exception(error_);
  }

 private:
  static constexpr uint64_t kClosed = 0xFFFFFFFFu;

  // Spins briefly, then gives the core away now and then (a worker holding a claimed chunk may
  // be waiting for it).
  static void pause_or_yield(int spins) {
    if (spins < 2000) _mm_pause();
    else std::this_thread::yield();
  }

  // Claims one chunk of loop `gen` and runs it; false when none is left (or another loop is in flight).
  bool claim_and_run(uint64_t gen) {
    uint64_t v = state_.load();
    for (;;) {
      if ((v >> 32) != gen) return false;
      const int64_t c = static_cast<int64_t>(v & kClosed), chunks = chunks_.load(std::memory_order_relaxed);
      if (c >= chunks) return false;
      if (state_.compare_exchange_weak(v, v + 1)) break;
    }
    const int64_t c = static_cast<int64_t>(v & kClosed), chunks = chunks_.load(std::memory_order_relaxed),
                  n = n_.load(std::memory_order_relaxed);
    const int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) {
      try {
        (*fn_.load(std::memory_order_relaxed))(begin, end);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex_);
        if (!error_) error_ = std::current_exception();
      }
    }
    done_.fetch_add(1, std::memory_order_release);
    return true;
  }

  // Waits for a loop newer than `seen`: spins (then yields) for kSpinMicros, then sleeps.
  // Returns its generation, or 0 to stop.
  uint64_t wait_for(uint64_t seen) {
    const auto spin_until = Clock::now() + std::chrono::microseconds(kSpinMicros);
    for (int spins = 0;; ++spins) {
      if (stop_) return 0;
      const uint64_t v = state_.load();
      if ((v >> 32) != seen && (v & kClosed) != kClosed) return v >> 32;
      pause_or_yield(spins);
      if ((spins & 255) == 255 && Clock::now() > spin_until) {
        std::unique_lock<std::mutex> lock(sleep_mutex_);
        sleepers_.fetch_add(1);  // seq_cst: run() sees it, or this thread sees the open loop
        wake_.wait(lock, [&] {
          const uint64_t w = state_.load();
          return stop_ || ((w >> 32) != seen && (w & kClosed) != kClosed);
        });
        sleepers_.fetch_sub(1);
      }
    }
  }

  void work() {
    for (uint64_t gen = 0; (gen = wait_for(gen)) != 0;)
      while (claim_and_run(gen)) {
      }
  }

  const int threads_;
  std::vector<std::thread> workers_;
  std::atomic<uint64_t> state_{0};  // generation << 32 | next chunk (kClosed: fields changing)
  // The loop in flight (atomics only so that a late worker's read of a changing field is defined).
  std::atomic<const std::function<void(int64_t, int64_t)>*> fn_{nullptr};
  std::atomic<int64_t> n_{0}, chunks_{0}, done_{0};
  std::exception_ptr error_;
  std::mutex error_mutex_;
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
  std::mutex sleep_mutex_;
  std::condition_variable wake_;
};

// The process's pool, made on first use. A forked child has none of the parent's threads: it
// starts a slot of its own (the parent's objects are abandoned there, never touched).
struct PoolSlot {
  std::mutex mutex;  // held while a loop runs
  DecodePool* pool = nullptr;
};
PoolSlot* g_slot = nullptr;  // never destroyed: workers may still be spinning at exit

PoolSlot* slot() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_slot = new PoolSlot();
    ::pthread_atfork(nullptr, nullptr, [] { g_slot = new PoolSlot(); });
  });
  return g_slot;
}

}  // namespace

void decode_parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  // ICAE_DECODE_POOL=0: OpenMP's threads instead (what decoding used before; benchmarks compare).
  // OMP_WAIT_POLICY=ACTIVE: OpenMP's workers spin on the cores all the time; a second set of
  // spinning threads would fight them (measured: 21 ms/token against 9.6 with OpenMP's own), so
  // decoding uses theirs.
  static const bool use_pool = [] {
    const char* env = std::getenv("ICAE_DECODE_POOL");
    if (env && std::string(env) == "0") return false;
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    return !(policy && strcasecmp(policy, "active") == 0);
  }();
  if (!use_pool) {
    at::parallel_for(0, n, grain, fn);
    return;
  }
  const int threads = at::get_num_threads();
  if (threads <= 1 || n <= grain) {
    fn(0, n);
    return;
  }
  PoolSlot* s = slot();
  std::unique_lock<std::mutex> lock(s->mutex, std::try_to_lock);
  if (!lock.owns_lock()) {  // another thread is decoding: do not wait for it
    at::parallel_for(0, n, grain, fn);
    return;
  }
  if (!s->pool || s->pool->threads() != threads) {
    delete s->pool;
    s->pool = new DecodePool(threads);
  }
  s->pool->run(n, grain, fn);
}

}  // namespace icae
