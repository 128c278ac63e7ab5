// icae compress / icae ask / icae params: the ICAE itself from the command line.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/core/adapter_file.h"
#include "icae/core/prompt_layout.h"
#include "icae/infer/generate.h"
#include "icae/infer/session.h"
#include "icae/infer/slot_export.h"
#include "icae/infer/slot_file.h"
#include "icae/infer/text_model.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct IcaeArgs : cli::ModelOptions {
  std::string context_file, context_ids, slots_in, out, prompt, tmpl;
  std::string format = "safetensors";
  std::vector<std::string> context_files;  // compress: one or more
  bool reconstruct = false, stats = false;
  int64_t max_new_tokens = 256;
  SamplingOptions sampling;
};

// The shared weights (as a server would hold them) and a session over them.
struct Loaded {
  std::shared_ptr<const TextModel> text_ptr;
  std::shared_ptr<const LoadedAdapter> adapter_ptr;
  const TextModel& text;
  const LoadedAdapter& adapter;
  icae::Session session;
};

std::unique_ptr<Loaded> open_session(const IcaeArgs& a) {
  TextModelOptions o;
  o.load = cli::resolve(a.run);
  o.tokenizer_path = a.tokenizer;
  auto text = std::make_shared<const TextModel>(load_text_model(a.model, o));
  AdapterLoadOptions ao;
  if (a.lora_alpha > 0) ao.lora_alpha = a.lora_alpha;
  auto adapter = std::make_shared<const LoadedAdapter>(load_adapter(a.adapter, text->model, ao));
  if (!adapter->ignored_keys.empty())
    std::cerr << "note: ignored " << adapter->ignored_keys.size() << " tensors of " << a.adapter
              << " that are not part of the adapter (e.g. " << adapter->ignored_keys.front() << ")\n";
  SessionOptions so;
  so.max_new_tokens = a.max_new_tokens;
  so.ft_template = a.tmpl;
  so.sampling = a.sampling;
  return std::unique_ptr<Loaded>(new Loaded{text, adapter, *text, *adapter, icae::Session(text, adapter, so)});
}

std::vector<int64_t> context_tokens(const IcaeArgs& a, const Loaded& s) {
  if (!a.context_ids.empty()) return cli::parse_id_list(a.context_ids);
  ICAE_CHECK(!a.context_file.empty(), ErrorKind::Usage, "give the context: --context FILE or --context-ids 1,2,3");
  auto ids = encode_plain(*s.text.tokenizer, cli::read_text_file(a.context_file));
  ICAE_CHECK(!ids.empty(), ErrorKind::BadInput, a.context_file + ": empty context");
  return ids;
}

// Writes one context's slots in the asked format.
void write_slots(const IcaeArgs& a, const Loaded& s, const std::string& out, const at::Tensor& slots,
                 int64_t context_tokens) {
  const SlotFormat format = parse_slot_format(a.format);
  if (format == SlotFormat::Safetensors) {
    ICAE_CHECK(a.prompt.empty() && !a.reconstruct, ErrorKind::Usage,
               "--prompt and --reconstruct shape the decoder prefix of --format vllm|llamacpp; a slot file holds the slots only");
    save_slots(out, *s.adapter.icae, slots, context_tokens);
    return;
  }
  // Other engines get the whole decoder prefix: [slots, AE], or the FT template around
  // [slots, FT] (+ prompt + the template's end when --prompt is given).
  const Icae& icae = *s.adapter.icae;
  PrefixExport what;
  what.context_tokens = context_tokens;
  if (a.reconstruct) {
    ICAE_CHECK(a.prompt.empty(), ErrorKind::Usage, "give --prompt or --reconstruct, not both");
    what.kind = "ae";
    what.prefix = ae_prefix(icae, slots.size(0));
  } else {
    what.kind = "ft";
    what.ft_template = s.session.ft_template();
    if (!a.prompt.empty()) what.prompt = encode_plain(*s.text.tokenizer, a.prompt);
    what.prefix = ft_prefix(icae, what.ft_template, slots.size(0), what.prompt);
    if (what.prompt.empty()) what.prefix.resize(what.prefix.size() - what.ft_template.after.size());
  }
  export_prefix(out, format, icae, slots, what);
}

