// Usage errors: every CLI11-level failure (unknown command, missing or bad option, extra
// arguments) becomes one message naming the problem and exit code 2, as the README documents.
// main() routes every CLI::ParseError through here, so commands added later are covered without
// doing anything themselves.
#pragma once
#include <CLI/CLI.hpp>
#include <string>

namespace icae::cli {

// The message for a parse error of `root`, starting with its owner: "icae generate: --model is
// required\nrun 'icae generate --help' ..." or "icae: unknown command 'x' ...".
std::string parse_error_message(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv);
// Prints help/version (exit 0) or "icae: error: ..." (exit 2) for a parse error of `root`.
int report_parse_error(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv);

// Validators for numeric options, so that "--threads -3" or "--top-p 0" fail as usage errors
// with a readable message (CLI11's NonNegativeNumber prints DBL_MAX as its upper bound).
CLI::Validator at_least(double low);          // [low, inf): at_least(0) for counts, at_least(1) for sizes
CLI::Validator unit_interval_open_closed();   // (0, 1], for top-p

}  // namespace icae::cli
