// `qkv train --nproc N`: N worker processes on this machine, started the way torchrun starts them.
//
// The launcher picks a free loopback port for the rendezvous, starts the workers (the same program
// and arguments, without --nproc) with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and
// MASTER_PORT set, each in a process group of its own, so that Ctrl-C at the terminal reaches the
// launcher alone and is forwarded once to every worker (a second Ctrl-C is forwarded again: the
// workers stop at once). It copies each worker's output to LOG_DIR/rank-K.log and rank 0's also to
// its own console. When a worker fails it says which, waits for the others to notice (they do within
// train.dist_timeout_s) and kills what is left after a grace period; its exit status is the first
// failing worker's (128 + N for a worker killed by signal N), or 0.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace qkv::dist {

struct LocalLaunch {
  int workers = 2;
  std::vector<std::string> argv;    // the worker's command line: argv[0] is the program
  std::string log_dir;              // LOG_DIR/rank-K.log
  bool quiet = false;               // rank 0's output goes to its log only (for benchmarks)
  std::chrono::seconds grace{660};  // how long the others may take to stop after a failure
};

// Runs the workers to the end; returns the exit status described above.
int run_local_workers(const LocalLaunch& launch);

// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's choice for port 0).
int free_loopback_port();

}  // namespace qkv::dist
