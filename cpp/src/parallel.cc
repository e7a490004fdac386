#include "quantcore/parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

namespace quantcore {
namespace {

int default_threads() {
  if (const char* env = std::getenv("QUANTCORE_NUM_THREADS")) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end != env && *end == '\0' && n >= 1 && n <= 1024) return static_cast<int>(n);
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

thread_local bool t_inside_pool_task = false;

// Workers sleep on `wake_` until a job is posted. Each job owns its chunk counter, so a
// worker still finishing an old job can never claim chunks of a newer one.
//
// Before sleeping, a worker spins on the posted generation, and the caller spins on its job's
// pending count before waiting on `done_`: a model's decode step posts a small job every few
// microseconds, and a futex wake-up cost more than the job (measured: a 576 x 576 int4 GEMV
// took 29 us on one thread and 43 us on two with sleeping workers). Worse, a worker woken from
// its sleep often lands on the caller's CPU (67 of 101 wake-ups after a 5 ms sleep, measured
// here) and does nothing until the caller's share of the job is over.
//
// How long a worker spins after a job follows the gaps between jobs: kLongSpin when the job
// came within kLongSpin of the one before it and took less than kLongSpin itself, else kSpin.
// In a decode loop the gaps are the numpy work between the layers' GEMVs (SmolLM2-135M: 17 us
// median, 190 us at the 99th percentile); int4 g64 decode, 16 tokens, median of 12 interleaved
// runs: 42 tokens/s with 50 us of spinning, 50 with 1 ms (a second run: 52 and 57). Jobs far
// apart (a GEMV now and then, or between other multi-threaded work such as numpy's BLAS) keep
// the short spin, so the workers do not hold a core that other threads want; so do long jobs (a
// GEMM), beside which a wake-up costs little. Spinning stops at once when work arrives.
constexpr auto kSpin = std::chrono::microseconds(50);
constexpr auto kLongSpin = std::chrono::microseconds(1000);

struct Job {
  const std::function<void(std::size_t)>* fn;
  std::size_t n_chunks;
  std::chrono::steady_clock::time_point posted;
  bool follows_closely;  // posted within kLongSpin of the previous job's end
  std::atomic<std::size_t> next_chunk{0};
  std::atomic<std::size_t> pending;
  std::exception_ptr error;  // guarded by ThreadPool::mutex_
};

// Spin until done() or `limit` has passed; true if done() became true.
template <class Done>
bool spin_until(const Done& done, std::chrono::nanoseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (int i = 0;; ++i) {
    if (done()) return true;
    if ((i & 63) == 63 && std::chrono::steady_clock::now() >= until) return false;
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
}

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads) {
    for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this] { worker_loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int size() const { return static_cast<int>(workers_.size()) + 1; }

  void run(std::size_t n_chunks, const std::function<void(std::size_t)>& chunk_fn) {
    std::lock_guard<std::mutex> serialize(run_mutex_);  // one job at a time
    auto job = std::make_shared<Job>();
    job->fn = &chunk_fn;
    job->n_chunks = n_chunks;
    job->posted = std::chrono::steady_clock::now();
    job->follows_closely = job->posted - last_end_ < kLongSpin;
    job->pending = n_chunks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      posted_.store(++generation_, std::memory_order_release);
    }
    wake_.notify_all();
    work_on(*job);
    auto finished = [&] { return job->pending.load(std::memory_order_acquire) == 0; };
    spin_until(finished, kSpin);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, finished);
    job_.reset();
    last_end_ = std::chrono::steady_clock::now();
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void worker_loop() {
    std::uint64_t seen = 0;
    std::chrono::microseconds spin = kSpin;
    for (;;) {
      std::shared_ptr<Job> job;
      spin_until([&] { return posted_.load(std::memory_order_acquire) != seen; }, spin);
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      if (job) {
        work_on(*job);
        const bool short_job = std::chrono::steady_clock::now() - job->posted < kLongSpin;
        spin = job->follows_closely && short_job ? kLongSpin : kSpin;
      }
    }
  }

  void work_on(Job& job) {
    t_inside_pool_task = true;
    std::size_t finished = 0;
    for (;;) {
      std::size_t chunk = job.next_chunk.fetch_add(1);
      if (chunk >= job.n_chunks) break;
      try {
        (*job.fn)(chunk);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!job.error) job.error = std::current_exception();
      }
      ++finished;
    }
    t_inside_pool_task = false;
    if (finished > 0 && job.pending.fetch_sub(finished, std::memory_order_acq_rel) == finished) {
      std::lock_guard<std::mutex> lock(mutex_);  // the caller may be between its check and its wait
      done_.notify_all();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> job_;
  std::uint64_t generation_ = 0;           // guarded by mutex_
  std::atomic<std::uint64_t> posted_{0};  // generation_, readable without the lock
  std::chrono::steady_clock::time_point last_end_{};  // when the last job returned (run_mutex_)
  bool stop_ = false;
};

std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;

std::shared_ptr<ThreadPool> pool() {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool) g_pool = std::make_shared<ThreadPool>(default_threads());
  return g_pool;
}

}  // namespace

int get_num_threads() { return pool()->size(); }

void set_num_threads(int n) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (g_pool && g_pool->size() == n) return;
  g_pool = std::make_shared<ThreadPool>(n);
}

void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn) {
  if (n == 0) return;
  grain = std::max<std::size_t>(grain, 1);
  std::shared_ptr<ThreadPool> p = t_inside_pool_task ? nullptr : pool();
  int threads = p ? p->size() : 1;
  if (threads == 1 || n <= grain) {
    fn(0, n);
    return;
  }
  // A few chunks per thread balance load when one core is busy with something else.
  std::size_t n_chunks = std::min<std::size_t>((n + grain - 1) / grain, 4 * threads);
  std::size_t chunk = (n + n_chunks - 1) / n_chunks;
  n_chunks = (n + chunk - 1) / chunk;
  p->run(n_chunks, [&](std::size_t c) {
    std::size_t begin = c * chunk;
    fn(begin, std::min(n, begin + chunk));
  });
}

}  // namespace quantcore
