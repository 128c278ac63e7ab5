// Worker threads of the fused CPU decode (cpu_decode.cpp, quant_matrix.cpp), in the manner of
// llama.cpp's thread pool: one token runs ~150 short parallel loops (4 matrix products and the
// attention per layer), far too short for OpenMP's sleeping workers — under
// OMP_WAIT_POLICY=PASSIVE each loop paid a futex wake-up and decoding ran at a third of its speed.
// These workers spin between loops for a short while (kSpinMicros, yielding the core after the
// first microseconds) and then sleep, so the token loop needs no spinning OpenMP and an idle
// process burns nothing. A loop never waits for a worker that has not come (a busy machine): the
// caller takes the chunks nobody claimed.
#pragma once
#include <cstdint>
#include <functional>

namespace icae {

// Runs fn(begin, end) over [0, n) split in contiguous chunks of at least `grain`, on the pool's
// threads and the caller's. The pool has at::get_num_threads() threads (including the caller);
// it follows later changes of that number. A second caller while a loop runs (another thread
// decoding at the same time) gets at::parallel_for instead, so callers never wait on each other.
// With OMP_WAIT_POLICY=ACTIVE (OpenMP's workers spin anyway) or ICAE_DECODE_POOL=0 in the
// environment every call is at::parallel_for.
void decode_parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

// How long a worker spins for the next loop before it sleeps, in microseconds.
constexpr int64_t kSpinMicros = 3000;

}  // namespace icae
