// The icae command-line tool: a thin main; every subcommand lives in its own cmd_*.cpp and the
// parsing in cli_entry.cpp (shared with the Python package).
#include <string>
#include <vector>

#include "cli_entry.h"

int main(int argc, char** argv) { return icae::cli::run(std::vector<std::string>(argv + 1, argv + argc)); }
