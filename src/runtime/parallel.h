// Intra-op parallelism on OpenMP: contiguous static chunks, so the split of
// work (and so every result) depends only on n and the thread count.
#pragma once
#include "duet/ops/registry.h"

namespace duet::runtime {

class OpenMPParallel final : public ops::Parallel {
 public:
  explicit OpenMPParallel(int threads) : threads_(threads < 1 ? 1 : threads) {}
  int threads() const override { return threads_; }
  void for_range(int64_t n, const std::function<void(int64_t, int64_t)>& fn) override;

 private:
  int threads_;
};

}  // namespace duet::runtime
