#include "nn/linear_profile.hpp"

namespace dtensor::nn {

namespace {

// The innermost profile alive on this thread; each links to the one it encloses.
thread_local ScopedLinearProfile* innermost = nullptr;

}  // namespace

ScopedLinearProfile::ScopedLinearProfile() : enclosing_(innermost) { innermost = this; }

ScopedLinearProfile::~ScopedLinearProfile() { innermost = enclosing_; }

bool ScopedLinearProfile::active() { return innermost != nullptr; }

void ScopedLinearProfile::record(double flops, double seconds) {
  for (ScopedLinearProfile* p = innermost; p != nullptr; p = p->enclosing_) {
    p->stats_.flops += flops;
    p->stats_.seconds += seconds;
    ++p->stats_.calls;
  }
}

}  // namespace dtensor::nn