void run_compress(const IcaeArgs& a) {
  std::unique_ptr<Loaded> loaded = open_session(a);
  const Loaded& s = *loaded;
  // Several --context files are compressed in one batch, each written to FOLDER/NAME.slots.*.
  std::vector<std::vector<int64_t>> contexts;
  std::vector<std::string> outs;
  if (a.context_files.size() > 1) {
    ICAE_CHECK(a.context_ids.empty(), ErrorKind::Usage, "give several --context files or --context-ids, not both");
    std::filesystem::create_directories(a.out);
    const std::string ext = a.format == "safetensors" ? ".slots.safetensors"
                            : a.format == "vllm"      ? ".prefix.safetensors"
                                                      : ".prefix.f32";
    for (const auto& f : a.context_files) {
      contexts.push_back(encode_plain(*s.text.tokenizer, cli::read_text_file(f)));
      ICAE_CHECK(!contexts.back().empty(), ErrorKind::BadInput, f + ": empty context");
      outs.push_back((std::filesystem::path(a.out) / std::filesystem::path(f).filename()).string() + ext);
    }
  } else {
    IcaeArgs one = a;
    if (!a.context_files.empty()) one.context_file = a.context_files.front();
    contexts.push_back(context_tokens(one, s));
    outs.push_back(a.out);
  }
  at::NoGradGuard no_grad;
  auto t0 = std::chrono::steady_clock::now();
  std::vector<at::Tensor> slots = loaded->session.compress(contexts);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  int64_t tokens = 0, n = 0;
  for (size_t i = 0; i < contexts.size(); ++i) {
    write_slots(a, s, outs[i], slots[i], static_cast<int64_t>(contexts[i].size()));
    tokens += static_cast<int64_t>(contexts[i].size());
    n += slots[i].size(0);
  }
  std::fprintf(stderr, "compressed %zu context(s), %lld tokens into %lld slots (%.1fx) in %.1f ms -> %s\n",
               contexts.size(), static_cast<long long>(tokens), static_cast<long long>(n),
               static_cast<double>(tokens) / static_cast<double>(n), ms, a.out.c_str());
}

void run_ask(const IcaeArgs& a) {
  std::unique_ptr<Loaded> loaded = open_session(a);
  icae::Session& session = loaded->session;
  at::NoGradGuard no_grad;
  at::Tensor slots = !a.slots_in.empty() ? load_slots(a.slots_in, session.icae()).tensor
                                         : session.compress({context_tokens(a, *loaded)}).front();
  StreamPrinter printer(*loaded->text.tokenizer);
  const std::vector<int64_t>& stops = loaded->text.stop_ids;
  auto print = [&](int64_t id) {
    if (std::find(stops.begin(), stops.end(), id) == stops.end()) std::cout << printer.push(id) << std::flush;
    return true;
  };
  if (a.reconstruct) {
    session.reconstruct(slots, print);
  } else {
    ICAE_CHECK(!a.prompt.empty(), ErrorKind::Usage, "give --prompt TEXT, or --reconstruct");
    session.answer(slots, a.prompt, print);
  }
  std::cout << "\n";
}

void add_common(CLI::App* cmd, IcaeArgs& a) {
  cli::ModelOptionsUse use;
  use.adapter = cli::AdapterUse::Required;
  use.tokenizer = use.lora_alpha = true;
  cli::add_model_options(cmd, a, use);
}

void setup(CLI::App& root) {
  auto c = std::make_shared<IcaeArgs>();
  CLI::App* compress = root.add_subcommand(
      "compress", "Compress a context into memory slots and save them (compress once, ask many times).");
  add_common(compress, *c);
  compress->add_option("--context", c->context_files,
                       "Text file(s) to compress; several are compressed in one batch and -o is then a folder");
  compress->add_option("--context-ids", c->context_ids, "Or the context as comma-separated token ids");
  compress->add_option("--out,-o", c->out, "File to write (a slot file, or the engine's tensor file + FILE.json)")->required();
  compress->add_option("--format", c->format,
                       "safetensors: an icae slot file; vllm: prompt_embeds [T, hidden] safetensors of the whole decoder\n"
                       "prefix; llamacpp: the same as raw float32 rows (llama_batch.embd). See docs/engines.md")
      ->check(CLI::IsMember({"safetensors", "vllm", "llamacpp"}))
      ->capture_default_str();
  compress->add_option("--prompt,-p", c->prompt, "vllm/llamacpp: the prompt to put in the prefix (default: none, append it yourself)");
  compress->add_flag("--reconstruct", c->reconstruct, "vllm/llamacpp: the reconstruction prefix [slots, AE] instead");
  compress->add_option("--template", c->tmpl, "vllm/llamacpp: FT template (default: the adapter's)");
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
  cli::add_sampling_options(ask, a->sampling);
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
