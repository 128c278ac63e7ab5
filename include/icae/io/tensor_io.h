// Safetensors <-> at::Tensor, and finding the weight files of a Hugging Face checkpoint folder.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>

#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "icae/formats/safetensors.h"
#include "icae/util/tensor_map.h"

namespace icae {

struct TensorLoadOptions {
  // Floating-point tensors are converted to this dtype; integer tensors keep theirs.
  std::optional<at::ScalarType> float_dtype;
  at::Device device = at::kCPU;
};

at::ScalarType to_scalar_type(formats::DType dtype);
formats::DType to_file_dtype(at::ScalarType type);

// Copies one view out of the mapped file into an owned tensor (converted per options).
at::Tensor to_tensor(const formats::TensorView& view, const TensorLoadOptions& options = {});

// Loads every tensor of one safetensors file.
TensorMap load_safetensors(const std::string& path, const TensorLoadOptions& options = {});

// Writes tensors (moved to CPU, made contiguous) in the given order, atomically.
void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// The weight files of a checkpoint folder: model.safetensors, or every shard named by
// model.safetensors.index.json. Throws icae::Error naming the folder when neither exists.
std::vector<std::string> checkpoint_weight_files(const std::string& model_dir);

}  // namespace icae
