#include "icae/train/data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "icae/tokenizer/tokenizer.h"
#include "icae/tokenizer/unicode.h"
#include "icae/util/error.h"

namespace fs = std::filesystem;

namespace icae::train {

void BadDataLog::report(const std::string& where, const std::string& what) {
  const std::string message = where + ": " + what;
  if (strict_) fail(ErrorKind::BadInput, message + " (--strict-data)");
  ++count_;
  if (static_cast<int64_t>(messages_.size()) < max_messages_) {
    messages_.push_back(message);
    std::cerr << "warning: " << message << " (skipped)\n";
    if (static_cast<int64_t>(messages_.size()) == max_messages_)
      std::cerr << "warning: further bad-data messages are counted but not shown\n";
  }
}

namespace {

bool has_ext(const fs::path& p, const char* ext) { return p.extension() == ext; }

// As encode_plain (infer/text_model.h) does: no special tokens added, invalid UTF-8 an error
// (checked before, see usable_text). Here so that the readers need no libtorch (fuzz/data_fuzz.cpp).
std::vector<int64_t> tokenize(const tok::Tokenizer& t, const std::string& text) {
  std::vector<int64_t> out;
  for (auto id : t.encode(text)) out.push_back(id);
  return out;
}

// Checks text and reports why it cannot be used; true when usable.
bool usable_text(const std::string& text, const std::string& where, const char* what, BadDataLog& log) {
  const size_t bad = tok::find_invalid_utf8(text);
  if (bad != std::string::npos) {
    log.report(where, std::string("invalid UTF-8 in ") + what + " at byte " + std::to_string(bad));
    return false;
  }
  return true;
}

// Cuts a document into contexts of at most max_context tokens (the last shorter piece kept when it
// has at least min_context tokens).
void cut_document(const std::vector<int64_t>& ids, const std::string& where, const DataOptions& o,
                  std::vector<Example>& out) {
  for (size_t b = 0; b < ids.size(); b += static_cast<size_t>(o.max_context)) {
    const size_t e = std::min(ids.size(), b + static_cast<size_t>(o.max_context));
    if (static_cast<int64_t>(e - b) < o.min_context) break;
    Example ex;
    ex.context.assign(ids.begin() + b, ids.begin() + e);
    ex.source = where;
    out.push_back(std::move(ex));
  }
}

void add_text(const std::string& text, const std::string& where, const tok::Tokenizer& t, const DataOptions& o,
              BadDataLog& log, std::vector<Example>& out) {
  if (!usable_text(text, where, "text", log)) return;
  const auto ids = tokenize(t, text);
  if (ids.empty()) {
    log.report(where, "empty document");
    return;
  }
  cut_document(ids, where, o, out);
}

}  // namespace

std::vector<Example> read_examples(const std::string& path, const tok::Tokenizer& tokenizer, const DataOptions& o,
                                   BadDataLog& log) {
  const bool jsonl = has_ext(path, ".jsonl") || has_ext(path, ".json");
  if (!jsonl)
    ICAE_CHECK(o.kind == DataKind::Text, ErrorKind::BadInput,
               path + ": instruction data must be JSONL with \"input\", \"prompt\" and \"answer\"");
  std::ifstream in(path, std::ios::binary);
  ICAE_CHECK(in.good(), ErrorKind::Io, path + ": cannot open");
  return read_examples(in, path, tokenizer, o, log);
}

std::vector<Example> read_examples(std::istream& in, const std::string& path, const tok::Tokenizer& tokenizer,
                                   const DataOptions& o, BadDataLog& log) {
  std::vector<Example> out;
  const bool jsonl = has_ext(path, ".jsonl") || has_ext(path, ".json");
  if (!jsonl) {
    ICAE_CHECK(o.kind == DataKind::Text, ErrorKind::BadInput,
               path + ": instruction data must be JSONL with \"input\", \"prompt\" and \"answer\"");
    if (!o.split_blocks) {
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string text = ss.str();
      if (text.find_first_not_of(" \t\r\n") == std::string::npos) {
        log.report(path, "empty file");
        return out;
      }
      add_text(text, path, tokenizer, o, log, out);
      return out;
    }
    // One document per blank-line-separated block, read line by line.
    std::string line, block;
    int64_t line_no = 0, block_start = 1;
    auto flush = [&] {
      if (block.find_first_not_of(" \t\r\n") != std::string::npos)
        add_text(block, path + ":" + std::to_string(block_start), tokenizer, o, log, out);
      block.clear();
    };
    while (std::getline(in, line)) {
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) {
        flush();
        block_start = line_no + 1;
      } else {
        if (block.empty()) block_start = line_no;
        block += line;
        block += '\n';
      }
    }
    flush();
    if (out.empty() && line_no == 0) log.report(path, "empty file");
    return out;
  }

