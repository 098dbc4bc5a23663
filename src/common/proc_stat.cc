#include "common/proc_stat.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>

namespace meridian {

std::optional<ProcStat> ParseProcStat(const std::string& line) {
  // The name is between the first '(' and the last ')': it may itself hold either.
  const size_t open = line.find('(');
  const size_t close = line.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return std::nullopt;
  }
  ProcStat s;
  s.name = line.substr(open + 1, close - open - 1);
  int ppid = 0;
  unsigned long long utime = 0, stime = 0;
  // After the name: state, ppid, then utime and stime as the 12th and 13th fields.
  if (std::sscanf(line.c_str() + close + 1, " %c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                  &s.state, &ppid, &utime, &stime) != 4) {
    return std::nullopt;
  }
  s.ppid = ppid;
  s.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return s;
}

std::optional<ProcStat> ReadProcStat(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return ParseProcStat(line);
}

}  // namespace meridian
