#include "icae/tokenizer/detokenizer.h"

#include "icae/tokenizer/json_util.h"
#include "icae/tokenizer/unicode.h"
#include "regex.h"

namespace icae::tok {
namespace {

class SequenceDecoder final : public Detokenizer {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Detokenizer>> parts) : parts_(std::move(parts)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) p->decode_chain(tokens);
  }

 private:
  std::vector<std::unique_ptr<Detokenizer>> parts_;
};

// GPT-2 alphabet -> bytes, all tokens joined; a token with a character outside the alphabet
// (an added token, say) is taken as it is.
class ByteLevelDecoder final : public Detokenizer {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const auto& t : tokens) {
      const size_t mark = bytes.size();
      if (!byte_level_decode(t, bytes)) {
        bytes.resize(mark);
        bytes += t;
      }
    }
    tokens.assign(1, sanitize_utf8(bytes));
  }
};

int fallback_byte(const std::string& t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

// Runs of <0xNN> tokens -> the bytes they spell if valid UTF-8, else one U+FFFD per byte.
class ByteFallbackDecoder final : public Detokenizer {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens.size());
    std::string bytes;
    size_t count = 0;
    auto flush = [&] {
      if (count == 0) return;
      if (find_invalid_utf8(bytes) == std::string::npos) {
        out.push_back(bytes);
      } else {
        for (size_t i = 0; i < count; ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      bytes.clear();
      count = 0;
    };
    for (auto& t : tokens) {
      const int b = fallback_byte(t);
      if (b >= 0) {
        bytes += static_cast<char>(b);
        ++count;
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    tokens.swap(out);
  }
};

class FuseDecoder final : public Detokenizer {
 public:
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const auto& t : tokens) all += t;
    tokens.assign(1, std::move(all));
  }
};

// Removes up to `start` leading and `stop` trailing copies of one character from each token.
class StripDecoder final : public Detokenizer {
 public:
  StripDecoder(std::string content, size_t start, size_t stop) : c_(std::move(content)), start_(start), stop_(stop) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    if (c_.empty()) return;
    for (auto& t : tokens) {
      size_t b = 0, e = t.size();
      for (size_t i = 0; i < start_ && e - b >= c_.size() && t.compare(b, c_.size(), c_) == 0; ++i) b += c_.size();
      for (size_t i = 0; i < stop_ && e - b >= c_.size() && t.compare(e - c_.size(), c_.size(), c_) == 0; ++i)
        e -= c_.size();
      t = t.substr(b, e - b);
    }
  }

 private:
  std::string c_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Detokenizer {
 public:
  ReplaceDecoder(std::string literal, std::unique_ptr<detail::Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::pair<size_t, size_t>> m;
    for (auto& t : tokens) {
      m.clear();
      if (regex_) {
        regex_->find_all(t, m);
      } else if (!literal_.empty()) {
        for (size_t p = t.find(literal_); p != std::string::npos; p = t.find(literal_, p + literal_.size()))
          m.emplace_back(p, p + literal_.size());
      }
      if (m.empty()) continue;
      std::string out;
      size_t last = 0;
      for (auto [s, e] : m) {
        out.append(t, last, s - last);
        out += content_;
        last = e;
      }
      out.append(t, last, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string literal_;
  std::unique_ptr<detail::Regex> regex_;
  std::string content_;
};

// "▁" -> " "; in the first token the replacement characters are dropped (Hugging Face's rule)
// unless the prepend scheme is "never".
class MetaspaceDecoder final : public Detokenizer {
 public:
  MetaspaceDecoder(std::string repl, bool strip_first) : repl_(std::move(repl)), strip_first_(strip_first) {}
  void decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      std::string out;
      size_t last = 0;
      for (size_t p = t.find(repl_); p != std::string::npos; p = t.find(repl_, last)) {
        out.append(t, last, p - last);
        if (!(i == 0 && strip_first_)) out += ' ';
        last = p + repl_.size();
      }
      out.append(t, last, std::string::npos);
      t.swap(out);
    }
  }

 private:
  std::string repl_;
  bool strip_first_;
};

}  // namespace

std::unique_ptr<Detokenizer> make_detokenizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, where);
  if (type == "Sequence") {
    auto it = j.find("decoders");
    if (it == j.end() || !it->is_array()) bad_json(where, "Sequence needs an array \"decoders\"");
    std::vector<std::unique_ptr<Detokenizer>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      auto p = make_detokenizer((*it)[i], where + ".decoders[" + std::to_string(i) + "]");
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceDecoder>(std::move(parts));
  }
  if (type == "ByteLevel") return std::make_unique<ByteLevelDecoder>();
  if (type == "ByteFallback") return std::make_unique<ByteFallbackDecoder>();
  if (type == "Fuse") return std::make_unique<FuseDecoder>();
  if (type == "Strip") {
    const long long start = json_int(j, "start", where), stop = json_int(j, "stop", where);
    if (start < 0 || stop < 0) bad_json(where, "Strip start/stop must not be negative");
    return std::make_unique<StripDecoder>(json_string(j, "content", where), size_t(start), size_t(stop));
  }
  if (type == "Replace") {
    auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) bad_json(where, "Replace needs \"pattern\": {\"String\": ...} or {\"Regex\": ...}");
    const std::string content = json_string(j, "content", where);
    if (pat->contains("String"))
      return std::make_unique<ReplaceDecoder>(json_string(*pat, "String", where + ".pattern"), nullptr, content);
    if (pat->contains("Regex"))
      return std::make_unique<ReplaceDecoder>(
          "", std::make_unique<detail::Regex>(json_string(*pat, "Regex", where + ".pattern"), "tokenizer.json: " + where),
          content);
    bad_json(where + ".pattern", "expected \"String\" or \"Regex\"");
  }
  if (type == "Metaspace") {
    bool strip = json_bool_or(j, "add_prefix_space", true, where);
    if (j.contains("prepend_scheme") && !j["prepend_scheme"].is_null())
      strip = json_string(j, "prepend_scheme", where) != "never";
    return std::make_unique<MetaspaceDecoder>(json_string_or(j, "replacement", "\xE2\x96\x81", where), strip);
  }
  fail(ErrorKind::Unsupported, "tokenizer.json: " + where + ": decoder type '" + type +
                                   "' is not supported (supported: Sequence, ByteLevel, ByteFallback, Metaspace, "
                                   "Fuse, Strip, Replace)");
}

}  // namespace icae::tok
