// icae serve through a real HTTP client: a server started in-process on a free loopback port over
// the golden tiny-llama (ids only: it has no tokenizer). Compress -> answer equals a direct
// Session, repeats are cache hits, slot ids survive a restart with a slot folder, bad requests get
// their 4xx, the API key is enforced, a stream carries the same tokens.
#include <httplib.h>

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "icae/api.h"
#include "icae/core/adapter_file.h"
#include "icae/core/icae.h"
#include "icae/io/model_loader.h"
#include "icae/io/tensor_io.h"
#include "icae/server/server.h"
#include "golden_fixture.h"
#include "test_paths.h"
#include "tiny_text_model.h"

using namespace icae;
using nlohmann::json;

namespace {

using test::to_ids;

LoadedModel tiny_llama() {
  test::GoldenSession g = test::load_golden_session("tiny-llama");
  LoadedModel m;
  m.text = g.text;
  m.adapter = g.adapter;
  return m;
}

// The events of a server-sent-event body: each "data: {...}" line parsed; `done` tells whether
// the stream ended with "data: [DONE]".
struct SseStream {
  std::vector<json> events;
  bool done = false;
};

SseStream parse_sse(const std::string& body) {
  SseStream out;
  std::istringstream lines(body);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      out.done = true;
      break;
    }
    out.events.push_back(json::parse(data));
  }
  return out;
}

std::vector<int64_t> golden_context() {
  return to_ids(load_safetensors(test::golden_dir("tiny-llama") + "/golden.safetensors").at("context_ids"));
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/icae-serve-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path + "'").c_str()); }  // not std::filesystem::remove_all
};

// A server on a free loopback port and a client for it.
struct Running {
  std::unique_ptr<Server> server;
  std::unique_ptr<httplib::Client> client;
  explicit Running(ServerOptions o = {}, LoadedModel m = tiny_llama()) {
    o.host = "127.0.0.1";
    o.port = 0;
    server = std::make_unique<Server>(std::move(m), o);
    const int port = server->start();
    client = std::make_unique<httplib::Client>("127.0.0.1", port);
    client->set_read_timeout(120, 0);
  }
};

struct Reply {
  int status = 0;
  std::string body;
  json j;
};

Reply post(httplib::Client& c, const std::string& path, const std::string& body, const httplib::Headers& h = {}) {
  auto r = c.Post(path.c_str(), h, body, "application/json");
  Reply out;
  if (!r) {
    ADD_FAILURE() << path << ": no response (" << httplib::to_string(r.error()) << ")";
    return out;
  }
  out.status = r->status;
  out.body = r->body;
  out.j = json::parse(r->body, nullptr, /*allow_exceptions=*/false);
  return out;
}
Reply post(httplib::Client& c, const std::string& path, const json& body, const httplib::Headers& h = {}) {
  return post(c, path, body.dump(), h);
}

// A client on a plain socket: sends one request and reads the reply as it comes, or closes the
// connection mid-request (what httplib's client cannot do on purpose).
struct RawClient {
  int fd = -1;
  std::string got;
  RawClient(int port, const std::string& path, const json& body) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ADD_FAILURE() << "connect failed";
    const std::string b = body.dump();
    const std::string req = "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                            "Content-Length: " + std::to_string(b.size()) + "\r\n\r\n" + b;
    if (::send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) ADD_FAILURE() << "send failed";
  }
  ~RawClient() { close(); }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
  // Reads until `what` has arrived (true) or the connection ends or the time is up (false).
  bool read_until(const std::string& what, double seconds = 60) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (got.find(what) == std::string::npos) {
      if (std::chrono::steady_clock::now() > end) return false;
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return got.find(what) != std::string::npos;
      got.append(buf, static_cast<size_t>(n));
    }
    return true;
  }
  // The events of a server-sent stream read so far, parsed.
  std::vector<json> events() const { return parse_sse(got).events; }
};

