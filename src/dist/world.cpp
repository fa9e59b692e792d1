// A data-parallel world on c10d: see world.h.
#include "dist/world.h"

#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <torch/cuda.h>
#include <torch/version.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "base/enums.h"
#include "base/error.h"

namespace qkv::dist {

// libtorch 2 moved the collectives of a process group into "backends".
#if TORCH_VERSION_MAJOR >= 2
using ProcessGroupBase = c10d::Backend;
#else
using ProcessGroupBase = c10d::ProcessGroup;
#endif

class Collectives {
 public:
  c10::intrusive_ptr<c10d::Store> store;  // the job's namespace in the rendezvous store
  c10::intrusive_ptr<ProcessGroupBase> group;
};

struct Pending::Impl {
  c10::intrusive_ptr<c10d::Work> work;
  World* world = nullptr;
  std::string during;
};

namespace {

// Gloo binds to an address the other ranks can reach: loopback for a job on one machine, else the
// interface GLOO_SOCKET_IFNAME names, else the address this machine's hostname resolves to.
std::shared_ptr<::gloo::transport::Device> gloo_device(const LaunchInfo& launch) {
  if (launch.master_addr == "127.0.0.1" || launch.master_addr == "localhost")
    return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  if (const char* interface = std::getenv("GLOO_SOCKET_IFNAME"))
    return c10d::ProcessGroupGloo::createDeviceForInterface(interface);
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

std::string resolve_backend(DistBackend backend, const torch::Device& device) {
#ifdef USE_C10D_NCCL
  const bool have_nccl = true;
#else
  const bool have_nccl = false;
#endif
  switch (backend) {
    case DistBackend::Gloo:
      return "gloo";
    case DistBackend::Nccl:
      if (!have_nccl)
        throw ConfigError(
            "train.dist_backend is \"nccl\" but this libtorch was built without NCCL; use "
            "\"gloo\" or \"auto\"");
      if (!device.is_cuda())
        throw ConfigError("train.dist_backend is \"nccl\", which needs CUDA devices; this run is on the CPU");
      return "nccl";
    case DistBackend::Auto:
      break;
  }
  return have_nccl && device.is_cuda() ? "nccl" : "gloo";
}

c10::intrusive_ptr<ProcessGroupBase> make_group([[maybe_unused]] const std::string& backend,
                                                const c10::intrusive_ptr<c10d::Store>& store,
                                                const LaunchInfo& launch, std::chrono::milliseconds timeout) {
#ifdef USE_C10D_NCCL
  if (backend == "nccl") {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    return c10::make_intrusive<c10d::ProcessGroupNCCL>(store, launch.rank, launch.world_size, options);
  }
#endif
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  options->devices.push_back(gloo_device(launch));
  options->threads = 1;  // communication mostly waits on the network; the cores compute
  return c10::make_intrusive<c10d::ProcessGroupGloo>(store, launch.rank, launch.world_size, options);
}

}  // namespace

World::World() = default;
World::~World() = default;

torch::Device World::device() const {
  if (!torch::cuda::is_available()) return torch::kCPU;
  return {torch::kCUDA,
          static_cast<c10::DeviceIndex>(local_rank() % static_cast<int>(torch::cuda::device_count()))};
}

std::unique_ptr<World> World::join(const LaunchInfo& launch, DistBackend backend,
                                   std::chrono::seconds timeout) {
  auto world = std::make_unique<World>();
  world->launch_ = launch;
  world->timeout_ = timeout;
  if (!launch.distributed()) return world;
  world->backend_ = resolve_backend(backend, world->device());
  c10d::TCPStoreOptions options;
  options.port = static_cast<std::uint16_t>(launch.master_port);
  options.isServer = launch.rank == 0 && !launch.agent_store;
  options.numWorkers = launch.world_size;
  options.waitWorkers = false;
  options.timeout = timeout;
  auto collectives = std::make_unique<Collectives>();
  try {
    auto store = c10::make_intrusive<c10d::TCPStore>(launch.master_addr, options);
    collectives->store =
        c10::make_intrusive<c10d::PrefixStore>(fmt::format("qkv/attempt-{}", launch.restart_count), store);
    collectives->group = make_group(world->backend_, collectives->store, launch, timeout);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    const c10::Error* torch_error = dynamic_cast<const c10::Error*>(&e);
    throw DistributedError(fmt::format("rank {}: could not join the {}-process job at {}:{} within {} s ({})",
                                       launch.rank, launch.world_size, launch.master_addr, launch.master_port,
                                       timeout.count(),
                                       torch_error ? torch_error->what_without_backtrace() : e.what()));
  }
  world->collectives_ = std::move(collectives);
  return world;
}

void Pending::wait() {
  if (!impl_) return;
  try {
    impl_->work->wait();
  } catch (const std::exception& e) {
    const c10::Error* torch_error = dynamic_cast<const c10::Error*>(&e);
    const std::string cause = torch_error ? torch_error->what_without_backtrace() : e.what();
    throw DistributedError(impl_->world->describe_failure(impl_->during, cause));
  }
  impl_.reset();
}

Pending World::all_reduce_sum_async(torch::Tensor& tensor) {
  Pending pending;
  if (size() == 1) return pending;
  std::vector<torch::Tensor> tensors{tensor};
  pending.impl_ = std::make_shared<Pending::Impl>();
  pending.impl_->work = collectives_->group->allreduce(tensors);
  pending.impl_->world = this;
  pending.impl_->during = "an all-reduce";
  return pending;
}

void World::all_reduce_sum(torch::Tensor& tensor) {
  if (size() == 1) return;
  if (backend_ == "nccl" && !tensor.is_cuda()) {  // NCCL reduces device memory only
    auto on_device = tensor.to(device());
    all_reduce_sum_async(on_device).wait();
    tensor.copy_(on_device);
    return;
  }
  all_reduce_sum_async(tensor).wait();
}

void World::broadcast(torch::Tensor& tensor, int root) {
  if (size() == 1) return;
  if (backend_ == "nccl" && !tensor.is_cuda()) {  // NCCL moves device memory only
    auto on_device = tensor.to(device());
    broadcast(on_device, root);
    tensor.copy_(on_device);
    return;
  }
  std::vector<torch::Tensor> tensors{tensor};
  c10d::BroadcastOptions options;
  options.rootRank = root;
  Pending pending;
  pending.impl_ = std::make_shared<Pending::Impl>();
  pending.impl_->work = collectives_->group->broadcast(tensors, options);
  pending.impl_->world = this;
  pending.impl_->during = "a broadcast";
  pending.wait();
}

void World::barrier() {
  if (size() == 1) return;
  Pending pending;
  pending.impl_ = std::make_shared<Pending::Impl>();
  pending.impl_->work = collectives_->group->barrier();
  pending.impl_->world = this;
  pending.impl_->during = "a barrier";
  pending.wait();
}

namespace {

std::vector<uint8_t> bytes(const std::string& text) {
  return {text.begin(), text.end()};
}

}  // namespace

void World::report_failure(const std::string& message) noexcept {
  if (!collectives_) return;
  try {
    collectives_->store->set(fmt::format("failed/{}", rank()), bytes(message));
  } catch (...) {  // the store may be gone with the rank that hosted it: nothing more to do
  }
}

std::string World::describe_failure(const std::string& during, const std::string& cause) noexcept {
  const std::string head = fmt::format("rank {} of {}: {} failed", rank(), size(), during);
  if (!collectives_) return fmt::format("{} ({})", head, cause);
  try {
    auto& store = *collectives_->store;
    // A rank that failed with an error said so before it exited.
    for (int r = 0; r < size(); ++r) {
      if (r == rank() || !store.check({fmt::format("failed/{}", r)})) continue;
      const auto message = store.get(fmt::format("failed/{}", r));
      return fmt::format("{} because rank {} failed: {}", head, r,
                         std::string(message.begin(), message.end()));
    }
    // Otherwise: every rank that is still alive answers a probe; the silent ones died or hung.
    store.set(fmt::format("probe/{}", rank()), bytes("alive"));
    const auto deadline =
        std::chrono::steady_clock::now() + std::min<std::chrono::seconds>(timeout_, std::chrono::seconds(10));
    std::vector<int> silent;
    do {
      silent.clear();
      for (int r = 0; r < size(); ++r)
        if (r != rank() && !store.check({fmt::format("probe/{}", r)})) silent.push_back(r);
      if (silent.empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    } while (std::chrono::steady_clock::now() < deadline);
    if (silent.empty())
      return fmt::format("{}: every rank is alive, so the network failed ({})", head, cause);
    return fmt::format("{} because rank {} stopped responding: it died or hung ({})", head,
                       fmt::join(silent, ", "), cause);
  } catch (const std::exception&) {
    // The store is gone: it lived in the process of rank 0 (unless a launcher's agent hosted it).
    if (!launch_.agent_store && rank() != 0)
      return fmt::format("{} because rank 0 is gone: it died (it also hosted the rendezvous store) ({})",
                         head, cause);
    return fmt::format("{}: the rendezvous store is unreachable ({})", head, cause);
  }
}

}  // namespace qkv::dist
