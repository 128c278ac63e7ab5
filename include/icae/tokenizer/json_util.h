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

// Tables indexed by token id are sized by the largest id, not by the number of tokens: ids that
// no token has are limited to this many, so {"a": 268435455} cannot ask for 2^28 entries.
constexpr size_t kMaxUnusedTokenIds = size_t(1) << 16;
// Components (normalizer, pre_tokenizer, decoder, post_processor) are built recursively through
// their "Sequence"s; real files nest 2 deep. Deeper is refused before building anything.
constexpr size_t kMaxComponentDepth = 64;
// Throws BadInput "tokenizer.json: <where>: ..." when j nests arrays and objects more than
// `limit` levels deep (counted without recursion).
void check_json_depth(const nlohmann::json& j, size_t limit, const std::string& where);

}  // namespace icae::tok
