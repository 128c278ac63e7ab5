// `icae serve`: compress once, ask many, over HTTP. A JSON API on cpp-httplib over one loaded
// (base model, ICAE adapter) pair and a slot store:
//   POST /v1/compress     {"text"} | {"ids"}                   -> slots_id, tokens, slots, segments, cached
//   POST /v1/answer       {"slots_id" | "text" | "ids", "prompt" | "prompt_ids", "max_tokens",
//                          "temperature", "top_p", "seed", "stream"} -> text, ids, tokens, timings
//   POST /v1/reconstruct  {"slots_id" | "text" | "ids", ...}    -> the context back
//   POST /v1/generate     {"prompt" | "prompt_ids", ...}        -> the base model alone
//   POST /v1/chat/completions  OpenAI's shape; a message may carry "slots_id" for its context
//   GET  /healthz, GET /metrics (Prometheus text)
// With "stream": true the decoders answer with server-sent events, one per token, then a final
// event with the whole result. Bad requests get a 4xx with {"error": "..."} naming the problem.
//
// The model is not thread-safe: HTTP threads parse and validate, then hand the model work to one
// worker thread through a bounded queue (full: 503). Decodes are continuously batched: a request
// joins the running decode batch at the next step and leaves it when it is done, up to max_batch
// rows (worker.h). A decode whose client closes its connection is dropped or ended (499).
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "icae/api.h"

namespace icae {

struct ServerOptions {
  std::string host = "127.0.0.1";     // loopback unless asked
  int port = 8080;                    // 0: any free port (start() says which)
  std::string api_key;                // non-empty: every route but /healthz wants "Authorization: Bearer KEY"
  std::string slot_dir;               // the slot store's disk tier ("" : memory only)
  int64_t slot_cache_bytes = int64_t{512} << 20;
  int max_batch = 8;                  // rows in the running decode batch (more wait in the queue)
  int http_threads = 32;              // connections served at once (a keep-alive client holds one)
  int keep_alive_requests = 1000;     // requests on one keep-alive connection before the server closes it
  int64_t max_queue = 64;             // requests waiting for the model; more get 503
  int64_t max_body_bytes = 8 << 20;   // bigger bodies get 413
  int64_t max_context_tokens = 32768; // per context to compress
  int64_t max_prompt_tokens = 8192;
  int64_t max_new_tokens = 1024;      // the most a request may ask for
  int64_t default_new_tokens = 256;   // when it does not ask
  int read_timeout_s = 30;            // a client that stops sending mid-request
  double request_timeout_s = 300;     // a decode running longer ends (stop_reason "timeout")
};

class Server {
 public:
  // model: loaded with an adapter (load_model(path, adapter)); shared, only read.
  Server(LoadedModel model, ServerOptions options = {});
  ~Server();  // stops
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and serves on background threads; returns the bound port. Throws icae::Error(Io) when
  // the address cannot be bound.
  int start();
  // Stops accepting, lets requests in flight finish, then stops the worker. Idempotent.
  void stop();
  int port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace icae
