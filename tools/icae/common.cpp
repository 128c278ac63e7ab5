#include "common.h"

#include "icae/util/device.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/Context.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "icae/util/error.h"
#include "usage.h"

namespace icae::cli {

namespace {

void add_device_options(CLI::App* cmd, std::string& device, std::string& dtype, int& threads, DeviceUse use) {
  cmd->add_option("--device", device, "Where to run: cpu, cuda or cuda:N")->capture_default_str();
  if (use == DeviceUse::Training) {
    cmd->add_option("--dtype", dtype,
                    "Base model type: auto, bf16 or f32 (trainable tensors are always float32). auto: bf16 on CUDA\n"
                    "and on CPUs that compute bf16 natively (AMX, AVX512-BF16), f32 elsewhere: there bf16 is\n"
                    "emulated and a SmolLM2 update took ~30x longer than in f32. The run records the choice.")
        ->check(CLI::IsMember({"auto", "f32", "bf16"}))
        ->capture_default_str();
  } else {
    cmd->add_option("--dtype", dtype,
                    "Weight and activation type: f32, bf16, f16 or auto (bf16 on CUDA and on CPUs that compute\n"
                    "bf16 natively: AMX or AVX512-BF16; f32 elsewhere, where bf16 is emulated and slow)")
        ->check(CLI::IsMember({"auto", "f32", "bf16", "f16"}))
        ->capture_default_str();
  }
  cmd->add_option("--threads", threads, "CPU threads (0: one per core, or OMP_NUM_THREADS)")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
}

}  // namespace

void add_run_options(CLI::App* cmd, RunOptions& o, DeviceUse use) {
  add_device_options(cmd, o.device, o.dtype, o.threads, use);
  if (use == DeviceUse::Inference)
    cmd->add_flag("--dense-decode", o.dense_decode,
                  "With a .gguf model on the CPU: decode with dense weights instead of the file's Q4_1/Q8_0 blocks\n"
                  "(the default uses the blocks where their kernels are vectorised: AVX-512)");
}

CLI::Option* add_model_options(CLI::App* cmd, ModelOptions& o, const ModelOptionsUse& use) {
  const std::string model_help =
      use.model_help.empty() ? "Base model: a Hugging Face folder or a .gguf file" : use.model_help;
  CLI::Option* model = cmd->add_option("--model", o.model, model_help);
  if (use.model_required) model->required();
  if (use.adapter != AdapterUse::None) {
    CLI::Option* adapter = cmd->add_option(
        "--adapter", o.adapter, "ICAE adapter (.safetensors)" + (use.adapter_note.empty() ? "" : ": " + use.adapter_note));
    if (use.adapter == AdapterUse::Required) adapter->required();
  }
  if (use.tokenizer) cmd->add_option("--tokenizer", o.tokenizer, "tokenizer.json to use instead of the model's own");
  if (use.lora_alpha)
    cmd->add_option("--lora-alpha", o.lora_alpha, "LoRA alpha for released checkpoints, which do not store it (default 32)")
        ->check(at_least(0));
  if (use.run) add_run_options(cmd, o.run, use.device);
  return model;
}

namespace {

// --device, --dtype, --threads, --dense-decode as the library's OpenOptions.
OpenOptions device_options(const RunOptions& o) {
  OpenOptions open;
  open.device = o.device;
  open.dtype = o.dtype;
  open.threads = o.threads;
  open.dense_decode = o.dense_decode;
  return open;
}

}  // namespace

OpenOptions open_options(const ModelOptions& o) {
  OpenOptions open = device_options(o.run);
  open.tokenizer = o.tokenizer;
  if (o.lora_alpha > 0) open.lora_alpha = o.lora_alpha;
  return open;
}

void add_sampling_options(CLI::App* cmd, SamplingOptions& s) {
  cmd->add_option("--temperature", s.temperature, "0 = greedy; > 0 samples")->check(at_least(0))->capture_default_str();
  cmd->add_option("--top-k", s.top_k, "Sample among the k most likely tokens (0 = all)")
      ->check(at_least(0))
      ->capture_default_str();
  cmd->add_option("--top-p", s.top_p, "Nucleus sampling mass (1 = off)")->check(unit_interval_open_closed())->capture_default_str();
  cmd->add_option("--seed", s.seed, "Seed for sampling (same seed, same text, on any device)")
      ->check(at_least(0))  // unsigned: CLI11 alone would wrap -1
      ->capture_default_str();
  cmd->add_option("--repetition-penalty", s.repetition_penalty,
                  "> 1 discourages tokens already generated (their logits divided by it; 1 = off)")
      ->check(CLI::Range(1e-3, 100.0))
      ->capture_default_str();
  cmd->add_option("--no-repeat-ngram", s.no_repeat_ngram,
                  "Never generate an n-gram of this many tokens twice (0 = off; 3 or 4 stops a weak\n"
                  "reconstruction from looping on one phrase)")
      ->check(at_least(0))
      ->capture_default_str();
}

ModelLoadOptions resolve(const RunOptions& o) { return load_options(device_options(o)); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int64_t> parse_id_list(const std::string& text) {
  std::vector<int64_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) {
      size_t used = 0;
      long long v = 0;
      try {
        v = std::stoll(item, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      ICAE_CHECK(used == item.size() && v >= 0, ErrorKind::Usage, "not a token id: '" + item + "'");
      ids.push_back(v);
    }
    start = end + 1;
  }
  ICAE_CHECK(!ids.empty(), ErrorKind::Usage, "no token ids given");
  return ids;
}

}  // namespace icae::cli
