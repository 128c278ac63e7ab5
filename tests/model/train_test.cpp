// The trainer: first losses equal the goldens, accumulation equals one batch, resumed equals
// uninterrupted, checkpoints survive a killed write, bad data is named, NaN stops cleanly,
// SIGTERM saves, plots are SVG; on a GPU machine, the same on CUDA (CudaTrain*, skipped elsewhere).
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "icae/core/adapter_file.h"
#include "icae/io/data_files.h"
#include "icae/io/tensor_io.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/train/data.h"
#include "icae/train/plot.h"
#include "icae/train/trainer.h"
#include "icae/util/device.h"
#include "icae/util/error.h"
#include "golden_fixture.h"
#include "test_paths.h"
#include "tiny_text_model.h"

using namespace icae;
using namespace icae::train;
namespace fs = std::filesystem;

namespace {

using test::to_ids;

// A fresh temporary folder. (rm, not fs::remove_all: libtorch.so exports its own, newer-ABI
// std::filesystem symbols and remove_all through them crashes here.)
std::string temp_dir(const std::string& name) {
  const fs::path p = fs::path(::testing::TempDir()) / name;
  EXPECT_EQ(std::system(("rm -rf '" + p.string() + "'").c_str()), 0);
  fs::create_directories(p);
  return p.string();
}

std::vector<nlohmann::json> read_metrics(const std::string& run) {
  std::vector<nlohmann::json> out;
  std::ifstream in(run + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

// Text data for the tiny model: a few chapters of the shared corpus.
std::string corpus_dir() {
  static const std::string dir = [] {
    // One folder per process: CTest runs these tests in parallel processes, and a shared name
    // let one process empty the folder while another filled it ("cannot copy file: File exists").
    const std::string d = temp_dir("icae_train_corpus_" + std::to_string(::getpid()));
    for (const char* f : {"chapter_1.txt", "chapter_2.txt", "chapter_3.txt"})
      fs::copy_file(test::shared_dir() + "/corpus/moby-dick/" + f, fs::path(d) / f);
    return d;
  }();
  return dir;
}

TrainOptions tiny_options(const std::string& model, const std::string& out) {
  TrainOptions o;
  o.model = model;
  o.train_data = {corpus_dir()};
  o.out = out;
  o.icae.mem_size = 4;
  o.icae.compression_rate = 4;
  o.max_context = 32;
  o.icae.lora.r = 4;
  o.icae.lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  o.batch = 2;
  o.accum = 2;
  o.lr = 1e-3;
  o.warmup = 0;
  o.schedule = "constant";
  o.steps = 20;
  o.dtype = "f32";
  o.deterministic = true;
  o.eval_every = 0;
  o.save_every = 0;
  o.log_every = 1;
  o.lm_ratio = 0.5;
  o.min_tokens_for_lm = 8;
  o.shuffle_buffer = 16;
  return o;
}

using Golden = test::GoldenFixture;
Golden load_golden(const std::string& name) { return test::load_golden_fixture(name); }

// The adapter made trainable and an optimizer over it (lr 1e-3), for steps that only compute
// gradients (`raw_gradients`): what the golden comparisons run.
AdamW probe_optimizer(Icae& icae) {
  icae.set_trainable(true);
  std::vector<OptimizedTensor> params;
  for (auto& [n, t] : icae.named_trainable()) params.push_back({n, t, 1e-3, 0.0});
  return AdamW(params, {});
}
StepConfig raw_gradients() {
  StepConfig sc;
  sc.update = false;
  sc.clip = 0;  // compare the raw gradients
  return sc;
}

const std::pair<const char*, Objective> kObjectives[] = {{"ae", Objective::AE}, {"lm", Objective::LM}, {"ft", Objective::FT}};

Sample golden_sample(const Golden& f, const char* key, Objective kind);

// Each objective alone: the first-step loss (overall and by objective) and the gradient of the
// memory embeddings (the step's backward) against the goldens.
void expect_golden_first_steps(Golden& f, AdamW& opt, double loss_tol, double grad_tol) {
  for (const auto& [key, kind] : kObjectives) {
    const double want = f.golden.at(std::string(key) + "_loss").item<double>();
    const StepStats s = train_step(*f.icae, opt, {{golden_sample(f, key, kind)}}, raw_gradients());
    EXPECT_NEAR(s.loss, want, loss_tol * std::abs(want)) << key;
    EXPECT_NEAR(s.loss_by[static_cast<int>(kind)], want, loss_tol * std::abs(want)) << key;
    at::Tensor grad = f.icae->memory_embed().grad().cpu();
    at::Tensor gold = f.golden.at(std::string(key) + "_grad_memory_token_embed");
    EXPECT_LE((grad - gold).abs().max().item<double>() / gold.abs().max().item<double>(), grad_tol) << key;
  }
}

Sample golden_sample(const Golden& f, const char* key, Objective kind) {
  Sample s;
  s.kind = kind;
  s.seq.context = to_ids(f.golden.at("context_ids"));
  s.seq.ids = to_ids(f.golden.at(std::string(key) + "_prompt_answer_ids"));
  s.seq.labels = to_ids(f.golden.at(std::string(key) + "_labels"));
  return s;
}

}  // namespace

class TrainGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainGolden, FirstStepLossesEqualTheGoldens) {
  Golden f = load_golden(GetParam());
  AdamW opt = probe_optimizer(*f.icae);
  const StepConfig sc = raw_gradients();
  expect_golden_first_steps(f, opt, 1e-5, 1e-4);
  // All three in one batch: each objective's mean is still its golden loss, and the batch
  // loss is the token-weighted mean.
  const StepStats mixed = train_step(
      *f.icae, opt,
      {{golden_sample(f, "ae", Objective::AE), golden_sample(f, "lm", Objective::LM), golden_sample(f, "ft", Objective::FT)}},
      sc);
  double weighted = 0;
  int64_t n = 0;
  for (const auto& [key, kind] : kObjectives) {
    const double want = f.golden.at(std::string(key) + "_loss").item<double>();
    EXPECT_NEAR(mixed.loss_by[static_cast<int>(kind)], want, 1e-5 * std::abs(want)) << key << " (batched)";
    weighted += want * mixed.tokens_by[static_cast<int>(kind)];
    n += mixed.tokens_by[static_cast<int>(kind)];
  }
  EXPECT_NEAR(mixed.loss, weighted / n, 1e-5 * mixed.loss);
}

INSTANTIATE_TEST_SUITE_P(Models, TrainGolden, ::testing::Values("tiny-llama", "tiny-mistral"));

// Key/value slots through the training step: the golden adapter read as a key/value-slot ICAE,
// against the Python reference (tests/data/golden-kv; ids from the shared goldens).
TEST_P(TrainGolden, FirstStepLossesEqualTheKeyValueGoldens) {
  Golden f = load_golden(GetParam());
  f.icae = test::as_key_value(*f.icae);
  const TensorMap kv = load_safetensors(std::string(ICAE_SOURCE_DIR) + "/tests/data/golden-kv/" + GetParam() + ".safetensors");
  for (const char* key : {"ae", "lm", "ft"})
    for (const std::string name : {"_loss", "_grad_memory_token_embed"}) f.golden[key + name] = kv.at(key + name);
  AdamW opt = probe_optimizer(*f.icae);
  expect_golden_first_steps(f, opt, 1e-5, 1e-4);
}

TEST(TrainStep, AccumulationEqualsOneBatch) {
  // batch 3 x accum 1 and batch 1 x accum 3 make the same update (dropout off).
  auto run = [](bool accumulate) {
    Golden f = load_golden("tiny-llama");
    f.icae->set_trainable(true);
    std::vector<OptimizedTensor> params;
    for (auto& [n, t] : f.icae->named_trainable()) params.push_back({n, t, 1e-2, 0.01});
    AdamW opt(params, {});
    std::vector<Sample> s = {golden_sample(f, "ae", Objective::AE), golden_sample(f, "lm", Objective::LM),
                             golden_sample(f, "ft", Objective::FT)};
    std::vector<MicroBatch> mbs = accumulate ? std::vector<MicroBatch>{{s[0]}, {s[1]}, {s[2]}}
                                             : std::vector<MicroBatch>{{s[0], s[1], s[2]}};
    train_step(*f.icae, opt, mbs, {});
    return f.icae->memory_embed().detach().clone();
  };
  at::Tensor a = run(false), b = run(true);
  EXPECT_LE((a - b).abs().max().item<double>(), 1e-6);
  Golden f = load_golden("tiny-llama");
  EXPECT_GT((a - f.icae->memory_embed()).abs().max().item<double>(), 1e-4);  // it did move
}

// Runs `o` whole, and again stopped halfway and resumed: every update's loss must be the same.
// Returns the whole run's folder.
std::string expect_resume_equals_uninterrupted(TrainOptions o, const std::string& name) {
  o.out = temp_dir(name + "_full");
  Trainer::start(o)->run();
  TrainOptions half = o;
  half.out = temp_dir(name + "_half");
  half.steps = o.steps / 2;
  Trainer::start(half)->run();
  Trainer::resume(half.out, o.steps)->run();
  const auto full = read_metrics(o.out), resumed = read_metrics(half.out);
  EXPECT_EQ(full.size(), static_cast<size_t>(o.steps));
  EXPECT_EQ(resumed.size(), full.size());
  for (size_t i = 0; i < std::min(full.size(), resumed.size()); ++i) {
    EXPECT_EQ(full[i]["step"], resumed[i]["step"]);
    const double a = full[i]["loss"], b = resumed[i]["loss"];
    EXPECT_NEAR(a, b, 1e-6 * std::abs(a)) << "step " << i + 1;
  }
  return o.out;
}

TEST(Trainer, ResumedRunEqualsUninterrupted) {
  const std::string model = test::make_tiny_text_model("icae_tiny_resume");
  TrainOptions o = tiny_options(model, "");
  o.icae.lora.dropout = 0.1;  // the dropout stream must continue exactly too
  ASSERT_EQ(o.steps, 20);
  const std::string run = expect_resume_equals_uninterrupted(o, "icae_run");
  // The adapter of the run loads as an adapter.
  auto tm = load_text_model(model, {});
  EXPECT_NO_THROW(load_adapter(run + "/adapter.safetensors", tm.model));
}

TEST(Trainer, KeyValueSlotRunResumesExactlyAndRecordsItsKind) {
  const std::string model = test::make_tiny_text_model("icae_tiny_resume_kv");
  TrainOptions o = tiny_options(model, "");
  o.icae.slot_kind = SlotKind::KeyValue;
  o.icae.projector = ProjectorKind::None;
  o.icae.spread_memory_positions = true;
  o.icae.lora.dropout = 0.1;
  o.steps = 12;
  const std::string run = expect_resume_equals_uninterrupted(o, "icae_run_kv");
  auto tm = load_text_model(model, {});
  const LoadedAdapter a = load_adapter(run + "/adapter.safetensors", tm.model);
  EXPECT_EQ(a.icae->config().slot_kind, SlotKind::KeyValue);
  EXPECT_TRUE(a.icae->config().spread_memory_positions);
  // A projector maps embeddings: refused with key/value slots, naming the option.
  TrainOptions bad = o;
  bad.out = temp_dir("icae_run_kv_projector");
  bad.icae.projector = ProjectorKind::Linear;
  try {
    Trainer::start(bad);
    FAIL() << "a projector was accepted with key/value slots";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--projector none"), std::string::npos) << e.what();
  }
}

// --stop-after: a milestone of a longer run. The schedule stays the one over --steps (the
// learning rates of the first updates equal the uninterrupted run's, not a short schedule's),
// the run saves where it stops, and resuming without the option finishes the same run.
TEST(Trainer, StopAfterKeepsTheScheduleAndResumesToTheSameRun) {
  const std::string model = test::make_tiny_text_model("icae_tiny_stop_after");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_stop_full"));
  o.schedule = "cosine";
  o.warmup = 3;
  o.steps = 12;
  Trainer::start(o)->run();
  TrainOptions part = o;
  part.out = temp_dir("icae_run_stop_part");
  part.stop_after = 5;
  auto t = Trainer::start(part);
  EXPECT_EQ(t->run(), 0);
  EXPECT_EQ(t->progress().step, 5);
  EXPECT_EQ(read_metrics(part.out).size(), 5u);
  EXPECT_EQ(Trainer::resume(part.out)->run(), 0);  // stop_after is not remembered: runs to 12
  const auto full = read_metrics(o.out), resumed = read_metrics(part.out);
  ASSERT_EQ(full.size(), 12u);
  ASSERT_EQ(resumed.size(), 12u);
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_DOUBLE_EQ(static_cast<double>(full[i]["lr"]), static_cast<double>(resumed[i]["lr"])) << "step " << i + 1;
    const double a = full[i]["loss"], b = resumed[i]["loss"];
    EXPECT_NEAR(a, b, 1e-6 * std::abs(a)) << "step " << i + 1;
  }
  TrainOptions bad = o;
  bad.stop_after = -1;
  EXPECT_THROW(validate(bad), Error);
}

