#include "icae/api.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>

#include <filesystem>

#include "icae/io/model_loader.h"
#include "icae/util/device.h"

namespace icae {

ModelLoadOptions load_options(const OpenOptions& o) {
  // 0 keeps libtorch's default: one thread per physical core, or OMP_NUM_THREADS when set.
  if (o.threads > 0) at::set_num_threads(o.threads);
  ModelLoadOptions m;
  m.device = parse_device(o.device);
  m.dtype = parse_dtype(resolve_auto_dtype(o.dtype, m.device));
  if (o.dense_decode) m.quantized_decode = ModelLoadOptions::QuantDecode::Off;
  return m;
}

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
