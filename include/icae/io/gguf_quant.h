// The quantised blocks of a GGUF file's projection weights, under Hugging Face names, for the
// CPU decoding kernels (icae/model/quant_matrix.h). Only Q4_1 and Q8_0 tensors are returned;
// Q and K rows are un-permuted like the dense weights (rows are independent blocks).
#pragma once
#include <string>
#include <unordered_map>

#include "icae/model/quant_matrix.h"

namespace icae {

std::unordered_map<std::string, QuantMatrix> load_gguf_quantized(const std::string& path);

}  // namespace icae