// pretrain --init: a warm start from an adapter takes its shape and weights (the projector's
// calibrated scale too: it must not be recalibrated), so its first loss is the adapter's loss,
// not a fresh adapter's.
TEST(Trainer, PretrainInitStartsFromTheAdapter) {
  const std::string model = test::make_tiny_text_model("icae_tiny_init");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_init_a"));
  o.icae.projector = ProjectorKind::Linear;
  o.steps = 6;
  Trainer::start(o)->run();
  TrainOptions warm = tiny_options(model, temp_dir("icae_run_init_b"));
  warm.init = o.out;
  warm.icae.mem_size = 8;  // taken from the adapter instead
  warm.icae.lora.r = 2;
  warm.steps = 1;
  Trainer::start(warm)->run();
  auto tm = load_text_model(model, {});
  LoadedAdapter a = load_adapter(o.out + "/adapter.safetensors", tm.model);
  LoadedAdapter b = load_adapter(warm.out + "/adapter.safetensors", tm.model);
  EXPECT_EQ(b.icae->config().mem_size, 4);
  EXPECT_EQ(b.icae->config().lora.r, 4);
  EXPECT_EQ(b.icae->config().projector, a.icae->config().projector);
  // One update at lr 1e-3 moves the weights a little; a fresh start would be far away.
  const auto ta = a.icae->named_trainable(), tb = b.icae->named_trainable();
  ASSERT_EQ(ta.size(), tb.size());
  for (size_t i = 0; i < ta.size(); ++i) {
    const double diff = (ta[i].second - tb[i].second).abs().max().item<double>();
    EXPECT_LT(diff, 5e-3) << ta[i].first;
  }
  const auto first_warm = read_metrics(warm.out), run_a = read_metrics(o.out);
  ASSERT_FALSE(first_warm.empty());
  EXPECT_LT(static_cast<double>(first_warm[0]["loss"]), static_cast<double>(run_a[0]["loss"]));
}

