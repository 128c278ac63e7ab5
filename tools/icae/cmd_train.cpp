// icae pretrain / icae finetune: train an ICAE adapter (see src/train/trainer.cpp).
#include <iostream>
#include <memory>

#include "command.h"
#include "common.h"
#include "icae/train/trainer.h"
#include "icae/util/error.h"

namespace {

using namespace icae;
using train::TrainOptions;

struct TrainArgs {
  TrainOptions o;
  // --model, --tokenizer, --device, --dtype, --threads as every command declares them; copied
  // into `o` when a new run starts (a resumed run keeps its own).
  cli::ModelOptions base = [] {
    cli::ModelOptions m;
    m.run.dtype = TrainOptions{}.dtype;
    return m;
  }();
  std::string resume;
  int64_t steps_override = 0;
  // The adapter's named settings as the command line spells them (IcaeConfig holds enums and a
  // flag); their defaults come from TrainOptions.
  std::string projector = projector_name(TrainOptions{}.icae.projector);
  std::string slot_kind = slot_kind_name(TrainOptions{}.icae.slot_kind);
  std::string memory_positions = TrainOptions{}.icae.spread_memory_positions ? "spread" : "after";
  CLI::Option* projector_option = nullptr;  // to tell a default from a choice
};

void add_train_options(CLI::App* c, TrainArgs& a, bool finetune) {
  TrainOptions& o = a.o;
  cli::ModelOptionsUse base;
  base.tokenizer = true;
  base.model_required = false;  // a --resume'd run names its own
  base.device = cli::DeviceUse::Training;
  cli::add_model_options(c, a.base, base);
  if (finetune) {
    c->add_option("--train", o.train_data, "PwC-format JSONL ({\"input\", \"prompt\", \"answer\"} per line)");
    c->add_option("--eval", o.eval_data, "Held-out PwC JSONL for the FT loss");
    c->add_option("--init", o.init, "The adapter to fine-tune: an adapter file or a pretraining run folder");
    c->add_option("--template", o.templ, "FT template around [slots, FT, prompt]: none, mistral, llama2, llama3, chatml")
        ->check(CLI::IsMember({"none", "mistral", "llama2", "llama3", "chatml"}))
        ->capture_default_str();
  } else {
    c->add_option("--train", o.train_data,
                  "Text: .txt files (one document each, or per blank-line block with --split-blocks), folders of "
                  "them (recursively), JSONL with a \"text\" field");
    c->add_option("--eval", o.eval_data, "Held-out text, read the same way: eval losses, plain-LM reference, BLEU");
    c->add_flag("--split-blocks", o.split_blocks, "In .txt files, one document per blank-line-separated block");
    c->add_option("--init", o.init,
                  "Continue pretraining from this adapter (file or run folder): its shape and weights, fresh "
                  "optimizer moments and data order (--mem-size, --rate, --lora-*, --targets, --projector are "
                  "taken from it)");
    c->add_option("--lm-ratio", o.lm_ratio, "Share of LM samples (the paper: 0.4-0.6 mixes work best)")
        ->check(CLI::Range(0.0, 1.0))
        ->capture_default_str();
    c->add_option("--leave-tokens-for-lm", o.leave_tokens_for_lm, "LM: first continuation tokens without loss")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    c->add_option("--min-tokens-for-lm", o.min_tokens_for_lm, "LM: fewer continuation tokens make an AE sample instead")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    c->add_option("--curriculum", o.curriculum_steps,
                  "Tokens per slot grow from 1 to --rate over this many updates (0: off). Helps escape the plateau "
                  "where the decoder ignores the slots")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
  }
  c->add_option("--out", o.out, "The run folder (config.json, metrics.jsonl, checkpoint, adapter.safetensors)");
  c->add_option("--resume", a.resume, "Continue the run in this folder from its checkpoint, with its saved options");
  c->add_option("--mem-size,-k", o.icae.mem_size, "Memory slots per segment (k)")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--rate", o.icae.compression_rate, "Compression rate: tokens per slot; segments of k * rate tokens")
      ->check(CLI::Range(1.0, 1e6))
      ->capture_default_str();
  c->add_option("--max-context", o.max_context, "Context tokens per sample (longer texts are cut; multi-span beyond k * rate)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  a.projector_option = c->add_option("--projector", a.projector,
                "Slot projector between encoder and decoder: none (the original), linear, mlp (see README);\n"
                "embedding slots only (with --slot-kind kv the default becomes none)")
      ->check(CLI::IsMember({"none", "linear", "mlp"}))
      ->capture_default_str();
  if (!finetune)
    c->add_option("--slot-kind", a.slot_kind,
                  "What a memory slot is: embedding (ICAE's: the encoder's last hidden state, read as an input\n"
                  "embedding) or kv (500xCompressor's: the encoder's key and value in every layer, read from the\n"
                  "decoder's cache; learns far faster on small models, see docs/training.md)")
        ->check(CLI::IsMember({"embedding", "kv"}))
        ->capture_default_str();
  if (!finetune)
    c->add_option("--memory-positions", a.memory_positions,
                  "Encoder position ids of a segment's memory tokens: after the segment (the original's) or\n"
                  "spread evenly over it (EPL, arXiv 2409.14364; opt-in)")
        ->check(CLI::IsMember({"after", "spread"}))
        ->capture_default_str();
  c->add_option("--lora-r", o.icae.lora.r, "LoRA rank")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--lora-alpha", o.icae.lora.alpha, "LoRA alpha (scale = alpha / r)")->capture_default_str();
  c->add_option("--lora-dropout", o.icae.lora.dropout, "LoRA dropout (training only)")->check(CLI::Range(0.0, 0.99))->capture_default_str();
  c->add_option("--targets", o.icae.lora.target_modules, "LoRA target modules: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
      ->delimiter(',')
      ->capture_default_str();
  c->add_option("--batch", o.batch, "Samples per micro-batch (padded together)")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--accum", o.accum, "Micro-batches per update (gradient accumulation)")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--lr", o.lr, "Learning rate of the LoRA weights")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--mem-lr", o.mem_lr, "Learning rate of the memory embeddings and the projector (0: --lr)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--warmup", o.warmup, "Warm-up updates (linear from 0)")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--schedule", o.schedule, "Learning-rate schedule after warm-up")
      ->check(CLI::IsMember({"cosine", "linear", "constant"}))
      ->capture_default_str();
  c->add_option("--steps", o.steps, "Updates in all (with --resume: a new total)")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--stop-after", o.stop_after,
                 "Stop (saving) after this update, the schedule still laid out over --steps: a milestone of a longer "
                 "run (0: run to --steps; not remembered by --resume)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_option("--weight-decay", o.weight_decay, "AdamW weight decay of the LoRA weights")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--clip", o.clip, "Gradient clipping: max global norm (0: off)")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--seed", o.seed, "Seed of the run: initialisation, data order, AE/LM choice, dropout")->capture_default_str();
  c->add_option("--shuffle-buffer", o.shuffle_buffer, "Examples in the shuffle buffer (1: data in order)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  c->add_option("--eval-every", o.eval_every, "Updates between evaluations (0: none)")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--save-every", o.save_every, "Updates between checkpoints (0: only at the end)")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--log-every", o.log_every, "Updates between metric lines")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--eval-samples", o.eval_samples, "Held-out examples for the eval losses")->check(CLI::PositiveNumber)->capture_default_str();
  c->add_option("--eval-generate", o.eval_generate, "Of which greedily reconstructed for BLEU")->check(CLI::NonNegativeNumber)->capture_default_str();
  c->add_option("--plateau-check", o.plateau_check_step, "Warn when by this update the eval AE loss is within 5% of plain LM")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  c->add_flag("--activation-checkpointing", o.activation_checkpointing,
              "Recompute each layer's activations in the backward pass: less memory, ~30% more time");
  c->add_flag("--deterministic", o.deterministic, "Deterministic algorithms (repeatable runs)");
  c->add_flag("--strict-data", o.strict_data, "Stop at the first bad record instead of skipping it");
}

