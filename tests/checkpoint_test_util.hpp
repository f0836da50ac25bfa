// Helpers of the checkpoint tests: a temporary directory per process, safetensors files built
// byte by byte (so the reader is checked against bytes its own writer did not produce), and
// catching one exception type to look at its message.
#pragma once

#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

namespace checkpoint_test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, unique per process and per instance; removed
// with everything in it when the object goes.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "") {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("dtensor-ckpt-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + tag);
    fs::create_directories(path_);
  }
  explicit TempDir(fs::path path) : path_(std::move(path)) { fs::create_directories(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  const fs::path& path() const { return path_; }
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

template <typename T>
std::string bytes_of(const std::vector<T>& values) {
  std::string out(values.size() * sizeof(T), '\0');
  if (!values.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

// 8-byte little-endian header length, the header text, then the data section.
inline std::string safetensors_bytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((uint64_t(header.size()) >> (8 * i)) & 0xff);
  return out + header + data;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The message of the E that fn throws; a test failure if it throws nothing or something else.
template <typename E>
std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("expected another exception type, got: " << e.what());
  }
  FAIL("expected an exception, got none");
  return "";
}

}  // namespace checkpoint_test
