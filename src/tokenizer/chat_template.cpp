#include "icae/tokenizer/chat_template.h"

#include "icae/util/error.h"

namespace icae::tok {

const char* const kSmolLM2DefaultSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

namespace {

// Python's str.strip() for the whitespace that matters in chat text.
std::string strip(const std::string& s) {
  const char* ws = " \t\n\r\f\v";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string::npos) return "";
  const size_t e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

[[noreturn]] void reject(ChatFormat f, const std::string& what) {
  fail(ErrorKind::Usage, std::string("chat template ") + chat_format_name(f) + ": " + what);
}

// Splits off a leading system message and checks that the rest alternates user/assistant.
std::pair<std::optional<std::string>, std::vector<const ChatMessage*>> alternating(
    ChatFormat f, const std::vector<ChatMessage>& messages) {
  std::optional<std::string> system;
  std::vector<const ChatMessage*> rest;
  for (size_t i = 0; i < messages.size(); ++i) {
    const auto& m = messages[i];
    if (m.role == "system") {
      if (i != 0) reject(f, "a system message must come first (message " + std::to_string(i) + ")");
      system = m.content;
      continue;
    }
    const bool want_user = rest.size() % 2 == 0;
    if (m.role != "user" && m.role != "assistant") reject(f, "unknown role '" + m.role + "'");
    if ((m.role == "user") != want_user)
      reject(f, "roles must alternate user/assistant/user/... (message " + std::to_string(i) + " is " + m.role + ")");
    rest.push_back(&m);
  }
  return {system, rest};
}

}  // namespace

ChatFormat parse_chat_format(std::string_view n) {
  if (n == "mistral") return ChatFormat::Mistral;
  if (n == "llama2" || n == "llama-2") return ChatFormat::Llama2;
  if (n == "llama3" || n == "llama-3") return ChatFormat::Llama3;
  if (n == "chatml" || n == "qwen" || n == "smollm") return ChatFormat::ChatML;
  fail(ErrorKind::Usage, "unknown chat format '" + std::string(n) + "' (expected mistral, llama2, llama3 or chatml)");
}

const char* chat_format_name(ChatFormat f) {
  switch (f) {
    case ChatFormat::Mistral: return "mistral";
    case ChatFormat::Llama2: return "llama2";
    case ChatFormat::Llama3: return "llama3";
    case ChatFormat::ChatML: return "chatml";
  }
  return "?";
}

std::string render_chat(ChatFormat f, const std::vector<ChatMessage>& messages, const ChatTemplateOptions& o) {
  std::string out;
  switch (f) {
    case ChatFormat::Mistral: {
      const std::string bos = o.bos.value_or("<s>"), eos = o.eos.value_or("</s>");
      auto [system, turns] = alternating(f, messages);
      out += bos;
      for (size_t i = 0; i < turns.size(); ++i) {
        if (turns[i]->role == "user") {
          std::string content = turns[i]->content;
          if (i == 0 && system) content = *system + "\n\n" + content;
          out += "[INST] " + content + " [/INST]";
        } else {
          out += turns[i]->content + eos;
        }
      }
      return out;
    }
    case ChatFormat::Llama2: {
      const std::string bos = o.bos.value_or("<s>"), eos = o.eos.value_or("</s>");
      auto [system, turns] = alternating(f, messages);
      for (size_t i = 0; i < turns.size(); ++i) {
        std::string content = turns[i]->content;
        if (i == 0 && system) content = "<<SYS>>\n" + *system + "\n<</SYS>>\n\n" + content;
        if (turns[i]->role == "user") out += bos + "[INST] " + strip(content) + " [/INST]";
        else out += " " + strip(content) + " " + eos;
      }
      return out;
    }
    case ChatFormat::Llama3: {
      out += o.bos.value_or("<|begin_of_text|>");
      for (const auto& m : messages)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + strip(m.content) + "<|eot_id|>";
      if (o.add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    }
    case ChatFormat::ChatML: {
      if (o.bos) out += *o.bos;
      if (!o.default_system.empty() && (messages.empty() || messages[0].role != "system"))
        out += "<|im_start|>system\n" + o.default_system + "<|im_end|>\n";
      for (const auto& m : messages) out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
      if (o.add_generation_prompt) out += "<|im_start|>assistant\n";
      return out;
    }
  }
  return out;
}

}  // namespace icae::tok
