// HTTP for `icae serve`: routes, authentication, limits and error bodies on cpp-httplib; the ICAE
// work is Service's (service.cpp). The only file that includes httplib.h (see CMakeLists.txt).
#include "icae/server/server.h"

#include <httplib.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>

#include <sys/socket.h>

#include "icae/util/error.h"
#include "connection.h"
#include "request.h"
#include "service.h"

namespace icae {

using server::DecodeRequest;
using server::HttpError;
using server::Service;
using nlohmann::json;

namespace {

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, {{"error", message}});
}

// The library's error kinds as HTTP statuses: the client's fault (4xx) or ours (5xx).
int status_for(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Usage:
    case ErrorKind::BadInput: return 400;
    case ErrorKind::Mismatch: return 422;
    case ErrorKind::Unsupported: return 501;
    default: return 500;
  }
}

// Compares without an early exit, so response times do not reveal how much of a key was right.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// The check a decode polls to learn that its client went away (connection.h).
std::function<bool()> client_gone(const httplib::Request& req) {
  auto watch = std::make_shared<server::ConnectionWatch>(req.local_addr, req.local_port, req.remote_addr, req.remote_port);
  return [watch] { return watch->closed(); };
}

// cpp-httplib's server with its listening socket in reach (see Server::start).
class HttpServer : public httplib::Server {
 public:
  int listening_socket() const { return svr_sock_; }
};

}  // namespace

struct Server::Impl {
  ServerOptions options;
  Service service;
  HttpServer http;
  std::thread listener;
  std::atomic<int64_t> in_flight{0};
  std::mutex lifecycle;
  int port = 0;
  bool started = false, stopped = false;

  Impl(LoadedModel model, ServerOptions o) : options(std::move(o)), service(std::move(model), options) {}

  using Body = std::function<void(const httplib::Request&, httplib::Response&)>;
  // Every route through here: errors become JSON with the right status, never an escaped
  // exception, and each request is counted and timed under its route.
  httplib::Server::Handler guarded(const std::string& route, Body body) {
    return [this, route, body](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = std::chrono::steady_clock::now();
      ++in_flight;
      try {
        body(req, res);
      } catch (const HttpError& e) {
        send_error(res, e.status(), e.what());
      } catch (const Error& e) {
        send_error(res, status_for(e.kind()), e.what());
      } catch (const std::exception& e) {
        send_error(res, 500, std::string("internal error: ") + e.what());
      }
      --in_flight;
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      service.metrics().request(route, res.status < 0 ? 200 : res.status, s);
    };
  }

  using Parse = DecodeRequest (Service::*)(const json&);
  // /v1/answer, /v1/reconstruct, /v1/generate: checked and resolved (slots in hand) before the
  // response starts, so a bad request gets its 4xx even when it asked for a stream.
  Body decode_route(Parse parse) {
    return [this, parse](const httplib::Request& req, httplib::Response& res) {
      DecodeRequest r = (service.*parse)(server::parse_object(req.body));
      r.client_gone = client_gone(req);
      if (!r.stream) {
        send_json(res, 200, service.run(r));
        return;
      }
      auto request = std::make_shared<DecodeRequest>(std::move(r));
      res.status = 200;
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider("text/event-stream", [this, request](size_t, httplib::DataSink& sink) {
        // Server-sent events: one per token, then the whole result, then [DONE]. A client that
        // goes away makes write() fail, which ends the decode at the next token.
        auto event = [&](const json& j) {
          const std::string e = "data: " + j.dump() + "\n\n";
          return sink.write(e.data(), e.size());
        };
        try {
          json final = service.run(*request, [&](int64_t id, const std::string& piece) {
            return event({{"id", id}, {"text", piece}});
          });
          final["done"] = true;
          event(final);
        } catch (const HttpError& e) {
          event({{"error", e.what()}, {"status", e.status()}});
        } catch (const std::exception& e) {
          event({{"error", e.what()}, {"status", 500}});
        }
        static const char done[] = "data: [DONE]\n\n";
        sink.write(done, sizeof done - 1);
        sink.done();
        return true;
      });
    };
  }

