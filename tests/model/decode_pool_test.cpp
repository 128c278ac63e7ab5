// The decode thread pool (model/decode_pool.h): every index once, exceptions reach the caller,
// concurrent callers do not wait on each other, and decoding with several threads equals one.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <thread>
#include <vector>

#include "icae/io/model_loader.h"
#include "icae/model/decode_pool.h"
#include "icae/model/kv_cache.h"
#include "icae/model/transformer.h"

using namespace icae;

namespace {

// Sets libtorch's thread count for one test (the model tests run with OMP_NUM_THREADS=1).
struct Threads {
  explicit Threads(int n) : before(at::get_num_threads()) { at::set_num_threads(n); }
  ~Threads() { at::set_num_threads(before); }
  int before;
};

}  // namespace

TEST(DecodePool, EveryIndexRunsOnceInManyShortLoops) {
  Threads t(3);
  for (int64_t n : {1, 2, 5, 9, 64, 1000}) {
    std::vector<std::atomic<int>> hits(n);
    for (int loop = 0; loop < 200; ++loop)
      decode_parallel_for(n, 1, [&](int64_t b, int64_t e) {
        ASSERT_LT(b, e);
        for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
      });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 200) << "n " << n << ", index " << i;
  }
}

TEST(DecodePool, AnExceptionInAChunkReachesTheCaller) {
  Threads t(2);
  EXPECT_THROW(decode_parallel_for(100, 1,
                                   [](int64_t b, int64_t e) {
                                     if (b <= 50 && 50 < e) throw std::runtime_error("chunk 50");
                                   }),
               std::runtime_error);
  std::atomic<int64_t> sum{0};  // and the pool still works
  decode_parallel_for(100, 1, [&](int64_t b, int64_t e) { sum += e - b; });
  EXPECT_EQ(sum.load(), 100);
}

TEST(DecodePool, TwoThreadsCallingAtOnceEachGetEveryIndex) {
  Threads t(2);
  auto caller = [](std::atomic<int64_t>& total) {
    for (int loop = 0; loop < 500; ++loop)
      decode_parallel_for(37, 1, [&](int64_t b, int64_t e) { total += e - b; });
  };
  std::atomic<int64_t> a{0}, b{0};
  std::thread other([&] { caller(b); });
  caller(a);
  other.join();
  EXPECT_EQ(a.load(), 500 * 37);
  EXPECT_EQ(b.load(), 500 * 37);
}

// SmolLM2 from its blocks: each output is computed by one thread in a fixed order, so greedy
// logits with 2 threads equal 1 thread's exactly.
TEST(DecodePool, SmolLM2DecodesTheSameWithOneAndTwoThreads) {
  const std::string path =
      std::string(ICAE_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "run scripts/fetch-model first";
  ModelLoadOptions o;
  o.quantized_decode = ModelLoadOptions::QuantDecode::On;
  Transformer m = load_transformer(path, o);
  at::NoGradGuard no_grad;
  auto decode = [&](int threads) {
    Threads t(threads);
    KVCacheOptions co;
    co.max_length = 16;
    KVCache cache(m.config(), co);
    std::vector<at::Tensor> logits;
    for (int64_t id : {1, 504, 3325, 314, 260}) logits.push_back(m.decode_rows({id}, {&cache}));
    return at::stack(logits);
  };
  const at::Tensor one = decode(1), two = decode(2);
  EXPECT_TRUE(at::equal(one, two)) << (one - two).abs().max().item<float>();
}