int run_training(TrainArgs& a, const char* mode) {
  std::unique_ptr<train::Trainer> t;
  if (!a.resume.empty()) {
    std::optional<int64_t> steps;
    if (a.o.steps != TrainOptions{}.steps) steps = a.o.steps;
    t = train::Trainer::resume(a.resume, steps, a.o.stop_after);
    ICAE_CHECK(t->options().mode == mode, ErrorKind::Usage,
               a.resume + " is a " + t->options().mode + " run: resume it with icae " + t->options().mode);
  } else {
    a.o.mode = mode;
    a.o.model = a.base.model;
    a.o.tokenizer = a.base.tokenizer;
    a.o.device = a.base.run.device;
    a.o.dtype = a.base.run.dtype;
    a.o.threads = a.base.run.threads;
    IcaeConfig& c = a.o.icae;
    c.slot_kind = parse_slot_kind(a.slot_kind);
    c.spread_memory_positions = a.memory_positions == "spread";
    // The projector maps embeddings: key/value slots have none unless one is asked for (refused).
    c.projector = c.slot_kind == SlotKind::KeyValue && a.projector_option->count() == 0 ? ProjectorKind::None
                                                                                         : parse_projector(a.projector);
    t = train::Trainer::start(a.o);
  }
  const int code = t->run();
  std::cerr << "run folder: " << t->options().out << " (adapter.safetensors, metrics.jsonl; plot: icae plot "
            << t->options().out << ")\n";
  return code;
}

void setup(CLI::App& root) {
  auto p = std::make_shared<TrainArgs>();
  CLI::App* pre = root.add_subcommand(
      "pretrain",
      "Pretrain an ICAE adapter (LoRA encoder + memory tokens) with the autoencoding and language-modelling\n"
      "objectives on plain text. The run folder gets config.json, metrics.jsonl, checkpoint.safetensors and\n"
      "adapter.safetensors (usable as --adapter). Ctrl-C saves and stops; --resume continues exactly.\n"
      "Example: icae pretrain --model M.gguf --train corpus/ --eval heldout/ --out runs/a -k 32 --max-context 128");
  add_train_options(pre, *p, false);
  pre->callback([p] {
    const int code = run_training(*p, "pretrain");
    if (code != 0) throw Error(static_cast<ErrorKind>(code), "training stopped");
  });

  auto f = std::make_shared<TrainArgs>();
  f->o.lr = 5e-5;  // the paper's fine-tuning rate
  f->o.warmup = 100;
  f->o.lm_ratio = 0;
  CLI::App* ft = root.add_subcommand(
      "finetune",
      "Fine-tune an ICAE adapter on instruction data in the PwC format ({\"input\", \"prompt\", \"answer\"}):\n"
      "the encoder learns to make slots from which the frozen decoder answers the prompt. Starts from --init\n"
      "(a pretrained adapter or run folder); k, rate, LoRA shape and projector come from it.");
  add_train_options(ft, *f, true);
  ft->callback([f] {
    const int code = run_training(*f, "finetune");
    if (code != 0) throw Error(static_cast<ErrorKind>(code), "training stopped");
  });
}

}  // namespace

ICAE_COMMAND(setup);
