// What modules hold and pass around: a plain local Tensor or a DTensor.
//
// A parameter of an unsharded layer, or of a `local` strategy, is a plain tensor; a parameter a
// parallel strategy partitioned is a DTensor. Activations are plain tensors between modules unless
// a strategy keeps them distributed (sequence-sharded activations stay DTensors so their global
// shape is known to the next module).
#pragma once

#include "dtensor/dtensor.hpp"

#include <variant>

namespace dtensor::nn {

class Value {
 public:
  Value() = default;
  Value(Tensor t) : v_(std::move(t)) {}
  Value(DTensor t) : v_(std::move(t)) {}

  bool defined() const { return is_distributed() || std::get<Tensor>(v_).defined(); }
  bool is_distributed() const { return std::holds_alternative<DTensor>(v_); }

  // The plain tensor; ValueError naming `what` when this is a DTensor.
  const Tensor& tensor(const char* what = "value") const;
  // The DTensor; ValueError naming `what` when this is a plain tensor.
  const DTensor& dtensor(const char* what = "value") const;
  // This rank's data either way (a DTensor's local block).
  const Tensor& local() const;

  Shape shape() const;  // the global shape
  DType dtype() const { return local().dtype(); }
  // "DTensor (S(0)) global [8, 4] local [4, 4]" or "Tensor [8, 4]".
  std::string describe() const;

 private:
  std::variant<Tensor, DTensor> v_;
};

}  // namespace dtensor::nn
