// The command registry and the one place that parses a command line and runs it.
#include "cli_entry.h"

#include <iostream>

#include "command.h"
#include "usage.h"
#include "icae/util/error.h"

namespace icae::cli {

std::vector<CommandSetup>& command_registry() {
  static std::vector<CommandSetup> registry;
  return registry;
}

namespace {

// A fresh app per call: CLI11 keeps parse results in the app, and commands keep their options'
// storage in shared state created by their setup function.
void build_app(CLI::App& app) {
  app.description(
      "icae - the In-context Autoencoder (Ge et al., ICLR 2024) in C++.\n"
      "Compresses a context into memory slots that a frozen LLM reads in place of the context.\n");
  app.name("icae");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("icae ") + ICAE_VERSION);
  for (auto& setup : command_registry()) setup(app);
}

}  // namespace

int run(const std::vector<std::string>& args, bool rethrow) {
  CLI::App app;
  build_app(app);
  // CLI11 wants argv; report_parse_error reads it to name an unknown command.
  std::vector<std::string> storage;
  storage.reserve(args.size() + 1);
  storage.push_back("icae");
  storage.insert(storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : storage) argv.push_back(s.data());
  const int argc = static_cast<int>(argv.size());
  try {
    app.parse(argc, argv.data());
  } catch (const CLI::ParseError& e) {
    // A caller that maps errors gets usage errors as icae::Error(Usage) with the same words.
    if (rethrow && e.get_exit_code() != static_cast<int>(CLI::ExitCodes::Success))
      fail(ErrorKind::Usage, parse_error_message(app, e, argc, argv.data()));
    return report_parse_error(app, e, argc, argv.data());
  } catch (const icae::Error& e) {
    if (rethrow) throw;
    std::cerr << "icae: error: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    if (rethrow) throw;
    std::cerr << "icae: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}

std::string help(const std::string& command) {
  CLI::App app;
  build_app(app);
  if (command.empty()) return app.help();
  CLI::App* sub = app.get_subcommand(command);  // throws OptionNotFound for an unknown one
  return sub->help();
}

}  // namespace icae::cli
