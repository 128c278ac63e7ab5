// Data-parallel training on libtorch's own distributed layer (c10d): one process per rank,
// configured as torchrun configures PyTorch (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT; a TCPStore rendezvous), Gloo on the CPU. Only the trainable tensors' gradients
// travel (one flat bucket per update: a few MB), never the model.
#pragma once
#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace icae::train {

struct DistributedEnv {
  int rank = 0, world_size = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::chrono::milliseconds timeout{600000};  // ICAE_DIST_TIMEOUT_S: any collective (a rank lost)
  // ICAE_DIST_LEADER_TIMEOUT_S: how long the other ranks wait while rank 0 alone evaluates (a
  // held-out evaluation with greedy generation can take many minutes on a busy CPU).
  std::chrono::milliseconds leader_timeout{6LL * 3600 * 1000};
  bool active() const { return world_size > 1; }
  // From the environment; one rank when WORLD_SIZE is unset. Bad values are usage errors.
  static DistributedEnv from_environment();
};

class Communicator {
 public:
  // Joins the group (blocks until every rank has joined, or the timeout passes).
  explicit Communicator(const DistributedEnv& env);
  ~Communicator();
  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  // In-place sum over ranks of float32 tensors (flattened into one buffer and back).
  void all_reduce_tensors(const std::vector<at::Tensor>& tensors);
  // Sum over ranks of a few numbers. `leader_work`: this collective follows work that rank 0
  // does alone (evaluation), so the others wait up to leader_timeout rather than timeout.
  std::vector<double> all_reduce_sum(std::vector<double> values, bool leader_work = false);
  void barrier();

 private:
  struct Impl;
  DistributedEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace icae::train
