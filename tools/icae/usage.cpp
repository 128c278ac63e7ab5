#include "usage.h"

#include <algorithm>
#include <iostream>
#include <sstream>
#include <vector>

namespace icae::cli {
namespace {

std::vector<std::string> command_names(const CLI::App& root) {
  std::vector<std::string> names;
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App*) { return true; }))
    names.push_back(sub->get_name());
  return names;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// Levenshtein distance, to suggest "generate" for "genrate".
size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// The root has no options of its own, so when no command was recognised, the first argument that
// is not an option is what the user meant as the command.
// Its index in argv, or 0 when every argument is an option.
int unrecognised_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (argv[i][0] != '-') return i;
  return 0;
}

std::string no_command_message(const CLI::App& root, int argc, char** argv) {
  const std::vector<std::string> names = command_names(root);
  const int index = unrecognised_command(argc, argv);
  std::ostringstream m;
  if (index > 0) {
    const std::string given = argv[index];
    m << "unknown command '" << given << "'";
    std::string best;
    size_t best_distance = 3;  // suggest only close misspellings
    for (const auto& n : names) {
      const size_t d = edit_distance(given, n);
      if (d < best_distance) best_distance = d, best = n;
    }
    if (!best.empty()) m << " (did you mean '" << best << "'?)";
  } else if (argc > 1) {
    // Only --help and --version belong before the command; CLI11 handled those.
    m << "unknown option '" << argv[1] << "' before the command (options go after it)";
  } else {
    m << "no command given";
  }
  m << "; commands: " << join(names) << "\nrun 'icae --help' for what each does";
  return m.str();
}

std::string format_number(double v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

}  // namespace

std::string parse_error_message(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv) {
  const std::vector<CLI::App*> parsed = root.get_subcommands();
  if (parsed.empty()) return "icae: " + no_command_message(root, argc, argv);
  // The innermost command reached names the option's owner ("icae generate: --model is required").
  const std::string name = parsed.back()->get_name();
  return "icae " + name + ": " + e.what() + "\nrun 'icae " + name + " --help' for its options";
}

int report_parse_error(const CLI::App& root, const CLI::ParseError& e, int argc, char** argv) {
  // --help and --version are "errors" to CLI11 too, with exit code 0: let it print them.
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return root.exit(e);
  // "icae[ NAME]: error: ..." — the message with "error:" after its owner.
  const std::string m = parse_error_message(root, e, argc, argv);
  const size_t colon = m.find(": ");
  std::cerr << m.substr(0, colon) << ": error: " << m.substr(colon + 2) << "\n";
  return 2;
}

CLI::Validator at_least(double low) {
  return CLI::Validator(
      [low](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v)) return "'" + value + "' is not a number";
        if (!(v >= low)) return "Value " + value + " is below the minimum " + format_number(low);
        return "";
      },
      ">=" + format_number(low));
}

CLI::Validator unit_interval_open_closed() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        double v = 0;
        if (!CLI::detail::lexical_cast(value, v)) return "'" + value + "' is not a number";
        if (!(v > 0.0 && v <= 1.0)) return "Value " + value + " not in the range (0, 1]";
        return "";
      },
      "(0,1]");
}

}  // namespace icae::cli
