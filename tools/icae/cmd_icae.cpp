// icae compress / icae ask / icae params: the ICAE itself from the command line.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/core/checkpoint.h"
#include "icae/core/objectives.h"
#include "icae/infer/generate.h"
#include "icae/infer/slot_file.h"
#include "icae/infer/text_model.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct IcaeArgs {
  std::string model, tokenizer, adapter, context_file, context_ids, slots_in, out, prompt, tmpl;
  bool reconstruct = false, stats = false;
  double lora_alpha = 0;  // 0: from the adapter file (released files: 32)
  int64_t max_new_tokens = 256;
  cli::RunOptions run;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Session {
  TextModel text;
  LoadedAdapter adapter;
};

Session open_session(const IcaeArgs& a) {
  TextModelOptions o;
  o.load = cli::resolve(a.run);
  o.tokenizer_path = a.tokenizer;
  Session s{load_text_model(a.model, o), {}};
  AdapterLoadOptions ao;
  if (a.lora_alpha > 0) ao.lora_alpha = a.lora_alpha;
  s.adapter = load_adapter(a.adapter, s.text.model, ao);
  if (!s.adapter.ignored_keys.empty())
    std::cerr << "note: ignored " << s.adapter.ignored_keys.size() << " tensors of " << a.adapter
              << " that are not part of the adapter (e.g. " << s.adapter.ignored_keys.front() << ")\n";
  return s;
}

std::vector<int64_t> context_tokens(const IcaeArgs& a, const Session& s) {
  if (!a.context_ids.empty()) return cli::parse_id_list(a.context_ids);
  ICAE_CHECK(!a.context_file.empty(), ErrorKind::Usage, "give the context: --context FILE or --context-ids 1,2,3");
  auto ids = encode_plain(*s.text.tokenizer, read_file(a.context_file));
  ICAE_CHECK(!ids.empty(), ErrorKind::BadInput, a.context_file + ": empty context");
  return ids;
}

void run_compress(const IcaeArgs& a) {
  Session s = open_session(a);
  const auto ids = context_tokens(a, s);
  at::NoGradGuard no_grad;
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor slots = s.adapter.icae->compress(ids);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  save_slots(a.out, *s.adapter.icae, slots, static_cast<int64_t>(ids.size()));
  std::fprintf(stderr, "compressed %zu tokens into %lld slots (%.1fx) in %.1f ms -> %s\n", ids.size(),
               static_cast<long long>(slots.size(0)), static_cast<double>(ids.size()) / slots.size(0), ms,
               a.out.c_str());
}

void run_ask(const IcaeArgs& a) {
  Session s = open_session(a);
  Icae& icae = *s.adapter.icae;
  at::NoGradGuard no_grad;
  at::Tensor slots;
  if (!a.slots_in.empty()) {
    slots = load_slots(a.slots_in, icae).slots;
  } else {
    slots = icae.compress(context_tokens(a, s));
  }
  std::vector<int64_t> prefix;
  if (a.reconstruct) {
    prefix = ae_prefix(icae, slots.size(0));
  } else {
    ICAE_CHECK(!a.prompt.empty(), ErrorKind::Usage, "give --prompt TEXT, or --reconstruct");
    const std::string name = a.tmpl.empty() ? s.adapter.info.chat_template : a.tmpl;
    FtTemplate t = make_ft_template(name, *s.text.tokenizer);
    prefix = ft_prefix(icae, t, slots.size(0), encode_plain(*s.text.tokenizer, a.prompt));
  }
  GenerateOptions g;
  g.max_new_tokens = a.max_new_tokens;
  g.stop_ids = s.text.stop_ids;
  StreamPrinter printer(*s.text.tokenizer);
  g.on_token = [&](int64_t id) {
    if (std::find(g.stop_ids.begin(), g.stop_ids.end(), id) == g.stop_ids.end()) std::cout << printer.push(id) << std::flush;
    return true;
  };
  generate(icae.base(), icae.decoder_embeddings(prefix, slots), g);
  std::cout << "\n";
}

void add_common(CLI::App* cmd, IcaeArgs& a) {
  cmd->add_option("--model", a.model, "Base model folder or .gguf file")->required();
  cmd->add_option("--adapter", a.adapter, "ICAE adapter (.safetensors: ours or the released v2 layout)")->required();
  cmd->add_option("--tokenizer", a.tokenizer, "tokenizer.json to use instead of the model's own");
  cmd->add_option("--lora-alpha", a.lora_alpha, "LoRA alpha for released checkpoints, which do not store it (default 32)")
      ->check(cli::at_least(0));
  cli::add_run_options(cmd, a.run);
}

void setup(CLI::App& root) {
  auto c = std::make_shared<IcaeArgs>();
  CLI::App* compress = root.add_subcommand(
      "compress", "Compress a context into memory slots and save them (compress once, ask many times).");
  add_common(compress, *c);
  compress->add_option("--context", c->context_file, "Text file to compress");
  compress->add_option("--context-ids", c->context_ids, "Or the context as comma-separated token ids");
  compress->add_option("--out,-o", c->out, "Slot file to write (.safetensors)")->required();
  compress->callback([c] { run_compress(*c); });

  auto a = std::make_shared<IcaeArgs>();
  CLI::App* ask = root.add_subcommand(
      "ask",
      "Answer a prompt about a context from its memory slots (or reconstruct the context) with the frozen\n"
      "base model. The context comes as text (--context), token ids (--context-ids) or a slot file (--slots).");
  add_common(ask, *a);
  ask->add_option("--context", a->context_file, "Text file to compress first");
  ask->add_option("--context-ids", a->context_ids, "Or the context as comma-separated token ids");
  ask->add_option("--slots", a->slots_in, "Or slots saved by icae compress");
  ask->add_option("--prompt,-p", a->prompt, "The question or instruction");
  ask->add_flag("--reconstruct", a->reconstruct, "Reconstruct the context instead ([slots, AE])");
  ask->add_option("--template", a->tmpl, "FT template: none, mistral, llama2, llama3, chatml (default: the adapter's)");
  ask->add_option("--max-new-tokens,-n", a->max_new_tokens, "Tokens to generate at most")
      ->check(cli::at_least(0))
      ->capture_default_str();
  ask->callback([a] { run_ask(*a); });

  struct ParamArgs {
    std::string config;
    int64_t mem_size = 128, r = 128;
    std::vector<std::string> targets{"q_proj", "v_proj"};
  };
  auto p = std::make_shared<ParamArgs>();
  CLI::App* params = root.add_subcommand(
      "params", "Report the trainable parameters of an ICAE (LoRA + memory embeddings) and their share of a base\n"
                "model, from its config.json alone (no weights needed).");
  params->add_option("--config", p->config, "The base model's config.json")->required();
  params->add_option("--mem-size,-k", p->mem_size, "Memory slots per segment")
      ->check(cli::at_least(1))
      ->capture_default_str();
  params->add_option("--lora-r,-r", p->r, "LoRA rank")->check(cli::at_least(1))->capture_default_str();
  params->add_option("--targets", p->targets, "LoRA target modules")->delimiter(',')->capture_default_str();
  params->callback([p] {
    IcaeConfig ic;
    ic.mem_size = p->mem_size;
    ic.lora.r = p->r;
    ic.lora.target_modules = p->targets;
    for (const auto& t : p->targets) parse_proj(t);
    std::cout << parameter_report(ModelConfig::from_file(p->config), ic).to_string() << "\n";
  });
}

}  // namespace

ICAE_COMMAND(setup);
