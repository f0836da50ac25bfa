// Staging of device (CUDA) tensors through pinned host memory for the MPI backend (see
// device_staging.hpp). One pinned area per communicator, grown to the largest call and reused:
// cudaHostAlloc costs milliseconds, far more than the copies it speeds up.
#include "collectives/device_staging.hpp"

#include "tensor/device_kernels.hpp"

#include <mutex>

namespace dtensor::detail {

namespace {

// Page-locked host memory: copies to and from it run at full PCIe/NVLink speed, and it is
// ordinary host memory to MPI.
class PinnedArea {
 public:
  PinnedArea() = default;
  PinnedArea(const PinnedArea&) = delete;
  PinnedArea& operator=(const PinnedArea&) = delete;
  ~PinnedArea() {
    try {
      if (data_ != nullptr) kernels_->free_pinned_host(data_);
    } catch (const Error&) {  // errors here cannot be acted on
    }
  }

  // Pinned by `kernels`, the backend of the device tensors staged.
  std::byte* reserve(size_t bytes, DeviceKernels& kernels) {
    if (bytes > capacity_ || &kernels != kernels_) {
      if (data_ != nullptr) kernels_->free_pinned_host(data_);
      data_ = nullptr;
      capacity_ = 0;
      data_ = static_cast<std::byte*>(kernels.allocate_pinned_host(bytes));
      kernels_ = &kernels;
      capacity_ = bytes;
    }
    return data_;
  }

 private:
  std::byte* data_ = nullptr;
  size_t capacity_ = 0;
  DeviceKernels* kernels_ = nullptr;
};

// The host side of one call: a host twin for each device tensor, carved from the pinned area.
// Tensors already on the host are their own twins; a buffer given twice (the in-place forms
// pass one buffer as in and out) gets one twin.
class StagedCall {
 public:
  StagedCall(PinnedArea& area, std::initializer_list<const Tensor*> tensors) : tensors_(tensors) {
    std::vector<size_t> offsets(tensors_.size(), 0);
    std::vector<size_t> first_use(tensors_.size(), 0);
    size_t total = 0;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      first_use[i] = i;
      if (!on_device(*tensors_[i])) continue;
      for (size_t j = 0; j < i; ++j) {
        if (same_buffer(*tensors_[j], *tensors_[i])) first_use[i] = first_use[j];
      }
      if (first_use[i] != i) continue;
      offsets[i] = total;
      total += round_up(tensors_[i]->nbytes());
    }
    std::byte* base = total > 0 ? area.reserve(total, kernels()) : nullptr;
    for (size_t i = 0; i < tensors_.size(); ++i) {
      const Tensor& t = *tensors_[i];
      if (!on_device(t)) {
        twins_.push_back(t);
      } else if (first_use[i] != i) {
        twins_.push_back(twins_[first_use[i]]);
      } else {
        twins_.push_back(Tensor::from_blob(base + offsets[i], t.shape(), t.dtype()));
      }
    }
  }

  // The host tensor standing in for `t` (one of the tensors given to the constructor).
  const Tensor& twin_of(const Tensor& t) const {
    for (size_t i = 0; i < tensors_.size(); ++i) {
      if (tensors_[i] == &t) return twins_[i];
    }
    fail<ValueError>("device staging", "internal: tensor was not staged");
  }

  // Device -> host before the collective; waits for the work queued on the device before it.
  void copy_in(const Tensor& t) const {
    if (on_device(t) && t.nbytes() > 0) {
      kernels().copy_bytes(twin_of(t).data_ptr(), Device::cpu(), t.data_ptr(), t.device(), t.nbytes());
    }
  }
  // Host -> device after it.
  void copy_out(const Tensor& t) const {
    if (on_device(t) && t.nbytes() > 0) {
      kernels().copy_bytes(t.data_ptr(), t.device(), twin_of(t).data_ptr(), Device::cpu(), t.nbytes());
    }
  }

 private:
  static constexpr size_t kAlign = 256;
  static size_t round_up(size_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }
  // The backend of the call's device tensors (a call stages at least one).
  DeviceKernels& kernels() const {
    for (const Tensor* t : tensors_) {
      if (on_device(*t)) return device_kernels(*t, "device staging");
    }
    fail<ValueError>("device staging", "internal: no device tensor to stage");
  }
  static bool same_buffer(const Tensor& a, const Tensor& b) {
    return on_device(a) && a.data_ptr() == b.data_ptr() && a.nbytes() == b.nbytes();
  }

