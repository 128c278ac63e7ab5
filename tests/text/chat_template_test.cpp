// Chat templates against renderings of the families' Jinja templates (tokenizer_config.json).
#include <gtest/gtest.h>

#include "icae/tokenizer/chat_template.h"
#include "icae/util/error.h"

namespace icae::tok {
namespace {

const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", " Bye "}};

TEST(ChatTemplate, Mistral) {
  EXPECT_EQ(render_chat(ChatFormat::Mistral, {{"user", "Hi"}, {"assistant", "Hello"}, {"user", "Bye"}}),
            "<s>[INST] Hi [/INST]Hello</s>[INST] Bye [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::Mistral, kConversation),
            "<s>[INST] Be brief.\n\nHi [/INST]Hello!</s>[INST]  Bye  [/INST]");
}

TEST(ChatTemplate, Llama2) {
  EXPECT_EQ(render_chat(ChatFormat::Llama2, kConversation),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] Bye [/INST]");
  EXPECT_EQ(render_chat(ChatFormat::Llama2, {{"user", "Hi"}}), "<s>[INST] Hi [/INST]");
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render_chat(ChatFormat::Llama3, kConversation),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nBye<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, ChatML) {
  EXPECT_EQ(render_chat(ChatFormat::ChatML, kConversation),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\n Bye <|im_end|>\n<|im_start|>assistant\n");
  ChatTemplateOptions smol;
  smol.default_system = kSmolLM2DefaultSystem;
  smol.add_generation_prompt = false;
  EXPECT_EQ(render_chat(ChatFormat::ChatML, {{"user", "Hi"}}, smol),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n");
}

TEST(ChatTemplate, RejectsBadConversations) {
  EXPECT_THROW(render_chat(ChatFormat::Mistral, {{"assistant", "x"}}), Error);
  EXPECT_THROW(render_chat(ChatFormat::Llama2, {{"user", "a"}, {"user", "b"}}), Error);
  EXPECT_THROW(render_chat(ChatFormat::Mistral, {{"user", "a"}, {"system", "b"}}), Error);
  EXPECT_THROW(parse_chat_format("vicuna"), Error);
  EXPECT_EQ(parse_chat_format("chatml"), ChatFormat::ChatML);
}

}  // namespace
}  // namespace icae::tok
