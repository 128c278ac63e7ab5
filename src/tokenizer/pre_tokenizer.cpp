#include "icae/tokenizer/pre_tokenizer.h"

#include <algorithm>

#include "icae/tokenizer/json_util.h"
#include "regex.h"

namespace icae::tok {

const char* const kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

namespace {

using Span = std::pair<size_t, size_t>;

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

Behavior parse_behavior(const std::string& s, const std::string& where) {
  if (s == "Removed") return Behavior::Removed;
  if (s == "Isolated") return Behavior::Isolated;
  if (s == "MergedWithPrevious") return Behavior::MergedWithPrevious;
  if (s == "MergedWithNext") return Behavior::MergedWithNext;
  if (s == "Contiguous") return Behavior::Contiguous;
  bad_json(where + ".behavior", "unknown split behavior '" + s +
                                    "' (expected Removed, Isolated, MergedWithPrevious, MergedWithNext or Contiguous)");
}

struct Piece {
  size_t start, end;
  bool is_match;
};

// Splits span [b, e) of text given the matches inside it (absolute offsets), the way
// Hugging Face's NormalizedString::split does, and appends the non-empty results to out.
void split_span(size_t b, size_t e, const std::vector<Span>& matches, Behavior behavior, bool invert,
                std::vector<Span>& out) {
  thread_local std::vector<Piece> pieces, acc;
  pieces.clear();
  size_t last = b;
  for (auto [s, t] : matches) {
    if (s > last) pieces.push_back({last, s, invert});
    pieces.push_back({s, t, !invert});
    last = t;
  }
  if (last < e) pieces.push_back({last, e, invert});

  acc.clear();
  switch (behavior) {
    case Behavior::Removed:
      for (const auto& p : pieces)
        if (!p.is_match) acc.push_back(p);
      break;
    case Behavior::Isolated:
      acc = pieces;
      break;
    case Behavior::MergedWithPrevious: {
      bool prev_match = false;
      for (const auto& p : pieces) {
        if (p.is_match && !prev_match && !acc.empty()) acc.back().end = p.end;
        else acc.push_back(p);
        prev_match = p.is_match;
      }
      break;
    }
    case Behavior::MergedWithNext: {
      bool prev_match = false;
      for (size_t i = pieces.size(); i-- > 0;) {
        const auto& p = pieces[i];
        if (p.is_match && !prev_match && !acc.empty()) acc.back().start = p.start;
        else acc.push_back(p);
        prev_match = p.is_match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    }
    case Behavior::Contiguous: {
      bool prev_match = false;
      for (const auto& p : pieces) {
        if (p.is_match == prev_match && !acc.empty()) acc.back().end = p.end;
        else acc.push_back(p);
        prev_match = p.is_match;
      }
      break;
    }
  }
  for (const auto& p : acc)
    if (p.end > p.start) out.emplace_back(p.start, p.end);
}

class SplitPreTokenizer final : public PreTokenizer {
 public:
  SplitPreTokenizer(const std::string& pattern, const std::string& where, Behavior behavior, bool invert)
      : regex_(pattern, where), behavior_(behavior), invert_(invert) {}
  void pre_tokenize(PreTokenized& p, bool) const override {
    thread_local std::vector<Span> matches;
    std::vector<Span> out;
    out.reserve(p.spans.size() * 2 + 4);
    for (auto [b, e] : p.spans) {
      matches.clear();
      regex_.find_all(std::string_view(p.text).substr(b, e - b), matches);
      for (auto& m : matches) {
        m.first += b;
        m.second += b;
      }
      split_span(b, e, matches, behavior_, invert_, out);
    }
    p.spans.swap(out);
  }

 private:
  detail::Regex regex_;
  Behavior behavior_;
  bool invert_;
};

// Rewrites every span through f(piece, index, out_text), building a new text.
template <class F>
void rewrite_spans(PreTokenized& p, F&& f) {
  std::string text;
  text.reserve(p.text.size() + p.spans.size() + 8);
  for (size_t i = 0; i < p.spans.size(); ++i) {
    auto& [b, e] = p.spans[i];
    const size_t nb = text.size();
    f(std::string_view(p.text).substr(b, e - b), i, text);
    b = nb;
    e = text.size();
  }
  p.text.swap(text);
}

class ByteLevelPreTokenizer final : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, bool use_regex, const std::string& where)
      : add_prefix_space_(add_prefix_space) {
    if (use_regex) regex_ = std::make_unique<SplitPreTokenizer>(kGpt2SplitPattern, where, Behavior::Isolated, false);
  }
  void pre_tokenize(PreTokenized& p, bool at_start) const override {
    if (add_prefix_space_) {
      rewrite_spans(p, [](std::string_view s, size_t, std::string& out) {
        if (s.empty() || s[0] != ' ') out += ' ';
        out += s;
      });
    }
    if (regex_) regex_->pre_tokenize(p, at_start);
  }
  bool byte_level() const override { return true; }

