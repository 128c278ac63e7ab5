// icae generate / icae chat: text generation from the base model, streamed to stdout.
#include <ATen/ATen.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "command.h"
#include "common.h"
#include "usage.h"
#include "icae/infer/generate.h"
#include "icae/infer/text_model.h"
#include "icae/tokenizer/chat_template.h"
#include "icae/util/error.h"

namespace {

using namespace icae;

struct GenArgs : cli::ModelOptions {
  std::string prompt, prompt_file, ids, system;
  bool chat = false, stats = false, print_ids = false, ignore_eos = false;
  int64_t max_new_tokens = 128;
  SamplingOptions sampling;
};

void add_model(CLI::App* cmd, GenArgs& a) {
  cli::ModelOptionsUse use;
  use.tokenizer = true;
  cli::add_model_options(cmd, a, use);
}

void add_sampling(CLI::App* cmd, GenArgs& a) {
  cmd->add_option("--max-new-tokens,-n", a.max_new_tokens, "Tokens to generate at most")
      ->check(cli::at_least(0))
      ->capture_default_str();
  cli::add_sampling_options(cmd, a.sampling);
  cmd->add_flag("--stats", a.stats, "Print prefill and decode speed to stderr");
  cmd->add_flag("--print-ids", a.print_ids, "Print the generated token ids (comma-separated) instead of text");
  cmd->add_flag("--ignore-eos", a.ignore_eos, "Do not stop at end-of-sequence tokens: always generate -n tokens");
}

// Generates and streams; returns the generated text.
std::string stream(const TextModel& m, const std::vector<int64_t>& prompt, const GenArgs& a) {
  GenerateOptions g;
  g.max_new_tokens = a.max_new_tokens;
  g.sampling = a.sampling;
  if (!a.ignore_eos) g.stop_ids = m.stop_ids;
  StreamPrinter printer(*m.tokenizer);
  std::vector<int64_t> ids;
  auto start = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point first;
  int64_t count = 0;
  g.on_token = [&](int64_t id) {
    if (count++ == 0) first = std::chrono::steady_clock::now();
    ids.push_back(id);
    if (a.print_ids) return true;
    if (std::find(m.stop_ids.begin(), m.stop_ids.end(), id) != m.stop_ids.end()) return true;
    std::cout << printer.push(id) << std::flush;
    return true;
  };
  generate_from_ids(*m.model, prompt, g);
  auto end = std::chrono::steady_clock::now();
  if (a.print_ids)
    for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? "," : "") << ids[i];
  std::cout << "\n" << std::flush;
  if (a.stats && count > 0) {
    const double prefill = std::chrono::duration<double>(first - start).count();
    const double decode = std::chrono::duration<double>(end - first).count();
    std::fprintf(stderr, "[prompt %zu tokens in %.3f s = %.1f tok/s; %lld tokens generated, %.1f tok/s]\n",
                 prompt.size(), prefill, prompt.size() / prefill, static_cast<long long>(count),
                 count > 1 ? (count - 1) / decode : 0.0);
  }
  return printer.text();
}

std::string read_all(std::istream& in) {
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void run_generate(const GenArgs& a) {
  TextModelOptions o;
  o.load = cli::resolve(a.run);
  o.tokenizer_path = a.tokenizer;
  TextModel m = load_text_model(a.model, o);
  std::vector<int64_t> prompt;
  if (!a.ids.empty()) {
    prompt = cli::parse_id_list(a.ids);
  } else {
    std::string text = a.prompt;
    if (!a.prompt_file.empty()) {
      std::ifstream in(a.prompt_file);
      ICAE_CHECK(in.good(), ErrorKind::Io, a.prompt_file + ": cannot open");
      text = read_all(in);
    }
    ICAE_CHECK(!text.empty(), ErrorKind::Usage, "give a prompt: --prompt TEXT, --prompt-file FILE or --ids 1,2,3");
    if (a.chat) {
      prompt = encode_chat_prompt(m, text, a.system);
    } else {
      tok::EncodeOptions e;
      e.add_special = true;
      for (auto id : m.tokenizer->encode(text, e)) prompt.push_back(id);
    }
  }
  stream(m, prompt, a);
}

void setup_generate(CLI::App& root) {
  auto a = std::make_shared<GenArgs>();
  CLI::App* cmd = root.add_subcommand(
      "generate",
      "Generate text with the base model (no compression), streaming it to stdout.\n"
      "Example: icae generate --model models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf --chat \\\n"
      "           --prompt 'What is the capital of France?'");
  add_model(cmd, *a);
  cmd->add_option("--prompt,-p", a->prompt, "Prompt text");
  cmd->add_option("--prompt-file", a->prompt_file, "Read the prompt from a file");
  cmd->add_option("--ids", a->ids, "Prompt as comma-separated token ids (no tokenizer needed)");
  cmd->add_flag("--chat", a->chat, "Wrap the prompt in the model's chat template (one user turn)");
  cmd->add_option("--system", a->system, "With --chat: a system message");
  add_sampling(cmd, *a);
  cmd->callback([a] { run_generate(*a); });
}

void run_chat(const GenArgs& a) {
  TextModelOptions o;
  o.load = cli::resolve(a.run);
  o.tokenizer_path = a.tokenizer;
  TextModel m = load_text_model(a.model, o);
  ICAE_CHECK(!m.chat_format.empty(), ErrorKind::Unsupported, a.model + ": no chat template known for this model");
  std::cerr << "icae chat (" << m.chat_format << "): one message per line; an empty line or end of input quits.\n";
  std::vector<tok::ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  std::string line;
  while (true) {
    std::cerr << "> " << std::flush;
    if (!std::getline(std::cin, line) || line.empty()) break;
    history.push_back({"user", line});
    const std::vector<int64_t> prompt = encode_chat(m, history);
    history.push_back({"assistant", stream(m, prompt, a)});
  }
}

void setup_chat(CLI::App& root) {
  auto a = std::make_shared<GenArgs>();
  CLI::App* cmd = root.add_subcommand(
      "chat", "Chat with an instruction-tuned model (its chat template, streaming). Reads one message per line.");
  add_model(cmd, *a);
  cmd->add_option("--system", a->system, "A system message");
  add_sampling(cmd, *a);
  cmd->callback([a] { run_chat(*a); });
}

}  // namespace

ICAE_COMMAND(setup_generate);
ICAE_COMMAND(setup_chat);
