#include "request.h"

#include <cmath>
#include <cstring>

namespace icae::server {

nlohmann::json parse_object(const std::string& body) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body);
  } catch (const nlohmann::json::parse_error& e) {
    http_fail(400, std::string("malformed JSON body: ") + e.what());
  }
  if (!j.is_object()) http_fail(400, std::string("the body must be a JSON object, got ") + j.type_name());
  return j;
}

Fields::Fields(const nlohmann::json& object, std::initializer_list<const char*> allowed) : object_(object) {
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool known = false;
    for (const char* a : allowed) known = known || it.key() == a;
    if (!known) {
      std::string list;
      for (const char* a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      http_fail(400, "unknown field '" + it.key() + "' (this route takes: " + list + ")");
    }
  }
}

const nlohmann::json* Fields::get(const char* name) const {
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

bool Fields::has(const char* name) const { return get(name) != nullptr; }

std::optional<std::string> Fields::text(const char* name) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_string()) http_fail(400, std::string("field '") + name + "' must be a string, got " + v->type_name());
  return v->get<std::string>();
}

std::optional<std::vector<int64_t>> Fields::ids(const char* name, int64_t vocab, int64_t max_len) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_array()) http_fail(400, std::string("field '") + name + "' must be an array of token ids, got " + v->type_name());
  if (v->empty()) http_fail(400, std::string("field '") + name + "' is empty");
  if (static_cast<int64_t>(v->size()) > max_len)
    http_fail(413, std::string("field '") + name + "' has " + std::to_string(v->size()) + " tokens, the limit is " +
                       std::to_string(max_len));
  std::vector<int64_t> out;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    const nlohmann::json& e = (*v)[i];
    if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() >= vocab)
      http_fail(400, std::string("field '") + name + "'[" + std::to_string(i) + "] = " + e.dump() +
                         " is not a token id of this model (an integer in [0, " + std::to_string(vocab) + "))");
    out.push_back(e.get<int64_t>());
  }
  return out;
}

std::optional<int64_t> Fields::integer(const char* name, int64_t lo, int64_t hi) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) http_fail(400, std::string("field '") + name + "' must be an integer, got " + v->dump());
  // Unsigned values above int64 would wrap: compare as unsigned first.
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi))
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  const int64_t x = v->get<int64_t>();
  if (x < lo || x > hi)
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  return x;
}

std::optional<double> Fields::number(const char* name, double lo, double hi) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_number()) http_fail(400, std::string("field '") + name + "' must be a number, got " + v->dump());
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    http_fail(400, std::string("field '") + name + "' = " + v->dump() + " is out of range [" + std::to_string(lo) +
                       ", " + std::to_string(hi) + "]");
  return x;
}

std::optional<bool> Fields::boolean(const char* name) const {
  const nlohmann::json* v = get(name);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) http_fail(400, std::string("field '") + name + "' must be true or false, got " + v->dump());
  return v->get<bool>();
}

}  // namespace icae::server
