#include "icae/infer/text_model.h"

#include <filesystem>
#include <fstream>

#include "icae/formats/gguf.h"
#include "icae/formats/gguf_tokenizer.h"
#include "icae/io/model_loader.h"
#include "icae/tokenizer/chat_template.h"
#include "icae/util/error.h"

namespace icae {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The chat family from the token inventory: special tokens say which template a model speaks.
std::string guess_chat_format(const tok::Tokenizer& t, const std::string& jinja) {
  if (t.token_to_id("<|im_start|>") >= 0) return "chatml";
  if (t.token_to_id("<|start_header_id|>") >= 0) return "llama3";
  if (jinja.find("<<SYS>>") != std::string::npos) return "llama2";
  if (jinja.find("[INST]") != std::string::npos) return "mistral";
  return "";
}

}  // namespace

TextModel load_text_model(const std::string& path, const TextModelOptions& options) {
  TextModel m;
  m.path = path;
  m.model = std::make_shared<Transformer>(load_transformer(path, options.load));
  std::string jinja;
  if (!options.tokenizer_path.empty()) {
    m.tokenizer = std::make_shared<tok::Tokenizer>(tok::Tokenizer::from_file(options.tokenizer_path));
  } else if (ends_with(path, ".gguf")) {
    gguf::GgufFile file = gguf::GgufFile::open(path);
    m.tokenizer = std::make_shared<tok::Tokenizer>(gguf::tokenizer_json_from_gguf(file));
    if (file.has("tokenizer.chat_template")) jinja = file.get_string("tokenizer.chat_template");
    const int64_t eos = file.get_int("tokenizer.ggml.eos_token_id", -1);
    if (eos >= 0) m.tokenizer->set_eos_id(static_cast<tok::TokenId>(eos));
  } else {
    const fs::path tj = fs::path(path) / "tokenizer.json";
    ICAE_CHECK(fs::exists(tj), ErrorKind::Io,
               path + ": no tokenizer.json in the model folder (give one with --tokenizer)");
    m.tokenizer = std::make_shared<tok::Tokenizer>(tok::Tokenizer::from_file(tj.string()));
    const fs::path tc = fs::path(path) / "tokenizer_config.json";
    if (fs::exists(tc)) {
      try {
        std::ifstream in(tc);
        auto j = nlohmann::json::parse(in);
        if (j.contains("chat_template") && j["chat_template"].is_string()) jinja = j["chat_template"].get<std::string>();
      } catch (const nlohmann::json::exception&) {
        // tokenizer_config.json is optional; a broken one only costs the chat-format guess.
      }
    }
  }
  const int64_t vocab = m.model->config().vocab_size;
  ICAE_CHECK(static_cast<int64_t>(m.tokenizer->vocab_size()) <= vocab, ErrorKind::Mismatch,
             path + ": the tokenizer has " + std::to_string(m.tokenizer->vocab_size()) +
                 " tokens but the model's vocabulary only " + std::to_string(vocab));
  m.chat_format = guess_chat_format(*m.tokenizer, jinja);
  if (jinja.find("named SmolLM") != std::string::npos) m.default_system = tok::kSmolLM2DefaultSystem;
  if (m.tokenizer->eos_id() >= 0) m.stop_ids.push_back(m.tokenizer->eos_id());
  if (m.model->config().eos_token_id) m.stop_ids.push_back(*m.model->config().eos_token_id);
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>"}) {
    const auto id = m.tokenizer->token_to_id(end_of_turn);
    if (id >= 0) m.stop_ids.push_back(id);
  }
  return m;
}

std::vector<int64_t> encode_plain(const tok::Tokenizer& tokenizer, const std::string& text) {
  std::vector<int64_t> out;
  for (auto id : tokenizer.encode(text)) out.push_back(id);
  return out;
}

std::vector<int64_t> encode_chat(const TextModel& m, const std::vector<tok::ChatMessage>& messages) {
  ICAE_CHECK(!m.chat_format.empty(), ErrorKind::Unsupported,
             m.path + ": cannot tell which chat template this model uses; run without chat formatting");
  tok::ChatTemplateOptions o;
  o.default_system = m.default_system;
  const std::string text = tok::render_chat(tok::parse_chat_format(m.chat_format), messages, o);
  tok::EncodeOptions e;
  e.parse_special = true;
  std::vector<int64_t> out;
  for (auto id : m.tokenizer->encode(text, e)) out.push_back(id);
  return out;
}

std::vector<int64_t> encode_chat_prompt(const TextModel& m, const std::string& user, const std::string& system) {
  std::vector<tok::ChatMessage> messages;
  if (!system.empty()) messages.push_back({"system", system});
  messages.push_back({"user", user});
  return encode_chat(m, messages);
}

std::string StreamPrinter::push(int64_t id) {
  ids_.push_back(static_cast<tok::TokenId>(id));
  tok::DecodeOptions o;
  o.skip_special = skip_special_;
  const std::string all = tokenizer_.decode(ids_, o);
  // A byte-level token can end inside a UTF-8 character: wait until it completes.
  if (all.size() >= 3 && all.compare(all.size() - 3, 3, "\xEF\xBF\xBD") == 0) return "";
  if (all.size() <= printed_) return "";
  std::string fresh = all.substr(printed_);
  printed_ = all.size();
  return fresh;
}

std::string StreamPrinter::text() const {
  tok::DecodeOptions o;
  o.skip_special = skip_special_;
  return tokenizer_.decode(ids_, o);
}

}  // namespace icae
