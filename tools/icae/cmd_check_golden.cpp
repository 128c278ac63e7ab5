// icae check-golden DIR: recompute every tensor of a golden folder and compare.
#include <cstdio>

#include "command.h"
#include "common.h"
#include "icae/eval/golden_check.h"
#include "icae/util/error.h"

namespace {

struct Args {
  std::string dir;
  icae::cli::RunOptions run;
  std::string slot_kind = "embedding";
  std::string kv_golden;
};

void setup(CLI::App& root) {
  auto a = std::make_shared<Args>();
  CLI::App* cmd = root.add_subcommand(
      "check-golden",
      "Recompute every tensor of a golden folder (base logits, memory slots, AE greedy decoding, AE/LM/FT\n"
      "losses and gradients) from its meta.json, config.json, base weights and icae.safetensors, and print\n"
      "the max relative error of each. Exit status 0 only when all are within tolerance\n"
      "(f32: 1e-4 tensors, 1e-5 losses, identical ids; bf16/f16: 2e-2, decoding from slots 5e-2, gradients 1e-1).");
  cmd->add_option("dir", a->dir, "Golden folder, e.g. ../shared/testdata/golden/tiny-llama")->required();
  cmd->add_option("--slot-kind", a->slot_kind,
                  "embedding: the folder's own reference (golden.safetensors); kv: the same adapter read as a\n"
                  "key/value-slot ICAE, against --kv-golden")
      ->check(CLI::IsMember({"embedding", "kv"}))
      ->capture_default_str();
  cmd->add_option("--kv-golden", a->kv_golden,
                  "Reference tensors of key/value slots for this folder, e.g.\n"
                  "tests/data/golden-kv/tiny-llama.safetensors (tests/reference/kv_slots_golden.py)");
  icae::cli::add_run_options(cmd, a->run);
  cmd->callback([a] {
    const icae::ModelLoadOptions lo = icae::cli::resolve(a->run);
    icae::GoldenCheckOptions go;
    go.device = lo.device;
    go.dtype = lo.dtype;
    go.slot_kind = icae::parse_slot_kind(a->slot_kind);
    go.kv_golden = a->kv_golden;
    if (go.slot_kind == icae::SlotKind::KeyValue && go.kv_golden.empty())
      icae::fail(icae::ErrorKind::Usage, "--slot-kind kv needs --kv-golden FILE");
    icae::GoldenReport r = icae::check_golden(a->dir, go);
    for (const auto& i : r.items)
      std::printf("%-4s %-40s error %.3e  tolerance %.1e  %s\n", i.ok ? "ok" : "FAIL", i.name.c_str(), i.error,
                  i.tolerance, i.detail.c_str());
    if (!r.ok()) icae::fail(icae::ErrorKind::Mismatch, "golden check failed for " + a->dir);
    std::printf("all %zu checks passed\n", r.items.size());
  });
}

}  // namespace

ICAE_COMMAND(setup);
