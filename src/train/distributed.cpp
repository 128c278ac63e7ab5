#include "icae/train/distributed.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <cstdlib>

#include "icae/util/error.h"

namespace icae::train {

namespace {

int env_int(const char* name, int fallback, int lo, int hi) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  ICAE_CHECK(end && *end == '\0' && x >= lo && x <= hi, ErrorKind::Usage,
             std::string(name) + "=" + v + " is not an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<int>(x);
}

// c10d reports failures (a rank that died, a timeout) as c10::Error: say what it means.
[[noreturn]] void lost(const DistributedEnv& env, const char* what, const std::exception& e) {
  fail(ErrorKind::Io, "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) + ": " + what +
                          " failed: another rank stopped or is unreachable (" + std::string(e.what()).substr(0, 300) +
                          ")");
}

}  // namespace

DistributedEnv DistributedEnv::from_environment() {
  DistributedEnv e;
  e.world_size = env_int("WORLD_SIZE", 1, 1, 65536);
  e.rank = env_int("RANK", 0, 0, e.world_size - 1);
  e.local_rank = env_int("LOCAL_RANK", e.rank, 0, 65535);
  if (const char* a = std::getenv("MASTER_ADDR"); a && *a) e.master_addr = a;
  e.master_port = env_int("MASTER_PORT", 29500, 1, 65535);
  e.timeout = std::chrono::milliseconds(1000LL * env_int("ICAE_DIST_TIMEOUT_S", 600, 1, 86400));
  e.leader_timeout = std::chrono::milliseconds(1000LL * env_int("ICAE_DIST_LEADER_TIMEOUT_S", 6 * 3600, 1, 7 * 86400));
  return e;
}

struct Communicator::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
};

Communicator::Communicator(const DistributedEnv& env) : env_(env), impl_(std::make_unique<Impl>()) {
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.timeout = env.timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(env.timeout);
    opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(env.master_addr));
    impl_->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
  } catch (const std::exception& e) {
    fail(ErrorKind::Io, "rank " + std::to_string(env.rank) + ": cannot join the training group at " + env.master_addr +
                            ":" + std::to_string(env.master_port) + ": " + std::string(e.what()).substr(0, 300));
  }
}

Communicator::~Communicator() = default;

void Communicator::all_reduce_tensors(const std::vector<at::Tensor>& tensors) {
  if (tensors.empty()) return;
  std::vector<at::Tensor> flat_parts;
  for (const auto& t : tensors) flat_parts.push_back(t.reshape({-1}).to(at::kFloat));
  std::vector<at::Tensor> bucket{at::cat(flat_parts)};
  try {
    impl_->group->allreduce(bucket)->wait();
  } catch (const std::exception& e) {
    lost(env_, "all-reduce of the gradients", e);
  }
  int64_t offset = 0;
  for (const auto& t : tensors) {
    t.copy_(bucket[0].narrow(0, offset, t.numel()).view(t.sizes()));
    offset += t.numel();
  }
}

std::vector<double> Communicator::all_reduce_sum(std::vector<double> values, bool leader_work) {
  std::vector<at::Tensor> v{at::tensor(values, at::kDouble)};
  c10d::AllreduceOptions opts;
  if (leader_work) opts.timeout = std::max(env_.timeout, env_.leader_timeout);
  try {
    impl_->group->allreduce(v, opts)->wait();
  } catch (const std::exception& e) {
    lost(env_, "all-reduce", e);
  }
  at::Tensor c = v[0].contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

void Communicator::barrier() { all_reduce_sum(std::vector<double>{0.0}); }

}  // namespace icae::train