TEST(Trainer, RefusesToOverwriteARun) {
  const std::string model = test::make_tiny_text_model("icae_tiny_refuse");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_refuse"));
  o.steps = 1;
  Trainer::start(o)->run();
  EXPECT_THROW(Trainer::start(o), Error);
}

// --dtype auto (the default) is settled when the run starts and config.json records the dtype
// it became, so that a resume elsewhere keeps the run's arithmetic.
TEST(Trainer, AutoDtypeIsRecordedAsWhatItBecame) {
  const std::string model = test::make_tiny_text_model("icae_tiny_auto_dtype");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_auto_dtype"));
  o.steps = 1;
  o.dtype = TrainOptions{}.dtype;
  ASSERT_EQ(o.dtype, "auto");
  Trainer::start(o)->run();
  const auto config = nlohmann::json::parse(std::ifstream(o.out + "/config.json"));
  EXPECT_EQ(config["options"]["dtype"], resolve_auto_dtype("auto", at::kCPU));
}

TEST(Trainer, NonFiniteLossStopsAndKeepsTheLastCheckpoint) {
  test::TinyModelOptions mo;
  mo.nan_weight = true;
  const std::string model = test::make_tiny_text_model("icae_tiny_nan", mo);
  TrainOptions o = tiny_options(model, temp_dir("icae_run_nan"));
  EXPECT_EQ(Trainer::start(o)->run(), 3);
  EXPECT_FALSE(fs::exists(o.out + "/checkpoint.safetensors"));
}

