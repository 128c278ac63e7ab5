// icae export-tokenizer: the tokenizer of a GGUF file as a Hugging Face tokenizer.json.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "common.h"
#include "icae/formats/gguf.h"
#include "icae/formats/gguf_tokenizer.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

namespace icae::cli {
namespace {

struct ExportTokenizerArgs : ModelOptions {  // --model only: nothing runs
  std::string out;
};

void run_export_tokenizer(const ExportTokenizerArgs& a) {
  const gguf::GgufFile file = gguf::GgufFile::open(a.model);
  const nlohmann::json j = gguf::tokenizer_json_from_gguf(file);
  // Build it once so that a tokenizer.json icae could not load is never written.
  try {
    tok::Tokenizer check(j);
  } catch (const Error& e) {
    throw Error(e.kind(), a.model + ": the tokenizer built from its metadata does not load: " + e.what());
  }
  const std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::strict) + "\n";
  if (a.out == "-") {
    std::cout << text;
    return;
  }
  // Written beside the target and renamed: a failed run never leaves half a file.
  const std::string tmp = a.out + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": cannot open for writing");
    out << text;
    out.close();
    ICAE_CHECK(out.good(), ErrorKind::Io, tmp + ": write failed");
  }
  ICAE_CHECK(std::rename(tmp.c_str(), a.out.c_str()) == 0, ErrorKind::Io, a.out + ": cannot rename " + tmp);
  std::cerr << "wrote " << a.out << " (" << j["model"]["vocab"].size() << " tokens, "
            << j["added_tokens"].size() << " added)\n";
}

void setup_export_tokenizer(CLI::App& root) {
  auto args = std::make_shared<ExportTokenizerArgs>();
  auto* c = root.add_subcommand(
      "export-tokenizer",
      "Writes the tokenizer stored in a GGUF file's metadata (tokenizer.ggml.*) as a Hugging Face\n"
      "tokenizer.json, usable by `icae tokenize` and by Hugging Face tokenizers.\n"
      "Exit codes: 3 malformed file, 4 I/O, 6 unsupported tokenizer model or pre-tokenizer.");
  ModelOptionsUse use;
  use.model_help = "the .gguf file";
  use.run = false;
  add_model_options(c, *args, use);
  c->add_option("--out", args->out, "tokenizer.json to write ('-': stdout)")->required();
  c->callback([args] { run_export_tokenizer(*args); });
}

}  // namespace

ICAE_COMMAND(setup_export_tokenizer);

}  // namespace icae::cli
