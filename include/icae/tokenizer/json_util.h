// Checked access to tokenizer.json fields: every failure names the field's path in the file.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

#include "icae/util/error.h"

namespace icae::tok {

// j[key] as a string; throws BadInput "tokenizer.json: <where>.<key> ..." if missing or not a string.
std::string json_string(const nlohmann::json& j, const char* key, const std::string& where);
// j[key] as a string, or `fallback` when the key is absent or null.
std::string json_string_or(const nlohmann::json& j, const char* key, const std::string& fallback,
                           const std::string& where);
bool json_bool_or(const nlohmann::json& j, const char* key, bool fallback, const std::string& where);
long long json_int(const nlohmann::json& j, const char* key, const std::string& where);
// The "type" field of a component (normalizer, pre_tokenizer, ...).
std::string json_type(const nlohmann::json& j, const std::string& where);

[[noreturn]] void bad_json(const std::string& where, const std::string& what);

}  // namespace icae::tok
