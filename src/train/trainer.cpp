// The training loop. Reading order: start()/resume() build a run, run() is the loop, step() is
// one update, evaluate() the held-out measurements, save() the checkpoint.
#include "icae/train/trainer.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>

#include "icae/core/adapter_file.h"
#include "icae/eval/icae_eval.h"
#include "icae/eval/text_metrics.h"
#include "icae/infer/session.h"
#include "icae/io/data_files.h"
#include "icae/util/device.h"
#include "icae/util/error.h"

namespace fs = std::filesystem;

namespace icae::train {

namespace {

// --- stop requests: SIGINT / SIGTERM finish the current update, save and exit 0 ------------
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int sig) {
  g_stop.store(true);
  std::signal(sig, SIG_DFL);  // a second Ctrl-C stops at once
}

// The observer of the run's records (set_record_observer): null when nobody watches.
RecordObserver* g_observer = nullptr;

// Hands a record to the observer; a false answer is a stop request, as a signal is.
void notify(const nlohmann::json& record) {
  if (g_observer && *g_observer && !(*g_observer)(record)) g_stop.store(true);
}

struct SignalScope {
  using Handler = void (*)(int);
  Handler old_int, old_term;
  SignalScope() {
    g_stop.store(false);
    old_int = std::signal(SIGINT, on_stop_signal);
    old_term = std::signal(SIGTERM, on_stop_signal);
  }
  ~SignalScope() {
    std::signal(SIGINT, old_int);
    std::signal(SIGTERM, old_term);
  }
};

}  // namespace

ObserveRecords::ObserveRecords(RecordObserver observer) : observer_(std::move(observer)), previous_(g_observer) {
  g_observer = &observer_;
}
ObserveRecords::~ObserveRecords() { g_observer = previous_; }

bool stop_was_requested() { return g_stop.load(); }

namespace {

std::string run_file(const TrainOptions& o, const char* name) { return (fs::path(o.out) / name).string(); }

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  try {
    return nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::BadInput, path + ": invalid JSON: " + e.what());
  }
}

void write_json_atomic(const std::string& path, const nlohmann::json& j) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": cannot create");
    out << j.dump(2) << "\n";
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": write failed");
  }
  ICAE_CHECK(std::rename(tmp.c_str(), path.c_str()) == 0, ErrorKind::Io, path + ": cannot rename into place");
}

// The adapter a fine-tuning run starts from: a file, or a run folder's adapter.safetensors.
std::string init_adapter_path(const std::string& init) {
  if (fs::is_directory(init)) return (fs::path(init) / "adapter.safetensors").string();
  return init;
}

}  // namespace

// --- building a run ------------------------------------------------------------------------

std::unique_ptr<Trainer> Trainer::start(const TrainOptions& options) {
  validate(options);
  ICAE_CHECK(!fs::exists(run_file(options, "checkpoint.safetensors")), ErrorKind::Usage,
             options.out + " already holds a run: continue it with --resume " + options.out +
                 ", or choose another --out");
  fs::create_directories(options.out);
  return std::unique_ptr<Trainer>(new Trainer(options, false));
}

std::unique_ptr<Trainer> Trainer::resume(const std::string& run_dir, std::optional<int64_t> steps,
                                         int64_t stop_after) {
  const std::string config = (fs::path(run_dir) / "config.json").string();
  ICAE_CHECK(fs::exists(config), ErrorKind::Io, run_dir + ": no config.json (not a run folder)");
  nlohmann::json j = read_json(config);
  TrainOptions o = options_from_json(j.at("options"));
  o.out = run_dir;
  if (steps) o.steps = *steps;
  o.stop_after = stop_after;
  validate(o);
  return std::unique_ptr<Trainer>(new Trainer(o, true));
}

Trainer::Trainer(TrainOptions o, bool resuming) : options_(std::move(o)), dist_(DistributedEnv::from_environment()) {
  build_run(resuming);
}

// A run, assembled in the order its parts depend on each other.
void Trainer::build_run(bool resuming) {
  set_up_execution();
  load_model();
  build_icae(resuming);
  build_data();
  build_optimizer(resuming);
  if (resuming) restore();
  record_run(resuming);
}

