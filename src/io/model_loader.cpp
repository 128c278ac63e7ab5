// load_transformer: from a Hugging Face folder (config.json + safetensors) or a GGUF file.
#include "icae/io/model_loader.h"

#include <ATen/ATen.h>

#include <filesystem>

#include "icae/io/gguf_model.h"
#include "icae/io/gguf_quant.h"
#include "icae/io/tensor_io.h"
#include "icae/model/quant_matrix.h"
#include "icae/util/error.h"

namespace icae {

namespace fs = std::filesystem;

namespace {

// Whether a .gguf model keeps its blocks for decoding (see ModelLoadOptions::QuantDecode).
// Auto: where the block kernels are vectorised, or where the dense alternative is not float32
// (bf16/f16 matmuls on a CPU without native support are emulated and slower still).
bool use_quantized_decode(const ModelLoadOptions& o) {
  using Q = ModelLoadOptions::QuantDecode;
  if (!o.device.is_cpu() || o.quantized_decode == Q::Off) return false;
  if (o.quantized_decode == Q::On) return true;
  return quant_kernels_vectorised() || o.dtype != at::kFloat;
}

}  // namespace

Transformer load_transformer(const std::string& path, const ModelLoadOptions& options) {
  ICAE_CHECK(fs::exists(path), ErrorKind::Io, path + ": no such file or folder");
  if (fs::is_directory(path)) {
    ModelConfig config = ModelConfig::from_file((fs::path(path) / "config.json").string());
    TensorMap weights;
    TensorLoadOptions topts;
    topts.float_dtype = options.dtype;
    for (const auto& file : checkpoint_weight_files(path)) {
      for (auto& [name, t] : load_safetensors(file, topts)) {
        ICAE_CHECK(!weights.count(name), ErrorKind::BadInput, file + ": tensor '" + name + "' appears twice");
        weights.emplace(name, std::move(t));
      }
    }
    try {
      return Transformer(std::move(config), std::move(weights), options);
    } catch (const Error& e) {
      throw Error(e.kind(), path + ": " + e.what());
    }
  }
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".gguf") == 0) {
    // Dequantised on the CPU to float32 (or bf16 directly), then moved and cast by the model.
    const at::ScalarType load_type = options.dtype == at::kBFloat16 ? at::kBFloat16 : at::kFloat;
    LoadedWeights w = load_gguf_model(path, load_type);
    try {
      Transformer model(std::move(w.config), std::move(w.tensors), options);
      if (use_quantized_decode(options)) model.attach_quantized(load_gguf_quantized(path));
      return model;
    } catch (const Error& e) {
      throw Error(e.kind(), path + ": " + e.what());
    }
  }
  fail(ErrorKind::Unsupported, path + ": not a model folder (config.json + model.safetensors) or a .gguf file");
}

}  // namespace icae
