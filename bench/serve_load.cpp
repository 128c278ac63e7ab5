// serve_load: N concurrent clients against a running `icae serve` (loopback only), each asking
// /v1/answer in a loop for a bounded time and count; prints throughput (requests/s, generated
// tokens/s), latency p50/p99 and failures, per client count.
//   serve_load --port 8080 --text "$(cat doc.txt)" --prompt "What is it about?" --clients 1,8,64 --seconds 60
// Also pass --ids/--prompt-ids for models without a tokenizer. The context is compressed once
// first; every request then answers from its slots_id. With --server-pid (the server runs on this
// machine) each row also reports the server's peak and current RSS (VmHWM, VmRSS), and each row
// the mean width of the server's decode batch over the row (from /metrics).
#include <httplib.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5));
  return v[i];
}

// "VmHWM:  123456 kB" from /proc/PID/status, in MB; -1 when unreadable.
double status_mb(int pid, const std::string& key) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key + ":", 0) == 0) return std::stod(line.substr(key.size() + 1)) / 1024.0;
  return -1;
}

// A counter from the server's /metrics; -1 when missing.
double server_metric(httplib::Client& c, const httplib::Headers& h, const std::string& name) {
  auto r = c.Get("/metrics", h);
  if (!r || r->status != 200) return -1;
  std::stringstream lines(r->body);
  std::string line;
  while (std::getline(lines, line))
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Load test for icae serve: concurrent /v1/answer clients on loopback");
  int port = 8080, server_pid = 0;
  std::string text, ids, prompt, prompt_ids, clients = "1,8,64", api_key;
  double seconds = 60;
  int64_t max_requests = 100000, max_tokens = 32;
  app.add_option("--port", port, "Port of the server on 127.0.0.1")->capture_default_str();
  app.add_option("--text", text, "Context text");
  app.add_option("--ids", ids, "Or the context as comma-separated ids");
  app.add_option("--prompt", prompt, "Prompt text");
  app.add_option("--prompt-ids", prompt_ids, "Or the prompt as comma-separated ids");
  app.add_option("--clients", clients, "Client counts to run, one after the other")->capture_default_str();
  app.add_option("--seconds", seconds, "Time per client count")->capture_default_str();
  app.add_option("--max-requests", max_requests, "Requests per client count at most")->capture_default_str();
  app.add_option("--max-tokens", max_tokens, "max_tokens of each answer")->capture_default_str();
  app.add_option("--api-key", api_key, "Bearer token, when the server wants one");
  app.add_option("--server-pid", server_pid, "The server's process id: report its peak RSS per row");
  CLI11_PARSE(app, argc, argv);

  httplib::Headers headers;
  if (!api_key.empty()) headers.emplace("Authorization", "Bearer " + api_key);
  json ctx = ids.empty() ? json{{"text", text}} : json{{"ids", parse_list(ids)}};
  httplib::Client setup("127.0.0.1", port);
  setup.set_read_timeout(600, 0);
  auto c = setup.Post("/v1/compress", headers, ctx.dump(), "application/json");
  if (!c || c->status != 200) {
    std::fprintf(stderr, "serve_load: compress failed: %s\n", c ? c->body.c_str() : httplib::to_string(c.error()).c_str());
    return 1;
  }
  json req = {{"slots_id", json::parse(c->body).at("slots_id")}, {"max_tokens", max_tokens}};
  if (prompt_ids.empty()) {
    req["prompt"] = prompt;
  } else {
    req["prompt_ids"] = parse_list(prompt_ids);
  }
  const std::string body = req.dump();

  std::printf("| clients | requests | failed | requests/s | tokens/s | p50 ms | p99 ms | batch width | server peak RSS MB |\n"
              "|---|---|---|---|---|---|---|---|---|\n");
  for (int64_t n : parse_list(clients)) {
    std::atomic<int64_t> started{0}, failed{0}, tokens{0};
    std::mutex mu;
    std::vector<double> latencies;
    std::map<std::string, int64_t> failures;  // by reason
    const double steps0 = server_metric(setup, headers, "icae_decode_steps_total"),
                 rows0 = server_metric(setup, headers, "icae_decode_row_steps_total");
    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    std::vector<std::thread> threads;
    for (int64_t i = 0; i < n; ++i) {
      threads.emplace_back([&] {
        httplib::Client cli("127.0.0.1", port);
        cli.set_read_timeout(600, 0);
        cli.set_keep_alive(true);
        while (Clock::now() < end && started.fetch_add(1) < max_requests) {
          const auto r0 = Clock::now();
          auto r = cli.Post("/v1/answer", headers, body, "application/json");
          const double ms = std::chrono::duration<double, std::milli>(Clock::now() - r0).count();
          if (!r || r->status != 200) {
            // The first few in full, so a failure says what it was (refused, timed out, 503, ...).
            const std::string why = r ? std::to_string(r->status) : httplib::to_string(r.error());
            if (failed.fetch_add(1) < 3)
              std::fprintf(stderr, "serve_load: request failed: %s\n",
                           r ? (std::to_string(r->status) + " " + r->body).c_str() : why.c_str());
            std::lock_guard<std::mutex> lock(mu);
            ++failures[why];
            continue;
          }
          tokens += json::parse(r->body).at("tokens").get<int64_t>();
          std::lock_guard<std::mutex> lock(mu);
          latencies.push_back(ms);
        }
      });
    }
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const double steps = server_metric(setup, headers, "icae_decode_steps_total") - steps0,
                 rows = server_metric(setup, headers, "icae_decode_row_steps_total") - rows0;
    std::printf("| %lld | %zu | %lld | %.2f | %.1f | %.0f | %.0f | %.1f | %.0f |\n", static_cast<long long>(n),
                latencies.size(), static_cast<long long>(failed.load()), static_cast<double>(latencies.size()) / wall,
                static_cast<double>(tokens.load()) / wall, percentile(latencies, 0.5), percentile(latencies, 0.99),
                steps > 0 ? rows / steps : 0.0, server_pid ? status_mb(server_pid, "VmHWM") : -1.0);
    for (const auto& [why, count] : failures) std::fprintf(stderr, "serve_load: %lld failed: %s\n", static_cast<long long>(count), why.c_str());
    std::fflush(stdout);
  }
  return 0;
}
