#include "icae/tokenizer/post_processor.h"

#include <sstream>

#include "icae/tokenizer/json_util.h"

namespace icae::tok {
namespace {

// ["[CLS]", 101] as BertProcessing writes its cls/sep.
TokenId pair_id(const nlohmann::json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->size() != 2 || !(*it)[1].is_number_integer())
    bad_json(where + "." + key, "expected [\"token\", id]");
  return static_cast<TokenId>((*it)[1].get<long long>());
}

PostProcessing from_template(const nlohmann::json& j, const std::string& where) {
  auto single = j.find("single");
  if (single == j.end()) bad_json(where, "TemplateProcessing needs \"single\"");
  auto specials = j.find("special_tokens");
  auto ids_of = [&](const std::string& name, const std::string& w) {
    if (specials == j.end() || !specials->is_object() || !specials->contains(name))
      bad_json(w, "special token \"" + name + "\" is not defined in " + where + ".special_tokens");
    const auto& s = (*specials)[name];
    auto ids = s.find("ids");
    if (ids == s.end() || !ids->is_array()) bad_json(where + ".special_tokens." + name, "missing array \"ids\"");
    std::vector<TokenId> out;
    for (const auto& id : *ids) {
      if (!id.is_number_integer()) bad_json(where + ".special_tokens." + name + ".ids", "expected integers");
      out.push_back(static_cast<TokenId>(id.get<long long>()));
    }
    return out;
  };
  PostProcessing pp;
  bool seen_a = false;
  auto add = [&](const std::vector<TokenId>& ids) {
    auto& dst = seen_a ? pp.suffix : pp.prefix;
    dst.insert(dst.end(), ids.begin(), ids.end());
  };
  auto sequence = [&](const std::string& id, const std::string& w) {
    if (id != "A") bad_json(w, "a single-sequence template can only use sequence A, found \"" + id + "\"");
    if (seen_a) bad_json(w, "sequence A appears twice");
    seen_a = true;
  };
  if (single->is_string()) {  // "[CLS] $A [SEP]" (with optional ":type_id" suffixes)
    std::istringstream in(single->get<std::string>());
    std::string piece;
    while (in >> piece) {
      const std::string name = piece.substr(0, piece.rfind(':') == std::string::npos || piece.rfind(':') == 0
                                                   ? piece.size()
                                                   : piece.rfind(':'));
      if (!name.empty() && name[0] == '$') sequence(name.size() == 1 ? "A" : name.substr(1), where + ".single");
      else add(ids_of(name, where + ".single"));
    }
  } else if (single->is_array()) {
    for (size_t i = 0; i < single->size(); ++i) {
      const auto& p = (*single)[i];
      const std::string w = where + ".single[" + std::to_string(i) + "]";
      if (p.contains("SpecialToken")) add(ids_of(json_string(p["SpecialToken"], "id", w), w));
      else if (p.contains("Sequence")) sequence(json_string(p["Sequence"], "id", w), w);
      else bad_json(w, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  } else {
    bad_json(where + ".single", "expected an array or a string");
  }
  if (!seen_a) bad_json(where + ".single", "the template does not contain sequence $A");
  return pp;
}

}  // namespace

PostProcessing make_post_processing(const nlohmann::json& j, const std::string& where) {
  if (j.is_null()) return {};
  const std::string type = json_type(j, where);
  if (type == "TemplateProcessing") return from_template(j, where);
  if (type == "ByteLevel") return {};
  if (type == "BertProcessing" || type == "RobertaProcessing")
    return {{pair_id(j, "cls", where)}, {pair_id(j, "sep", where)}};
  if (type == "Sequence") {
    auto it = j.find("processors");
    if (it == j.end() || !it->is_array()) bad_json(where, "Sequence needs an array \"processors\"");
    PostProcessing all;
    for (size_t i = 0; i < it->size(); ++i) {
      PostProcessing p = make_post_processing((*it)[i], where + ".processors[" + std::to_string(i) + "]");
      all.prefix.insert(all.prefix.begin(), p.prefix.begin(), p.prefix.end());
      all.suffix.insert(all.suffix.end(), p.suffix.begin(), p.suffix.end());
    }
    return all;
  }
  fail(ErrorKind::Unsupported, "tokenizer.json: " + where + ": post-processor type '" + type +
                                   "' is not supported (supported: TemplateProcessing, BertProcessing, "
                                   "RobertaProcessing, ByteLevel, Sequence)");
}

}  // namespace icae::tok
