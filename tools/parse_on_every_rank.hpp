// Command-line parsing for programs launched with mpirun: every rank parses the same arguments,
// rank 0 alone prints the help or the error, and every rank gets the same exit code.
//
//   if (auto code = tools::parse_on_every_rank(app, argc, argv, world, "train", check)) return *code;
//
// A bad command line is a ValueError naming the flag (parse_command_line), so tests can check
// the programs' flags in-process (tests/bad_input_rows_programs.cpp) through the same calls.
#pragma once

#include "collectives/communicator.hpp"
#include "tensor/error.hpp"

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dtensor::tools {

// The exit code of a bad command line (CLI11's own codes are for its parse errors only).
inline constexpr int kBadCommandLine = 2;

// Parses `args` (argv without the program name) into app's options. A bad command line is a
// ValueError "[program] <CLI11's message>" (which names the flag); --help and --help-all come
// through as CLI11's CallForHelp / CallForAllHelp (CLI::Success).
inline void parse_command_line(CLI::App& app, const std::vector<std::string>& args, const char* program) {
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // the order CLI11's parse takes
  try {
    app.parse(reversed);
  } catch (const CLI::Success&) {
    throw;
  } catch (const CLI::ParseError& e) {
    fail<ValueError>(program, "{}", e.what());
  }
}

// nullopt when the program should go on; otherwise the code to exit with (--help: 0; a bad flag, or
// `check_flags` (the checks CLI11's validators cannot make) throwing: kBadCommandLine). Every rank
// parses and checks the same arguments, so all of them stop together without communicating.
inline std::optional<int> parse_on_every_rank(CLI::App& app, int argc, char** argv, const Communicator& world,
                                              const char* program = "command line",
                                              const std::function<void()>& check_flags = {}) {
  try {
    parse_command_line(app, std::vector<std::string>(argv + 1, argv + argc), program);
    if (check_flags) check_flags();
  } catch (const CLI::ParseError& e) {
    return world.rank() == 0 ? app.exit(e) : e.get_exit_code();
  } catch (const Error& e) {
    if (world.rank() == 0) fmt::print(stderr, "error: {}\nRun with --help for more information.\n", e.what());
    return kBadCommandLine;
  }
  return std::nullopt;
}

}  // namespace dtensor::tools