  // OpenAI's chat completions: the same decode, answered in their shape; a stream of
  // "chat.completion.chunk" events with the text in choices[0].delta.content.
  void chat(const httplib::Request& req, httplib::Response& res) {
    DecodeRequest r = service.parse_chat(server::parse_object(req.body));
    r.client_gone = client_gone(req);
    if (!r.stream) {
      json result = service.run(r);
      send_json(res, 200, service.chat_response(r, result));
      return;
    }
    auto request = std::make_shared<DecodeRequest>(std::move(r));
    res.status = 200;
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", [this, request](size_t, httplib::DataSink& sink) {
      const std::string id = service.chat_id();
      const int64_t created = static_cast<int64_t>(std::time(nullptr));
      auto chunk = [&](const json& delta, const json& finish) {
        const json j = {{"id", id},
                        {"object", "chat.completion.chunk"},
                        {"created", created},
                        {"model", request->model_name},
                        {"choices", json::array({json{{"index", 0}, {"delta", delta}, {"finish_reason", finish}}})}};
        const std::string e = "data: " + j.dump() + "\n\n";
        return sink.write(e.data(), e.size());
      };
      try {
        chunk({{"role", "assistant"}}, nullptr);
        json result = service.run(*request, [&](int64_t, const std::string& piece) {
          return piece.empty() || chunk({{"content", piece}}, nullptr);
        });
        chunk(json::object(), result.at("stop_reason") == "max_new_tokens" ? "length" : "stop");
      } catch (const std::exception& e) {
        const std::string err = "data: " + json{{"error", {{"message", e.what()}}}}.dump() + "\n\n";
        sink.write(err.data(), err.size());
      }
      static const char done[] = "data: [DONE]\n\n";
      sink.write(done, sizeof done - 1);
      sink.done();
      return true;
    });
  }

  void routes() {
    http.Get("/healthz", guarded("/healthz", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, service.health());
    }));
    http.Get("/metrics", guarded("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.status = 200;
      res.set_content(service.metrics_text(in_flight.load()), "text/plain; version=0.0.4");
    }));
    http.Post("/v1/compress", guarded("/v1/compress", [this](const httplib::Request& req, httplib::Response& res) {
      send_json(res, 200, service.compress(server::parse_object(req.body)));
    }));
    http.Post("/v1/answer", guarded("/v1/answer", decode_route(&Service::parse_answer)));
    http.Post("/v1/reconstruct", guarded("/v1/reconstruct", decode_route(&Service::parse_reconstruct)));
    http.Post("/v1/generate", guarded("/v1/generate", decode_route(&Service::parse_generate)));
    http.Post("/v1/chat/completions", guarded("/v1/chat/completions", [this](const httplib::Request& req,
                                                                             httplib::Response& res) {
      chat(req, res);
    }));
  }

  void limits_and_auth() {
    http.new_task_queue = [n = options.http_threads] { return new httplib::ThreadPool(static_cast<size_t>(n)); };
    http.set_payload_max_length(static_cast<size_t>(options.max_body_bytes));
    http.set_read_timeout(options.read_timeout_s, 0);
    // cpp-httplib closes a keep-alive connection after 5 requests by default: under load every
    // client then reconnects every 5 answers, into a listen backlog of 5 (see start()).
    http.set_keep_alive_max_count(static_cast<size_t>(options.keep_alive_requests));
    httplib::Server::HandlerWithResponse auth = [this](const httplib::Request& req, httplib::Response& res) {
      if (options.api_key.empty() || req.path == "/healthz") return httplib::Server::HandlerResponse::Unhandled;
      const std::string got = req.get_header_value("Authorization");
      if (same_secret(got, "Bearer " + options.api_key)) return httplib::Server::HandlerResponse::Unhandled;
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, got.empty() ? "this server wants an API key: send \"Authorization: Bearer KEY\""
                                       : "wrong API key (Authorization: Bearer KEY)");
      service.metrics().request("unauthorized", 401, 0);  // not the path: clients choose those
      return httplib::Server::HandlerResponse::Handled;
    };
    http.set_pre_routing_handler(auth);
    // Statuses cpp-httplib sets itself (no route, body too large, ...) get a JSON body too.
    httplib::Server::HandlerWithResponse errors = [this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;  // ours already
      std::string message;
      if (res.status == 404) {
        message = "no route " + req.method + " " + req.path +
                  " (routes: POST /v1/compress, /v1/answer, /v1/reconstruct, /v1/generate, /v1/chat/completions; GET /healthz, "
                  "/metrics)";
      } else if (res.status == 413) {
        message = "the request body is larger than the limit of " + std::to_string(options.max_body_bytes) + " bytes";
      } else {
        message = "HTTP " + std::to_string(res.status) + " for " + req.method + " " + req.path;
      }
      send_error(res, res.status, message);
      return httplib::Server::HandlerResponse::Handled;
    };
    http.set_error_handler(errors);
  }
};

Server::Server(LoadedModel model, ServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(model), std::move(options))) {
  impl_->limits_and_auth();
  impl_->routes();
}

Server::~Server() { stop(); }

int Server::start() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.lifecycle);
  ICAE_CHECK(!s.stopped, ErrorKind::Usage, "icae serve: a stopped server cannot start again");
  if (s.started) return s.port;
  const std::string& host = s.options.host;
  int port = s.options.port;
  if (port == 0) {
    port = s.http.bind_to_any_port(host);
  } else if (!s.http.bind_to_port(host, port)) {
    port = -1;
  }
  ICAE_CHECK(port > 0, ErrorKind::Io,
             "cannot listen on " + host + ":" + std::to_string(s.options.port) + ": " + std::strerror(errno));
  // cpp-httplib 0.11 listens with a backlog of 5 connections not yet accepted. When many clients
  // connect at once (a load test's start, keep-alive reconnects) the kernel then drops the
  // handshake's last ACK; the client believes it is connected and sends its request, which the
  // server may never see (the "read error" serve_load met at 64 clients). Linux lets listen()
  // on a listening socket change the backlog.
  if (::listen(s.http.listening_socket(), SOMAXCONN) != 0)
    fail(ErrorKind::Io, "cannot listen on " + host + ":" + std::to_string(port) + ": " + std::strerror(errno));
  s.port = port;
  s.listener = std::thread([&s] { s.http.listen_after_bind(); });
  // stop() only reaches a server that is running: wait for the accept loop before returning.
  for (int i = 0; i < 5000 && !s.http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  s.started = true;
  return port;
}

void Server::stop() {
  Impl& s = *impl_;
  std::lock_guard<std::mutex> lock(s.lifecycle);
  if (s.stopped) return;
  s.stopped = true;
  if (s.started) {
    // Stops accepting; cpp-httplib's pool then finishes the requests it holds before the
    // listener returns. The model worker goes last: those requests still need it.
    s.http.stop();
    if (s.listener.joinable()) s.listener.join();
  }
  s.service.stop();
}

int Server::port() const { return impl_->port; }

}  // namespace icae