// Threads, ranks and determinism.
void Trainer::set_up_execution() {
  if (options_.threads > 0) at::set_num_threads(options_.threads);
  if (dist_.active()) {
    ICAE_CHECK(parse_device(options_.device).is_cpu(), ErrorKind::Unsupported,
               "data-parallel training runs on the CPU (Gloo) in this build; NCCL for CUDA is not wired yet");
    comm_ = std::make_unique<Communicator>(dist_);
    if (leader())
      std::fprintf(stderr, "data-parallel: %d ranks (Gloo over %s:%d)\n", dist_.world_size, dist_.master_addr.c_str(),
                   dist_.master_port);
  }
  if (options_.deterministic) at::globalContext().setDeterministicAlgorithms(true, false);
}

// The base model and its tokenizer, in the run's resolved dtype.
void Trainer::load_model() {
  TextModelOptions tmo;
  tmo.load.device = parse_device(options_.device);
  // "auto" becomes what this machine runs fast, and config.json records that, so a resume on
  // another machine keeps the run's arithmetic.
  options_.dtype = resolve_auto_dtype(options_.dtype, tmo.load.device);
  if (leader() && options_.dtype == "bf16" && tmo.load.device.is_cpu() && !cpu_has_native_bf16())
    std::fprintf(stderr,
                 "warning: this CPU has no native bf16 (AMX or AVX512-BF16), so bf16 is emulated: expect training "
                 "to be many times slower than with --dtype f32\n");
  tmo.load.dtype = parse_dtype(options_.dtype);
  tmo.tokenizer_path = options_.tokenizer;
  text_ = load_text_model(options_.model, tmo);
  base_fingerprint_ = text_.model->fingerprint();
  ICAE_CHECK(text_.tokenizer->eos_id() >= 0, ErrorKind::Unsupported,
             options_.model + ": the tokenizer has no EOS token, which ICAE targets need");
}

void Trainer::build_icae(bool resuming) {
  // The ICAE: from --init for fine-tuning (and for pretraining that continues from an adapter:
  // a warm start with fresh optimizer moments, e.g. a milestone committed without its
  // checkpoint), else new. A resumed run loads its checkpoint below instead.
  const bool finetune = options_.mode == "finetune";
  if (finetune || (!options_.init.empty() && !resuming)) {
    LoadedAdapter a = load_adapter(init_adapter_path(options_.init), text_.model);
    icae_ = std::move(a.icae);
    // The adapter decides the ICAE's shape; the run's config records it. The LoRA dropout is a
    // training setting: the run's own.
    const double dropout = options_.icae.lora.dropout;
    options_.icae = icae_->config();
    options_.icae.lora.dropout = dropout;
    icae_->set_lora_dropout(dropout);
  } else {
    icae_ = std::make_unique<Icae>(text_.model, options_.icae, options_.seed);
  }
}

// The training stream (this rank's share), the held-out examples, how samples are made.
void Trainer::build_data() {
  const bool finetune = options_.mode == "finetune";
  DataOptions data;
  data.kind = finetune ? DataKind::Pwc : DataKind::Text;
  data.max_context = options_.max_context;
  data.split_blocks = options_.split_blocks;
  bad_data_ = std::make_shared<BadDataLog>(options_.strict_data);
  StreamOptions so;
  so.seed = options_.seed;
  so.shuffle_buffer = options_.shuffle_buffer;
  so.rank = dist_.rank;
  so.world_size = dist_.world_size;
  train_files_ = list_data_files(options_.train_data);
  stream_ = std::make_unique<ExampleStream>(train_files_, text_.tokenizer, data, so, bad_data_);
  if (!options_.eval_data.empty()) {
    BadDataLog eval_log(options_.strict_data);
    eval_examples_ = read_first_examples(list_data_files(options_.eval_data), *text_.tokenizer, data,
                                         options_.eval_samples, eval_log);
    ICAE_CHECK(!eval_examples_.empty(), ErrorKind::BadInput, "the --eval data holds no usable example");
  }
  sample_options_.finetune = finetune;
  sample_options_.lm_ratio = options_.lm_ratio;
  sample_options_.lm.leave_tokens_for_lm = options_.leave_tokens_for_lm;
  sample_options_.lm.min_tokens_for_lm = options_.min_tokens_for_lm;
  sample_options_.seed = options_.seed;
  sample_options_.eos_id = text_.tokenizer->eos_id();
  if (finetune) sample_options_.ft_template = make_ft_template(options_.templ, *text_.tokenizer);
  data_options_ = data;
}

