// A small persistent thread pool for data-parallel kernels.
//
// parallel_for splits [0, n) into chunks of at least `grain` items and runs them on the pool
// workers and the calling thread. A call made from inside a pool task runs serially, so
// kernels can nest without deadlock. The pool size comes from QUANTCORE_NUM_THREADS, else the
// number of CPUs this process may run on; set_num_threads changes it.
#pragma once

#include <cstddef>
#include <functional>

namespace quantcore {

int get_num_threads();
void set_num_threads(int n);  // n >= 1

// fn(begin, end) is called for disjoint sub-ranges covering [0, n).
void parallel_for(std::size_t n, std::size_t grain,
                  const std::function<void(std::size_t, std::size_t)>& fn);

}  // namespace quantcore
