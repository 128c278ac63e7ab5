// What a run tells the person watching it: RUN_DIR/metrics.jsonl (one JSON object per log step
// and per evaluation), a live progress line on a terminal (one plain line per log interval
// otherwise), and warnings.
#pragma once
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

namespace icae::train {

class MetricsLog {
 public:
  // Opens RUN_DIR/metrics.jsonl for appending; on resume, drops lines after `resume_step` first
  // (they belong to a part of the run that the checkpoint does not hold).
  MetricsLog(const std::string& path, int64_t resume_step = -1);
  void write(const nlohmann::json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

class Progress {
 public:
  explicit Progress(int64_t total_steps);
  // Called after each update; prints a live line (terminal) or a plain line every log step.
  void update(int64_t step, double loss, double tokens_per_s, double lr, double eta_s, bool log_step);
  // A message on its own line (clears the live line first).
  void message(const std::string& text);
  void finish();

 private:
  int64_t total_;
  bool tty_;
  bool live_ = false;
};

std::string format_duration(double seconds);

}  // namespace icae::train