// The projector's starting scale (a new run), AdamW's parameter groups, the dropout stream.
void Trainer::build_optimizer(bool resuming) {
  // A new run calibrates the projector on its first contexts (deterministic: the stream's
  // first examples, read apart from the stream itself).
  if (!resuming && icae_->projector().active() && options_.init.empty()) {
    BadDataLog quiet(false, 0);
    auto first = read_first_examples(train_files_, *text_.tokenizer, data_options_, 8, quiet);
    std::vector<std::vector<int64_t>> contexts;
    for (auto& e : first) contexts.push_back(e.context);
    const double s = icae_->calibrate_projector(contexts);
    if (leader())
      std::fprintf(stderr, "projector: %s, initial scale %.4f (mean embedding norm / mean slot norm)\n",
                   projector_name(options_.icae.projector), s);
  }

  // Optimizer groups: LoRA at --lr with weight decay; memory embeddings and projector at
  // --mem-lr without.
  icae_->set_trainable(true);
  std::vector<OptimizedTensor> params;
  const double mem_lr = options_.mem_lr > 0 ? options_.mem_lr : options_.lr;
  for (auto& [name, t] : icae_->named_trainable()) {
    const bool lora = name.rfind("icae.", 0) == 0;
    params.push_back({name, t, lora ? options_.lr : mem_lr, lora ? options_.weight_decay : 0.0});
  }
  optimizer_ = std::make_unique<AdamW>(std::move(params), AdamWOptions{});
  // Each rank its own dropout stream. Checkpoints hold rank 0's; other ranks reseed on resume.
  generator_ = make_generator(icae_->base().device(), options_.seed + 17 + 1000003ull * dist_.rank);
}

// The checkpoint's state, and the data stream replayed to where it was.
void Trainer::restore() {
  {
    const std::string ckpt = run_file(options_, "checkpoint.safetensors");
    ICAE_CHECK(fs::exists(ckpt), ErrorKind::Io, options_.out + ": no checkpoint.safetensors to resume from");
    at::Generator loaded = generator_->clone();
    progress_ = load_training_state(ckpt, *icae_, *optimizer_, loaded);
    if (leader()) generator_ = loaded;
    else generator_ = make_generator(icae_->base().device(), options_.seed + 17 + 1000003ull * dist_.rank + progress_.step);
    if (leader())
      std::fprintf(stderr, "resuming %s at step %lld (replaying %lld examples of the data stream)\n",
                   options_.out.c_str(), static_cast<long long>(progress_.step),
                   static_cast<long long>(progress_.examples_drawn));
    stream_->skip_to_global(progress_.examples_drawn);
  }
}

// Rank 0 writes the run folder: the metrics log and config.json.
void Trainer::record_run(bool resuming) {
  if (!leader()) return;
  metrics_ = std::make_unique<MetricsLog>(run_file(options_, "metrics.jsonl"), resuming ? progress_.step : -1);

  nlohmann::json config = {{"options", to_json(options_)},
                           {"base_model", {{"path", options_.model}, {"fingerprint", base_fingerprint_}}},
                           {"train_files", train_files_},
                           {"world_size", dist_.world_size},
                           {"trainable_parameters", 0}};
  int64_t n = 0;
  for (const auto& t : icae_->trainable_parameters()) n += t.numel();
  config["trainable_parameters"] = n;
  write_json_atomic(run_file(options_, "config.json"), config);
}

// --- one update -----------------------------------------------------------------------------

std::vector<MicroBatch> Trainer::next_batch(double rate) {
  std::vector<MicroBatch> out(static_cast<size_t>(options_.accum));
  for (auto& mb : out)
    for (int64_t i = 0; i < options_.batch; ++i) {
      const int64_t index = stream_->next_global_index();  // the same name on any number of ranks
      Example e = stream_->next();
      mb.push_back(make_sample(*icae_, e, index, rate, sample_options_));
    }
  return out;
}