TEST(Trainer, KilledCheckpointWriteLeavesThePreviousOne) {
  const std::string model = test::make_tiny_text_model("icae_tiny_kill");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_kill"));
  o.steps = 2;
  Trainer::start(o)->run();
  // Resume to 4 updates in a child process that dies in the middle of writing the checkpoint.
  const std::string cmd = "ICAE_TEST_CRASH_WRITING=checkpoint.safetensors " + std::string(ICAE_CLI_PATH) +
                          " pretrain --resume " + o.out + " --steps 4 >/dev/null 2>&1";
  const int status = std::system(cmd.c_str());
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 86);  // the injected crash
  EXPECT_TRUE(fs::exists(o.out + "/checkpoint.safetensors.tmp"));
  auto t = Trainer::resume(o.out);
  EXPECT_EQ(t->progress().step, 2);  // the previous checkpoint, intact
  EXPECT_EQ(t->run(), 0);
}

TEST(Trainer, SigtermFinishesTheStepSavesAndExitsZero) {
  const std::string model = test::make_tiny_text_model("icae_tiny_term");
  const std::string out = temp_dir("icae_run_term");
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const std::string cmd = std::string(ICAE_CLI_PATH) + " pretrain --model " + model + " --train " + corpus_dir() +
                            " --out " + out + " -k 4 --max-context 32 --lora-r 4 --batch 2 --steps 100000 " +
                            "--dtype f32 --eval-every 0 --save-every 0 --log-every 1 >/dev/null 2>&1";
    execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  // Wait for the first logged update, then ask it to stop.
  for (int i = 0; i < 600 && read_metrics(out).size() < 2; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_GE(read_metrics(out).size(), 2u);
  kill(pid, SIGTERM);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(fs::exists(out + "/checkpoint.safetensors"));
  EXPECT_GE(Trainer::resume(out)->progress().step, 2);
}

TEST(TrainData, BadRecordsAreNamedAndSkipped) {
  const std::string dir = temp_dir("icae_bad_data");
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(fs::path(dir) / name, std::ios::binary) << text;
    return (fs::path(dir) / name).string();
  };
  auto tok = std::make_shared<tok::Tokenizer>(
      tok::Tokenizer::from_file(test::shared_dir() + "/testdata/tokenizers/llama2/tokenizer.json"));
  DataOptions text;
  text.min_context = 1;
  DataOptions pwc;
  pwc.kind = DataKind::Pwc;
  pwc.max_context = 20;
  struct Case {
    std::string file, content, expect;
    DataOptions opts;
  };
  const std::string long_input(400, 'a');
  const std::vector<Case> cases = {
      {"empty.txt", "", "empty.txt: empty file", text},
      {"bad_utf8.txt", "good text \xff\xfe then", "bad_utf8.txt: invalid UTF-8 in text at byte 10", text},
      {"bad.jsonl", "{\"text\": \"fine\"}\n{not json\n", "bad.jsonl:2: invalid JSON", text},
      {"missing.jsonl", "{\"txt\": \"typo\"}\n", "missing.jsonl:1: missing field \"text\"", text},
      {"notstring.jsonl", "{\"text\": 5}\n", "notstring.jsonl:1: field \"text\" is not a string", text},
      {"pwc.jsonl", "{\"input\": \"a b\", \"prompt\": \"p\"}\n", "pwc.jsonl:1: missing field \"answer\"", pwc},
      {"long.jsonl", "{\"input\": \"" + long_input + "\", \"prompt\": \"p\", \"answer\": \"x\"}\n",
       "long.jsonl:1: context of", pwc},
  };
  for (const auto& c : cases) {
    const std::string path = write(c.file, c.content);
    BadDataLog log(false, 100);
    read_examples(path, *tok, c.opts, log);
    ASSERT_GE(log.count(), 1) << c.file;
    EXPECT_NE(log.messages().back().find(c.expect), std::string::npos) << log.messages().back();
    BadDataLog strict(true);
    EXPECT_THROW(read_examples(path, *tok, c.opts, strict), Error) << c.file;
  }
  // Good records around a bad one survive.
  BadDataLog log;
  auto ex = read_examples(write("mixed.jsonl", "{\"text\": \"one two\"}\nnope\n{\"text\": \"three\"}\n"), *tok, text, log);
  EXPECT_EQ(ex.size(), 2u);
  EXPECT_EQ(log.count(), 1);
}

