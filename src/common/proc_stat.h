#pragma once

#include <sys/types.h>

#include <optional>
#include <string>

namespace meridian {

// One line of /proc/<pid>/stat or /proc/<pid>/task/<tid>/stat: the fields the tests and the
// benchmarks use.
struct ProcStat {
  std::string name;  // the command or thread name, which may hold spaces and parentheses
  char state = 0;    // 'R', 'S', 'Z', ...
  pid_t ppid = 0;
  double cpu_s = 0;  // user + system time (whole clock ticks)
};

// Parses such a line; nullopt when it is not one.
std::optional<ProcStat> ParseProcStat(const std::string& line);

// Reads and parses the file at `path`; nullopt when it is gone (the process or thread ended).
std::optional<ProcStat> ReadProcStat(const std::string& path);

}  // namespace meridian