  std::string line;
  int64_t line_no = 0, records = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++records;
    const std::string where = path + ":" + std::to_string(line_no);
    if (!usable_text(line, where, "line", log)) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      log.report(where, std::string("invalid JSON: ") + e.what());
      continue;
    }
    auto field = [&](const char* name, std::string& value) {
      if (!j.is_object() || !j.contains(name)) {
        log.report(where, std::string("missing field \"") + name + "\"");
        return false;
      }
      if (!j[name].is_string()) {
        log.report(where, std::string("field \"") + name + "\" is not a string");
        return false;
      }
      value = j[name].get<std::string>();
      return true;
    };
    if (o.kind == DataKind::Text) {
      std::string text;
      if (!field("text", text)) continue;
      add_text(text, where, tokenizer, o, log, out);
      continue;
    }
    std::string input, prompt, answer;
    if (!field("input", input) || !field("prompt", prompt) || !field("answer", answer)) continue;
    Example ex;
    ex.source = where;
    ex.context = tokenize(tokenizer, input);
    ex.prompt = tokenize(tokenizer, prompt);
    ex.answer = tokenize(tokenizer, answer);
    if (ex.context.empty()) {
      log.report(where, "empty \"input\"");
      continue;
    }
    if (ex.answer.empty()) {
      log.report(where, "empty \"answer\"");
      continue;
    }
    if (static_cast<int64_t>(ex.context.size()) > o.max_context) {
      log.report(where, "context of " + std::to_string(ex.context.size()) + " tokens is longer than --max-context " +
                            std::to_string(o.max_context));
      continue;
    }
    out.push_back(std::move(ex));
  }
  if (records == 0) log.report(path, "empty file");
  return out;
}

ExampleStream::ExampleStream(std::vector<std::string> files, std::shared_ptr<const tok::Tokenizer> tokenizer,
                             DataOptions data, StreamOptions stream, std::shared_ptr<BadDataLog> log)
    : files_(std::move(files)), tokenizer_(std::move(tokenizer)), data_(data), stream_(stream), log_(std::move(log)),
      rng_(stream.seed * 0x9E3779B97F4A7C15ull + 0x1234567ull) {
  ICAE_CHECK(!files_.empty(), ErrorKind::BadInput, "no data files");
  ICAE_CHECK(stream_.world_size >= 1 && stream_.rank >= 0 && stream_.rank < stream_.world_size, ErrorKind::Usage,
             "rank must be in [0, world_size)");
  if (!log_) log_ = std::make_shared<BadDataLog>();
}

bool ExampleStream::refill() {
  while (pending_.empty()) {
    if (epoch_ < 0 || file_cursor_ >= order_.size()) {
      if (epoch_ >= 0 && examples_this_epoch_ == 0)
        fail(ErrorKind::BadInput, "the training data holds no usable example (" + std::to_string(log_->count()) +
                                      " bad records skipped)");
      ++epoch_;
      examples_this_epoch_ = 0;
      order_.resize(files_.size());
      for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
      if (stream_.shuffle_files && stream_.shuffle_buffer > 1) {
        std::mt19937_64 g(stream_.seed + 1000003ull * static_cast<uint64_t>(epoch_ + 1));
        std::shuffle(order_.begin(), order_.end(), g);
      }
      file_cursor_ = 0;
      if (!buffer_.empty()) return true;  // the buffer still holds examples to draw
    }
    // Bad records are reported on the first epoch only (later epochs read the same files).
    BadDataLog quiet(false, 0);
    BadDataLog& log = epoch_ == 0 ? *log_ : quiet;
    auto examples = read_examples(files_[order_[file_cursor_++]], *tokenizer_, data_, log);
    examples_this_epoch_ += static_cast<int64_t>(examples.size());
    for (auto& e : examples) pending_.push_back(std::move(e));
  }
  return true;
}

Example ExampleStream::next_global() {
  const size_t cap = static_cast<size_t>(std::max<int64_t>(1, stream_.shuffle_buffer));
  while (buffer_.size() < cap) {
    if (pending_.empty()) refill();
    if (pending_.empty()) break;
    buffer_.push_back(std::move(pending_.front()));
    pending_.pop_front();
    if (cap == 1) break;
  }
  size_t pick = 0;
  if (cap > 1) pick = std::uniform_int_distribution<size_t>(0, buffer_.size() - 1)(rng_);
  Example e = std::move(buffer_[pick]);
  buffer_[pick] = std::move(buffer_.back());
  buffer_.pop_back();
  ++global_drawn_;
  return e;
}

Example ExampleStream::next() {
  // This rank's examples: global indices rank, rank + W, rank + 2W, ...
  while (global_drawn_ % stream_.world_size != stream_.rank) next_global();
  Example e = next_global();
  ++drawn_;
  return e;
}

int64_t ExampleStream::next_global_index() const {
  int64_t g = global_drawn_;
  while (g % stream_.world_size != stream_.rank) ++g;
  return g;
}

void ExampleStream::skip_to_global(int64_t position) {
  ICAE_CHECK(position >= global_drawn_, ErrorKind::Internal, "cannot rewind an example stream");
  while (global_drawn_ < position) {
    const bool mine = global_drawn_ % stream_.world_size == stream_.rank;
    next_global();
    if (mine) ++drawn_;
  }
}

void ExampleStream::skip_to(int64_t position) {
  ICAE_CHECK(position >= drawn_, ErrorKind::Internal, "cannot rewind an example stream");
  while (drawn_ < position) next();
}

std::vector<Example> read_first_examples(const std::vector<std::string>& files, const tok::Tokenizer& tokenizer,
                                         const DataOptions& options, int64_t limit, BadDataLog& log) {
  std::vector<Example> out;
  for (const auto& f : files) {
    for (auto& e : read_examples(f, tokenizer, options, log)) {
      if (static_cast<int64_t>(out.size()) >= limit) return out;
      out.push_back(std::move(e));
    }
  }
  return out;
}

}  // namespace icae::train