TEST(TrainData, StreamReplaysToAPositionExactly) {
  std::shared_ptr<const tok::Tokenizer> tok = std::make_shared<tok::Tokenizer>(
      tok::Tokenizer::from_file(test::shared_dir() + "/testdata/tokenizers/llama2/tokenizer.json"));
  DataOptions d;
  d.max_context = 16;
  StreamOptions so;
  so.seed = 9;
  so.shuffle_buffer = 8;
  const auto files = list_data_files({corpus_dir()});
  ExampleStream a(files, tok, d, so, nullptr), b(files, tok, d, so, nullptr);
  std::vector<std::vector<int64_t>> first;
  for (int i = 0; i < 3000; ++i) first.push_back(a.next().context);  // > 1 epoch
  EXPECT_GE(a.epoch(), 1);
  b.skip_to(1234);
  for (int i = 1234; i < 3000; ++i) ASSERT_EQ(b.next().context, first[i]) << i;
  // Two ranks together see exactly the one-rank stream.
  StreamOptions r0 = so, r1 = so;
  r0.world_size = r1.world_size = 2;
  r1.rank = 1;
  ExampleStream s0(files, tok, d, r0, nullptr), s1(files, tok, d, r1, nullptr);
  for (int i = 0; i < 100; i += 2) {
    EXPECT_EQ(s0.next().context, first[i]);
    EXPECT_EQ(s1.next().context, first[i + 1]);
  }
}

