#include "icae/tokenizer/normalizer.h"

#include <vector>

#include "icae/tokenizer/json_util.h"
#include "icae/tokenizer/unicode.h"
#include "regex.h"

#ifdef ICAE_HAVE_ICU
#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#endif

namespace icae::tok {
namespace {

class SequenceNormalizer final : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> parts) : parts_(std::move(parts)) {}
  void normalize(std::string& text) const override {
    for (const auto& p : parts_) p->normalize(text);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

// Prepends a string to non-empty text (SentencePiece-style "▁").
class PrependNormalizer final : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  void normalize(std::string& text) const override {
    if (!text.empty()) text.insert(0, prefix_);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer final : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::unique_ptr<detail::Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  void normalize(std::string& text) const override {
    std::string out;
    if (regex_) {
      std::vector<std::pair<size_t, size_t>> m;
      regex_->find_all(text, m);
      if (m.empty()) return;
      size_t last = 0;
      for (auto [s, e] : m) {
        out.append(text, last, s - last);
        out += content_;
        last = e;
      }
      out.append(text, last, std::string::npos);
    } else {
      if (literal_.empty()) return;
      size_t pos = text.find(literal_);
      if (pos == std::string::npos) return;
      out.reserve(text.size() + text.size() / 4);
      size_t last = 0;
      while (pos != std::string::npos) {
        out.append(text, last, pos - last);
        out += content_;
        last = pos + literal_.size();
        pos = text.find(literal_, last);
      }
      out.append(text, last, std::string::npos);
    }
    text.swap(out);
  }

 private:
  std::string literal_;
  std::unique_ptr<detail::Regex> regex_;
  std::string content_;
};

class StripNormalizer final : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  void normalize(std::string& text) const override {
    size_t b = 0, e = text.size();
    if (left_) {
      size_t pos = 0;
      char32_t cp;
      while (pos < e) {
        size_t p = pos;
        if (!next_utf8(text, p, cp) || !is_unicode_whitespace(cp)) break;
        pos = p;
      }
      b = pos;
    }
    if (right_) {
      while (e > b) {
        size_t s = e - 1;
        while (s > b && (static_cast<unsigned char>(text[s]) & 0xC0) == 0x80) --s;
        size_t p = s;
        char32_t cp;
        if (!next_utf8(text, p, cp) || !is_unicode_whitespace(cp)) break;
        e = s;
      }
    }
    text = text.substr(b, e - b);
  }

 private:
  bool left_, right_;
};

#ifdef ICAE_HAVE_ICU
// Unicode normalization forms through ICU. Text below U+0300 (ASCII, Latin-1, most Latin) is the
// unchanged by NFC and NFKC, so those skip ICU for such text.
class IcuNormalizer final : public Normalizer {
 public:
  IcuNormalizer(const std::string& form, const std::string& where) : composing_(form == "NFC" || form == "NFKC") {
    UErrorCode err = U_ZERO_ERROR;
    if (form == "NFC") n_ = icu::Normalizer2::getNFCInstance(err);
    else if (form == "NFD") n_ = icu::Normalizer2::getNFDInstance(err);
    else if (form == "NFKC") n_ = icu::Normalizer2::getNFKCInstance(err);
    else n_ = icu::Normalizer2::getNFKDInstance(err);
    if (U_FAILURE(err) || !n_)
      fail(ErrorKind::Internal, "tokenizer.json: " + where + ": ICU cannot provide " + form + ": " + u_errorName(err));
  }
  void normalize(std::string& text) const override {
    // Every character below U+0300 (lead bytes below 0xCC) is stable under NFC.
    if (composing_) {
      bool simple = true;
      for (unsigned char c : text)
        if (c >= 0xCC) {
          simple = false;
          break;
        }
      if (simple) return;
    }
    std::string out;
    out.reserve(text.size());
    icu::StringByteSink<std::string> sink(&out);
    UErrorCode err = U_ZERO_ERROR;
    n_->normalizeUTF8(0, icu::StringPiece(text.data(), static_cast<int32_t>(text.size())), sink, nullptr, err);
    if (U_FAILURE(err)) fail(ErrorKind::BadInput, std::string("tokenizer: Unicode normalization failed: ") + u_errorName(err));
    text.swap(out);
  }

 private:
  const icu::Normalizer2* n_ = nullptr;
  bool composing_;
};
#else
class PassThroughNormalizer final : public Normalizer {
 public:
  void normalize(std::string&) const override {}
};
#endif

}  // namespace

std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return nullptr;
  const std::string type = json_type(j, where);
  if (type == "Sequence") {
    auto it = j.find("normalizers");
    if (it == j.end() || !it->is_array()) bad_json(where, "Sequence needs an array \"normalizers\"");
    std::vector<std::unique_ptr<Normalizer>> parts;
    for (size_t i = 0; i < it->size(); ++i) {
      auto p = make_normalizer((*it)[i], where + ".normalizers[" + std::to_string(i) + "]");
      if (p) parts.push_back(std::move(p));
    }
    return std::make_unique<SequenceNormalizer>(std::move(parts));
  }
  if (type == "Prepend") return std::make_unique<PrependNormalizer>(json_string(j, "prepend", where));
  if (type == "Replace") {
    auto pat = j.find("pattern");
    if (pat == j.end() || !pat->is_object()) bad_json(where, "Replace needs \"pattern\": {\"String\": ...} or {\"Regex\": ...}");
    const std::string content = json_string(j, "content", where);
    if (pat->contains("String"))
      return std::make_unique<ReplaceNormalizer>(json_string(*pat, "String", where + ".pattern"), nullptr, content);
    if (pat->contains("Regex")) {
      auto re = std::make_unique<detail::Regex>(json_string(*pat, "Regex", where + ".pattern"),
                                                "tokenizer.json: " + where + ".pattern");
      return std::make_unique<ReplaceNormalizer>("", std::move(re), content);
    }
    bad_json(where + ".pattern", "expected \"String\" or \"Regex\"");
  }
  if (type == "Strip")
    return std::make_unique<StripNormalizer>(json_bool_or(j, "strip_left", true, where),
                                             json_bool_or(j, "strip_right", true, where));
#ifdef ICAE_HAVE_ICU
  if (type == "NFC" || type == "NFD" || type == "NFKC" || type == "NFKD") return std::make_unique<IcuNormalizer>(type, where);
  const char* supported = "Sequence, Prepend, Replace, Strip, NFC, NFD, NFKC, NFKD";
#else
  if (type == "NFC") return std::make_unique<PassThroughNormalizer>();
  const char* supported = "Sequence, Prepend, Replace, Strip, NFC (this build has no ICU: NFC passes text through)";
#endif
  fail(ErrorKind::Unsupported, "tokenizer.json: " + where + ": normalizer type '" + type +
                                   "' is not supported (supported: " + supported + ")");
}

}  // namespace icae::tok

namespace icae::tok {
bool unicode_normalization_available() {
#ifdef ICAE_HAVE_ICU
  return true;
#else
  return false;
#endif
}
}  // namespace icae::tok
