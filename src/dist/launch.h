// Where this process stands in a data-parallel job, as its launcher describes it in the environment.
//
// Three launchers are understood, in this order:
//   torchrun (and `qkv train --nproc`): RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
//     MASTER_PORT; torchrun's static rendezvous also sets TORCHELASTIC_USE_AGENT_STORE=True (its agent
//     hosts the store, so rank 0 must not) and TORCHELASTIC_RESTART_COUNT (one store namespace per
//     restart, so a restarted job never reads the keys of the attempt before it);
//   Slurm (`srun`): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE (or
//     SLURM_TASKS_PER_NODE), with MASTER_ADDR and MASTER_PORT exported by the batch script;
//   nothing: a single process, world size 1.
// This file and dist/world.cpp are the only places that read these variables (STYLE.md, 13).
#pragma once

#include <string>

namespace qkv::dist {

struct LaunchInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;       // the launcher hosts the rendezvous store (torchrun's static rendezvous)
  int restart_count = 0;          // torchrun's restarts so far
  std::string launcher = "none";  // "torchrun", "slurm" or "none"

  // Reads the environment; throws ConfigError naming the variable for a missing, malformed or
  // inconsistent value (RANK without WORLD_SIZE, RANK >= WORLD_SIZE, a port outside 1..65535, ...).
  static LaunchInfo from_environment();

  bool distributed() const { return world_size > 1; }
};

}  // namespace qkv::dist
