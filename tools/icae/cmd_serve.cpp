// icae serve: the HTTP JSON API (compress once, ask many) over one model + adapter. The server
// itself is src/server/; this file is options, startup and the signal that ends it.
#include <pthread.h>
#include <signal.h>

#include <iostream>
#include <memory>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/api.h"
#include "icae/server/server.h"
#include "icae/util/error.h"

namespace {

struct ServeArgs : icae::cli::ModelOptions {  // --model ... --dense-decode: as every command
  int64_t slot_cache_mb = 512, max_body_mb = 8;
  icae::ServerOptions server;
};

void run_serve(ServeArgs& a) {
  // SIGINT/SIGTERM are taken by sigwait() below, not by a handler: block them now, before any
  // thread (libtorch's, cpp-httplib's, the worker) exists, so every thread inherits the mask and
  // the signal reaches only the waiting main thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  icae::LoadedModel model = icae::load_model(a.model, a.adapter, icae::cli::open_options(a));

  a.server.slot_cache_bytes = a.slot_cache_mb << 20;
  a.server.max_body_bytes = a.max_body_mb << 20;
  const bool loopback = a.server.host == "127.0.0.1" || a.server.host == "localhost" || a.server.host == "::1";
  if (!loopback && a.server.api_key.empty())
    std::cerr << "warning: listening on " << a.server.host << " without --api-key: anyone who can reach it can use it\n";
  icae::Server server(std::move(model), a.server);
  const int port = server.start();
  std::cerr << "icae serve: listening on http://" << a.server.host << ":" << port
            << (a.server.slot_dir.empty() ? "" : " (slots in " + a.server.slot_dir + ")") << "; Ctrl-C stops\n";
  int sig = 0;
  sigwait(&stop_signals, &sig);
  std::cerr << "icae serve: " << (sig == SIGTERM ? "SIGTERM" : "SIGINT") << ", finishing requests in flight\n";
  server.stop();
  std::cerr << "icae serve: stopped\n";
}

void setup(CLI::App& root) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* c = root.add_subcommand(
      "serve",
      "Serve the ICAE over HTTP (JSON): POST /v1/compress a context once, then /v1/answer prompts about it by\n"
      "its slots_id; also /v1/reconstruct, /v1/generate, GET /healthz and /metrics (Prometheus). See README,\n"
      "\"Serving\".");
  icae::cli::ModelOptionsUse use;
  use.adapter = icae::cli::AdapterUse::Required;
  use.tokenizer = use.lora_alpha = true;
  icae::cli::add_model_options(c, *a, use);
  icae::ServerOptions& s = a->server;
  c->add_option("--host", s.host, "Address to listen on (0.0.0.0: every interface; only when you mean it)")
      ->capture_default_str();
  c->add_option("--port", s.port, "Port (0: any free one, printed at start)")->check(CLI::Range(0, 65535))->capture_default_str();
  c->add_option("--api-key", s.api_key, "Require \"Authorization: Bearer KEY\" on every route but /healthz")
      ->envname("ICAE_API_KEY");
  c->add_option("--slot-dir", s.slot_dir, "Also keep slots as files in this folder: slots_ids survive a restart");
  c->add_option("--slot-cache-mb", a->slot_cache_mb, "Memory for slots (least recently used go first)")
      ->check(icae::cli::at_least(0))
      ->capture_default_str();
  c->add_option("--max-batch", s.max_batch, "Rows in the running decode batch: requests join it between decode steps, more wait")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  c->add_option("--max-queue", s.max_queue, "Requests that may wait for the model; more get 503")
      ->check(icae::cli::at_least(1))
      ->capture_default_str();
  c->add_option("--http-threads", s.http_threads, "Connections served at once")->check(CLI::Range(1, 1024))->capture_default_str();
  c->add_option("--keep-alive-requests", s.keep_alive_requests, "Requests on one keep-alive connection before it is closed")
      ->check(CLI::Range(1, 1000000))
      ->capture_default_str();
  c->add_option("--max-body-mb", a->max_body_mb, "Largest request body; larger get 413")
      ->check(icae::cli::at_least(1))
      ->capture_default_str();
  c->add_option("--max-context-tokens", s.max_context_tokens, "Longest context to compress")
      ->check(icae::cli::at_least(1))
      ->capture_default_str();
  c->add_option("--max-new-tokens", s.max_new_tokens, "Most tokens a request may ask for (max_tokens)")
      ->check(icae::cli::at_least(1))
      ->capture_default_str();
  c->add_option("--request-timeout", s.request_timeout_s,
                "Seconds a decode may take (queue included); then it ends with stop_reason \"timeout\"")
      ->check(icae::cli::at_least(0))
      ->capture_default_str();
  c->callback([a] { run_serve(*a); });
}

}  // namespace

ICAE_COMMAND(setup);
