// What the fuzz targets share: a scratch directory for parsers that read a path, and the rule
// for outcomes. A typed dtensor::Error is the correct answer to bad input and is swallowed; any
// other exception escapes LLVMFuzzerTestOneInput, terminates the process and is a finding, as
// are sanitizer reports, leaks, timeouts and failed invariants (FUZZ_CHECK).
#pragma once

#include "tensor/error.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace dtensor::fuzz {

// Aborts (a libFuzzer crash, with the input saved) when an invariant of a parsed file fails.
#define FUZZ_CHECK(condition)                                                                        \
  do {                                                                                               \
    if (!(condition)) {                                                                              \
      std::fprintf(stderr, "fuzz: invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #condition); \
      std::abort();                                                                                  \
    }                                                                                                \
  } while (false)

// A directory of this process's own (libFuzzer's -jobs runs several processes) in $TMPDIR, removed
// at a normal exit; scripts/fuzz.sh gives each run a TMPDIR it removes, as libFuzzer's ends skip it.
inline const std::filesystem::path& scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::string pattern = (std::filesystem::temp_directory_path() / "dtensor-fuzz-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    std::atexit([] { std::filesystem::remove_all(scratch_dir()); });
    return std::filesystem::path(pattern);
  }();
  return dir;
}

// Writes `bytes` to `name` in the scratch directory and returns its path.
inline std::string write_scratch_file(const std::string& name, std::string_view bytes) {
  const std::filesystem::path path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  out.close();
  if (!out) std::abort();
  return path.string();
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs `parse`; a dtensor::Error (bad input, correctly refused) ends the input quietly.
template <typename Parse>
void expect_typed_errors(Parse&& parse) {
  try {
    parse();
  } catch (const dtensor::Error&) {
  }
}

}  // namespace dtensor::fuzz
