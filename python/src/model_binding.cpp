// icae._C.Model and the small types around it: a loaded (base model, adapter) pair with one
// inference session, Slots, Row, Completion. Every option keeps the name and default of the C++
// API (OpenOptions, SessionOptions, SamplingOptions: icae/api.h), which the CLI's flags also use.
#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <pybind11/stl.h>

#include <mutex>
#include <string>
#include <vector>

#include "bindings.h"
#include "icae/api.h"
#include "icae/core/icae.h"
#include "icae/eval/eval_data.h"
#include "icae/eval/icae_eval.h"
#include "icae/infer/slot_file.h"
#include "icae/util/error.h"

namespace icae::python {

namespace {

using Ids = std::vector<int64_t>;

std::string known(const std::vector<const char*>& names) {
  std::string s;
  for (const char* n : names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// Decoding options of one call or of a session: SessionOptions' names, SamplingOptions' inside.
const std::vector<const char*> kDecodeOptions = {"max_new_tokens", "temperature", "top_k", "top_p", "seed",
                                                 "repetition_penalty", "no_repeat_ngram", "stop_ids",
                                                 "use_model_stop_ids", "ft_template", "system"};
const std::vector<const char*> kOpenOptions = {"device", "dtype", "threads", "dense_decode", "tokenizer", "lora_alpha"};

bool is_one_of(const std::string& key, const std::vector<const char*>& names) {
  for (const char* n : names)
    if (key == n) return true;
  return false;
}

void set_decode_option(SessionOptions& o, const std::string& key, const py::handle& v) {
  SamplingOptions& s = o.sampling;
  if (key == "max_new_tokens") o.max_new_tokens = v.cast<int64_t>();
  else if (key == "temperature") s.temperature = v.cast<double>();
  else if (key == "top_k") s.top_k = v.cast<int64_t>();
  else if (key == "top_p") s.top_p = v.cast<double>();
  else if (key == "seed") s.seed = v.cast<uint64_t>();
  else if (key == "repetition_penalty") s.repetition_penalty = v.cast<double>();
  else if (key == "no_repeat_ngram") s.no_repeat_ngram = v.cast<int64_t>();
  else if (key == "stop_ids") o.stop_ids = v.cast<Ids>();
  else if (key == "use_model_stop_ids") o.use_model_stop_ids = v.cast<bool>();
  else if (key == "ft_template") o.ft_template = v.cast<std::string>();
  else if (key == "system") o.system = v.cast<std::string>();
  else fail(ErrorKind::Usage, "unknown decoding option '" + key + "' (known: " + known(kDecodeOptions) + ")");
  ICAE_CHECK(o.max_new_tokens >= 0, ErrorKind::Usage, "max_new_tokens must be >= 0");
  ICAE_CHECK(s.temperature >= 0, ErrorKind::Usage, "temperature must be >= 0");
  ICAE_CHECK(s.top_p > 0 && s.top_p <= 1, ErrorKind::Usage, "top_p must be in (0, 1]");
  ICAE_CHECK(s.repetition_penalty > 0, ErrorKind::Usage, "repetition_penalty must be > 0");
}

SessionOptions with_decode_options(SessionOptions o, const py::dict& options) {
  for (auto item : options) set_decode_option(o, item.first.cast<std::string>(), item.second);
  return o;
}

OpenOptions open_options(const py::dict& options) {
  OpenOptions o;
  for (auto item : options) {
    const std::string key = item.first.cast<std::string>();
    const py::handle v = item.second;
    if (v.is_none()) continue;
    if (key == "device") o.device = v.cast<std::string>();
    else if (key == "dtype") o.dtype = v.cast<std::string>();
    else if (key == "threads") o.threads = v.cast<int>();
    else if (key == "dense_decode") o.dense_decode = v.cast<bool>();
    else if (key == "tokenizer") o.tokenizer = v.cast<std::string>();
    else if (key == "lora_alpha") o.lora_alpha = v.cast<double>();
    else if (is_one_of(key, kDecodeOptions)) set_decode_option(o.session, key, v);
    else
      fail(ErrorKind::Usage, "load: unknown option '" + key + "' (known: " + known(kOpenOptions) + ", and the decoding options " +
                                 known(kDecodeOptions) + ")");
  }
  ICAE_CHECK(o.threads >= 0, ErrorKind::Usage, "threads must be >= 0");
  return o;
}

// One loaded model and its session. Calls take the lock: a session serves one call at a time,
// and Python threads may share a Model.
class Model {
 public:
  Model(const std::string& model_path, const std::string& adapter_path, const py::dict& options) {
    const OpenOptions o = open_options(options);
    loaded_ = PythonBridge().run([&] { return load_model(model_path, adapter_path, o); });
    session_ = std::make_unique<Session>(new_session(loaded_, o.session));
    model_path_ = model_path;
    adapter_path_ = adapter_path;
  }

  Session& session() { return *session_; }

  // --- the encoder
  std::vector<Slots> compress_ids(const std::vector<Ids>& contexts) {
    std::lock_guard<std::mutex> lock(mutex_);
    return PythonBridge().run([&] { return session_->compress_slots(contexts); });
  }
  std::vector<Slots> compress_texts(const std::vector<std::string>& texts) {
    std::lock_guard<std::mutex> lock(mutex_);
    return PythonBridge().run([&] { return session_->compress_slots(texts); });
  }
  // A tensor from elsewhere as this adapter's slots (shape checked).
  Slots slots_of(const at::Tensor& tensor, int64_t context_tokens) {
    Slots s = make_slots(session_->icae(), tensor, context_tokens);
    check_slots_fit(s, session_->icae(), "slots");
    return s;
  }

  // --- decoder rows
  DecodeRow reconstruct_row(const Slots& s) { return session_->reconstruct_row(fit(s)); }
  DecodeRow answer_row_text(const Slots& s, const std::string& prompt) { return session_->answer_row(fit(s), prompt); }
  DecodeRow answer_row_ids(const Slots& s, const Ids& prompt) { return session_->answer_row(fit(s), prompt); }
  DecodeRow generate_row_text(const std::string& prompt) { return session_->generate_row(session_->tokenize(prompt)); }
  DecodeRow generate_row_ids(const Ids& prompt) { return session_->generate_row(prompt); }

  // Decodes rows together with this call's decoding options; on_token(row, id) streams, and a
  // False from it ends that row. Ctrl-C ends the call with KeyboardInterrupt.
  std::vector<Completion> run(const std::vector<DecodeRow>& rows, const py::dict& options, const py::object& on_token) {
    ICAE_CHECK(!rows.empty(), ErrorKind::Usage, "run: no rows given");
    std::lock_guard<std::mutex> lock(mutex_);
    const SessionOptions saved = session_->options();
    session_->options() = with_decode_options(saved, options);
    PythonBridge bridge;
    const bool streaming = !on_token.is_none();
    auto cb = [&](size_t row, int64_t id) {
      return streaming ? bridge.call(on_token, row, id) : bridge.check();
    };
    try {
      std::vector<Completion> out = bridge.run([&] { return session_->run(rows, cb); });
      session_->options() = saved;
      return out;
    } catch (...) {
      session_->options() = saved;
      throw;
    }
  }

  // The decoder's input embeddings of an embedding-slot row [T, H] and its logits [T, V]
  // (float32): what a Hugging Face model given inputs_embeds computes, for comparison.
  at::Tensor decoder_embeddings(const DecodeRow& row) {
    std::lock_guard<std::mutex> lock(mutex_);
    at::NoGradGuard no_grad;
    const DecoderInput in = session_->icae().decoder_input({row.prefix}, {row.slots}, Padding::Right);
    ICAE_CHECK(in.input.inputs_embeds.defined(), ErrorKind::Unsupported,
               "decoder_embeddings: key/value slots enter the decoder as keys and values in every layer, not as input "
               "embeddings");
    return in.input.inputs_embeds.squeeze(0);
  }
  at::Tensor logits(const DecodeRow& row) {
    std::lock_guard<std::mutex> lock(mutex_);
    return PythonBridge().run([&] {
      at::NoGradGuard no_grad;
      const DecoderInput in = session_->has_adapter()
                                  ? session_->icae().decoder_input({row.prefix}, {row.slots}, Padding::Right)
                                  : stack_embeddings({session_->base().embed(at::tensor(row.prefix, at::kLong))}, Padding::Right);
      return session_->base().forward(in.input).logits.squeeze(0).to(at::kFloat);
    });
  }

  // icae eval ae on this model: the same code and numbers as the CLI's (--json's "mean").
  py::dict eval_ae(const std::vector<std::string>& paths, int64_t batch, int64_t max_samples, const py::dict& options,
                   const py::object& on_batch) {
    std::lock_guard<std::mutex> lock(mutex_);
    PythonBridge bridge;
    std::vector<eval::EvalSample> data;
    bridge.run([&] { data = eval::read_eval_data(paths, eval::EvalDataKind::Text); });
    if (max_samples > 0 && static_cast<int64_t>(data.size()) > max_samples) data.resize(max_samples);
    ICAE_CHECK(!data.empty(), ErrorKind::BadInput, "eval_ae: no samples in the data given");
    const SessionOptions saved = session_->options();
    session_->options() = with_decode_options(saved, options);
    eval::AeEvalOptions o;
    if (batch > 0) o.batch = batch;  // 0: AeEvalOptions' default, as the CLI's
    o.on_batch = [&](size_t done, size_t total) { return bridge.call(on_batch, done, total); };
    eval::AeReport r;
    try {
      r = bridge.run([&] { return eval::eval_ae(*session_, data, o); });
    } catch (...) {
      session_->options() = saved;
      throw;
    }
    session_->options() = saved;
    py::list samples;
    for (const auto& x : r.samples) {
      py::dict d;
      d["source"] = x.source;
      d["tokens"] = x.tokens;
      d["slots"] = x.slots;
      d["bleu4"] = x.bleu;
      d["exact_prefix"] = x.exact_prefix;
      d["token_accuracy"] = x.token_accuracy;
      d["reconstruction"] = session_->detokenize(x.reconstruction);
      samples.append(d);
    }
    py::dict out;
    out["bleu4"] = r.mean_bleu;
    out["corpus_bleu4"] = r.corpus_bleu;
    out["exact_prefix"] = r.mean_exact_prefix;
    out["token_accuracy"] = r.mean_token_accuracy;
    out["samples"] = samples;
    return out;
  }

  py::dict info() const {
    const Transformer& base = session_->base();
    py::dict d;
    d["model_path"] = model_path_;
    d["adapter_path"] = adapter_path_;
    d["architecture"] = base.config().model_type;
    d["hidden_size"] = base.config().hidden_size;
    d["num_hidden_layers"] = base.config().num_hidden_layers;
    d["vocab_size"] = base.config().vocab_size;
    d["device"] = base.device().str();
    d["dtype"] = base.dtype() == at::kBFloat16 ? "bf16" : base.dtype() == at::kHalf ? "f16" : "f32";
    d["base_fingerprint"] = base.fingerprint();
    d["has_tokenizer"] = session_->model().tokenizer != nullptr;
    if (session_->has_adapter()) {
      const Icae& icae = session_->icae();
      d["mem_size"] = icae.config().mem_size;
      d["compression_rate"] = icae.config().compression_rate;
      d["slot_kind"] = std::string(slot_kind_name(icae.config().slot_kind));
      d["adapter_fingerprint"] = adapter_fingerprint(icae);
      d["ft_template"] = session_->ft_template().name;
    }
    return d;
  }

  std::mutex& mutex() { return mutex_; }

 private:
  at::Tensor fit(const Slots& s) { return session_->fit(s); }

  LoadedModel loaded_;
  std::unique_ptr<Session> session_;
  std::string model_path_, adapter_path_;
  std::mutex mutex_;
};

std::string repr_slots(const Slots& s) {
  std::string shape;
  if (s.tensor.defined())
    for (int64_t d : s.tensor.sizes()) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
  return "icae.Slots(kind='" + std::string(slot_kind_name(s.kind)) + "', count=" + std::to_string(s.count()) +
         ", k=" + std::to_string(s.mem_size) + ", context_tokens=" + std::to_string(s.context_tokens) + ", shape=[" +
         shape + "])";
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Slots>(m, "Slots")
      .def_readonly("tensor", &Slots::tensor)
      .def_property_readonly("kind", [](const Slots& s) { return std::string(slot_kind_name(s.kind)); })
      .def_property_readonly("count", &Slots::count)
      .def_readonly("mem_size", &Slots::mem_size)
      .def_readonly("context_tokens", &Slots::context_tokens)
      .def_readonly("base_fingerprint", &Slots::base_fingerprint)
      .def_readonly("adapter_fingerprint", &Slots::adapter_fingerprint)
      .def("save", [](const Slots& s, const std::string& path) { save_slots(path, s); }, py::arg("path"),
           py::call_guard<py::gil_scoped_release>())
      .def_static("load", &read_slots, py::arg("path"), py::call_guard<py::gil_scoped_release>())
      .def("__len__", &Slots::count)
      .def("__repr__", &repr_slots);

  py::class_<DecodeRow>(m, "Row")
      .def_readwrite("prefix", &DecodeRow::prefix)
      .def_readwrite("slots", &DecodeRow::slots)
      .def_readwrite("max_new_tokens", &DecodeRow::max_new_tokens)
      .def_readwrite("stop_ids", &DecodeRow::stop_ids);

  py::class_<Completion>(m, "Completion")
      .def_readonly("ids", &Completion::ids)
      .def_readonly("text", &Completion::text)
      .def_readonly("stop_reason", &Completion::stop_reason)
      .def_readonly("prefix_tokens", &Completion::prefix_tokens)
      .def("__str__", [](const Completion& c) { return c.text; })
      .def("__repr__", [](const Completion& c) {
        return "icae.Completion(tokens=" + std::to_string(c.ids.size()) + ", stop_reason='" + c.stop_reason + "', text=" +
               py::repr(py::str(c.text)).cast<std::string>() + ")";
      });

  py::class_<Model>(m, "Model")
      .def(py::init<const std::string&, const std::string&, const py::dict&>(), py::arg("model"), py::arg("adapter"),
           py::arg("options"))
      .def("compress_ids", &Model::compress_ids)
      .def("compress_texts", &Model::compress_texts)
      .def("slots_of", &Model::slots_of)
      .def("reconstruct_row", &Model::reconstruct_row)
      .def("answer_row_text", &Model::answer_row_text)
      .def("answer_row_ids", &Model::answer_row_ids)
      .def("generate_row_text", &Model::generate_row_text)
      .def("generate_row_ids", &Model::generate_row_ids)
      .def("run", &Model::run)
      .def("decoder_embeddings", &Model::decoder_embeddings)
      .def("logits", &Model::logits)
      .def("eval_ae", &Model::eval_ae)
      .def("info", &Model::info)
      .def("tokenize", [](Model& self, const std::string& text) { return self.session().tokenize(text); },
           py::call_guard<py::gil_scoped_release>())
      .def("detokenize", [](Model& self, const Ids& ids) { return self.session().detokenize(ids); },
           py::call_guard<py::gil_scoped_release>())
      .def("token_to_id",
           [](Model& self, const std::string& token) -> int64_t {
             const auto& t = self.session().model().tokenizer;
             ICAE_CHECK(t, ErrorKind::Usage, "this model has no tokenizer");
             return t->token_to_id(token);
           })
      .def("tokenizer_vocab_size",
           [](Model& self) -> int64_t {
             const auto& t = self.session().model().tokenizer;
             ICAE_CHECK(t, ErrorKind::Usage, "this model has no tokenizer");
             return static_cast<int64_t>(t->vocab_size());
           })
      .def("kv_cache_bytes", [](Model& self) { return self.session().kv_cache_bytes(); })
      .def("release_cache", [](Model& self) {
        std::lock_guard<std::mutex> lock(self.mutex());
        self.session().release_cache();
      });
  m.attr("DECODE_OPTIONS") = kDecodeOptions;
  m.attr("OPEN_OPTIONS") = kOpenOptions;
}

}  // namespace icae::python
