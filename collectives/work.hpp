// Handle of a collective, as every Communicator collective returns: wait() blocks until done,
// test() polls. A blocking call (CommMode::Blocking) returns an already-complete one. A failure
// inside the operation is raised from wait()/test(). Copies share one operation.
#pragma once

#include <memory>

namespace dtensor {

namespace detail {
class WorkImpl {
 public:
  virtual ~WorkImpl() = default;
  virtual bool test() = 0;  // true once complete; makes progress
  virtual void wait() = 0;
};
}  // namespace detail

class Work {
 public:
  Work() = default;  // an already-complete operation
  explicit Work(std::shared_ptr<detail::WorkImpl> impl) : impl_(std::move(impl)) {}

  void wait() {
    if (impl_) impl_->wait();
  }
  bool test() { return !impl_ || impl_->test(); }

 private:
  std::shared_ptr<detail::WorkImpl> impl_;
};

}  // namespace dtensor