TEST(TrainPlot, WritesAnSvgWithEveryCurve) {
  const std::string dir = temp_dir("icae_plot");
  {
    std::ofstream m(dir + "/metrics.jsonl");
    for (int s = 1; s <= 30; ++s)
      m << nlohmann::json{{"step", s}, {"loss", 5.0 - s * 0.1}, {"ae_loss", 5.1 - s * 0.1}, {"lr", 1e-4}}.dump() << "\n";
    m << nlohmann::json{{"step", 30}, {"eval_ae_loss", 2.5}, {"eval_plain_lm_loss", 4.0}, {"eval_ae_bleu", 0.4}}.dump()
      << "\n{torn";
  }
  const std::string svg = plot_metrics_svg(dir);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  for (const char* label : {"train loss", "train AE", "eval AE", "eval plain LM", "BLEU", "learning rate"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  EXPECT_THROW(plot_metrics_svg(temp_dir("icae_plot_empty")), Error);
  // Well-formed XML: xmllint (libxml2-utils) where installed.
  if (std::system("command -v xmllint >/dev/null 2>&1") == 0) {
    std::ofstream(dir + "/loss.svg") << svg;
    EXPECT_EQ(std::system(("xmllint --noout " + dir + "/loss.svg").c_str()), 0);
  }
}

TEST(TrainStep, ActivationCheckpointingGivesTheSameLossAndGradients) {
  // Dropout on, so the recomputation must replay the same masks from the generator.
  auto run = [](bool checkpointing) {
    Golden f = load_golden("tiny-mistral");
    f.icae->set_lora_dropout(0.2);
    f.icae->set_trainable(true);
    std::vector<OptimizedTensor> params;
    for (auto& [n, t] : f.icae->named_trainable()) params.push_back({n, t, 1e-3, 0.0});
    AdamW opt(params, {});
    at::Generator gen = make_generator(at::kCPU, 5);
    StepConfig sc;
    sc.update = false;
    sc.clip = 0;
    sc.generator = &gen;
    sc.activation_checkpointing = checkpointing;
    const StepStats s = train_step(*f.icae, opt, {{golden_sample(f, "ae", Objective::AE), golden_sample(f, "ft", Objective::FT)}}, sc);
    return std::make_tuple(s.loss, f.icae->memory_embed().grad().clone(), f.icae->lora().pair(1, Proj::V).A.grad().clone());
  };
  auto [l0, m0, a0] = run(false);
  auto [l1, m1, a1] = run(true);
  EXPECT_NEAR(l0, l1, 1e-6 * l0);
  EXPECT_LE((m0 - m1).abs().max().item<double>() / m0.abs().max().item<double>(), 1e-5);
  EXPECT_LE((a0 - a1).abs().max().item<double>() / a0.abs().max().item<double>(), 1e-5);
}

TEST(TrainStep, ProjectorAdaptersRoundTrip) {
  for (const char* kind : {"linear", "mlp"}) {
    Golden f = load_golden("tiny-llama");
    IcaeConfig c = f.icae->config();
    c.projector = parse_projector(kind);
    Icae icae(f.base, c, 3);
    const auto ctx = to_ids(f.golden.at("context_ids"));
    icae.calibrate_projector({ctx});
    at::NoGradGuard no_grad;
    for (auto& t : icae.projector().parameters()) t.add_(at::randn_like(t) * 0.01);  // not the init
    const std::string path = ::testing::TempDir() + std::string("icae_projector_") + kind + ".safetensors";
    save_adapter(path, icae, {});
    LoadedAdapter back = load_adapter(path, f.base);
    EXPECT_EQ(back.icae->config().projector, c.projector);
    EXPECT_TRUE(at::allclose(back.icae->compress(ctx), icae.compress(ctx), 1e-6, 1e-6)) << kind;
  }
}

// On CUDA (skipped without a GPU): the first-step losses of each objective equal the goldens, and
// a whole run of the trainer follows the CPU run's curve (dropout off; only kernels differ).
TEST(CudaTrainStep, FirstStepLossesEqualTheGoldensOnCuda) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  Golden f = test::load_golden_fixture("tiny-llama", at::Device(at::kCUDA, 0));
  AdamW opt = probe_optimizer(*f.icae);
  expect_golden_first_steps(f, opt, 1e-4, 1e-3);
}

TEST(CudaTrainer, RunFollowsTheCpuRun) {
  if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const std::string model = test::make_tiny_text_model("icae_tiny_cuda");
  TrainOptions o = tiny_options(model, temp_dir("icae_run_cpu"));
  o.icae.lora.dropout = 0;
  o.steps = 8;
  Trainer::start(o)->run();
  TrainOptions g = o;
  g.out = temp_dir("icae_run_cuda");
  g.device = "cuda";
  Trainer::start(g)->run();
  const auto cpu = read_metrics(o.out), cuda = read_metrics(g.out);
  ASSERT_EQ(cpu.size(), 8u);
  ASSERT_EQ(cuda.size(), 8u);
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double a = cpu[i]["loss"], b = cuda[i]["loss"];
    EXPECT_NEAR(a, b, 1e-3 * std::abs(a)) << "step " << i + 1;
  }
  auto tm = load_text_model(model, {});
  EXPECT_NO_THROW(load_adapter(g.out + "/adapter.safetensors", tm.model));
}