StepStats Trainer::step() {
  const Scheduler& when = scheduler();
  const double rate = when.tokens_per_slot(progress_.step);
  const auto batch = next_batch(rate);
  StepConfig sc;
  sc.lr_factor = when.lr_factor(progress_.step);
  sc.clip = options_.clip;
  sc.rate = rate;
  sc.generator = &*generator_;
  sc.activation_checkpointing = options_.activation_checkpointing;
  sc.comm = comm_.get();
  StepStats s = train_step(*icae_, *optimizer_, batch, sc);
  if (s.finite) {
    ++progress_.step;
    // Every rank drew the same number of examples, interleaved (rank r takes r, r + W, ...): the
    // update consumed the global stream up to the next multiple of W. Each rank's stream moves
    // there too, so that all ranks (and a single process with the whole batch) agree on the
    // position and the epoch; a checkpoint at rank 0's own position (W k - W + 1) would hand the
    // other ranks' last examples to them again on resume.
    const int64_t w = dist_.world_size;
    stream_->skip_to_global((stream_->global_position() + w - 1) / w * w);
    progress_.examples_drawn = stream_->global_position();
    progress_.context_tokens += s.context_tokens;
    progress_.elapsed_s += s.seconds;
    progress_.bad_records = bad_data_->count();
    last_good_loss_ = s.loss;
  }
  return s;
}

nlohmann::json Trainer::step_record(const StepStats& s, double lr) const {
  nlohmann::json j = {{"step", progress_.step},
                      {"loss", s.loss},
                      {"lr", lr},
                      {"grad_norm", s.grad_norm},
                      {"tokens_per_s", s.seconds > 0 ? s.context_tokens / s.seconds : 0.0},
                      {"step_s", s.seconds},
                      {"examples", progress_.examples_drawn},
                      {"epoch", stream_->epoch()}};
  const char* names[3] = {"ae_loss", "lm_loss", "ft_loss"};
  for (int k = 0; k < 3; ++k)
    if (s.tokens_by[k] > 0) j[names[k]] = s.loss_by[k];
  if (options_.curriculum_steps > 0 && options_.mode == "pretrain")
    j["tokens_per_slot"] = curriculum_rate(options_.icae.compression_rate, options_.curriculum_steps, progress_.step - 1);
  return j;
}

// --- evaluation -----------------------------------------------------------------------------

