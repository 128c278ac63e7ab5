// icae tokenize / icae detokenize: text <-> token ids with a tokenizer.json.
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "command.h"
#include "icae/tokenizer/tokenizer.h"
#include "icae/util/error.h"

namespace icae::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer;
  bool add_special = false;
  bool parse_special = false;
  bool jsonl = false;
  bool replace_invalid = false;
  bool skip_special = false;
};

std::string read_stdin() {
  std::ios::sync_with_stdio(false);
  return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
}

// --jsonl: calls f(json, line number) for each non-empty stdin line; errors name the line.
template <typename F>
void for_each_json_line(F&& f) {
  std::ios::sync_with_stdio(false);
  std::string line;
  size_t n = 0;
  while (std::getline(std::cin, line)) {
    ++n;
    if (line.empty() || line == "\r") continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e400
      fail(ErrorKind::BadInput, "stdin line " + std::to_string(n) + ": not valid JSON: " + e.what());
    }
    try {
      f(j, n);
    } catch (const Error& e) {
      if (std::string(e.what()).rfind("stdin line", 0) == 0) throw;
      throw Error(e.kind(), "stdin line " + std::to_string(n) + ": " + e.what());
    }
  }
}

void print_ids(const std::vector<tok::TokenId>& ids, char sep) {
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i) line += sep;
    line += std::to_string(ids[i]);
  }
  std::cout << line;
}

void run_tokenize(const TokenizeArgs& a) {
  const auto tok = tok::Tokenizer::from_file(a.tokenizer);
  tok::EncodeOptions opt;
  opt.add_special = a.add_special;
  opt.parse_special = a.parse_special;
  opt.invalid_utf8 = a.replace_invalid ? tok::InvalidUtf8::Replace : tok::InvalidUtf8::Error;
  if (!a.jsonl) {
    print_ids(tok.encode(read_stdin(), opt), ' ');
    std::cout << "\n";
    return;
  }
  for_each_json_line([&](const nlohmann::json& j, size_t n) {
    if (!j.is_string()) fail(ErrorKind::BadInput, "stdin line " + std::to_string(n) + ": expected a JSON string");
    std::cout << '[';
    print_ids(tok.encode(j.get_ref<const std::string&>(), opt), ',');
    std::cout << "]\n";
  });
}

std::vector<tok::TokenId> parse_ids(const nlohmann::json& j, size_t line) {
  if (!j.is_array()) fail(ErrorKind::BadInput, "stdin line " + std::to_string(line) + ": expected a JSON array of ids");
  std::vector<tok::TokenId> ids;
  for (const auto& v : j) {
    if (!v.is_number_integer())
      fail(ErrorKind::BadInput, "stdin line " + std::to_string(line) + ": ids must be integers, found " + v.dump());
    ids.push_back(static_cast<tok::TokenId>(v.get<long long>()));
  }
  return ids;
}

void run_detokenize(const TokenizeArgs& a) {
  const auto tok = tok::Tokenizer::from_file(a.tokenizer);
  tok::DecodeOptions opt;
  opt.skip_special = a.skip_special;
  if (!a.jsonl) {
    std::istringstream in(read_stdin());
    std::vector<tok::TokenId> ids;
    std::string word;
    while (in >> word) {
      try {
        size_t used = 0;
        const long long v = std::stoll(word, &used);
        if (used != word.size()) throw std::invalid_argument(word);
        ids.push_back(static_cast<tok::TokenId>(v));
      } catch (const std::exception&) {
        fail(ErrorKind::BadInput, "stdin: '" + word + "' is not a token id");
      }
    }
    std::cout << tok.decode(ids, opt);
    return;
  }
  for_each_json_line([&](const nlohmann::json& j, size_t n) {
    std::cout << nlohmann::json(tok.decode(parse_ids(j, n), opt)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
  });
}

void setup_tokenize(CLI::App& root) {
  auto args = std::make_shared<TokenizeArgs>();
  auto* t = root.add_subcommand(
      "tokenize",
      "Text -> token ids with a Hugging Face tokenizer.json (BPE: Llama 2/3, Mistral, Qwen 2/3, GPT-2, SmolLM2).\n"
      "Plain mode: all of stdin is one text; prints its ids on one line, separated by spaces.\n"
      "--jsonl: each stdin line is a JSON string; prints one JSON array of ids per line.\n"
      "Special tokens written in the text (\"<s>\", \"<|im_start|>\") are plain text unless --parse-special.\n"
      "Exit codes: 3 bad input (malformed tokenizer.json, invalid UTF-8, bad JSON line), 4 I/O, 6 unsupported.");
  t->add_option("--tokenizer", args->tokenizer, "tokenizer.json file")->required();
  t->add_flag("--add-special", args->add_special, "add the post-processor's special tokens (BOS/EOS)");
  t->add_flag("--parse-special", args->parse_special, "recognise special tokens written in the text");
  t->add_flag("--jsonl", args->jsonl, "one JSON string per input line, one JSON array per output line");
  t->add_flag("--replace-invalid", args->replace_invalid,
              "replace invalid UTF-8 with U+FFFD instead of failing");
  t->callback([args] { run_tokenize(*args); });

  auto dargs = std::make_shared<TokenizeArgs>();
  auto* d = root.add_subcommand(
      "detokenize",
      "Token ids -> text with a Hugging Face tokenizer.json (the reverse of `icae tokenize`).\n"
      "Plain mode: stdin holds ids separated by whitespace; prints the text (no newline added).\n"
      "--jsonl: each stdin line is a JSON array of ids; prints one JSON string per line.");
  d->add_option("--tokenizer", dargs->tokenizer, "tokenizer.json file")->required();
  d->add_flag("--jsonl", dargs->jsonl, "one JSON array per input line, one JSON string per output line");
  d->add_flag("--skip-special", dargs->skip_special, "leave out special tokens (BOS, EOS, ...)");
  d->callback([dargs] { run_detokenize(*dargs); });
}

}  // namespace

ICAE_COMMAND(setup_tokenize);

}  // namespace icae::cli
