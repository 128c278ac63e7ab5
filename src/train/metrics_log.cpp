#include "icae/train/metrics_log.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <sstream>
#include <vector>

#include "icae/util/error.h"

namespace icae::train {

MetricsLog::MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
  if (resume_step >= 0) {
    std::vector<std::string> keep;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      try {
        auto j = nlohmann::json::parse(line);
        if (j.value("step", int64_t{0}) <= resume_step) keep.push_back(line);
      } catch (const nlohmann::json::exception&) {
        // A torn last line from a killed run: drop it.
      }
    }
    in.close();
    std::ofstream rewrite(path, std::ios::trunc);
    for (const auto& l : keep) rewrite << l << "\n";
  }
  out_.open(path, std::ios::app);
  ICAE_CHECK(out_.good(), ErrorKind::Io, path + ": cannot open for writing");
}

void MetricsLog::write(const nlohmann::json& record) {
  out_ << record.dump() << "\n";
  out_.flush();
}

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  char buf[32];
  const auto t = static_cast<int64_t>(s);
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(t / 3600), static_cast<long long>(t % 3600 / 60));
  else
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}

Progress::Progress(int64_t total) : total_(total), tty_(::isatty(2) == 1) {}

void Progress::update(int64_t step, double loss, double tps, double lr, double eta, bool log_step) {
  char line[256];
  std::snprintf(line, sizeof line, "step %lld/%lld  loss %.4f  %.0f tok/s  lr %.2e  ETA %s",
                static_cast<long long>(step), static_cast<long long>(total_), loss, tps, lr,
                format_duration(eta).c_str());
  if (tty_) {
    std::cerr << "\r\033[K" << line << (log_step ? "\n" : "") << std::flush;
    live_ = !log_step;
  } else if (log_step) {
    std::cerr << line << "\n" << std::flush;
  }
}

void Progress::message(const std::string& text) {
  if (tty_ && live_) std::cerr << "\r\033[K";
  live_ = false;
  std::cerr << text << "\n" << std::flush;
}

void Progress::finish() {
  if (tty_ && live_) std::cerr << "\n";
  live_ = false;
}

}  // namespace icae::train
