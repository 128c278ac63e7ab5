#include "icae/io/gguf_quant.h"

#include <ATen/ATen.h>

#include "icae/formats/gguf.h"
#include "icae/io/gguf_model.h"
#include "icae/model/tensor_names.h"
#include "icae/util/error.h"

namespace icae {


std::unordered_map<std::string, QuantMatrix> load_gguf_quantized(const std::string& path) {
  const gguf::GgufFile f = gguf::GgufFile::open(path);
  const ModelConfig c = gguf_model_config(f);
  const std::string arch = f.get_string("general.architecture");
  const bool permute = arch == "llama" || arch == "mistral";
  std::unordered_map<std::string, QuantMatrix> out;
  for (const gguf::TensorInfo& info : f.tensors()) {
    QuantFormat format;
    if (info.type == gguf::TensorType::Q4_1) format = QuantFormat::Q4_1;
    else if (info.type == gguf::TensorType::Q8_0) format = QuantFormat::Q8_0;
    else continue;
    if (info.ne.size() != 2 || info.ne[0] % kQuantBlock != 0) continue;
    const TensorRoleInfo* role = gguf_tensor_role(info.name);
    if (!role || role->kind == TensorKind::Norm) continue;
    const std::string hf = gguf_to_hf_name(info.name);
    QuantMatrix m;
    m.format = format;
    m.cols = info.ne[0];
    m.rows = info.ne[1];
    const int64_t row_bytes = m.cols / kQuantBlock * quant_block_bytes(format);
    ICAE_CHECK(static_cast<uint64_t>(row_bytes * m.rows) == info.n_bytes, ErrorKind::BadInput,
               path + ": tensor '" + info.name + "' has an unexpected byte size");
    // Copied out of the mapping: the file is closed when this function returns.
    m.data = at::from_blob(const_cast<uint8_t*>(info.data), {m.rows, row_bytes}, at::kByte).clone();
    if (permute && role->rotary != RotaryRows::None)  // rows = blocks
      m.data = unpermute_rotary_rows(m.data, role->rotary == RotaryRows::QueryHeads ? c.num_attention_heads
                                                                                    : c.num_key_value_heads);
    m.prepare();
    out.emplace(hf, std::move(m));
  }
  return out;
}

}  // namespace icae
