// Options shared by every command that runs a model: --device, --dtype, --threads.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

#include "icae/infer/generate.h"
#include "icae/model/transformer.h"

namespace icae::cli {

struct RunOptions {
  std::string device = "cpu";  // cpu | cuda | cuda:N
  std::string dtype = "f32";   // f32 | bf16 | f16 | auto
  int threads = 0;             // 0: all cores
  bool dense_decode = false;   // .gguf: decode with dense weights instead of the file's blocks
};

void add_run_options(CLI::App* cmd, RunOptions& options);
// --device, --dtype, --threads alone: the one declaration of them (add_run_options adds
// --dense-decode). Training takes auto, f32 or bf16 (f16 is not safe to train in).
enum class DeviceUse { Inference, Training };
void add_device_options(CLI::App* cmd, std::string& device, std::string& dtype, int& threads,
                        DeviceUse use = DeviceUse::Inference);
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