// The run config holds the adapter's settings under "icae", with the names adapter files use, and
// reads configs written before that (flat keys; e.g. a run folder started by an older build).
TEST(RunConfig, HoldsTheAdapterSettingsOnceAndReadsTheOlderFlatKeys) {
  TrainOptions o;
  o.icae.mem_size = 32;
  o.icae.compression_rate = 2;
  o.icae.slot_kind = SlotKind::KeyValue;
  o.icae.projector = ProjectorKind::None;
  o.icae.spread_memory_positions = true;
  o.icae.lora.r = 16;
  o.icae.lora.dropout = 0.1;
  o.icae.lora.target_modules = {"q_proj", "down_proj"};
  const nlohmann::json j = to_json(o);
  EXPECT_FALSE(j.contains("mem_size"));
  EXPECT_EQ(j.at("icae").at("mem_size"), 32);
  EXPECT_EQ(j.at("icae").at("slot_kind"), "kv");
  const TrainOptions back = options_from_json(j);
  EXPECT_EQ(to_json(back), j);

  const nlohmann::json legacy = {{"mode", "pretrain"}, {"mem_size", 32}, {"rate", 2.0}, {"projector", "none"},
                                 {"slot_kind", "kv"}, {"memory_positions", "spread"}, {"lora_r", 16},
                                 {"lora_alpha", 32.0}, {"lora_dropout", 0.1}, {"targets", {"q_proj", "down_proj"}}};
  EXPECT_EQ(to_json(options_from_json(legacy)).at("icae"), j.at("icae"));
  // A new run projects linearly unless told otherwise; released checkpoints load with none.
  EXPECT_EQ(TrainOptions{}.icae.projector, ProjectorKind::Linear);
  EXPECT_EQ(IcaeConfig{}.projector, ProjectorKind::None);
  EXPECT_THROW(options_from_json({{"mem_sise", 3}}), Error);
}
