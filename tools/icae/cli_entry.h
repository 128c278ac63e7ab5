// The whole command line as one call: the icae executable's main() and the Python package
// (icae.cli, icae.pretrain, ...) both run commands through it, so a command, its options and
// its defaults exist once.
#pragma once
#include <string>
#include <vector>

namespace icae::cli {

// Parses `args` (without the program name, e.g. {"pretrain", "--model", "m.gguf", ...}) and runs
// the command. Returns the exit code the executable would: 0, or the icae::ErrorKind of a
// failure, after printing "icae: error: ..." to stderr. With rethrow set, a failure of the
// command itself (not of parsing) propagates as the icae::Error instead, for callers that map
// it onto their own errors.
int run(const std::vector<std::string>& args, bool rethrow = false);

// The --help text of a command ("" for the top level).
std::string help(const std::string& command);

}  // namespace icae::cli
