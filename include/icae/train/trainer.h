// The training loop of icae pretrain / icae finetune (see src/train/trainer.cpp, read it top to
// bottom like llm.c's train_gpt2.c main loop). A run lives in one folder:
//   config.json              every option, the base model's fingerprint, the data files
//   metrics.jsonl            one JSON object per log step and per evaluation
//   checkpoint.safetensors   the full training state (resume from it)
//   adapter.safetensors      the latest good weights, usable as --adapter
#pragma once
#include <ATen/core/Generator.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "icae/core/icae.h"
#include "icae/infer/text_model.h"
#include "icae/train/data.h"
#include "icae/train/distributed.h"
#include "icae/train/metrics_log.h"
#include "icae/train/options.h"
#include "icae/train/samples.h"
#include "icae/train/scheduler.h"
#include "icae/train/step.h"
#include "icae/train/training_state.h"

namespace icae::train {

struct EvalResult {
  nlohmann::json metrics;  // eval_ae_loss, eval_lm_loss, eval_plain_lm_loss, eval_ae_bleu, ...
};

// Watching a run from the same process (the Python package's progress bars and callbacks): while
// an ObserveRecords is alive, rank 0 hands the observer every update's record (what
// metrics.jsonl holds at log steps, plus "record": "step", "steps", "eta_s") and every
// evaluation's ("record": "eval"). Returning false asks the run to stop after that update, saving
// first, as Ctrl-C does. One observer at a time; the previous one comes back when it ends.
using RecordObserver = std::function<bool(const nlohmann::json& record)>;
class ObserveRecords {
 public:
  explicit ObserveRecords(RecordObserver observer);
  ~ObserveRecords();
  ObserveRecords(const ObserveRecords&) = delete;
  ObserveRecords& operator=(const ObserveRecords&) = delete;

 private:
  RecordObserver observer_;
  RecordObserver* previous_;
};
// Whether the last (or current) run was asked to stop: SIGINT/SIGTERM or an observer's false.
bool stop_was_requested();

class Trainer {
 public:
  // A new run in options.out (refuses a folder that already holds one).
  static std::unique_ptr<Trainer> start(const TrainOptions& options);
  // Continues the run in run_dir from its checkpoint; `steps` may extend it.
  // steps: a new schedule length; stop_after: where this invocation stops (the saved one is not reused).
  static std::unique_ptr<Trainer> resume(const std::string& run_dir, std::optional<int64_t> steps = std::nullopt,
                                         int64_t stop_after = 0);

  // Trains until options().steps updates are done or a stop is requested (SIGINT/SIGTERM),
  // saving at the end. Returns 0 when done or stopped, 3 after a non-finite loss (the last
  // good checkpoint is kept).
  int run();
  // One update on the next batch from the stream.
  StepStats step();
  EvalResult evaluate();
  void save();

  const TrainOptions& options() const { return options_; }
  const TrainingProgress& progress() const { return progress_; }
  Icae& icae() { return *icae_; }
  const TextModel& text_model() const { return text_; }

 private:
  Trainer(TrainOptions options, bool resuming);
  // Assembling a run (build_run calls the rest in order).
  void build_run(bool resuming);
  void set_up_execution();
  void load_model();
  void build_icae(bool resuming);
  void build_data();
  void build_optimizer(bool resuming);
  void restore();
  void record_run(bool resuming);
  const Scheduler& scheduler();
  void record_step(const StepStats& s, double lr, Progress& progress);
  void evaluate_and_record(Progress& progress);
  bool leader() const { return dist_.rank == 0; }  // rank 0 writes files and prints
  std::vector<MicroBatch> next_batch(double rate);
  nlohmann::json step_record(const StepStats& s, double lr) const;

  TrainOptions options_;
  DistributedEnv dist_;
  std::unique_ptr<Communicator> comm_;
  TextModel text_;
  std::unique_ptr<Icae> icae_;
  std::unique_ptr<AdamW> optimizer_;
  std::optional<at::Generator> generator_;
  std::shared_ptr<BadDataLog> bad_data_;
  std::unique_ptr<ExampleStream> stream_;
  std::vector<Example> eval_examples_;
  SampleOptions sample_options_;
  TrainingProgress progress_;
  std::unique_ptr<MetricsLog> metrics_;
  std::string base_fingerprint_;
  double last_good_loss_ = 0;
  std::vector<std::string> train_files_;
  DataOptions data_options_;
  std::unique_ptr<Scheduler> scheduler_;
  double window_tokens_ = 0, window_seconds_ = 0;  // throughput since the last metrics line
  bool warned_plateau_ = false;
};

}  // namespace icae::train
