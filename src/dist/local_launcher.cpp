// Starting and watching the worker processes of `qkv train --nproc N`: see local_launcher.h.
#include "dist/local_launcher.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>

#include <fmt/format.h>

namespace qkv::dist {
namespace {

std::atomic<int> g_pending_signal{0};

extern "C" void remember_signal(int signal_number) {
  g_pending_signal.store(signal_number);
}

struct Worker {
  int rank = 0;
  pid_t pid = -1;
  int out = -1, err = -1;  // read ends of the worker's stdout and stderr
  std::ofstream log;
  std::optional<int> status;  // the exit status once it has exited
};

std::string describe_status(int wait_status) {
  if (WIFSIGNALED(wait_status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(wait_status),
                       strsignal(WTERMSIG(wait_status)));
  return fmt::format("exited with status {}", WEXITSTATUS(wait_status));
}

int exit_code(int wait_status) {
  return WIFSIGNALED(wait_status) ? 128 + WTERMSIG(wait_status) : WEXITSTATUS(wait_status);
}

// In the child: its own process group, its output into the pipes, the launcher's environment, exec.
[[noreturn]] void exec_worker(const LocalLaunch& launch, int rank, int port, int out, int err) {
  setpgid(0, 0);
  dup2(out, STDOUT_FILENO);
  dup2(err, STDERR_FILENO);
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(launch.workers).c_str(), 1);
  setenv("LOCAL_WORLD_SIZE", std::to_string(launch.workers).c_str(), 1);
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  for (const char* name :
       {"TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID"})
    unsetenv(name);
  std::vector<char*> argv;
  for (const auto& arg : launch.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execv("/proc/self/exe", argv.data());
  std::fprintf(stderr, "qkv: cannot start worker %d: %s\n", rank, std::strerror(errno));
  _exit(127);
}

// Copies what a worker wrote since the last call: into its log, and rank 0's onto the console.
// Returns false at end of file.
bool relay(Worker& worker, int fd, int console_fd) {  // console_fd < 0: the log only
  char buffer[65536];
  const ssize_t n = read(fd, buffer, sizeof buffer);
  if (n <= 0) return n < 0 && errno == EINTR;
  worker.log.write(buffer, n);
  worker.log.flush();
  if (worker.rank == 0 && console_fd >= 0) {
    for (ssize_t done = 0; done < n;) {
      const ssize_t w = write(console_fd, buffer + done, static_cast<size_t>(n - done));
      if (w <= 0) break;
      done += w;
    }
  }
  return true;
}

}  // namespace

int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string reason = std::strerror(errno);
    close(fd);
    throw std::runtime_error(fmt::format("cannot find a free port on 127.0.0.1: {}", reason));
  }
  close(fd);
  return ntohs(address.sin_port);
}

namespace {

// Starts one worker: a pipe for each of its output streams, fork, exec.
void start_worker(const LocalLaunch& launch, int port, Worker& w) {
  w.log.open(fmt::format("{}/rank-{}.log", launch.log_dir, w.rank), std::ios::trunc);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(fmt::format("pipe: {}", std::strerror(errno)));
  w.pid = fork();
  if (w.pid < 0) throw std::runtime_error(fmt::format("fork: {}", std::strerror(errno)));
  if (w.pid == 0) exec_worker(launch, w.rank, port, out[1], err[1]);
  close(out[1]);
  close(err[1]);
  w.out = out[0];
  w.err = err[0];
}

// Waits up to 100 ms for output and relays whatever arrived; closes the streams that ended.
void pump_output(std::vector<Worker>& workers, bool quiet) {
  std::vector<pollfd> fds;
  std::vector<std::pair<Worker*, int*>> sources;  // the worker and its fd field, per pollfd
  for (auto& w : workers) {
    if (w.out >= 0) fds.push_back({w.out, POLLIN, 0}), sources.emplace_back(&w, &w.out);
    if (w.err >= 0) fds.push_back({w.err, POLLIN, 0}), sources.emplace_back(&w, &w.err);
  }
  if (fds.empty()) {
    usleep(100000);
    return;
  }
  if (poll(fds.data(), fds.size(), 100) <= 0) return;
  for (size_t i = 0; i < fds.size(); ++i) {
    if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
    auto [w, field] = sources[i];
    const int console = quiet ? -1 : field == &w->out ? STDOUT_FILENO : STDERR_FILENO;
    if (!relay(*w, fds[i].fd, console)) {
      close(*field);
      *field = -1;
    }
  }
}

// Collects the workers that exited; reports the first failure. True when all have exited and their
// output has been relayed to the end.
bool reap(std::vector<Worker>& workers, std::optional<int>& first_failure) {
  bool all_done = true;
  for (auto& w : workers) {
    int wait_status = 0;
    if (!w.status && waitpid(w.pid, &wait_status, WNOHANG) == w.pid) {
      w.status = wait_status;
      if (exit_code(wait_status) != 0 && !first_failure) {
        first_failure = exit_code(wait_status);
        std::fprintf(stderr, "[dist] rank %d (pid %d) %s; waiting for the other workers to stop\n", w.rank,
                     static_cast<int>(w.pid), describe_status(wait_status).c_str());
      }
    }
    all_done = all_done && w.status && w.out < 0 && w.err < 0;
  }
  return all_done;
}

}  // namespace

int run_local_workers(const LocalLaunch& launch) {
  std::filesystem::create_directories(launch.log_dir);
  const int port = free_loopback_port();
  if (!launch.quiet) {
    std::printf("[dist] starting %d workers on 127.0.0.1:%d; their logs: %s/rank-K.log\n", launch.workers,
                port, launch.log_dir.c_str());
    std::fflush(stdout);
  }

  struct sigaction action {
  }, previous_int{}, previous_term{};
  action.sa_handler = remember_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, &previous_int);
  sigaction(SIGTERM, &action, &previous_term);
  g_pending_signal.store(0);

  std::vector<Worker> workers(static_cast<size_t>(launch.workers));
  for (int rank = 0; rank < launch.workers; ++rank) {
    workers[static_cast<size_t>(rank)].rank = rank;
    start_worker(launch, port, workers[static_cast<size_t>(rank)]);
  }
  std::optional<int> first_failure;
  bool kill_pending = false;  // a worker failed: the others are killed at kill_at unless they stop
  auto kill_at = std::chrono::steady_clock::now();
  for (;;) {
    if (const int signal_number = g_pending_signal.exchange(0)) {  // forwarded once per signal received
      for (const auto& w : workers)
        if (!w.status) kill(w.pid, signal_number);
    }
    pump_output(workers, launch.quiet);
    const bool failed_before = first_failure.has_value();
    if (reap(workers, first_failure)) break;
    if (!failed_before && first_failure) {
      kill_pending = true;
      kill_at = std::chrono::steady_clock::now() + launch.grace;
    }
    if (kill_pending && std::chrono::steady_clock::now() > kill_at) {
      for (auto& w : workers) {
        if (w.status) continue;
        std::fprintf(stderr,
                     "[dist] rank %d (pid %d) did not stop within %lld s of the failure: killing it\n",
                     w.rank, static_cast<int>(w.pid), static_cast<long long>(launch.grace.count()));
        kill(w.pid, SIGKILL);
      }
      kill_pending = false;
    }
  }
  sigaction(SIGINT, &previous_int, nullptr);
  sigaction(SIGTERM, &previous_term, nullptr);
  return first_failure.value_or(0);
}

}  // namespace qkv::dist
