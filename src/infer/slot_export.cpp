#include "icae/infer/slot_export.h"

#include <ATen/ATen.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "icae/core/icae.h"
#include "icae/infer/fingerprint.h"
#include "icae/io/tensor_io.h"
#include "icae/util/error.h"

namespace icae {

SlotFormat parse_slot_format(const std::string& name) {
  if (name == "safetensors") return SlotFormat::Safetensors;
  if (name == "vllm") return SlotFormat::Vllm;
  if (name == "llamacpp") return SlotFormat::Llamacpp;
  fail(ErrorKind::Usage, "unknown slot format '" + name + "' (safetensors, vllm or llamacpp)");
}

namespace {

const char* dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return "other";
  }
}

// Runs of the prefix as a list people and scripts can follow: template/prompt ids, the slots,
// the special token.
nlohmann::json layout_of(const Icae& icae, const std::vector<int64_t>& prefix) {
  nlohmann::json runs = nlohmann::json::array();
  const SpecialIds& s = icae.ids();
  size_t i = 0;
  while (i < prefix.size()) {
    const int64_t id = prefix[i];
    size_t j = i;
    if (id == s.mem_first) {
      while (j < prefix.size() && prefix[j] == s.mem_first) ++j;
      runs.push_back({{"kind", "slots"}, {"start", i}, {"count", j - i}});
    } else if (id == s.ae || id == s.lm || id == s.ft) {
      runs.push_back({{"kind", id == s.ae ? "AE" : id == s.lm ? "LM" : "FT"}, {"start", i}, {"count", 1}, {"id", id}});
      j = i + 1;
    } else {
      std::vector<int64_t> ids;
      while (j < prefix.size() && prefix[j] < s.vocab) ids.push_back(prefix[j++]);
      ICAE_CHECK(j > i, ErrorKind::Internal, "export: unexpected id " + std::to_string(id) + " in a decoder prefix");
      runs.push_back({{"kind", "tokens"}, {"start", i}, {"count", j - i}, {"ids", ids}});
    }
    i = j;
  }
  return runs;
}

void write_raw_f32(const std::string& path, const at::Tensor& rows) {
  at::Tensor f = rows.detach().to(at::kCPU).to(at::kFloat).contiguous();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": cannot open for writing");
    // x86 and ARM hosts are little-endian, as llama.cpp's float buffers are: bytes as they lie.
    out.write(reinterpret_cast<const char*>(f.data_ptr<float>()), static_cast<std::streamsize>(f.numel() * 4));
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": write failed");
  }
  ICAE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, ErrorKind::Io, path + ": cannot rename " + tmp);
}

}  // namespace

std::string export_prefix(const std::string& path, SlotFormat format, const Icae& icae, const at::Tensor& slots,
                          const PrefixExport& what) {
  ICAE_CHECK(format != SlotFormat::Safetensors, ErrorKind::Usage,
             "export_prefix writes vllm or llamacpp files; slot files are save_slots()'");
  ICAE_CHECK(icae.config().slot_kind == SlotKind::Embedding, ErrorKind::Unsupported,
             std::string("--format ") + (format == SlotFormat::Vllm ? "vllm" : "llamacpp") +
                 " carries input embeddings (prompt_embeds / llama_batch.embd), but this adapter's slots are keys "
                 "and values for every layer, which those engines cannot take as input; keep them as an icae slot "
                 "file (--format safetensors) and decode with icae");
  at::NoGradGuard no_grad;
  at::Tensor rows = icae.decoder_embeddings(what.prefix, slots).to(icae.base().dtype());  // [T, H]
  const int64_t t = rows.size(0), h = rows.size(1);
  nlohmann::json j = {{"format", format == SlotFormat::Vllm ? "icae-vllm-prompt-embeds" : "icae-llamacpp-embd"},
                      {"version", 1},
                      {"rows", t},
                      {"hidden_size", h},
                      {"kind", what.kind},
                      {"num_slots", slots.size(0)},
                      {"context_tokens", what.context_tokens},
                      {"base_fingerprint", icae.base().fingerprint()},
                      {"adapter_fingerprint", adapter_fingerprint(icae)},
                      {"layout", layout_of(icae, what.prefix)}};
  if (what.kind == "ft") {
    j["template"] = what.ft_template.name;
    j["prompt_ids"] = what.prompt;
    // Without a prompt baked in, the engine appends the prompt's own token embeddings and then
    // these ids (the template's closing part) before generating.
    if (what.prompt.empty()) j["append_after_prompt"] = what.ft_template.after;
  }
  if (format == SlotFormat::Vllm) {
    j["dtype"] = dtype_name(rows.scalar_type());
    j["tensor"] = "prompt_embeds";
    save_safetensors(path, {{"prompt_embeds", rows}}, {{"icae_prefix", j.dump()}});
  } else {
    j["dtype"] = "float32";
    j["byte_order"] = "little";
    j["bytes"] = t * h * 4;
    write_raw_f32(path, rows);
  }
  const std::string text = j.dump(2);
  std::ofstream js(path + ".json", std::ios::trunc);
  ICAE_CHECK(js.good(), ErrorKind::Io, path + ".json: cannot open for writing");
  js << text << "\n";
  ICAE_CHECK(js.good(), ErrorKind::Io, path + ".json: write failed");
  return text;
}

}  // namespace icae