 private:
  bool add_prefix_space_;
  std::unique_ptr<SplitPreTokenizer> regex_;
};

class MetaspacePreTokenizer final : public PreTokenizer {
 public:
  enum class Prepend { Always, First, Never };
  MetaspacePreTokenizer(std::string replacement, Prepend prepend, bool split)
      : repl_(std::move(replacement)), prepend_(prepend), split_(split) {}
  void pre_tokenize(PreTokenized& p, bool at_start) const override {
    rewrite_spans(p, [&](std::string_view s, size_t i, std::string& out) {
      const size_t b = out.size();
      for (char c : s) {
        if (c == ' ') out += repl_;
        else out += c;
      }
      const bool want = prepend_ == Prepend::Always || (prepend_ == Prepend::First && at_start && i == 0);
      if (want && out.compare(b, repl_.size(), repl_) != 0) out.insert(b, repl_);
    });
    if (!split_ || repl_.empty()) return;
    std::vector<Span> out, matches;
    for (auto [b, e] : p.spans) {
      matches.clear();
      for (size_t pos = p.text.find(repl_, b); pos != std::string::npos && pos + repl_.size() <= e;
           pos = p.text.find(repl_, pos + repl_.size()))
        matches.emplace_back(pos, pos + repl_.size());
      split_span(b, e, matches, Behavior::MergedWithNext, false, out);
    }
    p.spans.swap(out);
  }

 private:
  std::string repl_;
  Prepend prepend_;
  bool split_;
};

class SequencePreTokenizer final : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> parts) : parts_(std::move(parts)) {}
  void pre_tokenize(PreTokenized& p, bool at_start) const override {
    for (const auto& part : parts_) part->pre_tokenize(p, at_start);
  }
  bool byte_level() const override { return !parts_.empty() && parts_.back()->byte_level(); }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, where);
  const std::string re_where = "tokenizer.json: " + where;
  if (type == "Sequence") {
    auto it = j.find("pretokenizers");
    if (it == j.end() || !it->is_array()) bad_json(where, "Sequence needs an array \"pretokenizers\"");
    std::vector<std::unique_ptr<PreTokenizer>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      const std::string w = where + ".pretokenizers[" + std::to_string(i) + "]";
      auto p = make_pre_tokenizer((*it)[i], w);
      if (!p) continue;
      if (!parts.empty() && parts.back()->byte_level())
        fail(ErrorKind::Unsupported, "tokenizer.json: " + w + ": a pre-tokenizer after ByteLevel is not supported");
      parts.push_back(std::move(p));
    }
    return std::make_unique<SequencePreTokenizer>(std::move(parts));
  }
  if (type == "Split") {
    auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) bad_json(where, "Split needs \"pattern\": {\"String\": ...} or {\"Regex\": ...}");
    std::string regex;
    if (pat->contains("Regex")) regex = json_string(*pat, "Regex", where + ".pattern");
    else if (pat->contains("String")) regex = detail::Regex::escape(json_string(*pat, "String", where + ".pattern"));
    else bad_json(where + ".pattern", "expected \"String\" or \"Regex\"");
    const Behavior b = parse_behavior(json_string(j, "behavior", where), where);
    return std::make_unique<SplitPreTokenizer>(regex, re_where + ".pattern", b, json_bool_or(j, "invert", false, where));
  }
  if (type == "ByteLevel")
    return std::make_unique<ByteLevelPreTokenizer>(json_bool_or(j, "add_prefix_space", true, where),
                                                   json_bool_or(j, "use_regex", true, where), re_where);
  if (type == "Digits") {
    const bool individual = json_bool_or(j, "individual_digits", false, where);
    return std::make_unique<SplitPreTokenizer>(individual ? "\\p{N}" : "\\p{N}+", re_where, Behavior::Isolated, false);
  }
  if (type == "Whitespace")
    return std::make_unique<SplitPreTokenizer>("\\w+|[^\\w\\s]+", re_where, Behavior::Removed, true);
  if (type == "WhitespaceSplit")
    return std::make_unique<SplitPreTokenizer>("\\s+", re_where, Behavior::Removed, false);
  if (type == "Metaspace") {
    const std::string repl = json_string_or(j, "replacement", "\xE2\x96\x81", where);
    MetaspacePreTokenizer::Prepend prepend = MetaspacePreTokenizer::Prepend::Always;
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null()) {
      const std::string s = json_string(j, "prepend_scheme", where);
      if (s == "always") prepend = MetaspacePreTokenizer::Prepend::Always;
      else if (s == "first") prepend = MetaspacePreTokenizer::Prepend::First;
      else if (s == "never") prepend = MetaspacePreTokenizer::Prepend::Never;
      else bad_json(where + ".prepend_scheme", "expected always, first or never, found '" + s + "'");
    } else if (!json_bool_or(j, "add_prefix_space", true, where)) {
      prepend = MetaspacePreTokenizer::Prepend::Never;
    }
    return std::make_unique<MetaspacePreTokenizer>(repl, prepend, json_bool_or(j, "split", true, where));
  }
  fail(ErrorKind::Unsupported,
       "tokenizer.json: " + where + ": pre-tokenizer type '" + type +
           "' is not supported (supported: Sequence, Split, ByteLevel, Digits, Metaspace, Whitespace, WhitespaceSplit)");
}

}  // namespace icae::tok
