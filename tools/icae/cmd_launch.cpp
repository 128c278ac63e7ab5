// icae launch --nproc N -- icae pretrain ...: data-parallel training on one machine, the way
// torchrun starts PyTorch: N processes with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
// MASTER_PORT set. When one rank fails, the others are stopped (SIGTERM, then SIGKILL).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <iostream>
#include <memory>
#include <thread>

#include "command.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct LaunchArgs {
  int nproc = 2;
  int port = 29500;
  std::string addr = "127.0.0.1";
  int threads_per_rank = 0;
  std::vector<std::string> command;
};

pid_t spawn(const LaunchArgs& a, int rank) {
  const pid_t pid = fork();
  ICAE_CHECK(pid >= 0, ErrorKind::Io, std::string("fork failed: ") + std::strerror(errno));
  if (pid > 0) return pid;
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(a.nproc).c_str(), 1);
  setenv("MASTER_ADDR", a.addr.c_str(), 1);
  setenv("MASTER_PORT", std::to_string(a.port).c_str(), 1);
  if (a.threads_per_rank > 0) setenv("OMP_NUM_THREADS", std::to_string(a.threads_per_rank).c_str(), 1);
  std::vector<char*> argv;
  for (const auto& s : a.command) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::cerr << "icae launch: cannot run '" << a.command[0] << "': " << std::strerror(errno) << "\n";
  _exit(127);
}

int launch(const LaunchArgs& a) {
  ICAE_CHECK(!a.command.empty(), ErrorKind::Usage, "give the command to run after --, e.g. -- icae pretrain ...");
  std::vector<pid_t> pids;
  for (int r = 0; r < a.nproc; ++r) pids.push_back(spawn(a, r));
  // SIGINT/SIGTERM reach the children (same process group for Ctrl-C; forwarded for SIGTERM).
  static std::vector<pid_t>* children = &pids;
  auto forward = [](int sig) {
    for (pid_t p : *children)
      if (p > 0) kill(p, sig);
  };
  signal(SIGTERM, forward);
  signal(SIGINT, forward);
  int result = 0, alive = a.nproc;
  bool stopping = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (alive > 0) {
    int status = 0;
    const pid_t done = waitpid(-1, &status, WNOHANG);
    if (done == 0) {
      if (stopping && std::chrono::steady_clock::now() > deadline)
        for (pid_t p : pids)
          if (p > 0) kill(p, SIGKILL);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (done < 0) break;
    int rank = -1;
    for (int r = 0; r < a.nproc; ++r)
      if (pids[r] == done) rank = r, pids[r] = -1;
    --alive;
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && !stopping) {
      std::cerr << "icae launch: rank " << rank << " exited with status " << code << "; stopping the other ranks\n";
      result = code;
      stopping = true;
      deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
      for (pid_t p : pids)
        if (p > 0) kill(p, SIGTERM);
    }
  }
  return result;
}

void setup(CLI::App& root) {
  auto a = std::make_shared<LaunchArgs>();
  CLI::App* c = root.add_subcommand(
      "launch",
      "Run N ranks of a data-parallel training on this machine (like torchrun): each rank gets RANK,\n"
      "WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; ranks talk through libtorch's c10d (Gloo).\n"
      "N ranks x --batch B consume the same samples and make the same update as 1 rank x --batch N*B.\n"
      "Example: icae launch --nproc 2 -- icae pretrain --model M --train T --out runs/dp --batch 4");
  c->add_option("--nproc", a->nproc, "Ranks (processes)")->check(CLI::Range(1, 1024))->capture_default_str();
  c->add_option("--master-port", a->port, "Rendezvous port on MASTER_ADDR")->check(CLI::Range(1, 65535))->capture_default_str();
  c->add_option("--master-addr", a->addr, "Rendezvous address (this machine: 127.0.0.1)")->capture_default_str();
  c->add_option("--threads-per-rank", a->threads_per_rank, "OMP_NUM_THREADS of each rank (0: leave it)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  c->add_option("command", a->command, "The training command (after --)")->required();
  c->callback([a] {
    const int code = launch(*a);
    if (code != 0) throw Error(code >= 1 && code <= 6 ? static_cast<ErrorKind>(code) : ErrorKind::Internal,
                               "a rank failed (status " + std::to_string(code) + ")");
  });
}

}  // namespace

ICAE_COMMAND(setup);