// A value from GET /metrics (the line that starts with `name `), or -1.
double metric(httplib::Client& c, const std::string& name) {
  auto r = c.Get("/metrics");
  if (!r) return -1;
  std::istringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

// Polls until cond() holds, for up to `seconds`.
template <typename F>
bool eventually(F cond, double seconds = 30) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace

TEST(Serve, CompressThenAnswerEqualsADirectSessionAndRepeatsAreCacheHits) {
  const std::vector<int64_t> context = golden_context();
  const std::vector<int64_t> prompt(context.begin(), context.begin() + 5);
  Running s;
  Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.j.at("tokens"), context.size());
  EXPECT_FALSE(c.j.at("cached").get<bool>());
  const std::string id = c.j.at("slots_id");
  EXPECT_EQ(id.size(), 32u);

  Reply a = post(*s.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}, {"max_tokens", 12}});
  ASSERT_EQ(a.status, 200) << a.body;

  // The same through a Session, as `icae ask` does it.
  LoadedModel m = tiny_llama();
  SessionOptions so;
  so.max_new_tokens = 12;
  Session direct = new_session(m, so);
  at::NoGradGuard no_grad;
  at::Tensor slots = direct.compress(std::vector<std::vector<int64_t>>{context}).front();
  const Completion want = direct.answer(slots, prompt);
  EXPECT_EQ(a.j.at("ids").get<std::vector<int64_t>>(), want.ids);
  EXPECT_EQ(a.j.at("tokens"), want.ids.size());
  EXPECT_EQ(c.j.at("slots"), slots.size(0));
  EXPECT_EQ(c.j.at("segments"), slots.size(0) / m.adapter->icae->config().mem_size);

  // The second compress of the same context is a hit; so is an answer given the ids again
  // (with the answer and the reconstruction by slots_id: 4 hits in all).
  Reply c2 = post(*s.client, "/v1/compress", json{{"ids", context}});
  ASSERT_EQ(c2.status, 200) << c2.body;
  EXPECT_TRUE(c2.j.at("cached").get<bool>());
  EXPECT_EQ(c2.j.at("slots_id"), id);
  Reply a2 = post(*s.client, "/v1/answer", json{{"ids", context}, {"prompt_ids", prompt}, {"max_tokens", 12}});
  ASSERT_EQ(a2.status, 200) << a2.body;
  EXPECT_TRUE(a2.j.at("cached").get<bool>());
  EXPECT_EQ(a2.j.at("ids"), a.j.at("ids"));

  // Reconstruction from the slots gives the golden AE ids.
  const auto golden = load_safetensors(test::golden_dir("tiny-llama") + "/golden.safetensors");
  const auto ae = to_ids(golden.at("ae_greedy_ids"));
  Reply r = post(*s.client, "/v1/reconstruct", json{{"slots_id", id}, {"max_tokens", ae.size()}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j.at("ids").get<std::vector<int64_t>>(), ae);

  // Generation without slots equals the session's.
  Reply g = post(*s.client, "/v1/generate", json{{"prompt_ids", prompt}, {"max_tokens", 8}});
  ASSERT_EQ(g.status, 200) << g.body;
  so.max_new_tokens = 8;
  Session plain = new_session(m, so);
  EXPECT_EQ(g.j.at("ids").get<std::vector<int64_t>>(), plain.generate(prompt).ids);

  auto metrics = s.client->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->body.find("icae_slot_store_hits_total 4"), std::string::npos) << metrics->body;
  EXPECT_NE(metrics->body.find("icae_requests_total{route=\"/v1/compress\",status=\"200\"} 2"), std::string::npos);
  EXPECT_NE(metrics->body.find("icae_request_seconds_bucket{route=\"/v1/answer\",le=\"+Inf\"} 2"), std::string::npos);
  EXPECT_NE(metrics->body.find("icae_queue_depth 0"), std::string::npos);
  // The second answer about the same slots reused the first one's slot prefix (the
  // reconstruction's prefix, [slots] alone, may be kept too: 3 decodes with slots in all).
  EXPECT_GE(metric(*s.client, "icae_slot_prefix_hits_total"), 1);
  EXPECT_EQ(metric(*s.client, "icae_slot_prefix_hits_total") + metric(*s.client, "icae_slot_prefix_misses_total"), 3);
}

