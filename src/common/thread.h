#pragma once

#include <pthread.h>

#include <string>
#include <thread>
#include <utility>

namespace meridian {

// Starts a thread under a name (at most 15 characters are kept) so `top -H`, perf and gdb
// tell the event loops, the audit log's writer and completer and the workers apart. Named
// by its creator, so the name is there once this returns.
template <typename F>
std::thread NamedThread(const std::string& name, F&& body) {
  std::thread t(std::forward<F>(body));
  pthread_setname_np(t.native_handle(), name.substr(0, 15).c_str());
  return t;
}

}  // namespace meridian
