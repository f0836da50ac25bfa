// The bad-input sweep (issue 17, docs/design.md section 9): every row of tests/bad_input_rows*.cpp
// is a public call with one bad argument. On every rank the row must raise the expected error type
// with a message naming the argument, and every rank must raise the same type (rows about ranks that
// disagree included). Rank 0 prints the count of rows checked.
#include "bad_input_rows.hpp"

#include "collectives/runtime.hpp"

#include <fmt/format.h>
#include <catch2/catch.hpp>

#include <set>

using namespace dtensor;

namespace bad_input {

const char* kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Value:
      return "ValueError";
    case ErrorKind::Shape:
      return "ShapeError";
    case ErrorKind::DType:
      return "DTypeError";
    case ErrorKind::Device:
      return "DeviceError";
    case ErrorKind::Comm:
      return "CommError";
    case ErrorKind::Mesh:
      return "MeshError";
    case ErrorKind::Autograd:
      return "AutogradError";
    case ErrorKind::OtherError:
      return "another dtensor::Error";
    case ErrorKind::OtherException:
      return "a non-dtensor exception";
    case ErrorKind::None:
      return "no error";
  }
  return "?";
}

Outcome run_row(const Row& row) {
  try {
    row.call();
  } catch (const ValueError& e) {
    return {ErrorKind::Value, e.what()};
  } catch (const ShapeError& e) {
    return {ErrorKind::Shape, e.what()};
  } catch (const DTypeError& e) {
    return {ErrorKind::DType, e.what()};
  } catch (const DeviceError& e) {
    return {ErrorKind::Device, e.what()};
  } catch (const CommError& e) {
    return {ErrorKind::Comm, e.what()};
  } catch (const MeshError& e) {
    return {ErrorKind::Mesh, e.what()};
  } catch (const AutogradError& e) {
    return {ErrorKind::Autograd, e.what()};
  } catch (const Error& e) {
    return {ErrorKind::OtherError, e.what()};
  } catch (const std::exception& e) {
    return {ErrorKind::OtherException, e.what()};
  }
  return {};
}

}  // namespace bad_input

namespace {

using bad_input::ErrorKind;
using bad_input::Row;

std::vector<Row> all_rows() {
  std::vector<Row> rows;
  for (auto family : {bad_input::mesh_rows, bad_input::placement_rows, bad_input::dtensor_rows, bad_input::op_rows,
                      bad_input::tensor_rows, bad_input::collective_rows, bad_input::file_rows, bad_input::config_rows,
                      bad_input::plan_rows, bad_input::program_rows}) {
    for (Row& r : family()) rows.push_back(std::move(r));
  }
  return rows;
}

// Whether every rank of the world saw the same error kind.
bool same_kind_on_every_rank(ErrorKind kind) {
  Tensor range = Tensor::from_vector<int64_t>({int64_t(kind), -int64_t(kind)}, {2});
  world().all_reduce(range, ReduceOp::Min);
  const auto agreed = range.to_vector<int64_t>();
  return agreed[0] == -agreed[1];
}

bool on_every_rank(bool ok) {
  Tensor flag = Tensor::full({1}, ok ? 1.0 : 0.0, DType::I32);
  world().all_reduce(flag, ReduceOp::Min);
  return flag.item<int32_t>() == 1;
}

}  // namespace

TEST_CASE("every bad input raises the expected error naming the argument, on every rank", "[bad_input]") {
  const std::vector<Row> rows = all_rows();
  std::set<std::string> names;
  int64_t passed = 0;
  for (const Row& row : rows) {
    INFO("row: " << row.name);
    CHECK(names.insert(row.name).second);  // distinct rows
    const bad_input::Outcome outcome = bad_input::run_row(row);
    const bool right_kind = outcome.kind == row.expected;
    const bool names_argument = outcome.message.find(row.argument) != std::string::npos;
    if (!right_kind || !names_argument) {  // one unwrapped line per failing row, for grep
      fmt::print(stderr, "bad-input row '{}' on rank {}: expected {} naming '{}', got {}: {}\n", row.name,
                 world().rank(), kind_name(row.expected), row.argument, kind_name(outcome.kind), outcome.message);
    }
    CHECK(right_kind);
    CHECK(names_argument);
    const bool same_kind = same_kind_on_every_rank(outcome.kind);
    CHECK(same_kind);
    if (on_every_rank(right_kind && names_argument && same_kind)) ++passed;
  }
  if (world().rank() == 0) {
    fmt::print("bad-input sweep at np {}: {} rows, {} raised the expected error naming the argument on every rank\n",
               world().size(), rows.size(), passed);
  }
  CHECK(rows.size() >= 100);
  CHECK(passed == int64_t(rows.size()));
}
