// A base model together with its tokenizer and chat conventions: what the text-facing commands
// (generate, chat, compress, ask) need. Loads a Hugging Face folder (config.json, safetensors,
// tokenizer.json) or a single .gguf file (weights and tokenizer from its metadata).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "icae/model/transformer.h"
#include "icae/tokenizer/chat_template.h"
#include "icae/tokenizer/tokenizer.h"

namespace icae {

struct TextModel {
  std::string path;
  std::shared_ptr<Transformer> model;
  std::shared_ptr<tok::Tokenizer> tokenizer;
  std::string chat_format;           // mistral | llama2 | llama3 | chatml | "" (unknown)
  std::string default_system;        // e.g. SmolLM2's default system prompt
  std::vector<int64_t> stop_ids;     // EOS and end-of-turn tokens
};

struct TextModelOptions {
  ModelLoadOptions load;
  std::string tokenizer_path;  // overrides the folder's tokenizer.json / the GGUF's own
};

TextModel load_text_model(const std::string& path, const TextModelOptions& options);

// Token ids for text (no special tokens parsed, no BOS added).
std::vector<int64_t> encode_plain(const tok::Tokenizer& tokenizer, const std::string& text);
// Chat-formatted prompt (the model's template and default system, the assistant's turn opened).
std::vector<int64_t> encode_chat(const TextModel& m, const std::vector<tok::ChatMessage>& messages);
// The same for one user message.
std::vector<int64_t> encode_chat_prompt(const TextModel& m, const std::string& user, const std::string& system = "");

// Prints text for a growing list of ids as it becomes valid UTF-8 (streaming output).
class StreamPrinter {
 public:
  explicit StreamPrinter(const tok::Tokenizer& tokenizer, bool skip_special = true)
      : tokenizer_(tokenizer), skip_special_(skip_special) {}
  // Returns the new text since the last call (possibly empty while a character is incomplete).
  std::string push(int64_t id);
  std::string text() const;

 private:
  const tok::Tokenizer& tokenizer_;
  bool skip_special_;
  std::vector<tok::TokenId> ids_;
  size_t printed_ = 0;
};

}  // namespace icae