TEST(Serve, SlotIdsSurviveARestartWithASlotFolder) {
  const std::vector<int64_t> context = golden_context();
  const std::vector<int64_t> prompt(context.begin() + 10, context.begin() + 14);
  TempDir dir;
  ServerOptions o;
  o.slot_dir = dir.path;
  std::string id;
  json first;
  {
    Running s(o);
    Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
    ASSERT_EQ(c.status, 200) << c.body;
    id = c.j.at("slots_id");
    Reply a = post(*s.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}, {"max_tokens", 10}});
    ASSERT_EQ(a.status, 200) << a.body;
    first = a.j.at("ids");
  }
  Running again(o);
  Reply a = post(*again.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}, {"max_tokens", 10}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.j.at("ids"), first);
  // Without the folder the id means nothing to a new server.
  Running memory_only;
  Reply lost = post(*memory_only.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}});
  EXPECT_EQ(lost.status, 404) << lost.body;
}

// The tiny golden adapter read as a key/value-slot ICAE (tests/model/kv_slots_test.cpp).
LoadedModel tiny_llama_kv() {
  LoadedModel m = tiny_llama();
  auto kv = std::make_shared<LoadedAdapter>();
  kv->icae = test::as_key_value(*m.adapter->icae);
  m.adapter = kv;
  return m;
}

TEST(Serve, KeyValueSlotsServeEveryRouteAsADirectSessionAndSurviveARestart) {
  const std::vector<int64_t> context = golden_context();
  const std::vector<int64_t> prompt(context.begin() + 10, context.begin() + 14);
  TempDir dir;
  ServerOptions o;
  o.slot_dir = dir.path;
  LoadedModel m = tiny_llama_kv();
  SessionOptions so;
  so.max_new_tokens = 10;
  Session direct = new_session(m, so);
  at::NoGradGuard no_grad;
  const at::Tensor slots = direct.compress(std::vector<std::vector<int64_t>>{context}).front();
  ASSERT_EQ(slots.dim(), 5);
  const Completion want = direct.answer(slots, prompt);
  const Completion rec = direct.reconstruct(slots);
  std::string id;
  {
    Running s(o, m);
    Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
    ASSERT_EQ(c.status, 200) << c.body;
    id = c.j.at("slots_id");
    EXPECT_EQ(c.j.at("slots"), slots.size(0));
    Reply a = post(*s.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}, {"max_tokens", 10}});
    ASSERT_EQ(a.status, 200) << a.body;
    EXPECT_EQ(a.j.at("ids").get<std::vector<int64_t>>(), want.ids);
    Reply r = post(*s.client, "/v1/reconstruct", json{{"slots_id", id}, {"max_tokens", 10}});
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.j.at("ids").get<std::vector<int64_t>>(), rec.ids);
  }
  // From the slot folder (a key/value slot file) in a new server.
  Running again(o, tiny_llama_kv());
  Reply a = post(*again.client, "/v1/answer", json{{"slots_id", id}, {"prompt_ids", prompt}, {"max_tokens", 10}});
  ASSERT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(a.j.at("ids").get<std::vector<int64_t>>(), want.ids);
}

