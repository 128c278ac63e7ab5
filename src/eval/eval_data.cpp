#include "icae/eval/eval_data.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "icae/io/data_files.h"
#include "icae/util/error.h"

namespace icae::eval {

namespace fs = std::filesystem;

namespace {

bool is_jsonl(const fs::path& p) { return p.extension() == ".jsonl"; }

std::string string_field(const nlohmann::json& j, const char* name, const std::string& where) {
  auto it = j.find(name);
  ICAE_CHECK(it != j.end() && it->is_string(), ErrorKind::BadInput,
             where + ": needs a string field \"" + name + "\"");
  return it->get<std::string>();
}

void read_jsonl(std::istream& in, const fs::path& path, EvalDataKind kind, std::vector<EvalSample>& out) {
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path.string() + ":" + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::BadInput, where + ": invalid JSON: " + e.what());
    }
    ICAE_CHECK(j.is_object(), ErrorKind::BadInput, where + ": expected a JSON object");
    EvalSample s;
    s.source = where;
    if (kind == EvalDataKind::Text) {
      s.text = string_field(j, "text", where);
      ICAE_CHECK(!s.text.empty(), ErrorKind::BadInput, where + ": empty \"text\"");
    } else {
      s.input = string_field(j, "input", where);
      s.prompt = string_field(j, "prompt", where);
      s.answer = string_field(j, "answer", where);
      ICAE_CHECK(!s.input.empty(), ErrorKind::BadInput, where + ": empty \"input\"");
    }
    out.push_back(std::move(s));
  }
}

void read_text(std::istream& in, const fs::path& path, std::vector<EvalSample>& out);

void read_file(const fs::path& path, EvalDataKind kind, std::vector<EvalSample>& out) {
  if (is_jsonl(path)) {
    std::ifstream in(path);
    ICAE_CHECK(in.good(), ErrorKind::Io, path.string() + ": cannot open");
    return read_jsonl(in, path, kind, out);
  }
  ICAE_CHECK(kind == EvalDataKind::Text, ErrorKind::BadInput,
             path.string() + ": fine-tuning data must be PwC JSONL (.jsonl with input, prompt, answer)");
  std::ifstream in(path, std::ios::binary);
  ICAE_CHECK(in.good(), ErrorKind::Io, path.string() + ": cannot open");
  read_text(in, path, out);
}

void read_text(std::istream& in, const fs::path& path, std::vector<EvalSample>& out) {
  std::stringstream ss;
  ss << in.rdbuf();
  EvalSample s;
  s.source = path.string();
  s.text = ss.str();
  ICAE_CHECK(s.text.find_first_not_of(" \t\r\n") != std::string::npos, ErrorKind::BadInput, s.source + ": empty file");
  out.push_back(std::move(s));
}

}  // namespace

std::vector<EvalSample> read_eval_stream(std::istream& in, const std::string& name, EvalDataKind kind) {
  std::vector<EvalSample> out;
  if (is_jsonl(name)) {
    read_jsonl(in, name, kind, out);
  } else {
    ICAE_CHECK(kind == EvalDataKind::Text, ErrorKind::BadInput,
               name + ": fine-tuning data must be PwC JSONL (.jsonl with input, prompt, answer)");
    read_text(in, name, out);
  }
  return out;
}

std::vector<EvalSample> read_eval_data(const std::vector<std::string>& paths, EvalDataKind kind) {
  ICAE_CHECK(!paths.empty(), ErrorKind::Usage, "no evaluation data given (--data PATH)");
  // The same file discovery as training (files as given, folders searched for .txt / .jsonl,
  // sorted); unlike training, a bad record here is an error: an evaluation must not quietly
  // measure fewer samples than it was given.
  std::vector<EvalSample> out;
  for (const auto& f : icae::list_data_files(paths)) {
    // PwC data is JSONL: text files found in a folder are not meant (one named explicitly is an error).
    const bool named = std::find(paths.begin(), paths.end(), f) != paths.end();
    if (kind == EvalDataKind::Pwc && !is_jsonl(f) && !named) continue;
    read_file(f, kind, out);
  }
  ICAE_CHECK(!out.empty(), ErrorKind::BadInput, "the evaluation data holds no samples");
  return out;
}

}  // namespace icae::eval
