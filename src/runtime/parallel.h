// Intra-op parallelism: a small pool of persistent threads that sleep while
// idle (no spinning: on a shared 2-core machine a spinning worker steals the
// core the working thread needs). Work is split into contiguous chunks that
// depend only on n and the thread count, so results do not depend on timing.
#pragma once
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "duet/ops/registry.h"

namespace duet::runtime {

class ThreadPool final : public ops::Parallel {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const override { return threads_; }
  void for_range(int64_t n, const std::function<void(int64_t, int64_t)>& fn) override;

 private:
  void worker(int index);
  void run_chunk(int chunk);

  int threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  // The current job.
  const std::function<void(int64_t, int64_t)>* job_ = nullptr;
  int64_t job_n_ = 0;
  int job_chunks_ = 0;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace duet::runtime
