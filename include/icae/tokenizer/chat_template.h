// Chat templates, written as code, for the model families the fine-tuning objective uses.
// Each renders exactly what the family's Jinja template in tokenizer_config.json renders:
//   Mistral  "<s>[INST] {user} [/INST]{assistant}</s>[INST] {user} [/INST]"
//            (Mistral-7B-Instruct v0.1/v0.2; a system message is put before the first user
//             message, separated by "\n\n", as later Mistral templates do)
//   Llama2   "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] ..."
//            (contents stripped of surrounding whitespace)
//   Llama3   "<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>..."
//            (contents stripped of surrounding whitespace)
//   ChatML   "<|im_start|>{role}\n{content}<|im_end|>\n..." (Qwen 2/2.5/3 without tools, SmolLM2)
// Render, then encode with EncodeOptions{.parse_special = true} and without add_special (the
// rendering already holds the BOS).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace icae::tok {

enum class ChatFormat { Mistral, Llama2, Llama3, ChatML };

// "mistral", "llama2", "llama3", "chatml" (also "qwen", "smollm"); throws Usage otherwise.
ChatFormat parse_chat_format(std::string_view name);
const char* chat_format_name(ChatFormat format);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

struct ChatTemplateOptions {
  // Append the opening of the assistant's turn (Llama3, ChatML; the [INST] formats need nothing).
  bool add_generation_prompt = true;
  // ChatML only: a system message put first when the conversation has none (SmolLM2-Instruct uses
  // "You are a helpful AI assistant named SmolLM, trained by Hugging Face"; Qwen 3 none).
  std::string default_system;
  // Override the family's BOS / EOS strings (Mistral, Llama2: "<s>", "</s>"; Llama3: "<|begin_of_text|>").
  std::optional<std::string> bos, eos;
};

// Throws icae::Error(Usage) for conversations the template rejects (roles not alternating
// user/assistant, unknown roles, system message not first).
std::string render_chat(ChatFormat format, const std::vector<ChatMessage>& messages,
                        const ChatTemplateOptions& options = {});

// The SmolLM2-Instruct default system prompt.
extern const char* const kSmolLM2DefaultSystem;

}  // namespace icae::tok