TEST(Serve, EachBadRequestGetsItsStatusAndAnErrorNamingTheProblem) {
  ServerOptions o;
  o.max_body_bytes = 4096;
  o.max_context_tokens = 100;
  o.max_new_tokens = 64;
  Running s(o);
  const std::string unknown(32, 'a');
  struct Case {
    std::string path, body;
    int status;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"/v1/compress", "{\"ids\": [1, 2", 400, "malformed JSON"},
      {"/v1/compress", "[1, 2]", 400, "JSON object"},
      {"/v1/compress", R"({"ids": "1,2"})", 400, "'ids' must be an array"},
      {"/v1/compress", R"({"ids": [1, -2]})", 400, "'ids'[1] = -2"},
      {"/v1/compress", R"({"ids": [1, 2.5]})", 400, "not a token id"},
      {"/v1/compress", R"({"ids": [1, 99999999]})", 400, "not a token id"},
      {"/v1/compress", R"({"ids": []})", 400, "'ids' is empty"},
      {"/v1/compress", R"({"ids": [1], "text": "x"})", 400, "exactly one"},
      {"/v1/compress", R"({"idz": [1]})", 400, "unknown field 'idz'"},
      {"/v1/compress", R"({"text": "hello"})", 400, "no tokenizer"},
      {"/v1/compress", json{{"ids", std::vector<int64_t>(101, 1)}}.dump(), 413, "limit is 100"},
      {"/v1/compress", std::string(5000, ' '), 413, "larger than the limit"},
      {"/v1/answer", json{{"slots_id", unknown}, {"prompt_ids", std::vector<int64_t>{1}}}.dump(), 404, "unknown slots_id"},
      {"/v1/answer", R"({"slots_id": "../../etc/passwd", "prompt_ids": [1]})", 404, "unknown slots_id"},
      {"/v1/answer", R"({"slots_id": 7, "prompt_ids": [1]})", 400, "'slots_id' must be a string"},
      {"/v1/answer", R"({"ids": [1, 2]})", 400, "\"prompt\" or \"prompt_ids\""},
      {"/v1/answer", R"({"prompt_ids": [1]})", 400, "\"slots_id\", \"text\" or \"ids\""},
      {"/v1/answer", R"({"ids": [1, 2], "prompt_ids": [1], "max_tokens": "ten"})", 400, "'max_tokens' must be an integer"},
      {"/v1/answer", R"({"ids": [1, 2], "prompt_ids": [1], "max_tokens": 65})", 400, "out of range"},
      {"/v1/answer", R"({"ids": [1, 2], "prompt_ids": [1], "max_tokens": 18446744073709551615})", 400, "out of range"},
      {"/v1/answer", R"({"ids": [1, 2], "prompt_ids": [1], "temperature": -1})", 400, "'temperature'"},
      {"/v1/answer", R"({"ids": [1, 2], "prompt": "what?"})", 400, "no tokenizer"},
      {"/v1/generate", R"({"prompt_ids": [1], "stream": "yes"})", 400, "'stream' must be true or false"},
      {"/v1/generate", R"({"prompt_ids": [1], "seed": -3})", 400, "'seed'"},
      {"/v1/nothing", "{}", 404, "no route POST /v1/nothing"},
  };
  for (const Case& c : cases) {
    Reply r = post(*s.client, c.path, c.body);
    EXPECT_EQ(r.status, c.status) << c.path << " " << c.body.substr(0, 80) << " -> " << r.body;
    ASSERT_TRUE(r.j.is_object() && r.j.contains("error")) << c.path << " " << c.body.substr(0, 80) << " -> " << r.body;
    EXPECT_NE(r.j.at("error").get<std::string>().find(c.says), std::string::npos)
        << c.path << " " << c.body.substr(0, 80) << " -> " << r.body;
  }
  // Still up, and nothing was compressed by the failed requests.
  auto h = s.client->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = s.client->Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("icae_tokens_total{kind=\"context\"} 0"), std::string::npos) << m->body;
}

TEST(Serve, TheApiKeyIsEnforced) {
  ServerOptions o;
  o.api_key = "s3cret";
  Running s(o);
  const json body = {{"ids", std::vector<int64_t>{1, 2, 3}}};
  EXPECT_EQ(post(*s.client, "/v1/compress", body).status, 401);
  Reply wrong = post(*s.client, "/v1/compress", body, {{"Authorization", "Bearer s3cre"}});
  EXPECT_EQ(wrong.status, 401);
  EXPECT_NE(wrong.j.value("error", "").find("wrong API key"), std::string::npos) << wrong.body;
  EXPECT_EQ(post(*s.client, "/v1/compress", body, {{"Authorization", "Bearer s3cret"}}).status, 200);
  auto metrics = s.client->Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 401);
  auto health = s.client->Get("/healthz");  // for load balancers: open
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
}

