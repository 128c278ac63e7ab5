// Training and evaluation data: the readers (plain text, JSONL with "text", PwC JSONL with
// "input"/"prompt"/"answer"), bad-data reporting, and a deterministic, resumable example stream.
//
// The stream reads one file at a time (never a corpus whole): files in a seeded order per epoch,
// each file's examples in order, then a seeded shuffle buffer. Its position is the number of
// examples drawn, so a resumed run replays the stream to that point and continues exactly.
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <iosfwd>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace icae {

namespace tok {
class Tokenizer;
}

namespace train {

// Bad data is reported with file and line, skipped and counted (or fatal when strict).
class BadDataLog {
 public:
  explicit BadDataLog(bool strict = false, int64_t max_messages = 20) : strict_(strict), max_messages_(max_messages) {}
  // Throws icae::Error(BadInput) when strict; otherwise prints the first messages to stderr.
  void report(const std::string& where, const std::string& what);
  int64_t count() const { return count_; }
  const std::vector<std::string>& messages() const { return messages_; }
  bool strict() const { return strict_; }

 private:
  bool strict_;
  int64_t max_messages_;
  int64_t count_ = 0;
  std::vector<std::string> messages_;
};

enum class DataKind { Text, Pwc };

// One example: a context to compress, and for instruction data a prompt and an answer.
struct Example {
  std::vector<int64_t> context, prompt, answer;
  std::string source;  // "file:line" (or "file") for messages
};

struct DataOptions {
  DataKind kind = DataKind::Text;
  int64_t max_context = 512;  // text: documents are cut into contexts of at most this many tokens
  int64_t min_context = 16;   // text: shorter tail pieces are dropped (not an error)
  bool split_blocks = false;  // .txt: one document per blank-line-separated block, not per file
};

// All examples of one file, tokenized, with bad records reported to `log` and skipped.
std::vector<Example> read_examples(const std::string& path, const tok::Tokenizer& tokenizer,
                                   const DataOptions& options, BadDataLog& log);
// The same from an open stream; `path` names it in messages and its extension (.jsonl / .json or
// not) decides the format. No libtorch: fuzz/data_fuzz.cpp runs it from memory.
std::vector<Example> read_examples(std::istream& in, const std::string& path, const tok::Tokenizer& tokenizer,
                                   const DataOptions& options, BadDataLog& log);

struct StreamOptions {
  uint64_t seed = 0;
  int64_t shuffle_buffer = 512;  // 0 or 1: no shuffling (files in order, examples in order)
  bool shuffle_files = true;
  int rank = 0, world_size = 1;  // data-parallel: this rank takes every world_size-th example
};

class ExampleStream {
 public:
  ExampleStream(std::vector<std::string> files, std::shared_ptr<const tok::Tokenizer> tokenizer,
                DataOptions data, StreamOptions stream, std::shared_ptr<BadDataLog> log);
  // The next example (epoch after epoch, forever). Throws when the files hold no usable example.
  Example next();
  // Examples this rank has drawn so far (its data position).
  int64_t position() const { return drawn_; }
  // Replays the stream to a saved position.
  void skip_to(int64_t position);
  // The global stream's position (examples drawn by all ranks together), and the index in it of
  // the example next() returns next: a rank-independent name for every example.
  int64_t global_position() const { return global_drawn_; }
  int64_t next_global_index() const;
  // Replays to a global position (resuming with the same or another number of ranks).
  void skip_to_global(int64_t global_position);
  int64_t epoch() const { return epoch_; }

 private:
  Example next_global();  // the next example of the one global stream all ranks share
  bool refill();          // loads the next file's examples into pending_

  std::vector<std::string> files_;
  std::shared_ptr<const tok::Tokenizer> tokenizer_;
  DataOptions data_;
  StreamOptions stream_;
  std::shared_ptr<BadDataLog> log_;
  std::vector<size_t> order_;
  size_t file_cursor_ = 0;
  int64_t epoch_ = -1;
  int64_t examples_this_epoch_ = 0;
  std::deque<Example> pending_;
  std::vector<Example> buffer_;
  std::mt19937_64 rng_;
  int64_t drawn_ = 0, global_drawn_ = 0;
};

// The first `limit` examples of the files in order (no shuffling): held-out evaluation sets.
std::vector<Example> read_first_examples(const std::vector<std::string>& files, const tok::Tokenizer& tokenizer,
                                         const DataOptions& options, int64_t limit, BadDataLog& log);

}  // namespace train
}  // namespace icae
