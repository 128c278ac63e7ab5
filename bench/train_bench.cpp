// Training throughput: AE pretraining updates through the trainer's own step (train_step) on a
// real model and real text, reporting context tokens/s and peak memory. scripts/bench-train runs
// it side by side with the Python reference trainer (../shared/tools/reference_trainer.py) on the
// same shapes and threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>
#include <torch/csrc/autograd/profiler_legacy.h>

#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common.h"  // tools/icae: --device, --dtype, --threads as icae pretrain declares them
#include "icae/infer/text_model.h"
#include "icae/io/data_files.h"
#include "icae/train/data.h"
#include "icae/train/samples.h"
#include "icae/train/step.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

using namespace icae;

int main(int argc, char** argv) {
  struct {
    cli::ModelOptions m;  // --model, --device, --dtype, --threads as icae pretrain declares them
    std::string data, projector = "none", profile;
    int64_t batch = 8, context = 128, k = 32, r = 32, steps = 6, warmup = 2;
    std::vector<std::string> targets{"q_proj", "v_proj"};
    bool checkpointing = false;
  } o;
  CLI::App app{"ICAE AE training throughput through train_step (context tokens/s, peak memory)"};
  o.m.run.dtype = "auto";
  cli::ModelOptionsUse use;
  use.device = cli::DeviceUse::Training;
  cli::add_model_options(&app, o.m, use);
  app.add_option("--data", o.data, "Text folder or files")->required();
  app.add_option("--projector", o.projector)->capture_default_str();
  app.add_option("--batch", o.batch)->capture_default_str();
  app.add_option("--context", o.context, "Context tokens per sample")->capture_default_str();
  app.add_option("-k", o.k, "Memory slots")->capture_default_str();
  app.add_option("-r", o.r, "LoRA rank")->capture_default_str();
  app.add_option("--targets", o.targets)->delimiter(',')->capture_default_str();
  app.add_option("--steps", o.steps, "Timed updates")->capture_default_str();
  app.add_option("--warmup-steps", o.warmup, "Untimed updates first")->capture_default_str();
  app.add_flag("--activation-checkpointing", o.checkpointing);
  app.add_option("--profile", o.profile, "Write a Chrome trace of the timed updates (libtorch profiler)");
  CLI11_PARSE(app, argc, argv);
  try {
    TextModelOptions tmo;
    tmo.load = cli::resolve(o.m.run);  // --threads, --device and --dtype as the icae commands apply them
    const std::string dtype = resolve_auto_dtype(o.m.run.dtype, tmo.load.device);  // the report names the real one
    TextModel tm = load_text_model(o.m.model, tmo);
    IcaeConfig ic;
    ic.mem_size = o.k;
    ic.compression_rate = static_cast<double>(o.context) / static_cast<double>(o.k);
    ic.lora.r = o.r;
    ic.lora.alpha = 32;
    ic.lora.target_modules = o.targets;
    ic.projector = parse_projector(o.projector);
    Icae icae(tm.model, ic, 0);
    icae.set_trainable(true);
    std::vector<train::OptimizedTensor> params;
    for (auto& [n, t] : icae.named_trainable()) params.push_back({n, t, 5e-4, 0.0});
    train::AdamW opt(params, {});
    at::Generator gen = make_generator(tm.model->device(), 1);

    train::DataOptions d;
    d.max_context = o.context;
    d.min_context = o.context;
    train::StreamOptions so;
    so.seed = 0;
    train::ExampleStream stream(icae::list_data_files({o.data}), tm.tokenizer, d, so, nullptr);
    train::SampleOptions sopt;
    sopt.lm_ratio = 0;
    sopt.eos_id = tm.tokenizer->eos_id();
    train::StepConfig sc;
    sc.generator = &gen;
    sc.activation_checkpointing = o.checkpointing;

    auto cpu_seconds = [] {
      rusage u;
      getrusage(RUSAGE_SELF, &u);
      return u.ru_utime.tv_sec + u.ru_stime.tv_sec + 1e-6 * (u.ru_utime.tv_usec + u.ru_stime.tv_usec);
    };
    double timed = 0, cpu = 0;
    int64_t tokens = 0;
    std::unique_ptr<torch::autograd::profiler::RecordProfile> prof;
    for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
      train::MicroBatch mb;
      for (int64_t i = 0; i < o.batch; ++i) mb.push_back(train::make_sample(icae, stream.next(), i, 0, sopt));
      if (s == o.warmup && !o.profile.empty())
        prof = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile);
      const double c0 = cpu_seconds();
      train::StepStats st = train::train_step(icae, opt, {mb}, sc);
      const double c1 = cpu_seconds();
      std::fprintf(stderr, "step %lld: loss %.4f  %.3f s (cpu %.3f s)\n", static_cast<long long>(s + 1), st.loss,
                   st.seconds, c1 - c0);
      if (s >= o.warmup) {
        cpu += c1 - c0;
        timed += st.seconds;
        tokens += st.context_tokens;
      }
    }
    prof.reset();
    int64_t trainable = 0;
    for (const auto& t : icae.trainable_parameters()) trainable += t.numel();
    nlohmann::json j = {{"impl", "icae"},
                        {"device", o.m.run.device},
                        {"dtype", dtype},
                        {"threads", at::get_num_threads()},
                        {"batch", o.batch},
                        {"ctx", o.context},
                        {"k", o.k},
                        {"r", o.r},
                        {"targets", o.targets},
                        {"projector", o.projector},
                        {"trainable_params", trainable},
                        {"step_s", timed / std::max<int64_t>(1, o.steps)},
                        {"context_tokens_per_s", timed > 0 ? tokens / timed : 0.0},
                        {"cpu_s_per_step", cpu / std::max<int64_t>(1, o.steps)},
                        {"peak_rss_mib", peak_memory_bytes(at::kCPU) / 1048576.0}};
    std::cout << j.dump() << std::endl;
  } catch (const Error& e) {
    std::cerr << "train_bench: " << e.what() << "\n";
    return e.exit_code();
  }
  return 0;
}
