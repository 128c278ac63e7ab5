#include "icae/api.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <filesystem>

#include "icae/io/model_loader.h"
#include "icae/util/device.h"

namespace icae {

namespace {

ModelLoadOptions load_options(const OpenOptions& o) {
  if (o.threads > 0) at::set_num_threads(o.threads);
  ModelLoadOptions m;
  if (o.device == "cpu") {
    m.device = at::kCPU;
  } else {
    ICAE_CHECK(o.device.rfind("cuda", 0) == 0, ErrorKind::Usage, "device must be cpu, cuda or cuda:N, got '" + o.device + "'");
    ICAE_CHECK(at::hasCUDA(), ErrorKind::Usage, "device " + o.device + ": no CUDA device is available here");
    m.device = at::Device(o.device);
  }
  const std::string dtype = resolve_auto_dtype(o.dtype, m.device);
  ICAE_CHECK(dtype == "f32" || dtype == "bf16" || dtype == "f16", ErrorKind::Usage,
             "dtype must be f32, bf16, f16 or auto, got '" + o.dtype + "'");
  m.dtype = dtype == "bf16" ? at::kBFloat16 : dtype == "f16" ? at::kHalf : at::kFloat;
  return m;
}

}  // namespace

LoadedModel load_model(const std::string& model_path, const std::string& adapter_path, const OpenOptions& options) {
  TextModelOptions to;
  to.load = load_options(options);
  to.tokenizer_path = options.tokenizer;
  std::shared_ptr<TextModel> text;
  namespace fs = std::filesystem;
  if (options.tokenizer.empty() && fs::is_directory(model_path) && !fs::exists(fs::path(model_path) / "tokenizer.json")) {
    // A folder of weights alone (e.g. a test model): it speaks token ids only.
    text = std::make_shared<TextModel>();
    text->path = model_path;
    text->model = std::make_shared<Transformer>(load_transformer(model_path, to.load));
    if (text->model->config().eos_token_id) text->stop_ids.push_back(*text->model->config().eos_token_id);
  } else {
    text = std::make_shared<TextModel>(load_text_model(model_path, to));
  }
  LoadedModel m;
  if (!adapter_path.empty()) {
    AdapterLoadOptions ao;
    ao.lora_alpha = options.lora_alpha;
    m.adapter = std::make_shared<LoadedAdapter>(load_adapter(adapter_path, text->model, ao));
  }
  m.text = std::move(text);
  return m;
}

Session new_session(const LoadedModel& model, const SessionOptions& options) {
  return Session(model.text, model.adapter, options);
}

Session open_session(const std::string& model_path, const std::string& adapter_path, const OpenOptions& options) {
  return new_session(load_model(model_path, adapter_path, options), options.session);
}

}  // namespace icae
