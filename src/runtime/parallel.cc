#include "parallel.h"

#include <exception>
#include <mutex>

namespace duet::runtime {

void OpenMPParallel::for_range(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t t = std::min<int64_t>(threads_, n);
  if (t <= 1) {
    fn(0, n);
    return;
  }
  std::exception_ptr error;
  std::mutex m;
#pragma omp parallel for num_threads(t) schedule(static, 1)
  for (int64_t c = 0; c < t; ++c) {
    const int64_t begin = n * c / t, end = n * (c + 1) / t;
    try {
      if (begin < end) fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(m);
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace duet::runtime
