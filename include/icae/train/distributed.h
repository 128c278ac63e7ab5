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
  std::chrono::milliseconds timeout{600000};  // ICAE_DIST_TIMEOUT_S; also bounds evaluation on rank 0
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
  // Sum over ranks of a few numbers.
  std::vector<double> all_reduce_sum(std::vector<double> values);
  void barrier();

 private:
  struct Impl;
  DistributedEnv env_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace icae::train