TEST(Serve, AStreamDeliversTheSameTokens) {
  const std::vector<int64_t> context = golden_context();
  const std::vector<int64_t> prompt(context.begin() + 20, context.begin() + 23);
  Running s;
  const json req = {{"ids", context}, {"prompt_ids", prompt}, {"max_tokens", 10}};
  Reply plain = post(*s.client, "/v1/answer", req);
  ASSERT_EQ(plain.status, 200) << plain.body;
  json streamed_req = req;
  streamed_req["stream"] = true;
  auto r = s.client->Post("/v1/answer", streamed_req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::vector<int64_t> ids;
  std::string text;
  json final;
  const SseStream sse = parse_sse(r->body);
  for (const json& e : sse.events) {
    if (e.contains("done")) {
      final = e;
    } else {
      ids.push_back(e.at("id"));
      text += e.at("text").get<std::string>();
    }
  }
  EXPECT_TRUE(sse.done);
  EXPECT_EQ(ids, plain.j.at("ids").get<std::vector<int64_t>>());
  EXPECT_EQ(final.at("ids"), plain.j.at("ids"));
  EXPECT_EQ(text, plain.j.at("text").get<std::string>());
}

// Text in, text out: a tiny random llama with Llama 2's tokenizer and a fresh adapter for it.
TEST(Serve, TextRequestsEqualADirectSessionAndStreamTheSameText) {
  const std::string dir = test::make_tiny_text_model("icae_serve_text_" + std::to_string(::getpid()));
  const std::string adapter = dir + "/adapter.safetensors";
  {
    auto base = std::make_shared<Transformer>(load_transformer(dir, {}));
    IcaeConfig ic;
    ic.mem_size = 4;
    ic.lora.r = 4;
    AdapterInfo info;
    info.base_fingerprint = base->fingerprint();
    save_adapter(adapter, Icae(base, ic, 7), info);
  }
  LoadedModel m = load_model(dir, adapter);
  ASSERT_NE(m.text->tokenizer, nullptr);
  Running s({}, m);
  const std::string doc = "The in-context autoencoder reads a long document once and keeps a few memory slots.";
  Reply c = post(*s.client, "/v1/compress", json{{"text", doc}});
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_TRUE(post(*s.client, "/v1/compress", json{{"text", doc}}).j.at("cached").get<bool>());
  const json req = {{"slots_id", c.j.at("slots_id")}, {"prompt", "What does it keep?"}, {"max_tokens", 16}};
  Reply a = post(*s.client, "/v1/answer", req);
  ASSERT_EQ(a.status, 200) << a.body;

  SessionOptions so;
  so.max_new_tokens = 16;
  Session direct = new_session(m, so);
  at::NoGradGuard no_grad;
  const Completion want = direct.answer(direct.compress(doc), "What does it keep?");
  EXPECT_EQ(a.j.at("ids").get<std::vector<int64_t>>(), want.ids);
  EXPECT_EQ(a.j.at("text").get<std::string>(), want.text);
  EXPECT_FALSE(want.text.empty());

  json streamed = req;
  streamed["stream"] = true;
  auto r = s.client->Post("/v1/answer", streamed.dump(), "application/json");
  ASSERT_TRUE(r);
  std::string text;
  for (const json& e : parse_sse(r->body).events)
    if (!e.contains("done")) text += e.at("text").get<std::string>();
  EXPECT_EQ(text, want.text);

  // The OpenAI shape: a message with "slots_id" stands in for the context, the last user
  // message is the question.
  const json chat = {{"model", "tiny"},
                     {"max_tokens", 16},
                     {"messages", json::array({json{{"role", "user"}, {"slots_id", c.j.at("slots_id")}},
                                               json{{"role", "user"}, {"content", "What does it keep?"}}})}};
  Reply oa = post(*s.client, "/v1/chat/completions", chat);
  ASSERT_EQ(oa.status, 200) << oa.body;
  EXPECT_EQ(oa.j.at("object"), "chat.completion");
  EXPECT_EQ(oa.j.at("choices").at(0).at("message").at("content").get<std::string>(), want.text);
  EXPECT_EQ(oa.j.at("usage").at("completion_tokens"), want.ids.size());
  json chat_stream = chat;
  chat_stream["stream"] = true;
  auto cs = s.client->Post("/v1/chat/completions", chat_stream.dump(), "application/json");
  ASSERT_TRUE(cs);
  std::string deltas;
  for (const json& e : parse_sse(cs->body).events) {
    ASSERT_EQ(e.at("object"), "chat.completion.chunk") << e.dump();
    deltas += e.at("choices").at(0).at("delta").value("content", "");
  }
  EXPECT_EQ(deltas, want.text);
  Reply bad = post(*s.client, "/v1/chat/completions",
                   json{{"messages", json::array({json{{"role", "user"}, {"slots_id", c.j.at("slots_id")}}})}});
  EXPECT_EQ(bad.status, 400) << bad.body;
}

// Decodes that arrive together share the running batch (worker.h); each row still equals its
// answer alone.
TEST(Serve, ConcurrentAnswersShareABatchAndEqualTheirAnswersAlone) {
  const std::vector<int64_t> context = golden_context();
  ServerOptions o;
  o.max_batch = 8;
  Running s(o);
  Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
  ASSERT_EQ(c.status, 200) << c.body;
  const int n = 8;
  std::vector<json> requests, alone;
  for (int i = 0; i < n; ++i) {
    // Prompts and budgets of different lengths: rows of different lengths that end at different steps.
    const std::vector<int64_t> prompt(context.begin() + i, context.begin() + 2 + 2 * i);
    requests.push_back({{"slots_id", c.j.at("slots_id")}, {"prompt_ids", prompt}, {"max_tokens", 6 + i}});
    Reply a = post(*s.client, "/v1/answer", requests.back());
    ASSERT_EQ(a.status, 200) << a.body;
    alone.push_back(a.j.at("ids"));
  }
  // The worker takes whatever is queued when it looks: whether rows meet is up to timing, so a
  // few rounds, each of which must give every client its own answer.
  int64_t widest = 0;
  for (int round = 0; round < 5 && widest < 2; ++round) {
    std::vector<Reply> replies(n);
    std::vector<std::thread> clients;
    for (int i = 0; i < n; ++i)
      clients.emplace_back([&, i] {
        httplib::Client cli("127.0.0.1", s.server->port());
        cli.set_read_timeout(120, 0);
        replies[i] = post(cli, "/v1/answer", requests[i]);
      });
    for (auto& t : clients) t.join();
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(replies[i].status, 200) << replies[i].body;
      EXPECT_EQ(replies[i].j.at("ids"), alone[i]) << "client " << i;
      widest = std::max<int64_t>(widest, replies[i].j.at("timings").at("batch_rows").get<int64_t>());
    }
  }
  EXPECT_GE(widest, 2) << "no two of 8 concurrent requests were ever decoded together";
}

