#include "icae/io/tensor_io.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "icae/util/error.h"

namespace icae {

namespace fs = std::filesystem;
using formats::DType;

at::ScalarType to_scalar_type(DType dtype) {
  switch (dtype) {
    case DType::F64: return at::kDouble;
    case DType::F32: return at::kFloat;
    case DType::F16: return at::kHalf;
    case DType::BF16: return at::kBFloat16;
    case DType::I64: return at::kLong;
    case DType::I32: return at::kInt;
    case DType::I16: return at::kShort;
    case DType::I8: return at::kChar;
    case DType::U8: return at::kByte;
    case DType::BOOL: return at::kBool;
  }
  fail(ErrorKind::Internal, "unhandled safetensors dtype");
}

DType to_file_dtype(at::ScalarType type) {
  switch (type) {
    case at::kDouble: return DType::F64;
    case at::kFloat: return DType::F32;
    case at::kHalf: return DType::F16;
    case at::kBFloat16: return DType::BF16;
    case at::kLong: return DType::I64;
    case at::kInt: return DType::I32;
    case at::kShort: return DType::I16;
    case at::kChar: return DType::I8;
    case at::kByte: return DType::U8;
    case at::kBool: return DType::BOOL;
    default: break;
  }
  fail(ErrorKind::Unsupported, std::string("cannot store dtype ") + c10::toString(type) + " in safetensors");
}

at::Tensor to_tensor(const formats::TensorView& view, const TensorLoadOptions& options) {
  const at::ScalarType file_type = to_scalar_type(view.dtype);
  // from_blob views the mapped memory; clone() makes the tensor own its data before the map
  // goes away. Conversion and the device move happen on that owned copy.
  at::Tensor t = at::from_blob(const_cast<uint8_t*>(view.data), view.shape,
                               at::TensorOptions().dtype(file_type))
                     .clone();
  if (options.float_dtype && at::isFloatingType(file_type) && file_type != *options.float_dtype)
    t = t.to(*options.float_dtype);
  if (options.device != t.device()) t = t.to(options.device);
  return t;
}

TensorMap load_safetensors(const std::string& path, const TensorLoadOptions& options) {
  formats::SafetensorsFile file(path);
  TensorMap out;
  for (const auto& v : file.tensors()) out.emplace(v.name, to_tensor(v, options));
  return out;
}

void save_safetensors(const std::string& path,
                      const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<at::Tensor> keep;  // CPU contiguous copies that must outlive the write
  std::vector<formats::TensorToWrite> items;
  keep.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    ICAE_CHECK(t.defined(), ErrorKind::Internal, path + ": tensor '" + name + "' is undefined");
    keep.push_back(t.detach().to(at::kCPU).contiguous());
    const at::Tensor& c = keep.back();
    items.push_back({name, to_file_dtype(c.scalar_type()), c.sizes().vec(), c.data_ptr()});
  }
  formats::write_safetensors(path, items, metadata);
}

std::vector<std::string> checkpoint_weight_files(const std::string& model_dir) {
  const fs::path dir(model_dir);
  const fs::path single = dir / "model.safetensors";
  if (fs::exists(single)) return {single.string()};
  const fs::path index = dir / "model.safetensors.index.json";
  ICAE_CHECK(fs::exists(index), ErrorKind::Io,
             model_dir + ": no model.safetensors or model.safetensors.index.json");
  nlohmann::json j;
  try {
    std::ifstream in(index);
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, index.string() + ": invalid JSON: " + e.what());
  }
  ICAE_CHECK(j.contains("weight_map") && j["weight_map"].is_object(), ErrorKind::BadInput,
             index.string() + ": missing object 'weight_map'");
  std::set<std::string> shards;
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    ICAE_CHECK(it->is_string(), ErrorKind::BadInput,
               index.string() + ": weight_map['" + it.key() + "'] is not a file name");
    const std::string name = it->get<std::string>();
    ICAE_CHECK(name.find('/') == std::string::npos && name.find("..") == std::string::npos,
               ErrorKind::BadInput, index.string() + ": shard name '" + name + "' leaves the folder");
    shards.insert((dir / name).string());
  }
  return {shards.begin(), shards.end()};
}

}  // namespace icae
