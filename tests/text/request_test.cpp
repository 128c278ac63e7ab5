// Request bodies of `icae serve` (src/server/request.cpp, torch-free: compiled into this binary, so
// these run under the sanitizers too). Serve.* (tests/model/serve_test.cpp) checks the same
// messages over HTTP; here the cases the request fuzz target found (docs/errors.md).
#include <gtest/gtest.h>

#include <string>

#include "request.h"

namespace icae::server {
namespace {

RequestLimits limits() {
  RequestLimits l;
  l.vocab = 512;
  l.model_path = "m.gguf";
  return l;
}

template <typename F>
void expect_http(F&& f, int status, const std::string& needle) {
  try {
    f();
    FAIL() << "accepted; expected: " << needle;
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status(), status) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

// Was: nlohmann's out_of_range (406, number overflow) escaping parse_object: the server answered
// 500 "internal error: …" to a client's bad number. Found by libFuzzer (fuzz/corpus/request/crash-*).
TEST(Request, NumbersBeyondDoubleAreA400) {
  expect_http([] { parse_object("{\"temperature\": 1e400}"); }, 400,
              "malformed JSON body: [json.exception.out_of_range.406] number overflow parsing '1e400'");
  expect_http([] { parse_object("72.3683333333314e3333"); }, 400, "malformed JSON body: ");
}

// Was: a stack overflow (the server process crashed): error messages quote the offending value,
// and printing a value nested 200,000 deep recursed 200,000 times. Now refused before parsing.
TEST(Request, DeepNestingIsRefused) {
  const size_t d = 200000;
  const std::string body = "{\"ids\": [" + std::string(d, '[') + std::string(d, ']') + "]}";
  expect_http([&] { parse_object(body); }, 400, "the body nests arrays and objects more than 64 levels deep");
  // Brackets inside strings do not count; 64 levels are fine.
  const nlohmann::json j = parse_object("{\"text\": \"" + std::string(1000, '[') + "\"}");
  EXPECT_EQ(parse_compress_body(j, limits()).text->size(), 1000u);
  std::string ok = "{\"x\": " + std::string(63, '[') + std::string(63, ']') + "}";
  EXPECT_NO_THROW(parse_object(ok));
  ok = "{\"x\": " + std::string(64, '[') + std::string(64, ']') + "}";
  expect_http([&] { parse_object(ok); }, 400, "more than 64 levels deep");
}

TEST(Request, RoutesCheckTheirFieldsInOrder) {
  const RequestLimits l = limits();
  auto body = [](const char* s) { return parse_object(s); };
  expect_http([&] { parse_compress_body(body(R"({"ids": [1, 512]})"), l); }, 400,
              "field 'ids'[1] = 512 is not a token id of this model (an integer in [0, 512))");
  expect_http([&] { parse_answer_body(body(R"({"ids": [1], "max_tokens": "ten"})"), l); }, 400,
              "field 'max_tokens' must be an integer, got \"ten\"");
  expect_http([&] { parse_answer_body(body(R"({"ids": [1]})"), l); }, 400,
              "give the prompt as exactly one of \"prompt\" or \"prompt_ids\"");
  expect_http([&] { parse_reconstruct_body(body(R"({"ids": [1], "text": "x"})"), l); }, 400,
              "give the context as exactly one of \"slots_id\", \"text\" or \"ids\"");
  RequestLimits none = l;
  none.has_tokenizer = false;
  expect_http([&] { parse_generate_body(body(R"({"prompt": "hi"})"), none); }, 400,
              "field 'prompt': m.gguf has no tokenizer; send \"prompt_ids\" instead");
  expect_http([&] { parse_chat_body(body(R"({"messages": [{"role": "user", "content": "hi"}]})"), none); }, 400,
              "chat needs a tokenizer; m.gguf has none");
  const DecodeBody a = parse_answer_body(body(R"({"slots_id": "s", "prompt_ids": [3], "top_k": 5})"), l);
  EXPECT_EQ(*a.context.slots_id, "s");
  EXPECT_EQ(a.prompt.ids, std::vector<int64_t>{3});
  EXPECT_EQ(a.sampling.top_k, 5);
  EXPECT_EQ(a.sampling.max_tokens, 256);
  const ChatBody c = parse_chat_body(
      body(R"({"messages": [{"role": "user", "slots_id": "s"}, {"role": "user", "content": "q"}], "n": 1})"), l);
  EXPECT_EQ(*c.slots_id, "s");
  ASSERT_EQ(c.messages.size(), 1u);
  EXPECT_EQ(c.messages[0].content, "q");
}

TEST(Request, RepetitionControlsReachEveryDecodingRoute) {
  const RequestLimits l = limits();
  auto body = [](const char* s) { return parse_object(s); };
  const DecodeBody r =
      parse_reconstruct_body(body(R"({"slots_id": "s", "repetition_penalty": 1.3, "no_repeat_ngram_size": 3})"), l);
  EXPECT_DOUBLE_EQ(r.sampling.repetition_penalty, 1.3);
  EXPECT_EQ(r.sampling.no_repeat_ngram_size, 3);
  const DecodeBody g = parse_generate_body(body(R"({"prompt_ids": [1]})"), l);  // off unless asked
  EXPECT_DOUBLE_EQ(g.sampling.repetition_penalty, 1.0);
  EXPECT_EQ(g.sampling.no_repeat_ngram_size, 0);
  const ChatBody c = parse_chat_body(
      body(R"({"messages": [{"role": "user", "content": "q"}], "no_repeat_ngram_size": 4})"), l);
  EXPECT_EQ(c.sampling.no_repeat_ngram_size, 4);
  expect_http([&] { parse_answer_body(body(R"({"slots_id": "s", "prompt_ids": [3], "repetition_penalty": 0})"), l); },
              400, "field 'repetition_penalty' = 0 is out of range");
  expect_http([&] { parse_generate_body(body(R"({"prompt_ids": [1], "no_repeat_ngram_size": -2})"), l); }, 400,
              "field 'no_repeat_ngram_size' = -2 is out of range");
}

}  // namespace
}  // namespace icae::server
