#include "icae/tokenizer/json_util.h"

#include <utility>
#include <vector>

namespace icae::tok {

void bad_json(const std::string& where, const std::string& what) {
  fail(ErrorKind::BadInput, "tokenizer.json: " + where + ": " + what);
}

static const nlohmann::json* field(const nlohmann::json& j, const char* key, const std::string& where) {
  if (!j.is_object()) bad_json(where, "expected an object, found " + std::string(j.type_name()));
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string json_string(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto* f = field(j, key, where);
  if (!f) bad_json(where, std::string("missing field \"") + key + "\"");
  if (!f->is_string()) bad_json(where + "." + key, "expected a string, found " + std::string(f->type_name()));
  return f->get<std::string>();
}

std::string json_string_or(const nlohmann::json& j, const char* key, const std::string& fallback,
                           const std::string& where) {
  const auto* f = field(j, key, where);
  if (!f) return fallback;
  if (!f->is_string()) bad_json(where + "." + key, "expected a string, found " + std::string(f->type_name()));
  return f->get<std::string>();
}

bool json_bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& where) {
  const auto* f = field(j, key, where);
  if (!f) return fallback;
  if (!f->is_boolean()) bad_json(where + "." + key, "expected true or false, found " + std::string(f->type_name()));
  return f->get<bool>();
}

long long json_int(const nlohmann::json& j, const char* key, const std::string& where) {
  const auto* f = field(j, key, where);
  if (!f) bad_json(where, std::string("missing field \"") + key + "\"");
  if (!f->is_number_integer()) bad_json(where + "." + key, "expected an integer, found " + std::string(f->type_name()));
  return f->get<long long>();
}

std::string json_type(const nlohmann::json& j, const std::string& where) { return json_string(j, "type", where); }

void check_json_depth(const nlohmann::json& j, size_t limit, const std::string& where) {
  std::vector<std::pair<const nlohmann::json*, size_t>> todo{{&j, 1}};
  while (!todo.empty()) {
    auto [v, depth] = todo.back();
    todo.pop_back();
    if (!v->is_structured()) continue;
    if (depth > limit)
      bad_json(where, "arrays and objects nested more than " + std::to_string(limit) + " levels deep");
    for (const auto& child : *v) todo.emplace_back(&child, depth + 1);
  }
}

}  // namespace icae::tok
