// Work items spread over libgomp's thread team, the one oneDNN (Debian's
// build) runs on: Duet's own kernels and the oneDNN primitives between them
// share the same warm threads. Called through libgomp's ABI (what
// `#pragma omp parallel` compiles to), so no -fopenmp is needed, whatever
// the compiler.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

extern "C" {
void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags);
int omp_get_thread_num(void);
int omp_get_max_threads(void);
}

namespace duet::backends::cpu {

// Calls fn(item, thread) for every item in [0, items) on up to `threads`
// threads (items handed out one at a time: the last ones may be short).
template <typename Fn>
void run_items(int64_t items, int threads, const Fn& fn) {
  struct Job {
    const Fn* fn;
    int64_t items;
    std::atomic<int64_t> next{0};
  } job{&fn, items};
  auto body = [](void* p) {
    Job& j = *static_cast<Job*>(p);
    const int t = omp_get_thread_num();
    for (int64_t i = j.next.fetch_add(1); i < j.items; i = j.next.fetch_add(1)) (*j.fn)(i, t);
  };
  if (threads <= 1 || items <= 1) {
    for (int64_t i = 0; i < items; ++i) fn(i, 0);
    return;
  }
  GOMP_parallel(body, &job, static_cast<unsigned>(threads), 0);
}

// The calling thread's scratch buffer, at least `floats` long: one per thread
// shared by every kernel (a buffer per kernel object would hold threads x
// layers of them), grown on first use, so steady-state runs allocate nothing.
inline float* thread_scratch(size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
}

}  // namespace duet::backends::cpu
