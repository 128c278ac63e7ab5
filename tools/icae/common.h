// Options shared by the commands (and the benchmarks) that run a model: the one declaration of
// --model, --adapter, --tokenizer, --lora-alpha, --device, --dtype, --threads, --dense-decode.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "icae/api.h"
#include "icae/infer/generate.h"
#include "icae/model/transformer.h"

namespace icae::cli {

struct RunOptions {
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string dtype = "f32";   // f32 | bf16 | f16 | auto
  int threads = 0;             // 0: all cores
  bool dense_decode = false;   // .gguf: decode with dense weights instead of the file's blocks
};

// --device, --dtype, --threads (the one declaration of them) and, for inference, --dense-decode.
// Training takes auto, f32 or bf16 (f16 is not safe to train in).
enum class DeviceUse { Inference, Training };
void add_run_options(CLI::App* cmd, RunOptions& options, DeviceUse use = DeviceUse::Inference);
// --model, --adapter, --tokenizer, --lora-alpha and the run options: what a command loads. A
// command's arguments derive from ModelOptions (or hold one) and declare them with
// add_model_options, saying which of them it takes.
enum class AdapterUse { None, Optional, Required };
struct ModelOptions {
  std::string model;      // a Hugging Face folder or a .gguf file
  std::string adapter;    // an ICAE adapter (.safetensors); empty: none
  std::string tokenizer;  // a tokenizer.json instead of the model's own; empty: the model's
  double lora_alpha = 0;  // 0: the adapter's own (released v2 checkpoints store none: 32)
  RunOptions run;
};
struct ModelOptionsUse {
  AdapterUse adapter = AdapterUse::None;  // --adapter
  bool tokenizer = false;                 // --tokenizer
  bool lora_alpha = false;                // --lora-alpha (with an adapter that may be a released checkpoint)
  bool run = true;                        // --device, --dtype, --threads, --dense-decode
  DeviceUse device = DeviceUse::Inference;  // Training: the dtypes one trains in, no --dense-decode
  bool model_required = true;             // false: the command has another source (bench --shape)
  std::string model_help;                 // empty: the shared text; else what this command takes
  std::string adapter_note;               // appended to the adapter's help: what this command does with it
};
// Declares the options `use` names, in the order above (--model first); returns --model.
CLI::Option* add_model_options(CLI::App* cmd, ModelOptions& options, const ModelOptionsUse& use);
// The library's load options for them (device, dtype, threads, dense decode, tokenizer, LoRA alpha).
OpenOptions open_options(const ModelOptions& options);

// --temperature, --top-k, --top-p, --seed, --repetition-penalty, --no-repeat-ngram.
void add_sampling_options(CLI::App* cmd, SamplingOptions& sampling);
// Applies --threads and turns --device/--dtype into load options; clear errors when CUDA is
// asked for but absent.
ModelLoadOptions resolve(const RunOptions& options);

// The whole file (a context, a prompt); throws icae::Error(Io) naming it when it cannot be read.
std::string read_text_file(const std::string& path);

// "1,5,9" -> {1, 5, 9}; throws icae::Error(Usage) naming the bad element.
std::vector<int64_t> parse_id_list(const std::string& text);

}  // namespace icae::cli
