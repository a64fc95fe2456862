// Data-parallel training across processes (and machines) on MPI: `mpirun -np N
// duet train ...`. Every rank starts from rank 0's weights, takes its slice of
// each global batch, and the gradients are combined so that the update equals
// one process training on the whole global batch. Gradients are gathered and
// summed in rank order on every rank (identical bits everywhere, whatever the
// MPI library's reduction order), optionally as BF16 to halve the traffic.
#pragma once
#include <cstddef>
#include <memory>
#include <vector>

#include "duet/core/tensor.h"

namespace duet::train {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Every rank's n floats, concatenated in rank order ([size][n]).
  virtual std::vector<float> allgather(const float* data, size_t n) = 0;
  // Same with BF16 payloads (upper halves of float32, rounded to nearest even).
  virtual std::vector<uint16_t> allgather_bf16(const uint16_t* data, size_t n) = 0;
  virtual void broadcast(float* data, size_t n, int root) = 0;
};

// The MPI communicator when this process was started by mpirun with more than
// one rank (MPI initialized on first use, finalized at exit), else null.
// Throws duet::Error when launched by mpirun but Duet was built without MPI.
Communicator* mpi_world();

// Sums the weighted gradients of all ranks (weight: this rank's share of the
// global batch), in rank order; bf16 rounds each rank's contribution first.
void allreduce_gradients(Communicator& comm, std::vector<Tensor>& grads, double weight, bool bf16);
// Elementwise max over ranks (FP8 amax histories stay identical on every rank).
std::vector<float> allreduce_max(Communicator& comm, const std::vector<float>& v);
// Σ over ranks of v (rank order).
std::vector<double> allreduce_values(Communicator& comm, const std::vector<double>& v);

}  // namespace duet::train