EvalResult Trainer::evaluate() {
  at::NoGradGuard no_grad;
  // Tests: a slow evaluation (the other ranks must wait for it, not time out).
  if (const char* d = std::getenv("ICAE_TEST_EVAL_DELAY_S")) std::this_thread::sleep_for(std::chrono::seconds(std::atoi(d)));
  EvalResult r;
  if (eval_examples_.empty()) return r;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t eos = sample_options_.eos_id;
  auto batched = [&](const std::vector<Sample>& samples) {
    std::vector<MicroBatch> mbs;
    for (size_t i = 0; i < samples.size(); i += static_cast<size_t>(options_.batch))
      mbs.emplace_back(samples.begin() + i, samples.begin() + std::min(samples.size(), i + options_.batch));
    return mbs;
  };
  nlohmann::json& m = r.metrics;
  m["step"] = progress_.step;
  if (options_.mode == "finetune") {
    std::vector<Sample> ft;
    for (const auto& e : eval_examples_)
      ft.push_back(make_sample(*icae_, e, 0, 0.0, sample_options_));
    m["eval_ft_loss"] = eval_losses(*icae_, batched(ft)).loss;
  } else {
    std::vector<Sample> ae, lm, plain;
    for (const auto& e : eval_examples_) {
      ae.push_back(make_ae(*icae_, e, eos));
      if (auto l = make_lm(*icae_, e, sample_options_.lm)) lm.push_back(*l);
      // The plateau reference: the frozen model on the same text with no slots at all.
      Sample p;
      p.seq.context = e.context;
      p.seq.ids = e.context;
      p.seq.ids.push_back(eos);
      p.seq.labels = p.seq.ids;
      plain.push_back(p);
    }
    m["eval_ae_loss"] = eval_losses(*icae_, batched(ae)).loss;
    if (!lm.empty()) m["eval_lm_loss"] = eval_losses(*icae_, batched(lm)).loss;
    // Plain LM: run the decoder alone (no compression): its rows have no slot placeholders.
    {
      std::vector<std::vector<int64_t>> ids, labels;
      std::vector<at::Tensor> none;
      double sum = 0;
      int64_t count = 0;
      for (const auto& p : plain) {
        ids.push_back(p.seq.ids);
        labels.push_back(p.seq.labels);
        none.emplace_back();
        if (static_cast<int64_t>(ids.size()) == options_.batch || &p == &plain.back()) {
          RowLosses rl = icae_->decoder_row_losses(ids, labels, none);
          sum += rl.sums.sum().item<double>();
          count += rl.total();
          ids.clear();
          labels.clear();
          none.clear();
        }
      }
      m["eval_plain_lm_loss"] = count ? sum / count : 0.0;
    }
    // Greedy reconstruction of the first few contexts, measured as `icae eval ae` measures it
    // (eval::eval_ae over a session on this run's model and ICAE, whose weights it shares):
    // BLEU-4, exact-match prefix, teacher-forced token accuracy.
    const int64_t n = std::min<int64_t>(options_.eval_generate, static_cast<int64_t>(eval_examples_.size()));
    if (n > 0) {
      auto adapter = std::make_shared<LoadedAdapter>();
      adapter->icae = std::make_unique<Icae>(*icae_);
      Session session(std::make_shared<TextModel>(text_), adapter);
      std::vector<eval::Ids> contexts;
      std::vector<std::string> sources;
      for (int64_t i = 0; i < n; ++i) {
        contexts.push_back(eval_examples_[i].context);
        sources.push_back("eval " + std::to_string(i));
      }
      eval::AeEvalOptions ao;
      ao.batch = options_.batch;
      ao.extra_tokens = 1;  // the context and its EOS
      const eval::AeReport ae = eval::eval_ae(session, contexts, sources, ao);
      m["eval_ae_bleu"] = ae.mean_bleu;
      m["eval_ae_corpus_bleu"] = ae.corpus_bleu;
      m["eval_ae_exact_prefix"] = ae.mean_exact_prefix;
      m["eval_ae_token_accuracy"] = ae.mean_token_accuracy;
      m["eval_ae_sample"] = session.detokenize(ae.samples[0].reconstruction);
    }
  }
  m["eval_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

// --- checkpoints ----------------------------------------------------------------------------

void Trainer::save() {
  if (!leader()) return;
  save_training_state(run_file(options_, "checkpoint.safetensors"), *icae_, *optimizer_, *generator_, progress_);
  AdapterInfo info;
  info.base_model = fs::path(options_.model).filename().string();
  info.base_fingerprint = base_fingerprint_;
  info.chat_template = options_.mode == "finetune" ? options_.templ : "none";
  info.training = {{"mode", options_.mode},
                   {"step", progress_.step},
                   {"examples", progress_.examples_drawn},
                   {"context_tokens", progress_.context_tokens},
                   {"elapsed_s", progress_.elapsed_s},
                   {"options", to_json(options_)}};
  info.notes = "trained by icae " + options_.mode + " (" + std::to_string(progress_.step) + " updates)";
  save_adapter(run_file(options_, "adapter.safetensors"), *icae_, info);
}

// --- the loop -------------------------------------------------------------------------------

namespace {
// One line for people: the held-out measures this run has (pretraining: AE, LM, plain LM, BLEU;
// fine-tuning: FT), the same at update 0 and later.
std::string eval_line(int64_t step, const nlohmann::json& m) {
  static const std::pair<const char*, const char*> kShown[] = {
      {"eval_ae_loss", "ae"}, {"eval_lm_loss", "lm"}, {"eval_plain_lm_loss", "plain-lm"},
      {"eval_ft_loss", "ft"}, {"eval_ae_bleu", "bleu"}};
  std::string line = "eval @" + std::to_string(step) + ":";
  char value[64];
  for (const auto& [key, label] : kShown) {
    if (!m.contains(key) || !m[key].is_number()) continue;
    std::snprintf(value, sizeof value, "  %s %.4f", label, m[key].get<double>());
    line += value;
  }
  std::snprintf(value, sizeof value, "  (%.1fs)", m.value("eval_s", 0.0));
  return line + value;
}
}  // namespace

// The loop: next batch -> step -> what the schedule says after it (log, evaluate, save, stop).
int Trainer::run() {
  SignalScope signals;
  const Scheduler& when = scheduler();
  Progress progress(options_.steps);
  if (when.evaluate_at_start(progress_.step)) evaluate_and_record(progress);
  // The other ranks wait here, not in the first update's all-reduce, while rank 0 evaluates.
  if (comm_ && when.evaluate_at_start(progress_.step)) comm_->all_reduce_sum({0.0}, /*leader_work=*/true);
  int exit_code = 0;
  while (progress_.step < when.last()) {
    const double lr = when.lr(progress_.step);
    const StepStats s = step();
    if (!s.finite) {
      if (leader())
        progress.message("error: the loss or the gradient became " + std::string(std::isnan(s.loss) ? "NaN" : "infinite") +
                         " at step " + std::to_string(progress_.step + 1) + " (no update made). The last good checkpoint is kept in " +
                         options_.out + "; try a lower --lr or --clip, or --dtype f32.");
      exit_code = 3;
      break;
    }
    record_step(s, lr, progress);
    const bool evaluate_now = when.evaluate(progress_.step);  // every rank knows; rank 0 evaluates
    if (evaluate_now) evaluate_and_record(progress);
    // A stop request on any rank stops every rank after the same update.
    bool stop = g_stop.load();
    if (comm_) stop = comm_->all_reduce_sum({stop ? 1.0 : 0.0}, /*leader_work=*/evaluate_now)[0] > 0;
    if (when.save(progress_.step) || stop) save();
    if (stop) {
      if (leader())
        progress.message("stopped by a signal at step " + std::to_string(progress_.step) +
                         "; saved. Continue with: icae " + options_.mode + " --resume " + options_.out);
      break;
    }
  }
  progress.finish();
  if (leader() && exit_code == 0 && when.stopped_early(progress_.step))
    std::fprintf(stderr, "stopped after update %lld as --stop-after asked (schedule: %lld updates); continue with: icae %s --resume %s\n",
                 static_cast<long long>(progress_.step), static_cast<long long>(options_.steps), options_.mode.c_str(),
                 options_.out.c_str());
  if (leader() && bad_data_->count() > 0)
    std::fprintf(stderr, "note: %lld bad records were skipped (first: %s)\n", static_cast<long long>(bad_data_->count()),
                 bad_data_->messages().empty() ? "?" : bad_data_->messages().front().c_str());
  return exit_code;
}

const Scheduler& Trainer::scheduler() {
  if (!scheduler_) scheduler_ = std::make_unique<Scheduler>(options_, !eval_examples_.empty());
  return *scheduler_;
}

// The live progress line, and a metrics line every log step (throughput over the window since the last).
void Trainer::record_step(const StepStats& s, double lr, Progress& progress) {
  window_tokens_ += static_cast<double>(s.context_tokens);
  window_seconds_ += s.seconds;
  const bool log_step = scheduler().log(progress_.step);
  const double tps = window_seconds_ > 0 ? window_tokens_ / window_seconds_ : 0;
  const double eta = (options_.steps - progress_.step) * (window_seconds_ / std::max(1.0, window_tokens_)) *
                     static_cast<double>(s.context_tokens);
  if (!leader()) return;
  // An observer (the Python package) shows progress its own way; messages still print.
  if (!g_observer) progress.update(progress_.step, s.loss, tps, lr, eta, log_step);
  if (!log_step && !g_observer) return;  // the record is built only for someone to read
  nlohmann::json rec = step_record(s, lr);
  rec["tokens_per_s"] = tps;
  if (log_step) {
    metrics_->write(rec);
    window_tokens_ = window_seconds_ = 0;
  }
  if (g_observer) {
    rec["record"] = "step";
    rec["steps"] = options_.steps;
    rec["eta_s"] = eta;
    notify(rec);
  }
}

// Rank 0 evaluates, writes the metrics and says so; a plateau (AE loss still at the plain-LM
// level) is flagged, and warned about once.
void Trainer::evaluate_and_record(Progress& progress) {
  if (!leader()) return;
  EvalResult e = evaluate();
  auto& m = e.metrics;
  if (progress_.step > 0 && m.contains("eval_ae_loss") && scheduler().plateau_check(progress_.step) &&
      m["eval_ae_loss"].get<double>() >= 0.95 * m["eval_plain_lm_loss"].get<double>()) {
    m["plateau_warning"] = true;
    if (!warned_plateau_)
      progress.message("warning: after " + std::to_string(progress_.step) +
                       " updates the held-out AE loss is still within 5% of the plain-LM loss of the same text: the "
                       "slots carry little. Try --projector linear, --curriculum N, a higher --mem-lr or a longer "
                       "warm-up.");
    warned_plateau_ = true;
  }
  metrics_->write(m);
  progress.message(eval_line(progress_.step, m));
  if (g_observer) {
    nlohmann::json rec = m;
    rec["record"] = "eval";
    notify(rec);
  }
}

}  // namespace icae::train
