// The icae command-line tool: a thin main; every subcommand lives in its own cmd_*.cpp.
#include <iostream>

#include "command.h"
#include "usage.h"
#include "icae/util/error.h"

namespace icae::cli {
std::vector<CommandSetup>& command_registry() {
  static std::vector<CommandSetup> registry;
  return registry;
}
}  // namespace icae::cli

int main(int argc, char** argv) {
  CLI::App app{
      "icae - the In-context Autoencoder (Ge et al., ICLR 2024) in C++.\n"
      "Compresses a context into memory slots that a frozen LLM reads in place of the context.\n"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "icae 0.1.0");
  for (auto& setup : icae::cli::command_registry()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return icae::cli::report_parse_error(app, e, argc, argv);
  } catch (const icae::Error& e) {
    std::cerr << "icae: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "icae: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
