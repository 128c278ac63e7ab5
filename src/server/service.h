// The ICAE side of `icae serve`, apart from HTTP: requests (parsed JSON) in, responses (JSON) out.
// It resolves contexts to slots through the slot store, hands model work to the worker, and
// counts what it did. server.cpp maps routes onto it; tests could drive it without sockets.
#pragma once
#include <ATen/core/Tensor.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "icae/api.h"
#include "icae/server/server.h"
#include "icae/server/slot_store.h"
#include "metrics.h"
#include "request.h"
#include "worker.h"

namespace icae::server {

// A decode request, checked and with its slots in hand, ready to run.
struct DecodeRequest {
  std::string kind;                 // answer | reconstruct | generate
  at::Tensor slots;                 // undefined for generate
  std::string slots_id;
  bool cached = false;              // the slots came from the store
  std::optional<std::string> prompt_text;
  std::vector<int64_t> prompt_ids;
  int64_t max_tokens = 0;
  SamplingOptions sampling;
  bool stream = false;
  double compress_ms = 0;           // spent compressing the context for this request
  double queue_ms = 0;
  std::string model_name;           // chat: echoed as "model"
  // Set by the HTTP layer: true once the client has closed its connection (the decode is then
  // dropped from the queue or ended at the next step). May be empty.
  std::function<bool()> client_gone;
};

// Called per generated token: its id and the text it completes (maybe empty: a character split
// over tokens, a stop id, a model without tokenizer). Return false to end the decode.
using OnPiece = std::function<bool(int64_t id, const std::string& piece)>;

class Service {
 public:
  Service(LoadedModel model, const ServerOptions& options);

  nlohmann::json compress(const nlohmann::json& body);
  DecodeRequest parse_answer(const nlohmann::json& body);
  DecodeRequest parse_reconstruct(const nlohmann::json& body);
  DecodeRequest parse_generate(const nlohmann::json& body);
  nlohmann::json run(DecodeRequest& request, const OnPiece& on_piece = {});
  // POST /v1/chat/completions in OpenAI's shape. A message may carry "slots_id" (our extension)
  // in place of its content: then the last user message is answered from those slots with the
  // adapter's template; without one the base model continues the conversation in its own chat
  // template.
  DecodeRequest parse_chat(const nlohmann::json& body);
  nlohmann::json chat_response(const DecodeRequest& request, const nlohmann::json& result) const;
  std::string chat_id() const { return "chatcmpl-" + std::to_string(++chat_counter_); }

  nlohmann::json health() const;
  std::string metrics_text(int64_t in_flight) const;
  Metrics& metrics() { return metrics_; }
  void stop() { worker_.stop(); }

 private:
  struct Compressed {
    std::string slots_id;
    at::Tensor slots;
    int64_t tokens = 0;
    bool cached = false;
    double compress_ms = 0;
  };
  Compressed compress_ids(const std::vector<int64_t>& ids);
  std::vector<int64_t> tokenize(const std::string& text, const char* field, int64_t max_len);
  // What request.cpp's parsers check against.
  RequestLimits limits() const;
  // The context's slots: looked up (slots_id), or the text / ids compressed.
  void resolve_context(const ContextField& context, DecodeRequest& r);
  // A parsed body with its slots in hand.
  DecodeRequest decode_request(const DecodeBody& body);

  LoadedModel model_;
  const ServerOptions options_;
  const int64_t vocab_;
  std::string base_fingerprint_, adapter_fingerprint_;  // for /healthz, computed once
  SlotStore store_;
  Metrics metrics_;
  Worker worker_;
  mutable std::atomic<int64_t> chat_counter_{0};
};

}  // namespace icae::server
