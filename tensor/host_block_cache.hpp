// The host block cache of tensor/storage.cpp: freed CPU blocks of 128 KiB and more are kept for
// reuse by allocations of the same size (up to 1 GiB in all).
#pragma once

#include <cstddef>

namespace dtensor {

// Frees the cached blocks and returns their bytes: after a load whose temporaries will not come
// again (f32 blocks quantized as they were read), so that they stop counting as resident memory.
size_t release_cached_host_blocks();

}  // namespace dtensor
