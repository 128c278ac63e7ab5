// Shared helpers for the tokenizer tests: the shipped tokenizer.json files, loaded once.
#pragma once
#include <map>
#include <memory>
#include <string>

#include "icae/tokenizer/tokenizer.h"

namespace icae::tok::testing {

inline std::string tokenizer_dir() { return std::string(ICAE_SHARED_DIR) + "/testdata/tokenizers"; }

// The tokenizer in testdata/tokenizers/<name>/tokenizer.json, loaded on first use and kept.
inline const Tokenizer& shipped(const std::string& name) {
  static std::map<std::string, std::unique_ptr<Tokenizer>> cache;
  auto& slot = cache[name];
  if (!slot) slot = std::make_unique<Tokenizer>(Tokenizer::from_file(tokenizer_dir() + "/" + name + "/tokenizer.json"));
  return *slot;
}

}  // namespace icae::tok::testing
