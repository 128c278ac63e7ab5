// Where tests find shared data: ICAE_SHARED_DIR (a CMake option) unless the environment
// variable ICAE_SHARED overrides it.
#pragma once
#include <cstdlib>
#include <string>

namespace icae::test {

inline std::string shared_dir() {
  const char* env = std::getenv("ICAE_SHARED");
  return env && *env ? std::string(env) : std::string(ICAE_SHARED_DIR);
}
inline std::string golden_dir(const std::string& name) { return shared_dir() + "/testdata/golden/" + name; }

}  // namespace icae::test
