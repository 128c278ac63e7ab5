// Loading a transformer from disk: a Hugging Face folder (config.json + safetensors, sharded or
// not) or a .gguf file. Lives with the file readers, so the model itself knows no file formats.
#pragma once
#include <string>

#include "icae/model/transformer.h"

namespace icae {

// Errors name the path (and the tensor, for a missing one or a wrong shape).
Transformer load_transformer(const std::string& path, const ModelLoadOptions& options);

}  // namespace icae
