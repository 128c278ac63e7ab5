// Errors in icae: exceptions inside the library, clear messages and exit codes at the CLI.
// Never assert() on real errors: asserts vanish in release builds.
#pragma once
#include <stdexcept>
#include <string>

namespace icae {

// What went wrong, which also decides the CLI's exit code.
enum class ErrorKind {
  Internal = 1,   // a bug or an unexpected state
  Usage = 2,      // bad command-line arguments or options
  BadInput = 3,   // a malformed file or value (JSON, safetensors, GGUF, tokenizer.json, ...)
  Io = 4,         // cannot open / read / write a file
  Mismatch = 5,   // well-formed but incompatible (wrong shape, adapter for another base model)
  Unsupported = 6 // a valid feature this build does not implement (e.g. rope type yarn)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

}  // namespace icae

// Checks a condition that depends on input and throws icae::Error with the message otherwise.
#define ICAE_CHECK(cond, kind, message)                    \
  do {                                                     \
    if (!(cond)) ::icae::fail((kind), (message));          \
  } while (0)
