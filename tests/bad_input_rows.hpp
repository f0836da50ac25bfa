// The rows of the bad-input sweep (tests/test_bad_input_sweep.cpp): each a call of the public API
// with one bad argument, the error type it must raise and the argument its message must name.
//
//   rows.push_back(row<ShapeError>("from_local: Shard dim past the tensor", "placements",
//                                  [&] { DTensor::from_local(local, mesh, {Shard(2)}); }));
//
// Every rank runs every row (calls are collective), so a row's call must be the same on every
// rank unless the row is about ranks that disagree.
#pragma once

#include "autograd/autograd.hpp"
#include "tensor/error.hpp"

#include <filesystem>
#include <functional>
#include <string>
#include <typeinfo>
#include <vector>

namespace bad_input {

// The error types of tensor/error.hpp (and autograd's), most derived first.
enum class ErrorKind { Value, Shape, DType, Device, Comm, Mesh, Autograd, OtherError, OtherException, None };

const char* kind_name(ErrorKind kind);

template <typename E>
constexpr ErrorKind kind_of() {
  using namespace dtensor;
  if constexpr (std::is_same_v<E, ValueError>) return ErrorKind::Value;
  if constexpr (std::is_same_v<E, ShapeError>) return ErrorKind::Shape;
  if constexpr (std::is_same_v<E, DTypeError>) return ErrorKind::DType;
  if constexpr (std::is_same_v<E, DeviceError>) return ErrorKind::Device;
  if constexpr (std::is_same_v<E, CommError>) return ErrorKind::Comm;
  if constexpr (std::is_same_v<E, MeshError>) return ErrorKind::Mesh;
  if constexpr (std::is_same_v<E, AutogradError>) return ErrorKind::Autograd;
  return ErrorKind::OtherError;
}

struct Row {
  std::string name;
  ErrorKind expected;
  std::string argument;  // the message must contain it
  std::function<void()> call;
};

template <typename E>
Row row(std::string name, std::string argument, std::function<void()> call) {
  return {std::move(name), kind_of<E>(), std::move(argument), std::move(call)};
}

// What a row's call did on this rank.
struct Outcome {
  ErrorKind kind = ErrorKind::None;
  std::string message;
};
Outcome run_row(const Row& row);

// Files written by the file rows (one directory per process, removed at exit).
std::filesystem::path scratch_dir();
void write_file(const std::filesystem::path& path, const std::string& bytes);
// A tiny random Llama checkpoint, written once per process into the scratch directory.
std::string tiny_llama_dir();

// The families of rows; each file's rows are its inputs' bad values.
std::vector<Row> mesh_rows();
std::vector<Row> placement_rows();
std::vector<Row> dtensor_rows();
std::vector<Row> op_rows();
std::vector<Row> tensor_rows();
std::vector<Row> collective_rows();
std::vector<Row> file_rows();
std::vector<Row> gguf_rows();
std::vector<Row> config_rows();
std::vector<Row> plan_rows();
std::vector<Row> program_rows();

}  // namespace bad_input
