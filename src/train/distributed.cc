#include "duet/train/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "duet/core/error.h"
#include "duet/numerics/convert.h"
#include "duet/numerics/format.h"

#ifdef DUET_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only (no deprecated C++ bindings)
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace duet::train {

namespace {

bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

#ifdef DUET_HAVE_MPI
void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) fail("MPI ", what, " failed (error ", rc, ")");
}

class MpiCommunicator : public Communicator {
 public:
  MpiCommunicator() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      check(MPI_Init(nullptr, nullptr), "init");
      std::atexit([] {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized) MPI_Finalize();
      });
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::vector<float> allgather(const float* data, size_t n) override {
    std::vector<float> all(n * static_cast<size_t>(size_));
    check(MPI_Allgather(data, static_cast<int>(n), MPI_FLOAT, all.data(), static_cast<int>(n), MPI_FLOAT, MPI_COMM_WORLD),
          "allgather");
    return all;
  }
  std::vector<uint16_t> allgather_bf16(const uint16_t* data, size_t n) override {
    std::vector<uint16_t> all(n * static_cast<size_t>(size_));
    check(MPI_Allgather(data, static_cast<int>(n), MPI_UINT16_T, all.data(), static_cast<int>(n), MPI_UINT16_T,
                        MPI_COMM_WORLD),
          "allgather");
    return all;
  }
  void broadcast(float* data, size_t n, int root) override {
    check(MPI_Bcast(data, static_cast<int>(n), MPI_FLOAT, root, MPI_COMM_WORLD), "broadcast");
  }

 private:
  int rank_ = 0, size_ = 1;
};
#endif

}  // namespace

Communicator* mpi_world() {
  if (!launched_by_mpirun()) return nullptr;
#ifdef DUET_HAVE_MPI
  static MpiCommunicator world;
  return world.size() > 1 ? &world : nullptr;
#else
  fail("this duet was built without MPI (libopenmpi-dev); data-parallel training under mpirun is unavailable");
#endif
}

void allreduce_gradients(Communicator& comm, std::vector<Tensor>& grads, double weight, bool bf16) {
  size_t total = 0;
  for (auto& g : grads) total += static_cast<size_t>(g.numel());
  std::vector<float> flat(total);
  size_t off = 0;
  for (auto& g : grads) {
    for (int64_t i = 0; i < g.numel(); ++i) flat[off + i] = static_cast<float>(g.data<float>()[i] * weight);
    off += static_cast<size_t>(g.numel());
  }
  std::vector<float> sum(total, 0.0f);
  const size_t ranks = static_cast<size_t>(comm.size());
  if (bf16) {
    const auto& f = numerics::find_format("bf16")->fp;
    std::vector<uint16_t> mine(total);
    numerics::encode_bulk(f, flat.data(), total, mine.data());
    const std::vector<uint16_t> all = comm.allgather_bf16(mine.data(), total);
    std::vector<float> part(total);
    for (size_t r = 0; r < ranks; ++r) {
      numerics::decode_bulk(f, all.data() + r * total, total, part.data());
      for (size_t i = 0; i < total; ++i) sum[i] += part[i];
    }
  } else {
    const std::vector<float> all = comm.allgather(flat.data(), total);
    for (size_t r = 0; r < ranks; ++r)
      for (size_t i = 0; i < total; ++i) sum[i] += all[r * total + i];
  }
  off = 0;
  for (auto& g : grads) {
    std::memcpy(g.data<float>(), sum.data() + off, static_cast<size_t>(g.numel()) * sizeof(float));
    off += static_cast<size_t>(g.numel());
  }
}

std::vector<float> allreduce_max(Communicator& comm, const std::vector<float>& v) {
  const std::vector<float> all = comm.allgather(v.data(), v.size());
  std::vector<float> out = v;
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = 0; i < v.size(); ++i) out[i] = std::max(out[i], all[r * v.size() + i]);
  return out;
}

std::vector<double> allreduce_values(Communicator& comm, const std::vector<double>& v) {
  // Doubles travel as float triples (hi, mid, lo): hi + mid holds 48 bits and
  // the remainder the last 5, so each double arrives exactly (barring float
  // underflow below 1e-38) and the sum is what one process would add.
  std::vector<float> packed;
  for (double d : v) {
    const float hi = static_cast<float>(d);
    const float mid = static_cast<float>(d - hi);
    packed.push_back(hi);
    packed.push_back(mid);
    packed.push_back(static_cast<float>(d - hi - mid));
  }
  const std::vector<float> all = comm.allgather(packed.data(), packed.size());
  std::vector<double> sum(v.size(), 0.0);
  for (int r = 0; r < comm.size(); ++r)
    for (size_t i = 0; i < v.size(); ++i) {
      const float* t = &all[r * packed.size() + 3 * i];
      sum[i] += (static_cast<double>(t[0]) + t[1]) + t[2];
    }
  return sum;
}

}  // namespace duet::train
