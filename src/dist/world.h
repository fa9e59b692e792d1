// The world of a data-parallel job: which rank this process is, the process group that carries its
// collectives (c10d: Gloo on CPU, NCCL for CUDA tensors when libtorch has it), and what to say when
// another rank fails. Built once, from the launcher's environment (launch.h), and handed to the
// trainer; a single process is a world of size 1 through the same interface, whose collectives
// return at once.
//
// Rendezvous goes through c10d's TCPStore at MASTER_ADDR:MASTER_PORT, hosted by rank 0 (or by
// torchrun's agent), under a namespace per torchrun restart. Every collective and the rendezvous
// itself give up after `timeout`; a failed collective becomes a DistributedError whose one line names
// the rank that failed (it reported an error through the store, or it did not answer a probe: it
// died or hung).
#pragma once

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

#include <torch/types.h>

#include "base/config.h"
#include "dist/launch.h"

namespace qkv::dist {

// A collective failed because another rank did (or the network did): the message names the rank.
struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class Collectives;  // the process group behind a World of size > 1 (world.cpp)

// A collective in flight; wait() returns when its result is in place.
class Pending {
 public:
  Pending() = default;
  void wait();

 private:
  friend class World;
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

class World {
 public:
  World();  // a single process: rank 0 of 1
  ~World();
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  // Joins the job that `launch` describes. `backend` Auto picks NCCL when this process trains on a
  // GPU and libtorch was built with it, Gloo otherwise. Throws ConfigError for a backend this libtorch
  // lacks, DistributedError when the rendezvous fails or times out.
  static std::unique_ptr<World> join(const LaunchInfo& launch, DistBackend backend,
                                     std::chrono::seconds timeout);

  int rank() const { return launch_.rank; }
  int size() const { return launch_.world_size; }
  int local_rank() const { return launch_.local_rank; }
  int local_size() const { return launch_.local_world_size; }
  bool is_writer() const { return launch_.rank == 0; }  // the one rank that writes files
  const LaunchInfo& launch() const { return launch_; }
  const std::string& backend() const { return backend_; }  // "gloo", "nccl", or "none" for one process
  // Where this process trains: GPU number local_rank() when CUDA is available, else the CPU.
  torch::Device device() const;

  // Collectives: every rank calls them, in the same order. Tensors are contiguous.
  void all_reduce_sum(torch::Tensor& tensor);
  Pending all_reduce_sum_async(torch::Tensor& tensor);  // `tensor` must live until wait() returns
  void broadcast(torch::Tensor& tensor, int root = 0);
  void barrier();

  // Records this rank's failure where the other ranks will look for it (best effort, never throws).
  void report_failure(const std::string& message) noexcept;
  // The one-line account of a failed collective: which rank failed and how. `during` says what this
  // rank was doing ("the gradient all-reduce of step 12").
  std::string describe_failure(const std::string& during, const std::string& cause) noexcept;

 private:
  friend class Pending;
  LaunchInfo launch_;
  std::string backend_ = "none";
  std::chrono::seconds timeout_{600};
  std::unique_ptr<Collectives> collectives_;
};

}  // namespace qkv::dist
