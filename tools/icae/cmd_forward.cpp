// icae forward: one forward pass of the base model; prints or saves the logits, so anyone can
// compare icae against another implementation.
#include <ATen/ATen.h>

#include <cstdio>
#include <iostream>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/io/model_loader.h"
#include "icae/util/device.h"
#include "icae/io/tensor_io.h"
#include "icae/model/transformer.h"

namespace {

struct ForwardArgs : icae::cli::ModelOptions {
  std::string ids, out;
  int top = 5;
};

void run_forward(const ForwardArgs& a) {
  using namespace icae;
  const ModelLoadOptions load = cli::resolve(a.run);
  Transformer model = load_transformer(a.model, load);
  std::vector<int64_t> ids = cli::parse_id_list(a.ids);
  at::NoGradGuard no_grad;
  at::Tensor input = at::tensor(ids, at::kLong).unsqueeze(0);
  ForwardInput in;
  in.input_ids = input;
  at::Tensor logits = model.forward(in).logits.squeeze(0).to(at::kCPU).to(at::kFloat);  // [T, V]
  if (!a.out.empty()) {
    save_safetensors(a.out, {{"input_ids", input.to(at::kInt)}, {"logits", logits}},
                     {{"model", a.model}, {"dtype", resolve_auto_dtype(a.run.dtype, load.device)}, {"device", a.run.device}});
    std::cerr << "wrote logits [" << logits.size(0) << ", " << logits.size(1) << "] to " << a.out << "\n";
    return;
  }
  const int k = std::min<int64_t>(a.top, logits.size(1));
  for (int64_t t = 0; t < logits.size(0); ++t) {
    auto [vals, idx] = logits[t].topk(k);
    std::printf("%lld\tid=%lld", static_cast<long long>(t), static_cast<long long>(ids[t]));
    for (int i = 0; i < k; ++i)
      std::printf("\t%lld:%.5f", static_cast<long long>(idx[i].item<int64_t>()), vals[i].item<float>());
    std::printf("\n");
  }
}

void setup(CLI::App& root) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = root.add_subcommand(
      "forward",
      "Run the base model on token ids and print the top logits per position, or save all logits.\n"
      "Example: icae forward --model ../shared/testdata/golden/tiny-llama/base --ids 1,5,9 --out logits.safetensors");
  icae::cli::add_model_options(cmd, *args, {});  // --model and the run options
  cmd->add_option("--ids", args->ids, "Comma-separated token ids, e.g. 1,5,9")->required();
  cmd->add_option("--out", args->out, "Save input_ids and logits [T, V] (float32) to this .safetensors file");
  cmd->add_option("--top", args->top, "Without --out: how many top logits to print per position")
      ->check(icae::cli::at_least(1))
      ->capture_default_str();
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace

ICAE_COMMAND(setup);
