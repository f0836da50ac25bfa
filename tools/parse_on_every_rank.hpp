// Command-line parsing for programs launched with mpirun: every rank parses the same arguments,
// rank 0 alone prints the help or the error, and every rank gets CLI11's exit code.
//
//   if (auto code = tools::parse_on_every_rank(app, argc, argv, world)) return *code;
#pragma once

#include "collectives/communicator.hpp"

#include <CLI/CLI.hpp>

#include <optional>

namespace dtensor::tools {

// nullopt when the program should go on; otherwise the code to exit with (--help, bad flags).
inline std::optional<int> parse_on_every_rank(CLI::App& app, int argc, char** argv, const Communicator& world) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return world.rank() == 0 ? app.exit(e) : e.get_exit_code();
  }
  return std::nullopt;
}

}  // namespace dtensor::tools