// The queue in front of the model is bounded; with no room a request gets 503 at once (a queue of
// 0 makes that deterministic), and the server answers the next one as before.
TEST(Serve, AFullQueueIsRefusedWith503) {
  ServerOptions o;
  o.max_queue = 0;
  Running s(o);
  Reply r = post(*s.client, "/v1/compress", json{{"ids", std::vector<int64_t>{1, 2, 3}}});
  EXPECT_EQ(r.status, 503) << r.body;
  EXPECT_NE(r.j.value("error", "").find("the server is busy"), std::string::npos) << r.body;
  auto h = s.client->Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

// A decode that outlives the per-request limit ends with what it has, its last token delivered.
TEST(Serve, ADecodeOverTheTimeLimitEndsWithStopReasonTimeout) {
  ServerOptions o;
  o.request_timeout_s = 0;  // over as soon as the first token is out
  Running s(o);
  const std::vector<int64_t> context = golden_context();
  Reply r = post(*s.client, "/v1/answer",
                 json{{"ids", context}, {"prompt_ids", std::vector<int64_t>{3, 4}}, {"max_tokens", 50}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.j.at("stop_reason"), "timeout");
  EXPECT_EQ(r.j.at("tokens"), 1);
}

// Continuous batching: a request that arrives while another decodes joins its batch at the next
// step, gets exactly the tokens it gets alone, and leaves at its own max_tokens while the other
// goes on; the long one also equals itself alone.
TEST(Serve, ARequestThatJoinsARunningDecodeGetsItsTokensAloneAndLeavesFirst) {
  const std::vector<int64_t> context = golden_context();
  ServerOptions o;
  o.max_new_tokens = 4000;
  Running s(o);
  Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
  ASSERT_EQ(c.status, 200) << c.body;
  const json long_req = {{"slots_id", c.j.at("slots_id")},
                         {"prompt_ids", std::vector<int64_t>(context.begin(), context.begin() + 3)},
                         {"max_tokens", 4000},
                         {"stream", true}};
  const json short_req = {{"slots_id", c.j.at("slots_id")},
                          {"prompt_ids", std::vector<int64_t>(context.begin() + 5, context.begin() + 12)},
                          {"max_tokens", 9}};
  Reply short_alone = post(*s.client, "/v1/answer", short_req);
  ASSERT_EQ(short_alone.status, 200) << short_alone.body;
  ASSERT_EQ(short_alone.j.at("tokens"), 9);
  EXPECT_EQ(short_alone.j.at("timings").at("batch_rows"), 1);
  std::vector<int64_t> long_alone;
  {
    RawClient a(s.server->port(), "/v1/answer", long_req);
    ASSERT_TRUE(a.read_until("data: [DONE]", 300));
    for (const json& e : a.events())
      if (!e.contains("done")) long_alone.push_back(e.at("id"));
  }
  ASSERT_EQ(long_alone.size(), 4000u);

  // Whether the short request finds the long one still decoding is up to timing (4000 tiny
  // tokens take a fraction of a second): a few rounds, each of which must give both their tokens.
  bool joined = false;
  for (int round = 0; round < 5 && !joined; ++round) {
    RawClient a(s.server->port(), "/v1/answer", long_req);
    ASSERT_TRUE(a.read_until("\"id\":", 60)) << "the long decode did not start";
    Reply b = post(*s.client, "/v1/answer", short_req);
    ASSERT_EQ(b.status, 200) << b.body;
    EXPECT_EQ(b.j.at("ids"), short_alone.j.at("ids")) << "round " << round;
    // It shared the batch with the long one, which started first and runs far longer: it joined
    // mid-decode and left at its own budget.
    const bool shared = b.j.at("timings").at("batch_rows").get<int64_t>() == 2;
    ASSERT_TRUE(a.read_until("data: [DONE]", 300));
    std::vector<int64_t> ids;
    json final;
    for (const json& e : a.events()) {
      if (e.contains("done")) final = e;
      else ids.push_back(e.at("id"));
    }
    EXPECT_EQ(ids, long_alone) << "round " << round;
    EXPECT_EQ(final.value("stop_reason", ""), "max_new_tokens");
    joined = shared && final.at("timings").at("batch_rows") == 2 &&
             final.at("timings").at("decode_ms").get<double>() > b.j.at("timings").at("decode_ms").get<double>();
  }
  EXPECT_TRUE(joined) << "the short request never joined the long one's batch";
  EXPECT_GT(metric(*s.client, "icae_decode_steps_total"), 0);
}

// A client that closes its connection cancels its decode: a queued one never starts, a running
// one ends at the next step (status 499 in the metrics); the server goes on serving.
TEST(Serve, AClientThatGoesAwayCancelsItsQueuedOrRunningDecode) {
  const std::vector<int64_t> context = golden_context();
  ServerOptions o;
  o.max_batch = 1;  // the second request waits in the queue
  o.max_new_tokens = 1000000;
  Running s(o);
  Reply c = post(*s.client, "/v1/compress", json{{"ids", context}});
  ASSERT_EQ(c.status, 200) << c.body;
  // Far more tokens than the test lasts: only a cancel ends it.
  const json forever = {{"slots_id", c.j.at("slots_id")}, {"prompt_ids", std::vector<int64_t>{3, 4}},
                        {"max_tokens", 1000000}};
  RawClient running(s.server->port(), "/v1/answer", forever);
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_decode_rows") == 1; })) << "it never started";
  RawClient queued(s.server->port(), "/v1/answer", forever);
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_queue_depth") == 1; })) << "it never queued";

  queued.close();
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_requests_cancelled_total") == 1; }))
      << "the queued request was not dropped";
  EXPECT_EQ(metric(*s.client, "icae_queue_depth"), 0);
  EXPECT_EQ(metric(*s.client, "icae_decode_rows"), 1) << "the running one goes on";

  running.close();
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_requests_cancelled_total") == 2; }))
      << "the running request was not ended";
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_decode_rows") == 0; }));
  ASSERT_TRUE(eventually([&] { return metric(*s.client, "icae_requests_total{route=\"/v1/answer\",status=\"499\"}") == 2; }));
  Reply after = post(*s.client, "/v1/answer", json{{"slots_id", c.j.at("slots_id")}, {"prompt_ids", std::vector<int64_t>{3, 4}},
                                                   {"max_tokens", 5}});
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.j.at("tokens"), 5);
}

// `icae serve` on SIGTERM: the request in flight is answered to its end, then the process exits 0.
TEST(Serve, SigtermFinishesTheRequestInFlightThenExitsZero) {
  const std::string dir = test::make_tiny_text_model("icae_serve_sigterm_" + std::to_string(::getpid()));
  const std::string adapter = dir + "/adapter.safetensors";
  {
    auto base = std::make_shared<Transformer>(load_transformer(dir, {}));
    IcaeConfig ic;
    ic.mem_size = 4;
    ic.lora.r = 4;
    AdapterInfo info;
    info.base_fingerprint = base->fingerprint();
    save_adapter(adapter, Icae(base, ic, 7), info);
  }
  int err[2];
  ASSERT_EQ(::pipe(err), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(err[1], 2);
    ::close(err[0]);
    ::execl(ICAE_CLI_PATH, ICAE_CLI_PATH, "serve", "--model", dir.c_str(), "--adapter", adapter.c_str(), "--port", "0",
            "--threads", "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(err[1]);
  // "icae serve: listening on http://127.0.0.1:PORT; ..." on stderr.
  std::string log;
  int port = 0;
  for (int i = 0; i < 600 && port == 0; ++i) {
    pollfd p{err[0], POLLIN, 0};
    if (::poll(&p, 1, 100) > 0) {
      char buf[512];
      const ssize_t n = ::read(err[0], buf, sizeof buf);
      if (n <= 0) break;
      log.append(buf, static_cast<size_t>(n));
      const size_t at = log.find("127.0.0.1:");
      if (at != std::string::npos && log.find(';', at) != std::string::npos) port = std::stoi(log.substr(at + 10));
    }
  }
  ASSERT_GT(port, 0) << log;
  const json req = {{"prompt_ids", std::vector<int64_t>{1, 450, 297, 29899}}, {"max_tokens", 400}, {"stream", true}};
  std::vector<json> alone;
  {
    RawClient a(port, "/v1/generate", req);
    ASSERT_TRUE(a.read_until("data: [DONE]", 120));
    alone = a.events();
  }
  ASSERT_FALSE(alone.empty());
  const json want = alone.back();
  ASSERT_TRUE(want.contains("done"));
  ASSERT_GE(want.at("tokens").get<int64_t>(), 20) << "too short a decode to be caught in flight";

  RawClient a(port, "/v1/generate", req);
  ASSERT_TRUE(a.read_until("\"id\":", 60)) << "the decode did not start";
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  ASSERT_TRUE(a.read_until("data: [DONE]", 120)) << a.got;
  const std::vector<json> got = a.events();
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().at("ids"), want.at("ids"));
  EXPECT_EQ(got.back().at("stop_reason"), want.at("stop_reason"));
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  char buf[4096];
  for (ssize_t n; (n = ::read(err[0], buf, sizeof buf)) > 0;) log.append(buf, static_cast<size_t>(n));
  ::close(err[0]);
  EXPECT_NE(log.find("SIGTERM"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
}
