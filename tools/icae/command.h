// Subcommands register themselves here: each tools/icae/cmd_*.cpp adds one with ICAE_COMMAND.
// A command's callback throws icae::Error on failure; main() turns it into a message + exit code.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace icae::cli {

using CommandSetup = std::function<void(CLI::App& root)>;

// The list of all registered subcommands (filled during static initialisation).
std::vector<CommandSetup>& command_registry();

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSetup setup) { command_registry().push_back(std::move(setup)); }
};

}  // namespace icae::cli

#define ICAE_CONCAT_INNER(a, b) a##b
#define ICAE_CONCAT(a, b) ICAE_CONCAT_INNER(a, b)
// Usage at file scope: ICAE_COMMAND(setup_function);  where void setup_function(CLI::App& root)
#define ICAE_COMMAND(setup) \
  static ::icae::cli::CommandRegistrar ICAE_CONCAT(icae_command_registrar_, __LINE__){setup}