  std::vector<const Tensor*> tensors_;
  std::vector<Tensor> twins_;
};

class DeviceStagingBackend final : public CommBackend {
 public:
  explicit DeviceStagingBackend(std::shared_ptr<CommBackend> host) : host_(std::move(host)) {}

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  std::string_view name() const override { return host_->name(); }
  std::vector<int> world_ranks() const override { return host_->world_ranks(); }
  int world_size() const override { return host_->world_size(); }

  Work all_reduce(const Tensor& in, const Tensor& out, ReduceOp op, bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->all_reduce(in, out, op, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&in, &out});
    call.copy_in(in);
    host_->all_reduce(call.twin_of(in), call.twin_of(out), op, false);
    call.copy_out(out);
    return {};
  }

  Work broadcast(const Tensor& buffer, int root, bool async) override {
    if (!on_device(buffer)) return host_->broadcast(buffer, root, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&buffer});
    if (rank() == root) call.copy_in(buffer);
    host_->broadcast(call.twin_of(buffer), root, false);
    if (rank() != root) call.copy_out(buffer);
    return {};
  }

  Work all_gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->all_gather_v(in, out, counts, async);
    return staged_in_out(in, out, [&](const Tensor& i, const Tensor& o) { host_->all_gather_v(i, o, counts, false); });
  }

  Work reduce_scatter_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, ReduceOp op,
                        bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->reduce_scatter_v(in, out, counts, op, async);
    return staged_in_out(in, out,
                         [&](const Tensor& i, const Tensor& o) { host_->reduce_scatter_v(i, o, counts, op, false); });
  }

  Work all_to_all_v(const Tensor& in, std::span<const int64_t> send_counts, const Tensor& out,
                    std::span<const int64_t> recv_counts, bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->all_to_all_v(in, send_counts, out, recv_counts, async);
    return staged_in_out(
        in, out, [&](const Tensor& i, const Tensor& o) { host_->all_to_all_v(i, send_counts, o, recv_counts, false); });
  }

  // `in` is only read on root (and may be undefined elsewhere).
  Work scatter_v(const Tensor& in, std::span<const int64_t> counts, const Tensor& out, int root, bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->scatter_v(in, counts, out, root, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&in, &out});
    if (rank() == root) call.copy_in(in);
    host_->scatter_v(call.twin_of(in), counts, call.twin_of(out), root, false);
    call.copy_out(out);
    return {};
  }

  // `out` is only written on root.
  Work gather_v(const Tensor& in, const Tensor& out, std::span<const int64_t> counts, int root, bool async) override {
    if (!on_device(in) && !on_device(out)) return host_->gather_v(in, out, counts, root, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&in, &out});
    call.copy_in(in);
    host_->gather_v(call.twin_of(in), call.twin_of(out), counts, root, false);
    if (rank() == root) call.copy_out(out);
    return {};
  }

  Work send(const Tensor& buffer, int dst, int tag, bool async) override {
    if (!on_device(buffer)) return host_->send(buffer, dst, tag, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&buffer});
    call.copy_in(buffer);
    host_->send(call.twin_of(buffer), dst, tag, false);
    return {};
  }

  Work recv(const Tensor& buffer, int src, int tag, bool async) override {
    if (!on_device(buffer)) return host_->recv(buffer, src, tag, async);
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&buffer});
    host_->recv(call.twin_of(buffer), src, tag, false);
    call.copy_out(buffer);
    return {};
  }

  void barrier() override { host_->barrier(); }

  std::shared_ptr<CommBackend> split(int color, int key) override {
    std::shared_ptr<CommBackend> child = host_->split(color, key);
    return child == nullptr ? nullptr : std::make_shared<DeviceStagingBackend>(std::move(child));
  }

  // Host blocks only (see CommBackend): nothing to stage.
  bool exchange_blocks(const char* op, std::span<const ByteBlock> send, std::span<const ByteBlock> recv) override {
    return host_->exchange_blocks(op, send, recv);
  }

 private:
  template <typename Collective>
  Work staged_in_out(const Tensor& in, const Tensor& out, const Collective& collective) {
    std::lock_guard lock(mutex_);
    StagedCall call(area_, {&in, &out});
    call.copy_in(in);
    collective(call.twin_of(in), call.twin_of(out));
    call.copy_out(out);
    return {};
  }

  std::shared_ptr<CommBackend> host_;
  std::mutex mutex_;  // one staged call at a time owns the pinned area
  PinnedArea area_;
};

}  // namespace

std::shared_ptr<CommBackend> stage_device_tensors(std::shared_ptr<CommBackend> host) {
  return std::make_shared<DeviceStagingBackend>(std::move(host));
}

}  // namespace dtensor::detail
