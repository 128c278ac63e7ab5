// Evaluation data: plain text files (one sample each), folders of them (recursive, sorted), or
// JSONL files (one sample a line: {"text": ...}, or the PwC fields {"input", "prompt",
// "answer"}). A bad file or line is an error naming it.
#pragma once
#include <iosfwd>
#include <string>
#include <vector>

namespace icae::eval {

struct EvalSample {
  std::string source;  // "file" or "file:line", for messages and per-sample output
  std::string text;    // text samples
  std::string input, prompt, answer;  // PwC samples
};

enum class EvalDataKind { Text, Pwc };

// Reads every path (file or folder) in order. Text: .jsonl lines need "text"; other files are
// one sample each. Pwc: .jsonl only, every line needs string "input", "prompt" and "answer".
std::vector<EvalSample> read_eval_data(const std::vector<std::string>& paths, EvalDataKind kind);
// One file's samples from an open stream; `name` stands for its path (messages, and .jsonl or
// not). No libtorch: fuzz/data_fuzz.cpp runs it from memory.
std::vector<EvalSample> read_eval_stream(std::istream& in, const std::string& name, EvalDataKind kind);

}  // namespace icae::eval
